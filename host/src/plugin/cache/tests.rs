//! Tests of the compiled-component cache against the bundled plugins, each
//! in a fresh temporary directory.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::super::runtime::engine_config;
use super::super::{Limits, Plugin, Runtime, bundled};
use super::*;

fn bytes_of(name: &str) -> &'static [u8] {
    bundled()
        .iter()
        .find(|bundled| bundled.name == name)
        .expect("a bundled plugin of that name")
        .bytes
}

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::with_cache(Limits::default(), CompileCache::Dir(dir.to_owned()))
        .expect("cache directory works")
}

fn load(runtime: &Runtime, name: &str, bytes: &[u8]) -> Plugin {
    runtime
        .load(&format!("bundled:{name}"), bytes)
        .expect("plugin loads")
}

fn stats(hits: u64, misses: u64) -> CacheStats {
    CacheStats { hits, misses }
}

/// `bytes` with a custom section appended: another file, which compiles
/// to the same plugin.
fn with_custom_section(bytes: &[u8]) -> Vec<u8> {
    let name = b"sluice-test";
    let payload = b"changed";
    let size = 1 + name.len() + payload.len();
    let mut changed = bytes.to_vec();
    // Section id 0 (custom), then its size, the name's length and the name,
    // each length a one-byte LEB128.
    changed.extend([0, size as u8, name.len() as u8]);
    changed.extend(name);
    changed.extend(payload);
    changed
}

/// The cache entries (compiled components) under `dir`.
fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let modules = dir.join(SUBDIR).join("modules");
    let mut entries = Vec::new();
    for version in fs::read_dir(modules).expect("modules directory") {
        for entry in fs::read_dir(version.expect("entry").path()).expect("version directory") {
            let path = entry.expect("entry").path();
            // Leave out usage records and files being written.
            if path.extension().is_none() {
                entries.push(path);
            }
        }
    }
    entries
}

#[test]
fn a_new_runtime_loads_what_an_earlier_one_compiled() {
    let dir = TempDir::new().expect("temporary directory");
    let bytes = bytes_of("load_avg");

    let first = cached_runtime(dir.path());
    load(&first, "load_avg", bytes);
    assert_eq!(first.cache_stats(), stats(0, 1));
    drop(first);

    // A restart: a new runtime, with nothing in memory.
    let second = cached_runtime(dir.path());
    let plugin = load(&second, "load_avg", bytes);
    assert_eq!(second.cache_stats(), stats(1, 0));
    assert_eq!(plugin.name(), "load_avg");
    let mut instance = plugin.instantiate().expect("cached plugin instantiates");
    instance.render(&[]).expect("cached plugin renders");

    // Nothing is written beside the subdirectory that wasmtime owns.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("cache directory")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, [SUBDIR]);
    assert_eq!(entries(dir.path()).len(), 1);
}

#[test]
fn a_changed_component_is_compiled_again() {
    let dir = TempDir::new().expect("temporary directory");
    let load_avg = bytes_of("load_avg");
    load(&cached_runtime(dir.path()), "load_avg", load_avg);

    let runtime = cached_runtime(dir.path());
    let changed = with_custom_section(load_avg);
    let plugin = load(&runtime, "load_avg", &changed);
    assert_eq!(plugin.name(), "load_avg", "the changed file still compiles");
    assert_eq!(runtime.cache_stats(), stats(0, 1));
    load(&runtime, "cpu_usage", bytes_of("cpu_usage"));
    assert_eq!(runtime.cache_stats(), stats(0, 2));
    load(&runtime, "load_avg", load_avg);
    assert_eq!(runtime.cache_stats(), stats(1, 2));
    assert_eq!(entries(dir.path()).len(), 3);
}

#[test]
fn runtimes_with_other_limits_share_entries() {
    let dir = TempDir::new().expect("temporary directory");
    let bytes = bytes_of("last_kernel_upgrade");
    load(&cached_runtime(dir.path()), "last_kernel_upgrade", bytes);

    // Limits are enforced at run time, not compiled in.
    let strict = Limits {
        call_deadline: Duration::from_millis(50),
        memory_bytes: 16 << 20,
        instances: 3,
        tables: 2,
        table_elements: 1_000,
    };
    let runtime = Runtime::with_cache(strict, CompileCache::Dir(dir.path().to_owned()))
        .expect("cache directory works");
    load(&runtime, "last_kernel_upgrade", bytes);
    assert_eq!(runtime.cache_stats(), stats(1, 0));
}

/// A change to the engine's settings.
type Change = fn(&mut wasmtime::Config);

/// Compiles `bytes` in an engine of the runtime's settings changed by
/// `change`, with the cache under `dir`; gives the cache's hits.
fn compile_with(dir: &Path, change: Change, bytes: &[u8]) -> usize {
    let cache = DiskCache::open(dir).expect("cache directory works");
    let mut config = engine_config(Some(cache.wasmtime()));
    change(&mut config);
    let engine = Engine::new(&config).expect("engine");
    Component::new(&engine, bytes).expect("component compiles");
    cache.wasmtime().cache_hits()
}

fn fuel_metering(config: &mut wasmtime::Config) {
    config.consume_fuel(true);
}

#[test]
fn an_engine_with_other_settings_does_not_load_the_entries() {
    let dir = TempDir::new().expect("temporary directory");
    let bytes = bytes_of("load_avg");
    load(&cached_runtime(dir.path()), "load_avg", bytes);

    let cases: [(&str, Change); 2] = [
        ("no epoch interruption", |config| {
            config.epoch_interruption(false);
        }),
        ("fuel metering", fuel_metering),
    ];
    for (setting, change) in cases {
        let hits = compile_with(dir.path(), change, bytes);
        assert_eq!(hits, 0, "{setting}: the runtime's entry is not used");
        // The entry of these settings is then found: the miss came from the
        // key, not from a cache that does not work.
        let hits = compile_with(dir.path(), change, bytes);
        assert_eq!(hits, 1, "{setting}: its own entry is used");
    }
    assert_eq!(entries(dir.path()).len(), 1 + cases.len());
}

