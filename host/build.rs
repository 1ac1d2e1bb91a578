//! Builds the handler plugins as WebAssembly components: the bundled ones,
//! which `crate::plugin::bundled` embeds, and the misbehaving test fixture,
//! which the plugin runtime's tests load.
//!
//! The bundled components are copied to `$OUT_DIR/bundled/<package>.wasm`
//! and the fixture to `$OUT_DIR/fixtures/<package>.wasm`; the crate finds
//! the two directories in the variables `SLUICE_BUNDLED_DIR` and
//! `SLUICE_FIXTURES_DIR` set here.

use std::path::PathBuf;

/// The plugin packages embedded in the host.
const BUNDLED: &[&str] = &[
    "sluice-plugin-load-avg",
    "sluice-plugin-cpu-usage",
    "sluice-plugin-last-kernel-upgrade",
];

/// Plugin packages the host's own tests load. Kept apart from
/// [`BUNDLED`], so that the bundled directory holds only bundled plugins.
const FIXTURES: &[&str] = &["sluice-plugin-misbehave"];

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace_root = manifest_dir
        .parent()
        .expect("the host crate is a directory of the workspace root");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    for (packages, dir, variable) in [
        (BUNDLED, "bundled", "SLUICE_BUNDLED_DIR"),
        (FIXTURES, "fixtures", "SLUICE_FIXTURES_DIR"),
    ] {
        let dir = out_dir.join(dir);
        sluice_plugin_build::build_components(workspace_root, packages, &dir);
        println!("cargo:rustc-env={variable}={}", dir.display());
    }
}
