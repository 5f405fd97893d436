//! Build settings that an installed libfreezefs needs and a build tree must
//! not have:
//! - `FREEZEFS_LIBEXECDIR`: where the installed library finds its holder
//!   (default /usr/local/libexec/freezefs), so that it never runs one from
//!   a build tree;
//! - `FREEZEFS_SONAME`: the shared library's SONAME (`make install` sets
//!   libfreezefs.so.1); a plain `cargo build` leaves it out, so programs
//!   linked against target/ keep working wherever the file is copied.

fn main() {
    println!("cargo:rerun-if-env-changed=FREEZEFS_LIBEXECDIR");
    println!("cargo:rerun-if-env-changed=FREEZEFS_SONAME");
    let libexec = std::env::var("FREEZEFS_LIBEXECDIR")
        .unwrap_or_else(|_| "/usr/local/libexec/freezefs".to_string());
    println!("cargo:rustc-env=FREEZEFS_LIBEXECDIR={libexec}");
    if let Ok(soname) = std::env::var("FREEZEFS_SONAME") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
}
