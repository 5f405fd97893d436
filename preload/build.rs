//! The shim's own SONAME. Without it the library's (`libfreezefs.so.1`,
//! set by `make install` through FREEZEFS_SONAME) could reach this cdylib
//! too, and `ldconfig` would then point libfreezefs.so.1 at the shim.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfreezefs_preload.so");
}
