//! The whole pipeline against the test API server: real HTTP on loopback,
//! the real host, the bundled wasm plugins.

use serde_json::json;
use sluice::engine::{ComponentReport, ComponentState};
use sluice::pipeline::PluginSource;
use sluice_tests::fixtures::{self, PluginDir};
use sluice_tests::host::Host;
use sluice_tests::{Reply, TestApi, envelope, known_entries, replies};

fn component<'a>(reports: &'a [ComponentReport], name: &str) -> &'a ComponentReport {
    reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_equal_those_computed_from_what_the_server_sent() {
    let entries = known_entries(600);
    let api = TestApi::start(replies(&entries, 7), Some("s3cret")).await;
    let host = Host::start(&api, Some("s3cret")).await;

    let served = api
        .wait_for(|s| s.scripted == entries.len().div_ceil(7) as u64)
        .await;
    assert_eq!(served.delivered, entries);
    host.settle(entries.len()).await;

    host.check_aggregates(&entries).await;
    let plugins = host.get("/plugins").await;
    assert_eq!(plugins.as_array().map(Vec::len), Some(3), "{plugins}");
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["total"]["received"], 600);
    assert_eq!(accounts["total"]["applied"], 600);
    assert_eq!(accounts["total"]["in_flight"], 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_reports_its_inputs_and_runs_once_started() {
    let api = TestApi::start(Vec::new(), None).await;
    let host = Host::start(&api, None).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;

    let components = host.get("/components").await;
    let names: Vec<_> = components
        .as_array()
        .expect("an array of components")
        .iter()
        .map(|c| c["name"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ingest",
            "dispatch",
            "handler:cpu_usage",
            "handler:last_kernel_upgrade",
            "handler:load_avg"
        ]
    );
    for component in components.as_array().expect("an array") {
        let inputs = match component["name"].as_str() {
            Some("ingest") => serde_json::json!([]),
            Some("dispatch") => serde_json::json!(["ingest"]),
            _ => serde_json::json!(["dispatch"]),
        };
        assert_eq!(component["inputs"], inputs, "{component}");
        assert_eq!(component["state"], "running");
        assert_eq!(component["starts"], 1);
        assert!(component["last_error"].is_null());
        assert!(component["report"].is_object());
    }
    let ready = reqwest::get(format!("{}/ready", host.admin))
        .await
        .expect("an answer");
    assert_eq!(ready.status(), 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_component_bounces_its_dependents_and_loses_no_payload() {
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS, "chaos.wasm");
    let entries = known_entries(600);
    // Each response also holds a payload that takes the chaos handler 2 ms,
    // so that payloads wait in the queues when dispatch is restarted.
    let slow = || envelope("chaos", json!({ "spin_ms": 2, "value": 1 }));
    let script: Vec<Reply> = entries
        .chunks(5)
        .map(|chunk| Reply::Entries(chunk.iter().cloned().chain([slow()]).collect()))
        .collect();
    let responses = script.len();
    let api = TestApi::start(script, None).await;
    let path = dir.path().to_owned();
    let host = Host::start_with(&api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
    })
    .await;

    // Restart dispatch while payloads are provably in the pipeline.
    let ledger = host.pipeline.ledger();
    host.wait_until(|| ledger.snapshot().total().in_flight() >= 6)
        .await;
    host.pipeline
        .engine()
        .restart("dispatch")
        .await
        .expect("dispatch exists");
    host.wait_components(|rs| {
        let dispatch = component(rs, "dispatch");
        dispatch.starts == 2
            && rs.iter().all(|r| r.state == ComponentState::Running)
            && rs
                .iter()
                .filter(|r| r.name.starts_with("handler:"))
                .all(|r| r.starts == 2)
    })
    .await;

    let served = api.wait_for(|s| s.scripted == responses as u64).await;
    host.settle(served.delivered.len()).await;
    host.check_aggregates(&entries).await;
    assert_eq!(
        host.plugin("chaos").await["state"],
        json!({ "sum": responses as f64, "count": responses }),
        "a payload of the slow handler was lost or applied twice"
    );

    let reports = host.pipeline.engine().report().await;
    let dispatch = component(&reports, "dispatch");
    assert_eq!(dispatch.restarts, 1);
    assert_eq!(dispatch.last_error.as_deref(), Some("restarted by request"));
    let ingest = component(&reports, "ingest");
    assert_eq!(
        (ingest.starts, ingest.bounces),
        (1, 0),
        "ingest does not depend on dispatch"
    );
    let handlers: Vec<_> = reports
        .iter()
        .filter(|r| r.name.starts_with("handler:"))
        .collect();
    assert_eq!(handlers.len(), 4);
    for handler in handlers {
        assert_eq!(handler.bounces, 1, "{} was not bounced", handler.name);
        assert!(handler.last_error.is_none());
    }
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["total"]["received"], 600 + responses);
    assert_eq!(accounts["total"]["applied"], 600 + responses);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_unknown_entries_are_counted_while_the_rest_go_through() {
    let good = known_entries(6);
    let mut body = good.clone();
    body.extend([
        envelope("load_avg", serde_json::json!("high")),
        envelope("cpu_usage", serde_json::json!([])),
        serde_json::json!({ "payload": { "value": 1 } }),
        serde_json::json!(42),
        envelope("disk_usage", serde_json::json!({ "/": 0.5 })),
    ]);
    let api = TestApi::start(vec![Reply::Entries(body.clone())], None).await;
    let host = Host::start(&api, None).await;
    api.wait_for(|s| s.scripted == 1).await;
    host.settle(body.len()).await;

    host.check_aggregates(&good).await;
    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["total"]["applied"], 6);
    assert_eq!(accounts["types"]["load_avg"]["rejected"]["wrong_shape"], 1);
    assert_eq!(
        accounts["types"]["cpu_usage"]["rejected"]["out_of_range"],
        1
    );
    assert_eq!(
        accounts["types"]["(untyped)"]["rejected"]["missing_type"],
        1
    );
    assert_eq!(
        accounts["types"]["(untyped)"]["rejected"]["not_an_object"],
        1
    );
    assert_eq!(accounts["types"]["disk_usage"]["rejected"]["unhandled"], 1);

    let components = host.get("/components").await;
    let dispatch = components
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "dispatch"))
        .expect("a dispatch component");
    let recent = dispatch["report"]["recent_rejections"]
        .as_array()
        .expect("recent rejections");
    assert_eq!(recent.len(), 5);
    assert!(recent.iter().any(|r| {
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("disk_usage"))
    }));
    host.stop().await;
}
