//! Builds handler plugins of this workspace as WebAssembly components, for
//! the build scripts of the crates that embed or load them.
//!
//! A build script calls [`build_components`] with the workspace root, the
//! plugin packages and a directory of its own (under `OUT_DIR`). The
//! plugins are built by a nested `cargo build --release --target
//! wasm32-wasip2`, which emits components directly, into a target directory
//! of their own, `<workspace>/target/wasm`: the outer build holds the lock
//! on its own target directory for as long as the build script runs, so the
//! nested build must not share it. Each component is then copied to
//! `<out_dir>/<package>.wasm`.
//!
//! The nested build runs with the cargo and rustc of the outer build, but
//! without the outer build's variables that would leak into it (see
//! [`LEAKING_ENV`]), and with a release profile suited to wasm (see
//! [`PROFILE_OVERRIDES`]).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The target the plugins are built for; it emits components directly.
pub const TARGET: &str = "wasm32-wasip2";

/// The outer build's variables removed from the nested build: they target
/// the outer build (its flags, its target, its target directory, its
/// profile, clippy's wrapper), not the plugins. Every variable whose name
/// starts with `CARGO_PROFILE_` is removed as well.
pub const LEAKING_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
];

/// `--config` overrides of the release profile for the nested build: no
/// debug info and stripped symbols, whole-program optimisation, and panics
/// that abort (a panic traps the instance either way; unwinding only adds
/// code).
pub const PROFILE_OVERRIDES: &[&str] = &[
    "profile.release.debug=false",
    "profile.release.strip=true",
    "profile.release.opt-level=3",
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    "profile.release.panic=\"abort\"",
];

/// Why the components could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The toolchain has no standard library for [`TARGET`].
    #[error(
        "the {TARGET} target is not installed for this toolchain \
         (looked in {libdir}): run `rustup target add {TARGET}`"
    )]
    MissingTarget {
        /// Where the target's standard library should be.
        libdir: PathBuf,
    },
    /// A program could not be started.
    #[error("could not run {program}")]
    Spawn {
        /// The program, `cargo` or `rustc`.
        program: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// The nested build failed; its errors were printed above.
    #[error(
        "building the plugins {packages:?} for {TARGET} failed ({status}); see the errors above"
    )]
    Failed {
        /// The packages being built.
        packages: Vec<String>,
        /// How cargo exited.
        status: ExitStatus,
    },
    /// The nested build succeeded but a component is not where cargo puts it.
    #[error("cargo built {package} but left no component at {path}")]
    MissingArtifact {
        /// The package.
        package: String,
        /// Where its component was expected.
        path: PathBuf,
    },
    /// A component could not be copied to the output directory.
    #[error("could not copy {from} to {to}")]
    Copy {
        /// The component built by cargo.
        from: PathBuf,
        /// Its destination.
        to: PathBuf,
        /// Why the copy failed.
        #[source]
        source: io::Error,
    },
}

/// Builds `packages` of the workspace at `workspace_root` as components and
/// copies each to `<out_dir>/<package>.wasm`, returning those paths in the
/// order of `packages`.
///
/// Meant for build scripts: it prints `cargo:rerun-if-changed` for the
/// workspace's `plugins/` (but for the examples in languages other than
/// Rust, whose builds write nothing cargo reads) and `wit/` directories
/// and its `Cargo.toml` and `Cargo.lock`. A caller whose packages live
/// elsewhere adds its own.
///
/// # Panics
///
/// When the build fails, with a message that says why (see [`BuildError`]);
/// a build script has no other way to fail.
pub fn build_components(workspace_root: &Path, packages: &[&str], out_dir: &Path) -> Vec<PathBuf> {
    for watched in watched_paths(workspace_root) {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    match try_build_components(workspace_root, packages, out_dir) {
        Ok(paths) => paths,
        Err(err) => panic!("{}", error_chain(&err)),
    }
}

/// The paths whose change rebuilds the components: every directory of
/// `plugins/` but `examples/`, of which only `examples/rust/`, and `wit/`,
/// `Cargo.toml` and `Cargo.lock`.
fn watched_paths(workspace_root: &Path) -> Vec<PathBuf> {
    let plugins = workspace_root.join("plugins");
    let mut watched: Vec<PathBuf> = match std::fs::read_dir(&plugins) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| !path.ends_with("examples"))
            .collect(),
        // Watch the directory itself, so that a build after it is back runs.
        Err(_) => vec![plugins.clone()],
    };
    watched.push(plugins.join("examples").join("rust"));
    watched.extend(["wit", "Cargo.toml", "Cargo.lock"].map(|p| workspace_root.join(p)));
    watched.sort();
    watched
}

