//! The example plugins of `plugins/examples/`, one per language, each a
//! handler for `disk_usage`, a type the host has no shape for: each passes
//! `sluice plugin check`, is loaded from the plugin directory beside the
//! bundled plugins, reports the aggregate of exactly the payloads it took,
//! and survives a trap with its aggregate whole.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use sluice::pipeline::PluginSource;
use sluice::plugin::{CompileCache, Limits, Runtime};
use sluice_tests::examples::{self, Lang};
use sluice_tests::fixtures::PluginDir;
use sluice_tests::host::Host;
use sluice_tests::{TestApi, envelope, known_entries, replies};

/// The memory each example may use in these tests: the host's default.
const MEMORY: usize = 64 * 1024 * 1024;

/// Known entries of the bundled types with `disk_usage` entries between
/// them, two of every five.
fn mixed(n: usize) -> Vec<serde_json::Value> {
    let mut disk = examples::entries(n * 2 / 5).into_iter();
    let mut entries = Vec::with_capacity(n);
    for (i, known) in known_entries(n - n * 2 / 5).into_iter().enumerate() {
        entries.push(known);
        if i % 3 != 0 {
            entries.extend(disk.next());
        }
    }
    entries.extend(disk);
    entries
}

/// Where these tests cache compiled plugins: a large guest (CPython, a
/// JavaScript engine) takes a debug build of the host tens of seconds to
/// compile, and each test of it loads it again.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache")
}

/// Compiles the example of `lang` into the cache, one language at a time,
/// so that the tests of one language that run at once compile it once.
fn warm_cache(lang: Lang) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let runtime = Runtime::with_cache(Limits::default(), CompileCache::Dir(cache_dir()))
        .expect("a runtime with a cache");
    runtime
        .load(&format!("{lang:?}"), &lang.bytes())
        .unwrap_or_else(|err| panic!("{lang:?}: {err:#}"));
}

async fn start(api: &TestApi, dir: &PluginDir, lang: Lang) -> Host {
    tokio::task::spawn_blocking(move || warm_cache(lang))
        .await
        .expect("the cache is warmed");
    let path = dir.path().to_owned();
    Host::start_with(api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
        config.cache = CompileCache::Dir(cache_dir());
        config.limits.memory_bytes = MEMORY;
        // Room for the body of the trap test, which is larger than a
        // plugin's whole memory.
        config.ingest.source.max_body_bytes = 4 * MEMORY as u64;
        config.engine.backoff.initial = Duration::from_millis(1);
        config.engine.backoff.max = Duration::from_millis(20);
    })
    .await
}

fn plugin_dir(lang: Lang) -> PluginDir {
    let dir = PluginDir::new().with_bundled();
    dir.write("disk_usage.wasm", &lang.bytes());
    dir
}

/// `sluice plugin check` accepts the example and says what it is.
fn passes_the_check(lang: Lang) {
    let report = sluice::scaffold::check(&lang.component())
        .unwrap_or_else(|err| panic!("{lang:?}: {err:#}"));
    assert_eq!(report.name, "disk_usage", "{lang:?}");
    assert_eq!(report.version, "0.1.0", "{lang:?}");
    assert_eq!(report.types, ["disk_usage"], "{lang:?}");
    assert!(
        examples::same_aggregate(&report.empty_state, &json!({ "max": {}, "count": 0 })),
        "{lang:?}: {}",
        report.empty_state
    );
}

/// In the running pipeline, the example gets the payloads of its type
/// and nothing else; its aggregate, and every account, match what the
/// server sent.
async fn handles_its_type_beside_the_bundled_plugins(lang: Lang) {
    let dir = plugin_dir(lang);
    let entries = mixed(600);
    let api = TestApi::start(replies(&entries, 40), None).await;
    let host = start(&api, &dir, lang).await;
    host.settle(entries.len()).await;

    host.check_aggregates(&entries).await;
    let plugin = host.plugin("disk_usage").await;
    assert_eq!(plugin["types"], json!(["disk_usage"]), "{lang:?}");
    assert_eq!(plugin["version"], "0.1.0", "{lang:?}");
    let expected = examples::expected(&entries);
    assert!(
        examples::same_aggregate(&plugin["state"], &expected),
        "{lang:?}: reported {}, expected {expected}",
        plugin["state"]
    );
    let accounts = host.get("/accounts").await;
    let disk = &accounts["types"]["disk_usage"];
    let sent = entries.iter().filter(|e| e["type"] == "disk_usage").count();
    assert_eq!(disk["received"], sent, "{lang:?}: {disk}");
    assert_eq!(disk["applied"], expected["count"], "{lang:?}: {disk}");
    assert_eq!(
        disk["rejected"]["plugin_rejected"],
        examples::invalid_count(&entries),
        "{lang:?}: {disk}"
    );
    assert_eq!(accounts["total"]["in_flight"], 0);
    assert_eq!(plugin["handler"]["traps"], 0, "{lang:?}: {plugin}");
    host.stop().await;
}

