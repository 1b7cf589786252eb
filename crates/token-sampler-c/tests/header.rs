//! include/token_sampler.h is what cbindgen generates from src/lib.rs: this
//! test regenerates it and fails when the checked-in header differs, so the
//! header can never drift from the ABI. `TOKEN_SAMPLER_BLESS=1` rewrites it.

use std::path::Path;

#[test]
fn checked_in_header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = dir.join("include/token_sampler.h");
    if std::env::var_os("TOKEN_SAMPLER_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is not what cbindgen generates from src/lib.rs; run \
         `TOKEN_SAMPLER_BLESS=1 cargo test --release -p token-sampler-c --test header` and commit it",
        path.display()
    );
}
