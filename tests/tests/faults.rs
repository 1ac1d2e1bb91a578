//! Every failure of `shared/API.md` against the real pipeline: each is
//! counted under its own outcome, nothing it brings is half-accepted, and
//! the pipeline recovers when the fault stops.

use std::time::Duration;

use sluice_tests::host::Host;
use sluice_tests::{Reply, TestApi, envelope, known_entries, replies};

fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new())
}

fn with_header(code: u16, name: &str, value: &str) -> Reply {
    Reply::Status(code, vec![(name.to_owned(), value.to_owned())])
}

/// Starts a pipeline against `faults` followed by good entries, waits until
/// the good entries are applied, and returns the ingest report.
async fn recovers_after(faults: Vec<Reply>) -> (Host, serde_json::Value) {
    let good = known_entries(30);
    let mut script = faults;
    let fault_count = script.len();
    script.extend(replies(&good, 10));
    let api = TestApi::start(script, None).await;
    let host = Host::start_with(&api, None, |config| {
        config.ingest.source.request_timeout = Duration::from_secs(1);
        config.ingest.source.max_body_bytes = 64 * 1024;
    })
    .await;
    api.wait_for(|s| s.scripted == fault_count as u64 + 3).await;
    host.settle(good.len()).await;
    host.check_aggregates(&good).await;
    let report = ingest_report(&host).await;
    (host, report)
}