/// A payload too large for the plugin's memory makes every call that
/// carries it fail: the instance is replaced, the payload is quarantined
/// on its own, and the aggregate holds every other payload, those applied
/// before the trap and those after it.
async fn survives_a_trap_with_its_aggregate_whole(lang: Lang) {
    let dir = plugin_dir(lang);
    let before = examples::entries(120);
    let after: Vec<_> = examples::entries(240).split_off(120);
    let huge_mount = format!("/{}", "x".repeat(MEMORY + 1024 * 1024));
    let poison = envelope(
        "disk_usage",
        serde_json::Value::Object([(huge_mount, json!(0.99))].into_iter().collect()),
    );
    // The poison payload shares its response, and so its batch, with good
    // ones on each side.
    let mut trap_reply = after[..10].to_vec();
    trap_reply.insert(5, poison);
    let mut script = replies(&before, 30);
    script.extend(replies(&trap_reply, trap_reply.len()));
    script.extend(replies(&after[10..], 30));
    let api = TestApi::start(script, None).await;
    let host = start(&api, &dir, lang).await;
    let total = before.len() + trap_reply.len() + after.len() - 10;
    host.settle(total).await;

    let plugin = host.plugin("disk_usage").await;
    let kept: Vec<_> = before.iter().chain(&after).cloned().collect();
    let expected = examples::expected(&kept);
    assert!(
        examples::same_aggregate(&plugin["state"], &expected),
        "{lang:?}: reported {}, expected {expected}",
        plugin["state"]
    );
    let handler = &plugin["handler"];
    assert!(
        handler["traps"].as_u64().is_some_and(|traps| traps >= 2),
        "{lang:?}: the whole batch fails, and the payload alone: {handler}"
    );
    assert_eq!(handler["rejected"]["quarantined"], 1, "{lang:?}: {handler}");
    let dead = plugin["dead_letters"].as_array().expect("dead letters");
    assert_eq!(dead.len(), 1, "{lang:?}: {dead:?}");
    assert!(
        dead[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("memory")),
        "{lang:?}: {dead:?}"
    );
    // The dead letter keeps the start of the value, not all of it.
    assert!(
        dead[0]["value"].as_str().is_some_and(|v| v.len() < 4096),
        "{lang:?}: a dead letter of {} bytes",
        dead[0]["value"].as_str().map_or(0, str::len)
    );
    let accounts = host.get("/accounts").await;
    let disk = &accounts["types"]["disk_usage"];
    assert_eq!(disk["applied"], expected["count"], "{lang:?}: {disk}");
    assert_eq!(disk["rejected"]["quarantined"], 1, "{lang:?}: {disk}");
    assert_eq!(accounts["total"]["in_flight"], 0);
    let component = host.component("handler:disk_usage").await;
    assert_eq!(component["state"], "running", "{lang:?}: {component}");
    host.stop().await;
}

macro_rules! example_tests {
    ($($module:ident: $lang:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn passes_sluice_plugin_check() {
                passes_the_check($lang);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn handles_its_type_beside_the_bundled_plugins() {
                super::handles_its_type_beside_the_bundled_plugins($lang).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn survives_a_trap_with_its_aggregate_whole() {
                super::survives_a_trap_with_its_aggregate_whole($lang).await;
            }
        }
    )*};
}

example_tests! {
    rust: Lang::Rust;
    python: Lang::Python;
    js: Lang::Js;
    c: Lang::C;
}
