//! The guest fixtures of `tests/fixtures/`, built as WebAssembly components
//! by the build script, and plugin directories to load them from.
//!
//! | package | plugin |
//! | --- | --- |
//! | [`CHAOS`] | `chaos` 0.1.0: sums numbers; traps, loops, hoards memory or spins on request |
//! | [`CHAOS_V2`] | `chaos` 0.2.0: the same handler and state, a new version |
//! | [`CHAOS_BROKEN`] | `chaos` 0.3.0: loads and renders, traps on every batch |
//! | [`WRONG_WORLD`] | a component of another world, which the host refuses |
//!
//! A [`PluginDir`] is a fresh directory to point the host's `--plugins` at;
//! files appear in it whole, so a watcher never reads one half written.

use std::fs;
use std::path::{Path, PathBuf};

/// The directory the build script put the fixtures in, one
/// `<package>.wasm` each.
pub const DIR: &str = env!("SLUICE_TEST_FIXTURES_DIR");

/// The `chaos` plugin, version 0.1.0. It accepts the type `chaos`, whose
/// payloads are numbers to sum (`{"sum": number, "count": n}`), or `"panic"`,
/// `"loop"`, `"grow"` to trap, run past the deadline or past the memory
/// limit, or `{"spin_ms": N, "value": x}` to busy-wait `N` ms before adding
/// `x`. Anything else is refused as `"not a chaos value"`.
pub const CHAOS: &str = "sluice-fixture-chaos";

/// The `chaos` plugin, version 0.2.0: [`CHAOS`] again, reading and writing
/// the same state.
pub const CHAOS_V2: &str = "sluice-fixture-chaos-v2";

/// The `chaos` plugin, version 0.3.0: describes itself and renders
/// [`CHAOS`]'s state, but traps on every `apply`.
pub const CHAOS_BROKEN: &str = "sluice-fixture-chaos-broken";

/// A component that exports an interface of its own instead of
/// `sluice:plugin/handler`: it fails the host's type check.
pub const WRONG_WORLD: &str = "sluice-fixture-wrong-world";

/// The Rust example plugin of `plugins/examples/rust/disk_usage`, built
/// here like a fixture (see [`crate::examples`]).
pub const DISK_USAGE_RUST: &str = "sluice-plugin-disk-usage";

/// Every fixture package, in the order of the table above.
pub const ALL: [&str; 4] = [CHAOS, CHAOS_V2, CHAOS_BROKEN, WRONG_WORLD];

/// The built component of the fixture `package` (one of [`ALL`]).
pub fn path(package: &str) -> PathBuf {
    Path::new(DIR).join(format!("{package}.wasm"))
}

/// The bytes of the built component of the fixture `package`.
///
/// # Panics
///
/// When the component cannot be read, for example because `package` is not
/// a fixture.
pub fn bytes(package: &str) -> Vec<u8> {
    let path = path(package);
    fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Bytes that are no WebAssembly at all, for a plugin file that must fail
/// to compile.
pub fn not_wasm() -> &'static [u8] {
    b"this is not a WebAssembly component\n"
}

/// A fresh temporary plugin directory, removed with its files when
/// dropped.
///
/// Every method panics, naming the file, when the file system refuses it:
/// these are test fixtures.
#[derive(Debug)]
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// An empty plugin directory.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-plugins-")
            .tempdir()
            .expect("a temporary directory can be created");
        Self { dir }
    }

    /// Adds the three bundled components, copied from
    /// [`sluice::plugin::BUNDLED_DIR`] under their file names there
    /// (`<package>.wasm`).
    pub fn with_bundled(self) -> Self {
        let bundled = Path::new(sluice::plugin::BUNDLED_DIR);
        let entries = fs::read_dir(bundled)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", bundled.display()));
        for entry in entries {
            let from = entry
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", bundled.display()))
                .path();
            if from.extension().is_none_or(|ext| ext != "wasm") {
                continue;
            }
            let name = from
                .file_name()
                .and_then(|name| name.to_str())
                .expect("the build script names components in UTF-8");
            let bytes = fs::read(&from)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", from.display()));
            self.write(name, &bytes);
        }
        self
    }

    /// Copies the built fixture `package` (one of [`ALL`]) in as
    /// `file_name` (`"chaos.wasm"`), replacing any file of that name whole.
    pub fn add(&self, package: &str, file_name: &str) {
        self.write(file_name, &bytes(package));
    }

    /// Writes `bytes` as `file_name`, replacing any file of that name.
    ///
    /// The bytes go to a temporary file first, whose name does not end in
    /// `.wasm`, which is then renamed: a watcher of the directory sees the
    /// new file whole or not at all.
    pub fn write(&self, file_name: &str, bytes: &[u8]) {
        let partial = self.dir.path().join(format!(".{file_name}.partial"));
        let path = self.dir.path().join(file_name);
        fs::write(&partial, bytes)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", partial.display()));
        fs::rename(&partial, &path).unwrap_or_else(|err| {
            panic!(
                "cannot rename {} to {}: {err}",
                partial.display(),
                path.display()
            )
        });
    }

    /// Removes the file `file_name`.
    pub fn remove(&self, file_name: &str) {
        let path = self.dir.path().join(file_name);
        fs::remove_file(&path)
            .unwrap_or_else(|err| panic!("cannot remove {}: {err}", path.display()));
    }

    /// The directory, to give the host as its plugin directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for PluginDir {
    fn default() -> Self {
        Self::new()
    }
}
