//! Regenerates `include/sluice.h` from `src/ffi/` with cbindgen on every build, adding the
//! header's opening comment (`src/ffi/intro.h`) and the version macros from Cargo.toml (so
//! `SLUICE_VERSION_MINOR` is Cargo.toml's minor version: bump that to bump the header's). The header is checked in; the test command fails when a
//! build changes it (`git diff --exit-code include/sluice.h`).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(loom)");
    // Loom builds use loom's atomics and no C ABI matters there.
    if env::var("CARGO_CFG_LOOM").is_ok() {
        return;
    }
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    let mut parts = version.split(['.', '-']);
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (major, minor, patch) = (next(), next(), next());
    let intro = std::fs::read_to_string(dir.join("src/ffi/intro.h")).expect("src/ffi/intro.h");
    let macros = format!(
        "{intro}\n#define SLUICE_VERSION \"{version}\"\n\
         #define SLUICE_VERSION_MAJOR {major}\n\
         #define SLUICE_VERSION_MINOR {minor}\n\
         #define SLUICE_VERSION_PATCH {patch}\n"
    );
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi/mod.rs"))
        .with_after_include(macros)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include/sluice.h"));
        }
        Err(e) => panic!("cbindgen could not generate include/sluice.h: {e}"),
    }
}