async fn ingest_report(host: &Host) -> serde_json::Value {
    let components = host.get("/components").await;
    components
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "ingest"))
        .map(|c| c["report"].clone())
        .expect("an ingest component")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_counted_under_its_own_outcome_and_the_pipeline_recovers() {
    let body = serde_json::Value::Array(known_entries(9)).to_string();
    let cut_json = body[..body.len() / 2].to_owned();
    let big = serde_json::Value::Array(known_entries(2_000)).to_string();
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    let cases: Vec<(&str, Vec<Reply>)> = vec![
        ("server_error", vec![status(500), status(502)]),
        (
            "rate_limited",
            vec![
                with_header(429, "retry-after", "0"),
                with_header(503, "retry-after", date),
            ],
        ),
        (
            "closed_early",
            vec![
                Reply::Close,
                Reply::CutOff {
                    body: body.clone(),
                    sent: 20,
                },
            ],
        ),
        ("timeout", vec![Reply::Hang]),
        (
            "timeout",
            vec![Reply::Trickle {
                body: body.clone(),
                chunk: 4,
                every: Duration::from_millis(50),
            }],
        ),
        (
            "body_not_json",
            vec![
                Reply::Body("<html>busy</html>".into()),
                Reply::Body("{}".into()),
            ],
        ),
        ("body_cut_off", vec![Reply::Body(cut_json)]),
        (
            "too_large",
            vec![Reply::Body(big.clone()), Reply::Chunked(big)],
        ),
        ("bad_status", vec![status(404)]),
        (
            "redirect",
            (0..7)
                .map(|_| with_header(302, "location", "/metrics?again"))
                .collect(),
        ),
    ];
    for (outcome, faults) in cases {
        let expected = faults.len() as u64;
        let (host, report) = recovers_after(faults).await;
        let polls = &report["polls"];
        let counted = if outcome == "redirect" { 1 } else { expected };
        assert_eq!(polls[outcome], counted, "{outcome}: {report}");
        assert!(
            polls["ok"].as_u64().is_some_and(|n| n >= 3),
            "{outcome}: {report}"
        );
        assert!(
            report["last_error"].is_null(),
            "{outcome}: did not recover: {report}"
        );
        let accounts = host.get("/accounts").await;
        assert_eq!(
            accounts["total"]["received"], 30,
            "{outcome}: nothing of a failed poll counts"
        );
        host.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_followed() {
    let good = known_entries(12);
    let mut script = vec![with_header(307, "location", "/elsewhere/metrics")];
    script.extend(replies(&good, 12));
    let api = TestApi::start(script, None).await;
    let host = Host::start(&api, None).await;
    host.settle(good.len()).await;
    host.check_aggregates(&good).await;
    let report = ingest_report(&host).await;
    assert!(report["polls"]["redirect"].is_null(), "{report}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_reported_and_a_fixed_one_recovers_without_restart() {
    let good = known_entries(9);
    let api = TestApi::start(replies(&good, 3), Some("right")).await;
    let host = Host::start(&api, Some("wrong")).await;
    api.wait_for(|s| s.requests >= 3).await;
    let report = ingest_report(&host).await;
    assert!(
        report["polls"]["unauthorized"]
            .as_u64()
            .is_some_and(|n| n >= 3),
        "{report}"
    );
    assert_eq!(report["last_error"], "token rejected (status 401)");
    assert!(
        !report.to_string().contains("wrong"),
        "the token leaks into the report: {report}"
    );

    // The operator fixes the server side; the same process recovers.
    api.set_token(Some("wrong"));
    host.settle(good.len()).await;
    host.check_aggregates(&good).await;
    let components = host.get("/components").await;
    assert!(
        components
            .as_array()
            .expect("components")
            .iter()
            .all(|c| c["starts"] == 1)
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_retried_until_it_comes_up() {
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = port_holder.local_addr().expect("an address");
    drop(port_holder);
    let down = TestApi::start(Vec::new(), None).await;
    let url = format!("http://{addr}/metrics");
    let host = Host::start_with(&down, None, |config| {
        config.ingest.source.url = url.parse().expect("a URL");
    })
    .await;
    // Nothing tells of a refused connection but the report: read it until
    // it shows three.
    let refused = async {
        while ingest_report(&host).await["polls"]["connect_failed"]
            .as_u64()
            .unwrap_or(0)
            < 3
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(sluice_tests::PATIENCE, refused)
        .await
        .expect("refusals are counted");

    let good = known_entries(6);
    let api = TestApi::start_on(addr, replies(&good, 6)).await;
    api.wait_for(|s| s.scripted == 1).await;
    host.settle(good.len()).await;
    host.check_aggregates(&good).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fault_schedule_ends_with_the_aggregates_of_exactly_what_was_delivered() {
    let entries = known_entries(400);
    let mut script = Vec::new();
    for (i, reply) in replies(&entries, 8).into_iter().enumerate() {
        script.push(match i % 5 {
            0 => status(500),
            1 => Reply::Close,
            2 => Reply::CutOff {
                body: "[{\"type\":\"load_avg\",\"payload\":{\"value\":1}}]".into(),
                sent: 10,
            },
            3 => Reply::Body("not json".into()),
            _ => Reply::Entries(vec![
                envelope("load_avg", serde_json::json!(-1)),
                envelope("x", serde_json::json!(1)),
            ]),
        });
        if i % 17 == 0 {
            script.push(Reply::Hang);
        }
        script.push(reply);
    }
    let total = script.len() as u64;
    let api = TestApi::start(script, None).await;
    let host = Host::start_with(&api, None, |config| {
        config.ingest.source.request_timeout = Duration::from_secs(1);
    })
    .await;
    let served = api.wait_for(|s| s.scripted == total).await;
    host.settle(served.delivered.len()).await;
    host.check_aggregates(&served.delivered).await;

    let accounts = host.get("/accounts").await;
    assert_eq!(accounts["total"]["applied"], 400);
    assert_eq!(accounts["total"]["received"], served.delivered.len());
    assert_eq!(
        accounts["types"]["load_avg"]["rejected"]["out_of_range"],
        10
    );
    assert_eq!(accounts["types"]["x"]["rejected"]["unhandled"], 10);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate_works_only_with_its_ca_bundle() {
    let good = known_entries(9);
    let (api, pem) = TestApi::start_tls(replies(&good, 3)).await;
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, pem).expect("write the CA bundle");

    // Without the bundle the certificate is refused, and said so.
    let untrusting = Host::start_with(&api, None, |config| {
        config.ingest.source.url = api.tls_url().parse().expect("a URL");
    })
    .await;
    let refused = async {
        loop {
            let report = ingest_report(&untrusting).await;
            if report["polls"]["connect_failed"].as_u64().unwrap_or(0) >= 1 {
                return report;
            }
            tokio::task::yield_now().await;
        }
    };
    let report = tokio::time::timeout(sluice_tests::PATIENCE, refused)
        .await
        .expect("a refusal");
    assert!(
        report["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{report}"
    );
    untrusting.stop().await;
    assert_eq!(api.served().scripted, 0);

    let trusting = Host::start_with(&api, None, |config| {
        config.ingest.source.url = api.tls_url().parse().expect("a URL");
        config.ingest.source.ca_bundle = Some(bundle.clone());
    })
    .await;
    trusting.settle(good.len()).await;
    trusting.check_aggregates(&good).await;
    trusting.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_holds_the_next_poll_until_then() {
    let good = known_entries(3);
    // HTTP dates have whole seconds: this one is 4 to 5 s ahead, room for
    // the host to start and poll before it.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
    let until = httpdate::parse_http_date(&date).expect("a date it just wrote");
    let mut script = vec![with_header(503, "retry-after", &date)];
    script.extend(replies(&good, 3));
    let api = TestApi::start(script, None).await;
    let host = Host::start_with(&api, None, |config| {
        config.ingest.retry.max = Duration::from_secs(10);
    })
    .await;
    let served = api.wait_for(|s| s.requests >= 2).await;
    let (refused, polled_again) = (served.request_times[0], served.request_times[1]);
    assert!(
        refused < until,
        "the host took too long to start for the date to be ahead"
    );
    assert!(
        polled_again >= until,
        "polled again {:?} before the date the server gave",
        until.duration_since(polled_again).unwrap_or_default()
    );
    host.settle(good.len()).await;
    let report = ingest_report(&host).await;
    assert_eq!(report["polls"]["rate_limited"], 1, "{report}");
    host.stop().await;
}
