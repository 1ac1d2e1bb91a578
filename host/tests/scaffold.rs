//! `sluice plugin new` and `sluice plugin check`, as a plugin author runs
//! them: a skeleton written by the binary builds with its own instructions
//! into a component that the check accepts under the skeleton's name.
//!
//! The Rust skeleton builds with cargo alone. The others need the tools
//! that `plugins/examples/build.sh` installs (`.ci/run` runs it first);
//! their builds find them in the workspace's `target/plugin-tools`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate is in the workspace")
        .to_owned()
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes a skeleton for `gpu_temp` in `lang`, builds it with `build`, and
/// checks the component that `build` reports. `next` is the path that the
/// skeleton's instructions name for it.
fn new_build_check(lang: &str, build: impl FnOnce(&Path) -> (Output, PathBuf), next: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let skeleton = dir.path().join("gpu_temp");
    let skeleton_arg = skeleton.to_str().expect("a UTF-8 path");
    let written = sluice(&[
        "plugin",
        "new",
        "gpu_temp",
        "--lang",
        lang,
        "--dir",
        skeleton_arg,
    ]);
    assert!(
        written.status.success(),
        "{lang}: {}",
        text(&written.stderr)
    );
    let report = text(&written.stdout);
    assert!(report.contains("wit/plugin.wit"), "{report}");
    assert!(report.contains(next), "{report}");

    let (built, path) = build(&skeleton);
    assert!(
        built.status.success(),
        "{lang}: the skeleton does not build:\n{}\n{}",
        text(&built.stdout),
        text(&built.stderr)
    );
    let checked = sluice(&["plugin", "check", path.to_str().expect("a UTF-8 path")]);
    let report = text(&checked.stdout);
    assert!(
        checked.status.success(),
        "{lang}: {}",
        text(&checked.stderr)
    );
    assert!(report.contains("name:        gpu_temp"), "{report}");
    assert!(report.contains("types:       gpu_temp"), "{report}");
    assert!(report.contains("\"count\":0"), "{report}");
}

#[test]
fn a_rust_skeleton_builds_into_a_handler_of_its_type() {
    new_build_check(
        "rust",
        |dir| {
            // Shared by every run of this test, so that the SDK and its
            // dependencies are built once.
            let target = workspace().join("target/scaffold");
            let built = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .current_dir(dir)
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("cargo runs");
            let component = target.join("wasm32-wasip2/release/sluice_plugin_gpu_temp.wasm");
            (built, component)
        },
        "target/wasm32-wasip2/release/sluice_plugin_gpu_temp.wasm",
    );
}

/// A skeleton whose `build.sh` builds it, with the tools of the workspace.
fn script_build(dir: &Path) -> (Output, PathBuf) {
    let built = Command::new(dir.join("build.sh"))
        .arg("out")
        .current_dir(dir)
        .env("SLUICE_TOOLS", workspace().join("target/plugin-tools"))
        .output()
        .expect("build.sh runs");
    (built, dir.join("out/gpu_temp.wasm"))
}

#[test]
fn a_python_skeleton_builds_into_a_handler_of_its_type() {
    new_build_check("python", script_build, "out/gpu_temp.wasm");
}

#[test]
fn a_js_skeleton_builds_into_a_handler_of_its_type() {
    new_build_check("js", script_build, "out/gpu_temp.wasm");
}

#[test]
fn a_c_skeleton_builds_into_a_handler_of_its_type() {
    new_build_check("c", script_build, "out/gpu_temp.wasm");
}

#[test]
fn a_file_that_is_not_a_handler_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cases: [(&str, &[u8], &str); 3] = [
        ("text.wasm", b"hello", "not a WebAssembly component"),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core WebAssembly module, not a component",
        ),
        ("missing.wasm", b"", "cannot read"),
    ];
    for (name, bytes, reason) in cases {
        let path = dir.path().join(name);
        if !bytes.is_empty() {
            std::fs::write(&path, bytes).expect("write the file");
        }
        let checked = sluice(&["plugin", "check", path.to_str().expect("a UTF-8 path")]);
        assert!(!checked.status.success(), "{name}");
        let stderr = text(&checked.stderr);
        assert!(stderr.contains(reason), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn a_name_that_cannot_name_a_type_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().join("x");
    let written = sluice(&[
        "plugin",
        "new",
        "Bad-Name",
        "--lang",
        "rust",
        "--dir",
        target.to_str().expect("a UTF-8 path"),
    ]);
    assert!(!written.status.success());
    assert!(text(&written.stderr).contains("cannot name a payload type"));
    assert!(!target.exists(), "nothing is written");
}
