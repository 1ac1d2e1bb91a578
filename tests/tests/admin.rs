//! The admin server as operators and Prometheus meet it: the metrics it
//! exposes after a known run, and who may read it or change anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sluice::admin::Access;
use sluice::engine::ComponentState;
use sluice::ingest::Secret;
use sluice::status::{StatusClient, StatusError};
use sluice_tests::host::Host;
use sluice_tests::{Reply, TestApi, envelope, known_entries, replies};
use tokio_util::sync::CancellationToken;

/// A value no label may ever carry.
const ODD_VALUE: &str = "sky-high-9917";

/// The samples of a text exposition, by series (`name{labels}`).
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a series and a value");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("a number in {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// The value of `series`, which must be exposed.
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

async fn scrape(host: &Host) -> (String, String) {
    let response = reqwest::get(format!("{}/metrics", host.admin))
        .await
        .expect("the admin server answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("a text header")
        .to_owned();
    (content_type, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_a_known_stream_did() {
    let mut entries = known_entries(60);
    entries.push(envelope("load_avg", serde_json::json!(ODD_VALUE)));
    entries.push(envelope("disk_usage", serde_json::json!(0.5)));
    let script = replies(&entries, 7);
    let scripted = script.len() as u64;
    let api = TestApi::start(script, None).await;
    let host = Host::start(&api, None).await;
    api.wait_for(|s| s.scripted == scripted).await;
    host.settle(entries.len()).await;

    let (content_type, exposition) = scrape(&host).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let m = samples(&exposition);
    // 60 known entries are 20 of each type.
    for kind in ["load_avg", "cpu_usage", "last_kernel_upgrade"] {
        let applied = value(
            &m,
            &format!("sluice_payloads_applied_total{{type=\"{kind}\"}}"),
        );
        assert_eq!(applied, 20.0, "{kind}");
        let in_flight = value(&m, &format!("sluice_payloads_in_flight{{type=\"{kind}\"}}"));
        assert_eq!(in_flight, 0.0, "{kind}");
    }
    assert_eq!(
        value(&m, "sluice_payloads_received_total{type=\"load_avg\"}"),
        21.0
    );
    let wrong = "sluice_payloads_rejected_total{type=\"load_avg\",reason=\"wrong_shape\"}";
    assert_eq!(value(&m, wrong), 1.0);
    let unhandled = "sluice_payloads_rejected_total{type=\"disk_usage\",reason=\"unhandled\"}";
    assert_eq!(value(&m, unhandled), 1.0);
    assert!(
        !exposition.contains(ODD_VALUE),
        "a payload's value became a label"
    );

    // Every poll outcome is a series from the start; these polls all went well.
    assert!(value(&m, "sluice_polls_total{outcome=\"ok\"}") >= scripted as f64);
    for outcome in ["timeout", "unauthorized", "server_error", "body_cut_off"] {
        assert_eq!(
            value(&m, &format!("sluice_polls_total{{outcome=\"{outcome}\"}}")),
            0.0
        );
    }
    assert_eq!(value(&m, "sluice_poll_consecutive_failures"), 0.0);

    for name in ["ingest", "dispatch", "handler:load_avg"] {
        let state =
            |s: &str| format!("sluice_component_state{{component=\"{name}\",state=\"{s}\"}}");
        assert_eq!(value(&m, &state("running")), 1.0, "{name}");
        assert_eq!(value(&m, &state("backing_off")), 0.0, "{name}");
        let starts = format!("sluice_component_starts_total{{component=\"{name}\"}}");
        assert_eq!(value(&m, &starts), 1.0);
    }
    assert_eq!(
        value(&m, "sluice_queue_capacity{component=\"dispatch\"}"),
        2.0
    );
    assert_eq!(
        value(&m, "sluice_queue_capacity{component=\"handler:load_avg\"}"),
        4.0
    );

    // Calls, their latency and the handler's own counters agree.
    let handler = host.plugin("load_avg").await["handler"].clone();
    let calls = value(
        &m,
        "sluice_plugin_calls_total{plugin=\"load_avg\",outcome=\"ok\"}",
    );
    assert!(calls >= 1.0);
    let timed = value(
        &m,
        "sluice_plugin_call_duration_seconds_count{plugin=\"load_avg\"}",
    );
    assert_eq!(timed, calls, "every call is timed");
    let inf = "sluice_plugin_call_duration_seconds_bucket{plugin=\"load_avg\",le=\"+Inf\"}";
    assert_eq!(value(&m, inf), calls);
    let batches = value(&m, "sluice_plugin_batches_total{plugin=\"load_avg\"}");
    assert_eq!(Some(batches as u64), handler["batches"].as_u64());
    assert_eq!(
        value(&m, "sluice_plugin_traps_total{plugin=\"load_avg\"}"),
        0.0
    );
    let quarantined = "sluice_plugin_quarantined_payloads_total{plugin=\"load_avg\"}";
    assert_eq!(value(&m, quarantined), 0.0);
    assert_eq!(
        value(
            &m,
            "sluice_plugin_info{plugin=\"load_avg\",version=\"0.1.0\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&m, "sluice_plugin_file_events_total{outcome=\"added\"}"),
        3.0
    );
    let swapped = "sluice_plugin_reloads_total{plugin=\"load_avg\",outcome=\"swapped\"}";
    assert_eq!(value(&m, swapped), 0.0);
    for family in [
        "# TYPE sluice_payloads_applied_total counter",
        "# TYPE sluice_plugin_call_duration_seconds histogram",
        "# TYPE sluice_component_uptime_seconds gauge",
    ] {
        assert!(exposition.contains(family), "no {family:?}");
    }
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_restarts_and_failed_polls() {
    let api = TestApi::start(vec![Reply::Status(500, Vec::new())], None).await;
    let host = Host::start(&api, None).await;
    api.wait_for(|s| s.scripted == 1).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;
    host.pipeline
        .engine()
        .restart("dispatch")
        .await
        .expect("dispatch exists");
    host.wait_components(|rs| {
        rs.iter().all(|r| r.state == ComponentState::Running)
            && rs.iter().any(|r| r.name == "dispatch" && r.starts == 2)
    })
    .await;

    let (_, exposition) = scrape(&host).await;
    let m = samples(&exposition);
    assert_eq!(
        value(&m, "sluice_polls_total{outcome=\"server_error\"}"),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "sluice_component_restarts_total{component=\"dispatch\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&m, "sluice_component_starts_total{component=\"dispatch\"}"),
        2.0
    );
    assert_eq!(
        value(&m, "sluice_component_restarts_total{component=\"ingest\"}"),
        0.0
    );
    let bounces = "sluice_component_bounces_total{component=\"handler:cpu_usage\"}";
    assert_eq!(value(&m, bounces), 1.0);

    // Prometheus asks for OpenMetrics when it can read it.
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", host.admin))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("an answer");
    let content_type = response.headers()["content-type"].to_str().expect("text");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("a body");
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    host.stop().await;
}

/// An admin server over `host`'s pipeline that requires `token`.
async fn guarded(host: &Host, token: &str) -> (String, CancellationToken) {
    let access = Access::with_token(Secret::new(token)).expect("a token");
    let listener = sluice::admin::bind("127.0.0.1:0".parse().expect("an address"), &access)
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let stop = CancellationToken::new();
    tokio::spawn(sluice::admin::serve(
        listener,
        Arc::clone(&host.pipeline),
        access,
        stop.clone(),
    ));
    (url, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_route_but_live_and_the_page_needs_it() {
    let api = TestApi::start(Vec::new(), None).await;
    let host = Host::start(&api, None).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;
    let (admin, stop) = guarded(&host, "t0ken").await;
    let client = reqwest::Client::new();

    for route in ["/metrics", "/components", "/plugins", "/accounts", "/ready"] {
        let url = format!("{admin}{route}");
        let bare = client.get(&url).send().await.expect("an answer");
        assert_eq!(bare.status(), 401, "{route} without a token");
        assert_eq!(bare.headers()["www-authenticate"], "Bearer");
        for wrong in ["t0ke", "t0ken2", "T0KEN"] {
            let answer = client
                .get(&url)
                .bearer_auth(wrong)
                .send()
                .await
                .expect("an answer");
            assert_eq!(answer.status(), 401, "{route} with {wrong:?}");
        }
        let basic = client
            .get(&url)
            .basic_auth("t0ken", None::<&str>)
            .send()
            .await;
        assert_eq!(
            basic.expect("an answer").status(),
            401,
            "{route} with Basic"
        );
        let right = client
            .get(&url)
            .bearer_auth("t0ken")
            .send()
            .await
            .expect("an answer");
        assert_eq!(right.status(), 200, "{route} with the token");
    }
    for public in ["/live", "/"] {
        let answer = client
            .get(format!("{admin}{public}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 200, "{public} is public");
    }

    let restart = format!("{admin}/components/ingest/restart");
    let refused = client.post(&restart).send().await.expect("an answer");
    assert_eq!(refused.status(), 401);
    let refused = client.post(&restart).bearer_auth("nope").send().await;
    assert_eq!(refused.expect("an answer").status(), 401);
    let ingest = host.component("ingest").await;
    assert_eq!(
        (ingest["starts"].as_u64(), ingest["restarts"].as_u64()),
        (Some(1), Some(0))
    );
    let accepted = client.post(&restart).bearer_auth("t0ken").send().await;
    assert_eq!(accepted.expect("an answer").status(), 202);
    host.wait_components(|rs| rs.iter().any(|r| r.name == "ingest" && r.restarts == 1))
        .await;

    // `sluice status` sends the token too.
    let refused = StatusClient::new(&admin, None)
        .expect("a client")
        .fetch()
        .await;
    assert!(
        matches!(refused, Err(StatusError::Unauthorized { .. })),
        "{refused:?}"
    );
    let wrong = StatusClient::new(&admin, Some(Secret::new("nope"))).expect("a client");
    let err = wrong.fetch().await.expect_err("a wrong token is refused");
    assert!(err.to_string().contains("--admin-token"), "{err}");
    let right = StatusClient::new(&admin, Some(Secret::new("t0ken"))).expect("a client");
    let status = right.fetch().await.expect("the token is accepted");
    assert_eq!(status.components.len(), 5);
    stop.cancel();
    host.stop().await;
}

#[tokio::test]
async fn the_admin_server_stays_on_loopback_unless_given_a_token() {
    let default: SocketAddr = sluice::cli::DEFAULT_ADMIN.parse().expect("an address");
    assert!(
        default.ip().is_loopback(),
        "the default admin address is {default}"
    );

    // Refused before anything is bound.
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let addr: SocketAddr = addr.parse().expect("an address");
        let err = sluice::admin::bind(addr, &Access::open())
            .await
            .expect_err("a non-loopback address needs a token");
        let message = err.to_string();
        assert!(message.contains("--admin-token"), "{message}");
        assert!(message.contains(&addr.to_string()), "{message}");
    }
    let loopback = "127.0.0.1:0".parse().expect("an address");
    let open = sluice::admin::bind(loopback, &Access::open()).await;
    assert!(open.is_ok(), "loopback needs no token");
    let empty = Access::with_token(Secret::new("")).expect_err("an empty token is no token");
    assert!(empty.to_string().contains("--admin-token"), "{empty}");
}
