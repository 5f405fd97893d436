//! freezefs-holder: started by libfreezefs, never by hand. It keeps every
//! freeze made through the library until it ends, thawing at the deadline
//! even when the process that froze is gone.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(freezefs::holder_process_main(&args));
}
