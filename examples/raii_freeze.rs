//! Freeze a filesystem for the length of a scope, the Rust way.
//!
//!     cargo run --example raii_freeze -- <mount point> [timeout seconds]
//!
//! The guard thaws its own freeze (never a newer one) when dropped;
//! `thaw()` says whether the freeze held to the end.

use std::process::ExitCode;

use freezefs::{Error, Freezer, Timeout};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(mount_point) = args.next() else {
        eprintln!("usage: raii_freeze <mount point> [timeout seconds]");
        return ExitCode::from(2);
    };
    let seconds = args
        .next()
        .and_then(|s| s.to_str()?.parse().ok())
        .unwrap_or(30);

    let frozen = match Freezer::from_env().freeze_guard(&mount_point, Timeout::Seconds(seconds)) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("raii_freeze: {e} (errno {})", e.errno());
            return ExitCode::from(1);
        }
    };
    println!(
        "{} frozen (held: {:?})",
        frozen.path().display(),
        frozen.is_held()
    );

    // The snapshot goes here; this example only reads the frozen directory.
    let entries = std::fs::read_dir(&mount_point)
        .map(|d| d.count())
        .unwrap_or(0);
    println!("read {entries} entries while frozen");

    match frozen.thaw() {
        Ok(()) => {
            println!("thawed: the freeze held throughout");
            ExitCode::SUCCESS
        }
        Err(Error::NotFrozen(_)) => {
            eprintln!("raii_freeze: the freeze ended early; the snapshot is not consistent");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("raii_freeze: thaw: {e}");
            ExitCode::from(1)
        }
    }
}
