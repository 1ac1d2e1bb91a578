//! Stopping the pipeline with `Pipeline::drain`: polls stop first, what is
//! in flight is applied within the grace period, and what is not is
//! reported.

use std::time::Duration;

use serde_json::json;
use sluice::pipeline::PluginSource;
use sluice_tests::fixtures::{self, PluginDir};
use sluice_tests::host::Host;
use sluice_tests::{PATIENCE, Reply, TestApi, envelope};

/// A payload that takes the `chaos` handler `ms` milliseconds to apply.
fn slow(ms: u64) -> serde_json::Value {
    envelope("chaos", json!({ "spin_ms": ms, "value": 1 }))
}

/// The bundled pipeline plus `chaos`, with short queues, polling `api`.
async fn start(api: &TestApi, dir: &PluginDir) -> Host {
    let path = dir.path().to_owned();
    Host::start_with(api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
        config.ingest_queue = 1;
        config.handler_queue = 2;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_stops_polling_and_applies_everything_in_flight() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let api = TestApi::start(Vec::new(), None).await;
    // Every response holds a payload that takes the handler 20 ms: the
    // queues fill up, and polling waits for room.
    api.set_idle(Reply::Entries(vec![
        slow(20),
        envelope("load_avg", json!(0.5)),
    ]));
    let host = start(&api, &dir).await;
    let ledger = host.pipeline.ledger();
    host.wait_until(|| ledger.snapshot().of("chaos").in_flight() >= 3)
        .await;

    let polled_before = api.served().requests;
    let report = host.pipeline.drain(PATIENCE).await;

    assert!(report.drained, "{report:?}");
    assert!(!report.lost(), "{report:?}");
    assert_eq!(report.in_flight(), 0, "{report:?}");
    assert!(report.still_running.is_empty(), "{report:?}");
    // Polling stopped when the drain began: at most the poll under way
    // then reached the server afterwards.
    let served = api.served();
    assert!(
        served.requests <= polled_before + 1,
        "{} polls before the drain, {} after it",
        polled_before,
        served.requests
    );
    // Everything the server sent was applied, the slow type included.
    let accounts = ledger.snapshot().total();
    assert_eq!(accounts.received, served.delivered.len() as u64);
    assert_eq!(accounts.applied, accounts.received, "{accounts:?}");
    assert_eq!(
        (report.received, report.applied),
        (accounts.received, accounts.applied)
    );
    let chaos_sent = served
        .delivered
        .iter()
        .filter(|entry| entry["type"] == "chaos")
        .count();
    assert_eq!(
        host.plugin("chaos").await["state"],
        json!({ "sum": chaos_sent as f64, "count": chaos_sent })
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_grace_is_too_short_reports_what_is_still_in_flight() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    // Four responses of one payload that takes the handler 400 ms each.
    let script = (0..4).map(|_| Reply::Entries(vec![slow(400)])).collect();
    let api = TestApi::start(script, None).await;
    let host = start(&api, &dir).await;
    let ledger = host.pipeline.ledger();
    // One in the handler's hands, two in its queue: 800 ms of work at least.
    host.wait_until(|| ledger.snapshot().of("chaos").in_flight() >= 3)
        .await;

    let report = host.pipeline.drain(Duration::from_millis(1)).await;

    assert!(!report.drained, "{report:?}");
    assert!(report.lost(), "{report:?}");
    let pending = report.pending.get("chaos").copied().unwrap_or(0);
    assert!(pending >= 2, "{report:?}");
    assert_eq!(
        report.in_flight(),
        pending,
        "only chaos was slow: {report:?}"
    );
    // The components stopped; the payloads they held are what is lost.
    assert!(report.still_running.is_empty(), "{report:?}");
    // The report agrees with the accounts, which still balance.
    let accounts = ledger.snapshot().total();
    assert_eq!(accounts.in_flight(), report.in_flight());
    assert_eq!(
        report.received,
        report.applied + report.rejected + report.in_flight()
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_an_idle_pipeline_stops_at_once_with_nothing_lost() {
    let api = TestApi::start(Vec::new(), None).await;
    let host = Host::start(&api, None).await;
    api.wait_for(|served| served.requests >= 1).await;

    let report = host.pipeline.drain(PATIENCE).await;

    assert!(report.drained, "{report:?}");
    assert!(!report.lost(), "{report:?}");
    assert!(report.waited < PATIENCE, "{report:?}");
    host.stop().await;
}
