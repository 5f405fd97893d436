//! Bakes the install location of helper executables into the library, so an
//! installed libfreezefs finds its own helpers and never one from a build tree.

fn main() {
    println!("cargo:rerun-if-env-changed=FREEZEFS_LIBEXECDIR");
    let libexec = std::env::var("FREEZEFS_LIBEXECDIR")
        .unwrap_or_else(|_| "/usr/local/libexec/freezefs".to_string());
    println!("cargo:rustc-env=FREEZEFS_LIBEXECDIR={libexec}");
}
