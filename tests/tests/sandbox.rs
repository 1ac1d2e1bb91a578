//! Misbehaving plugins in the running pipeline: the host stays up, the
//! other plugins do not notice, the misbehaving plugin loses nothing but
//! the payloads it cannot take, and introspection says what happened.

use std::time::Duration;

use serde_json::json;
use sluice::pipeline::PluginSource;
use sluice_tests::fixtures::{self, PluginDir};
use sluice_tests::host::Host;
use sluice_tests::{Reply, TestApi, envelope, known_entries, replies};

fn chaos(value: serde_json::Value) -> serde_json::Value {
    envelope("chaos", value)
}

/// `known_entries(n)` with a chaos payload after every third entry: the
/// number `i`, or `bad` every tenth time.
fn stream(n: usize, bad: &serde_json::Value) -> (Vec<serde_json::Value>, f64, u64, u64) {
    let (mut entries, mut sum, mut count, mut bad_count) = (Vec::new(), 0.0, 0, 0);
    for (i, entry) in known_entries(n).into_iter().enumerate() {
        entries.push(entry);
        if i % 3 == 0 {
            if i % 30 == 0 {
                entries.push(chaos(bad.clone()));
                bad_count += 1;
            } else {
                entries.push(chaos(json!(i)));
                sum += i as f64;
                count += 1;
            }
        }
    }
    (entries, sum, count, bad_count)
}

