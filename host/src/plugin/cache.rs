//! The cache of compiled components on disk, so that a restart does not
//! compile unchanged plugins again.
//!
//! It is wasmtime's own cache (`wasmtime::Cache`), opened by
//! [`Runtime::with_cache`](super::Runtime::with_cache) with
//! [`CompileCache::Dir`].
//!
//! # Where it lives
//!
//! Under `<dir>/compiled-components/`, where `<dir>` is the directory given
//! (`--cache-dir`), by default [`CompileCache::default_dir`]:
//! `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`. Wasmtime keeps its
//! entries in `modules/wasmtime-<version>/<key>`, zstd-compressed, each with
//! a `<key>.stats` file recording its use. Sluice hands wasmtime a
//! subdirectory of its own because wasmtime's cleanup deletes whatever it
//! does not recognise in its directory: nothing else may be kept there.
//!
//! # What keys an entry
//!
//! The key is a SHA-256 hash of the component's bytes, of the engine's
//! settings that shape the compiled code (the target, Cranelift's flags
//! and the CPU features detected at startup, wasmtime's tunables such as
//! epoch interruption, and the WebAssembly features enabled), and of
//! wasmtime's artifact format version. The directory names the wasmtime
//! version. So a changed file, a different wasmtime or different engine
//! settings look for another entry, and compile afresh. [`Limits`] are
//! not part of the key: they are enforced when instances run, not compiled
//! into the code, and runtimes with different limits share entries.
//!
//! An entry is never trusted blindly: when wasmtime loads one it checks
//! the artifact's header again against the running engine (version,
//! target, flags, features). An entry that does not decompress or does not
//! match is compiled again and overwritten.
//!
//! # Trust
//!
//! Entries are native code that sluice runs outside the sandbox: whoever
//! may write the directory may run code as sluice. Sluice therefore
//! creates `compiled-components/` readable and writable by its owner only
//! (on Unix), and refuses one that other users may write or that another
//! user owns.
//!
//! # How big it grows
//!
//! A bundled plugin's entry takes about 100 KB. Every changed
//! plugin and every wasmtime upgrade adds entries; old ones stay until
//! cleaned up. When an entry is written and the last cleanup is more than
//! an hour old, wasmtime's background thread deletes the least recently
//! used entries, once the entries together pass [`SIZE_SOFT_LIMIT`] or
//! [`COUNT_SOFT_LIMIT`], until they are back under 70 % of it. Between
//! cleanups the cache may pass its limits by what was written meanwhile.
//!
//! [`Limits`]: super::Limits

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::Serialize;
use wasmtime::{Cache, CacheConfig};

use super::runtime::to_anyhow;

/// The subdirectory of the cache directory that wasmtime owns.
const SUBDIR: &str = "compiled-components";

/// Total size of the entries (compressed) past which the cleanup deletes
/// the least recently used ones: room for some 600 entries the size of the
/// bundled plugins'.
pub const SIZE_SOFT_LIMIT: u64 = 64 << 20;

/// Number of entries past which the cleanup deletes the least recently
/// used ones.
pub const COUNT_SOFT_LIMIT: u64 = 1_000;

/// Where compiled components are cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileCache {
    /// Compile every component at every load.
    Off,
    /// Cache compiled components under this directory, created if missing.
    /// A relative path is taken from the current directory.
    Dir(PathBuf),
}

impl CompileCache {
    /// The cache directory by default: `$XDG_CACHE_HOME/sluice`, else
    /// `$HOME/.cache/sluice`; `None` when neither variable holds an
    /// absolute path.
    pub fn default_dir() -> Option<PathBuf> {
        default_dir_in(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
    }
}

/// [`CompileCache::default_dir`], given the two variables. Relative paths
/// are ignored, as the XDG base directory specification asks.
fn default_dir_in(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute =
        |value: Option<OsString>| value.map(PathBuf::from).filter(|path| path.is_absolute());
    match absolute(xdg_cache_home) {
        Some(cache) => Some(cache.join("sluice")),
        None => absolute(home).map(|home| home.join(".cache").join("sluice")),
    }
}

/// How the cache of a [`Runtime`](super::Runtime) served its loads, since
/// the runtime was made. Both are zero when the cache is off.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache, without compiling.
    pub hits: u64,
    /// Components compiled because the cache held no usable entry for them
    /// (including bytes that turned out not to compile).
    pub misses: u64,
}

