//! include/freezefs.h is what cbindgen makes of src/ffi/ alone (the C
//! ABI, and nothing else of the crate's public items), to the byte.
//! `FREEZEFS_BLESS=1 cargo test --test integration header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let header = crate_dir.join("include/freezefs.h");
    if std::env::var_os("FREEZEFS_BLESS").is_some() {
        std::fs::write(&header, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/freezefs.h differs from what cbindgen generates; run \
         FREEZEFS_BLESS=1 cargo test --test integration header and commit it.\n--- generated ---\n{}",
        String::from_utf8_lossy(&generated)
    );
}