/// [`build_components`] without the `cargo:` output and without panicking.
pub fn try_build_components(
    workspace_root: &Path,
    packages: &[&str],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, BuildError> {
    let rustc = env_or("RUSTC", "rustc");
    if check_target(&rustc).is_err() {
        // rust-toolchain.toml asks for the target, but rustup adds the
        // targets it lists only when it installs the toolchain itself.
        add_target(workspace_root);
        check_target(&rustc)?;
    }

    let target_dir = workspace_root.join("target").join("wasm");
    let mut cargo = Command::new(env_or("CARGO", "cargo"));
    cargo
        .current_dir(workspace_root)
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .args(["--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for package in packages {
        cargo.args(["--package", package]);
    }
    for setting in PROFILE_OVERRIDES {
        cargo.args(["--config", setting]);
    }
    for (name, _) in std::env::vars_os() {
        let leaks = name
            .to_str()
            .is_some_and(|name| LEAKING_ENV.contains(&name) || name.starts_with("CARGO_PROFILE_"));
        if leaks {
            cargo.env_remove(name);
        }
    }
    // cargo prints nothing useful on stdout, and a build script's stdout is
    // read for `cargo:` directives: send it where the progress goes.
    cargo.stdout(Stdio::from(io::stderr()));

    let status = cargo.status().map_err(|source| BuildError::Spawn {
        program: "cargo".to_owned(),
        source,
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            status,
        });
    }

    std::fs::create_dir_all(out_dir).map_err(|source| BuildError::Copy {
        from: target_dir.clone(),
        to: out_dir.to_owned(),
        source,
    })?;
    let artifacts = target_dir.join(TARGET).join("release");
    packages
        .iter()
        .map(|package| {
            // A library's file is named after its crate: the package name
            // with `-` turned into `_`.
            let built = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
            if !built.is_file() {
                return Err(BuildError::MissingArtifact {
                    package: (*package).to_owned(),
                    path: built,
                });
            }
            let copy = out_dir.join(format!("{package}.wasm"));
            copy_if_changed(&built, &copy)?;
            Ok(copy)
        })
        .collect()
}

/// Fails with [`BuildError::MissingTarget`] when `rustc` has no standard
/// library for [`TARGET`], which otherwise shows as a puzzling
/// "can't find crate for `core`" deep in the nested build.
fn check_target(rustc: &OsString) -> Result<(), BuildError> {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|source| BuildError::Spawn {
            program: "rustc".to_owned(),
            source,
        })?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && libdir.is_dir() {
        Ok(())
    } else {
        Err(BuildError::MissingTarget { libdir })
    }
}

/// Asks rustup, if there is one, to add [`TARGET`] to the toolchain that
/// `workspace_root` uses. What it prints goes to the build's output; a
/// failure shows in the [`check_target`] that follows.
fn add_target(workspace_root: &Path) {
    let added = Command::new("rustup")
        .current_dir(workspace_root)
        .args(["target", "add", TARGET])
        .stdout(Stdio::from(io::stderr()))
        .status();
    if added.is_ok_and(|status| status.success()) {
        println!("cargo:warning=added the {TARGET} target to the toolchain (rustup target add)");
    }
}

/// Copies `from` to `to` unless `to` already holds the same bytes, so that
/// an unchanged component does not make the crates that embed it rebuild.
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), BuildError> {
    let copy_error = |source| BuildError::Copy {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    };
    let bytes = std::fs::read(from).map_err(copy_error)?;
    if std::fs::read(to).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    std::fs::write(to, bytes).map_err(copy_error)
}

fn env_or(name: &str, default: &str) -> OsString {
    std::env::var_os(name).unwrap_or_else(|| default.into())
}

/// `err` and its causes, one per line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\ncaused by: {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_target_says_how_to_install_it() {
        let err = BuildError::MissingTarget {
            libdir: PathBuf::from("/sysroot/lib/rustlib/wasm32-wasip2/lib"),
        };
        let text = err.to_string();
        assert!(text.contains("rustup target add wasm32-wasip2"), "{text}");
        assert!(
            text.contains("/sysroot/lib/rustlib/wasm32-wasip2/lib"),
            "{text}"
        );
    }

    #[test]
    fn error_chain_lists_causes() {
        let err = BuildError::Copy {
            from: PathBuf::from("a.wasm"),
            to: PathBuf::from("b.wasm"),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        };
        assert_eq!(
            error_chain(&err),
            "could not copy a.wasm to b.wasm\ncaused by: denied"
        );
    }

    #[test]
    fn copy_if_changed_keeps_identical_files() {
        let dir = std::env::temp_dir().join(format!("sluice-plugin-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (from, to) = (dir.join("from.wasm"), dir.join("to.wasm"));
        std::fs::write(&from, b"\0asm").expect("write source");

        copy_if_changed(&from, &to).expect("first copy");
        assert_eq!(std::fs::read(&to).expect("copied"), b"\0asm");
        let modified = std::fs::metadata(&to)
            .and_then(|m| m.modified())
            .expect("mtime");
        copy_if_changed(&from, &to).expect("second copy");
        let again = std::fs::metadata(&to)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(modified, again, "an identical file is left alone");

        std::fs::write(&from, b"\0asm2").expect("change source");
        copy_if_changed(&from, &to).expect("third copy");
        assert_eq!(std::fs::read(&to).expect("copied"), b"\0asm2");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