/// An open cache: wasmtime's, and the count of lookups in it.
pub(super) struct DiskCache {
    cache: Cache,
    /// Compilations asked of wasmtime. Wasmtime counts hits, but counts as
    /// misses only the entries it managed to write; lookups less hits
    /// counts every compilation.
    lookups: AtomicU64,
}

impl DiskCache {
    /// Opens the cache under `dir`, creating its directories. Fails, naming
    /// the directory, when it cannot be created or written, or when another
    /// user owns it or may write it.
    pub(super) fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = std::path::absolute(dir)
            .with_context(|| format!("invalid plugin cache directory {:?}", dir.display()))?;
        let own = dir.join(SUBDIR);
        let shown = own.display();
        create_private_dir(&own)
            .with_context(|| format!("cannot create the plugin cache directory {shown}"))?;
        check_private(&own)
            .with_context(|| format!("cannot use the plugin cache directory {shown}"))?;

        let mut config = CacheConfig::new();
        config
            .with_directory(&own)
            .with_files_total_size_soft_limit(SIZE_SOFT_LIMIT)
            .with_file_count_soft_limit(COUNT_SOFT_LIMIT);
        // Recompressing an entry harder after 256 uses saves little on
        // entries this small, and would compete with the pipeline for CPU.
        let level = config.baseline_compression_level();
        config.with_optimized_compression_level(level);
        let cache = Cache::new(config)
            .map_err(to_anyhow)
            .with_context(|| format!("cannot open the plugin cache directory {shown}"))?;
        Ok(Self {
            cache,
            lookups: AtomicU64::new(0),
        })
    }

    /// The cache, for the engine's configuration.
    pub(super) fn wasmtime(&self) -> &Cache {
        &self.cache
    }

    /// Counts a compilation about to be asked of wasmtime.
    pub(super) fn count_lookup(&self) {
        self.lookups.fetch_add(1, Ordering::SeqCst);
    }

    /// The hits and misses so far.
    pub(super) fn stats(&self) -> CacheStats {
        // A lookup is counted before wasmtime counts its hit: reading the
        // hits first keeps them from exceeding the lookups while loads run.
        let hits = self.cache.cache_hits() as u64;
        let lookups = self.lookups.load(Ordering::SeqCst);
        CacheStats {
            hits,
            misses: lookups.saturating_sub(hits),
        }
    }

    /// The directory wasmtime keeps its entries in.
    pub(super) fn dir(&self) -> &Path {
        self.cache.directory()
    }
}

/// Creates `dir` and its missing parents, readable and writable by their
/// owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Checks that sluice may write `dir`, by writing and removing a file in
/// it, and that no other user may.
fn check_private(dir: &Path) -> anyhow::Result<()> {
    // Runtimes of one process may open the same directory at once.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = dir.join(format!(
        ".sluice-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .context("cannot write in it")?;
    let probe_meta = file.metadata();
    drop(file);
    fs::remove_file(&probe).context("cannot remove a file from it")?;
    check_owner_only(
        dir,
        &probe_meta.context("cannot read the metadata of a file in it")?,
    )
}

/// Checks that `dir` is owned by the owner of `probe` (the user sluice runs
/// as) and that no other user may write it.
#[cfg(unix)]
fn check_owner_only(dir: &Path, probe: &fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = fs::metadata(dir).context("cannot read its metadata")?;
    anyhow::ensure!(
        meta.uid() == probe.uid(),
        "it is owned by another user, who could replace the compiled code sluice runs"
    );
    anyhow::ensure!(
        meta.permissions().mode() & 0o022 == 0,
        "other users may write it, and replace the compiled code sluice runs \
         (make it writable by its owner only: chmod go-w)"
    );
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_dir: &Path, _probe: &fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
