//! Builds the guest fixtures of `tests/fixtures/` as WebAssembly
//! components, for the tests to load as plugins.
//!
//! Each is copied to `$OUT_DIR/fixtures/<package>.wasm`; the crate finds the
//! directory in the variable `SLUICE_TEST_FIXTURES_DIR` set here (see
//! `sluice_tests::fixtures`).

use std::path::PathBuf;

/// The fixture packages built as components. `sluice-fixture-chaos-core`
/// is not one: it is the library the chaos fixtures share.
const FIXTURES: &[&str] = &[
    "sluice-fixture-chaos",
    "sluice-fixture-chaos-v2",
    "sluice-fixture-chaos-broken",
    "sluice-fixture-wrong-world",
    // The Rust example plugin, which the example tests load beside the
    // examples in other languages.
    "sluice-plugin-disk-usage",
];

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace_root = manifest_dir
        .parent()
        .expect("the tests crate is a directory of the workspace root");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // `build_components` watches `plugins/` and `wit/`; the fixtures live
    // here.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("fixtures").display()
    );
    let dir = out_dir.join("fixtures");
    sluice_plugin_build::build_components(workspace_root, FIXTURES, &dir);
    println!("cargo:rustc-env=SLUICE_TEST_FIXTURES_DIR={}", dir.display());
}