#[test]
fn an_entry_that_does_not_fit_is_compiled_again() {
    let dir = TempDir::new().expect("temporary directory");
    let bytes = bytes_of("cpu_usage");
    load(&cached_runtime(dir.path()), "cpu_usage", bytes);
    let [entry] = entries(dir.path()).try_into().expect("one entry");
    let compressed = fs::read(&entry).expect("entry");

    // What another wasmtime or other settings would have left under the
    // same key: code compiled with fuel metering.
    let other = TempDir::new().expect("temporary directory");
    compile_with(other.path(), fuel_metering, bytes);
    let [other_entry] = entries(other.path()).try_into().expect("one entry");
    let misfit = fs::read(other_entry).expect("entry");

    for (what, corrupt) in [
        ("garbage", b"not compiled code".to_vec()),
        ("misfit", misfit),
    ] {
        fs::write(&entry, corrupt).expect("entry overwritten");
        let runtime = cached_runtime(dir.path());
        let plugin = load(&runtime, "cpu_usage", bytes);
        assert_eq!(plugin.name(), "cpu_usage", "{what}");
        assert_eq!(runtime.cache_stats(), stats(0, 1), "{what}");
        // The entry was written again.
        assert!(fs::read(&entry).expect("entry") == compressed, "{what}");
    }
}

#[test]
fn a_directory_that_cannot_be_made_is_an_error_naming_it() {
    let dir = TempDir::new().expect("temporary directory");
    let file = dir.path().join("file");
    fs::write(&file, "not a directory").expect("file written");
    for cache_dir in [file.clone(), file.join("below")] {
        let err = Runtime::with_cache(Limits::default(), CompileCache::Dir(cache_dir.clone()))
            .expect_err("a file is in the way");
        let message = format!("{err:#}");
        let shown = cache_dir.join(SUBDIR);
        assert!(
            message.starts_with(&format!(
                "cannot create the plugin cache directory {}: ",
                shown.display()
            )),
            "{message}"
        );
    }
    let err = Runtime::with_cache(Limits::default(), CompileCache::Dir("".into()))
        .expect_err("an empty path");
    assert!(
        format!("{err:#}").starts_with("invalid plugin cache directory \"\": "),
        "{err:#}"
    );
}

#[cfg(unix)]
#[test]
fn a_directory_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new().expect("temporary directory");
    let own = dir.path().join(SUBDIR);
    fs::create_dir(&own).expect("directory created");
    for mode in [0o777, 0o720, 0o702] {
        fs::set_permissions(&own, fs::Permissions::from_mode(mode)).expect("mode set");
        let err = Runtime::with_cache(Limits::default(), CompileCache::Dir(dir.path().into()))
            .expect_err("others may write");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!(
                "cannot use the plugin cache directory {}: other users may write it",
                own.display()
            )),
            "{mode:o}: {message}"
        );
    }
    fs::set_permissions(&own, fs::Permissions::from_mode(0o755)).expect("mode set");
    cached_runtime(dir.path());
}

#[test]
fn a_new_directory_is_private() {
    let dir = TempDir::new().expect("temporary directory");
    let parent = dir.path().join("missing");
    cached_runtime(&parent);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for created in [parent.clone(), parent.join(SUBDIR)] {
            let mode = fs::metadata(&created)
                .expect("created")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{}", created.display());
        }
    }
}

#[test]
fn a_relative_directory_is_taken_from_the_current_one() {
    let dir = TempDir::new().expect("temporary directory");
    let current = std::env::current_dir().expect("current directory");
    // As many `..` as the current directory is deep lead to the root.
    let up: PathBuf = current.components().skip(1).map(|_| "..").collect();
    let relative = up.join(dir.path().strip_prefix("/").expect("absolute"));
    let runtime = cached_runtime(&relative);
    assert!(
        format!("{runtime:?}").contains(&dir.path().join(SUBDIR).display().to_string()),
        "{runtime:?}"
    );
}

#[test]
fn without_a_cache_nothing_is_counted() {
    for runtime in [
        Runtime::new(Limits::default()).expect("runtime"),
        Runtime::with_cache(Limits::default(), CompileCache::Off).expect("runtime"),
    ] {
        load(&runtime, "load_avg", bytes_of("load_avg"));
        assert_eq!(runtime.cache_stats(), CacheStats::default());
    }
}

#[test]
fn the_default_directory_follows_xdg_then_home() {
    let some = |path: &str| Some(OsString::from(path));
    let cases = [
        (some("/xdg"), some("/home/u"), Some("/xdg/sluice")),
        (None, some("/home/u"), Some("/home/u/.cache/sluice")),
        (some(""), some("/home/u"), Some("/home/u/.cache/sluice")),
        (
            some("relative"),
            some("/home/u"),
            Some("/home/u/.cache/sluice"),
        ),
        (None, some(""), None),
        (None, some("relative"), None),
        (None, None, None),
    ];
    for (xdg, home, expected) in cases {
        assert_eq!(
            default_dir_in(xdg.clone(), home.clone()),
            expected.map(PathBuf::from),
            "XDG_CACHE_HOME={xdg:?} HOME={home:?}"
        );
    }
}

#[test]
fn stats_serialize_as_counts() {
    let json = serde_json::to_value(stats(2, 1)).expect("serializes");
    assert_eq!(json, serde_json::json!({ "hits": 2, "misses": 1 }));
}