async fn start(api: &TestApi, dir: &PluginDir) -> Host {
    let path = dir.path().to_owned();
    Host::start_with(api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
        config.limits.call_deadline = Duration::from_millis(250);
        config.limits.memory_bytes = 16 * 1024 * 1024;
        config.engine.backoff.initial = Duration::from_millis(1);
        config.engine.backoff.max = Duration::from_millis(20);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_a_loop_or_a_memory_hog_costs_only_its_own_payload() {
    for (bad, error) in [
        (json!("panic"), "trapped"),
        (json!("loop"), "deadline"),
        (json!("grow"), "memory"),
    ] {
        let dir = PluginDir::new().with_bundled();
        dir.add(fixtures::CHAOS, "chaos.wasm");
        let (entries, sum, count, bad_count) = stream(300, &bad);
        let api = TestApi::start(replies(&entries, 20), None).await;
        let host = start(&api, &dir).await;
        host.settle(entries.len()).await;

        host.check_aggregates(&entries).await;
        let plugin = host.plugin("chaos").await;
        assert_eq!(
            plugin["state"],
            json!({ "sum": sum, "count": count }),
            "{bad}"
        );
        let dead = plugin["dead_letters"].as_array().expect("dead letters");
        // Dead letters keep each payload's value as JSON text.
        let bad_text = bad.to_string();
        assert_eq!(dead.len() as u64, bad_count, "{bad}: {plugin}");
        assert!(
            dead.iter()
                .all(|d| d["value"].as_str() == Some(bad_text.as_str())),
            "{dead:?}"
        );
        assert!(
            dead[0]["error"].as_str().is_some_and(|e| e.contains(error)),
            "{dead:?}"
        );
        let handler = &plugin["handler"];
        assert!(
            handler["traps"].as_u64().is_some_and(|t| t >= bad_count),
            "{handler}"
        );
        assert_eq!(handler["rejected"]["quarantined"], bad_count);

        let accounts = host.get("/accounts").await;
        assert_eq!(accounts["types"]["chaos"]["applied"], count);
        assert_eq!(
            accounts["types"]["chaos"]["rejected"]["quarantined"],
            bad_count
        );
        assert_eq!(accounts["total"]["in_flight"], 0);
        let components = host.get("/components").await;
        assert!(
            components
                .as_array()
                .expect("components")
                .iter()
                .all(|c| c["state"] == "running")
        );
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_failing_backs_off_and_the_others_keep_running() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let good = known_entries(600);
    let mut entries = Vec::new();
    for (i, entry) in good.iter().enumerate() {
        entries.push(entry.clone());
        if i % 2 == 0 {
            entries.push(chaos(json!("panic")));
        }
    }
    let api = TestApi::start(replies(&entries, 30), None).await;
    let host = start(&api, &dir).await;
    host.settle(entries.len()).await;

    // Every bundled payload was applied, whatever chaos did.
    host.check_aggregates(&good).await;
    let accounts = host.get("/accounts").await;
    let chaos = &accounts["types"]["chaos"];
    assert_eq!(chaos["applied"], 0);
    let quarantined = chaos["rejected"]["quarantined"].as_u64().unwrap_or(0);
    let shed = chaos["rejected"]["handler_failing"].as_u64().unwrap_or(0);
    assert_eq!(quarantined + shed, 300, "{chaos}");
    assert!(
        shed > 0,
        "a failing handler must not hold up the others: {chaos}"
    );
    let handler = host.component("handler:chaos").await;
    assert!(
        handler["restarts"].as_u64().is_some_and(|r| r > 0),
        "{handler}"
    );
    assert!(
        handler["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("in a row")),
        "{handler}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_handlers_are_reported_and_the_rest_load() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::WRONG_WORLD, "wrong.wasm");
    dir.write("garbage.wasm", fixtures::not_wasm());
    dir.add(fixtures::CHAOS, "chaos.wasm");
    dir.add(fixtures::CHAOS_V2, "twin.wasm");
    let entries = known_entries(30);
    let api = TestApi::start(replies(&entries, 10), None).await;
    let host = start(&api, &dir).await;
    host.settle(entries.len()).await;
    host.check_aggregates(&entries).await;

    let plugins = host.get("/plugins").await;
    let errors: Vec<(String, String)> = plugins
        .as_array()
        .expect("plugins")
        .iter()
        .filter(|p| p["load_error"].is_string())
        .map(|p| {
            (
                p["source"].as_str().unwrap_or("").to_owned(),
                p["load_error"].to_string(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let error_of = |file: &str| {
        errors
            .iter()
            .find(|(source, _)| source.ends_with(file))
            .map(|(_, e)| e.clone())
    };
    assert!(error_of("garbage.wasm").is_some_and(|e| e.contains("not a valid WebAssembly")));
    assert!(error_of("wrong.wasm").is_some_and(|e| e.contains("world")));
    assert!(error_of("twin.wasm").is_some_and(|e| e.contains("already named")));
    assert_eq!(host.plugin("chaos").await["version"], "0.1.0");
    host.stop().await;
}

/// Waits until the registry has offered, or failed to load, `count` files
/// in all, and returns the latest event.
async fn offered(host: &Host, count: usize) -> sluice::registry::ReloadEvent {
    let mut events = host.pipeline.registry().events();
    let seen = events.wait_for(|events| {
        events
            .iter()
            .filter(|e| e.outcome == "offered" || e.outcome == "failed")
            .count()
            >= count
    });
    tokio::time::timeout(sluice_tests::PATIENCE, seen)
        .await
        .expect("the file is picked up in time")
        .expect("the registry lives")
        .back()
        .cloned()
        .expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_is_swapped_under_a_steady_stream_and_a_broken_one_turned_down() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let api = TestApi::start(Vec::new(), None).await;
    // A steady stream for as long as the test runs, reloads included.
    api.set_idle(Reply::Entries(vec![
        chaos(json!(1)),
        envelope("load_avg", json!(0.5)),
    ]));
    let host = start(&api, &dir).await;
    let slot = || host.pipeline.registry().slots()["chaos"].report();
    let applied = || host.pipeline.ledger().snapshot().of("chaos").applied;
    host.wait_until(|| applied() >= 100).await;

    // The new version takes over at the first batch after it was offered,
    // while payloads keep coming.
    dir.add(fixtures::CHAOS_V2, "chaos.wasm");
    offered(&host, 1).await;
    host.wait_until(|| slot()["version"] == "0.2.0").await;
    assert_eq!(slot()["versions"]["reloads"], 1);
    let swapped_at = applied();
    host.wait_until(|| applied() >= swapped_at + 100).await;

    // A replacement that traps where the running version does not is
    // turned down.
    dir.add(fixtures::CHAOS_BROKEN, "chaos.wasm");
    offered(&host, 2).await;
    host.wait_until(|| slot()["versions"]["last_reload_error"].is_string())
        .await;
    let report = slot();
    assert_eq!(report["version"], "0.2.0", "{report}");
    assert_eq!(report["versions"]["turned_down"], 1, "{report}");
    assert!(
        report["versions"]["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("0.3.0")),
        "{report}"
    );

    // So is a file that does not compile.
    dir.write("chaos.wasm", fixtures::not_wasm());
    let failed = offered(&host, 3).await;
    assert_eq!(failed.outcome, "failed", "{failed:?}");
    let after_failure = applied();
    host.wait_until(|| applied() >= after_failure + 100).await;

    // Stop the stream: every payload delivered was applied exactly once.
    api.set_idle(Reply::Entries(Vec::new()));
    let mark = api.served().requests;
    let served = api.wait_for(|s| s.requests >= mark + 2).await;
    host.settle(served.delivered.len()).await;
    let sent = served
        .delivered
        .iter()
        .filter(|e| e["type"] == "chaos")
        .count();
    let plugin = host.plugin("chaos").await;
    assert_eq!(plugin["version"], "0.2.0");
    assert_eq!(
        plugin["state"],
        json!({ "sum": sent as f64, "count": sent })
    );
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["types"]["chaos"]["applied"], sent);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_whose_trial_batch_is_poison_waits_for_the_next_batch() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let api = TestApi::start(Vec::new(), None).await;
    let host = start(&api, &dir).await;
    let slot = || host.pipeline.registry().slots()["chaos"].report();

    dir.add(fixtures::CHAOS_V2, "chaos.wasm");
    offered(&host, 1).await;
    // The trial batch traps both versions: the payload is at fault.
    api.push([Reply::Entries(vec![
        chaos(json!(1)),
        chaos(json!("panic")),
        chaos(json!(2)),
    ])]);
    host.settle(3).await;
    let report = slot();
    assert_eq!(report["version"], "0.1.0", "{report}");
    assert_eq!(report["versions"]["pending"], "0.2.0", "{report}");
    assert_eq!(report["versions"]["turned_down"], 0, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");

    // The next batch is its trial, and it passes.
    api.push([Reply::Entries(vec![chaos(json!(4))])]);
    host.settle(4).await;
    let plugin = host.plugin("chaos").await;
    assert_eq!(plugin["version"], "0.2.0");
    assert_eq!(plugin["state"], json!({ "sum": 7.0, "count": 3 }));
    assert_eq!(plugin["dead_letters"][0]["value"], "\"panic\"");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_dropped_in_are_started_and_removed_ones_stop() {
    let dir = PluginDir::new().with_bundled();
    let api = TestApi::start(
        vec![Reply::Entries(vec![chaos(json!(1)), chaos(json!(2))])],
        None,
    )
    .await;
    let host = start(&api, &dir).await;
    host.settle(2).await;
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["types"]["chaos"]["rejected"]["unhandled"], 2);

    dir.add(fixtures::CHAOS, "chaos.wasm");
    let mut events = host.pipeline.registry().events();
    events
        .wait_for(|events| events.iter().any(|e| e.outcome == "added"))
        .await
        .expect("the registry lives");
    host.wait_components(|rs| rs.iter().any(|r| r.name == "handler:chaos"))
        .await;
    api.push([Reply::Entries(vec![chaos(json!(3)), chaos(json!(4))])]);
    host.settle(4).await;
    assert_eq!(
        host.plugin("chaos").await["state"],
        json!({ "sum": 7.0, "count": 2 })
    );

    dir.remove("chaos.wasm");
    events
        .wait_for(|events| events.iter().any(|e| e.outcome == "removed"))
        .await
        .expect("the registry lives");
    host.wait_components(|rs| rs.iter().all(|r| r.name != "handler:chaos"))
        .await;
    api.push([Reply::Entries(vec![chaos(json!(5))])]);
    host.settle(5).await;
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["types"]["chaos"]["rejected"]["unhandled"], 3);
    assert_eq!(accounts["types"]["chaos"]["applied"], 2);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_sets_the_pace_of_polling_and_nothing_piles_up() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let api = TestApi::start(Vec::new(), None).await;
    // Every response holds one payload that takes the handler 5 ms.
    let slow = || chaos(json!({ "spin_ms": 5, "value": 1 }));
    api.set_idle(Reply::Entries(vec![
        slow(),
        envelope("load_avg", json!(0.5)),
    ]));
    let path = dir.path().to_owned();
    let host = Host::start_with(&api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
        config.ingest_queue = 1;
        config.handler_queue = 2;
    })
    .await;

    // A response is polled only when there is room for it: at most one
    // being polled, one in the ingest queue, one in dispatch's hands, two in
    // the handler's queue and one in the handler's hands.
    const BOUND: u64 = 6;
    let ledger = host.pipeline.ledger();
    let slot = host.pipeline.registry().slots()["chaos"].clone();
    let ingest = host.pipeline.ingest();
    let mut widest = 0;
    let (mut deepest, mut deepest_ingest) = (0, 0);
    api.wait_for(|served| {
        let applied = ledger.snapshot().of("chaos").applied;
        widest = widest.max(served.requests.saturating_sub(applied));
        let depth = slot.report()["queue"]["depth"].as_u64().unwrap_or(0);
        deepest = deepest.max(depth);
        let depth = ingest.report()["queue"]["depth"].as_u64().unwrap_or(0);
        deepest_ingest = deepest_ingest.max(depth);
        served.requests >= 300
    })
    .await;
    assert!(
        widest <= BOUND,
        "{widest} responses polled ahead of the slow handler"
    );
    // Both queues filled up to their bound, which is what held the polls.
    assert_eq!(deepest, 2, "the deepest handler queue");
    assert_eq!(deepest_ingest, 1, "the deepest ingest queue");

    // Stop the stream: everything polled is applied, nothing is lost.
    api.set_idle(Reply::Entries(Vec::new()));
    // Polls are one at a time: two more requests, and the last slow reply
    // has been sent.
    let mark = api.served().requests;
    let served = api.wait_for(|s| s.requests >= mark + 2).await;
    host.settle(served.delivered.len()).await;
    let chaos_sent = served
        .delivered
        .iter()
        .filter(|e| e["type"] == "chaos")
        .count();
    assert_eq!(
        host.plugin("chaos").await["state"],
        json!({ "sum": chaos_sent as f64, "count": chaos_sent })
    );
    host.stop().await;
}
