//! `sluice status` against a running pipeline: the tables people read and
//! the JSON scripts read, and what it says when no host answers.

use sluice::engine::ComponentState;
use sluice::status::{StatusClient, StatusError};
use sluice_tests::host::Host;
use sluice_tests::{TestApi, known_entries, replies};

/// Starts a pipeline, runs a known stream of 90 entries through it and
/// waits until every component runs.
async fn settled_host() -> (TestApi, Host) {
    let entries = known_entries(90);
    let api = TestApi::start(replies(&entries, 9), None).await;
    let host = Host::start(&api, None).await;
    host.settle(entries.len()).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;
    (api, host)
}

/// The table of `text` that starts with the header `first`, as rows of
/// whitespace-separated cells, header excluded.
fn table<'a>(text: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .skip_while(|line| !line.starts_with(first))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| line.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_status_has_a_row_per_component_and_per_plugin() {
    let (_api, host) = settled_host().await;
    let client = StatusClient::new(&host.admin, None).expect("a client");
    let text = client.fetch().await.expect("the host answers").to_text();

    let first = text.lines().next().expect("a summary line");
    assert!(
        first.starts_with(&format!("sluice at {}:", host.admin)),
        "{first}"
    );
    assert!(first.contains("5 of 5 components running"), "{first}");
    assert!(
        first.contains("90 received, 90 applied, 0 rejected, 0 in flight"),
        "{first}"
    );
    let header = text
        .lines()
        .find(|l| l.starts_with("COMPONENT"))
        .expect("a component table");
    let columns: Vec<&str> = header.split("  ").filter(|c| !c.is_empty()).collect();
    let columns: Vec<&str> = columns.iter().map(|c| c.trim()).collect();
    assert_eq!(
        columns,
        [
            "COMPONENT",
            "STATE",
            "INPUTS",
            "STARTS",
            "UPTIME",
            "LAST ERROR"
        ]
    );

    let components = table(&text, "COMPONENT");
    let names: Vec<&str> = components.iter().map(|row| row[0]).collect();
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
    for row in &components {
        let inputs = match row[0] {
            "ingest" => "-",
            "dispatch" => "ingest",
            _ => "dispatch",
        };
        // name, state, inputs, starts, uptime, last error
        assert_eq!(row.len(), 6, "{row:?}");
        assert_eq!(
            (row[1], row[2], row[3], row[5]),
            ("running", inputs, "1", "-"),
            "{row:?}"
        );
        assert!(row[4].ends_with('s'), "an uptime: {row:?}");
    }

    let plugins = table(&text, "PLUGIN");
    assert_eq!(plugins.len(), 3, "{text}");
    for name in ["load_avg", "cpu_usage", "last_kernel_upgrade"] {
        let row = plugins
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"));
        // name, version, types, traps, quarantined, then the aggregate
        assert_eq!(&row[..5], [name, "0.1.0", name, "0", "0"], "{row:?}");
        assert!(row[5..].contains(&"count=30"), "{row:?}");
    }
    let load_avg = host.plugin("load_avg").await;
    let max = load_avg["state"]["max"].as_f64().expect("a max");
    let shown = format!("max={}", sluice::status::summarize(&serde_json::json!(max)));
    assert!(text.contains(&shown), "{shown} not in\n{text}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_status_is_what_the_admin_server_reports() {
    let (_api, host) = settled_host().await;
    let client = StatusClient::new(&host.admin, None).expect("a client");
    let json = client.fetch().await.expect("the host answers").to_json();

    assert_eq!(json["admin"], host.admin);
    let components = json["components"].as_array().expect("components");
    let reported = host.get("/components").await;
    let reported = reported.as_array().expect("an engine report");
    assert_eq!(components.len(), reported.len());
    for (ours, theirs) in components.iter().zip(reported) {
        for key in [
            "name",
            "state",
            "inputs",
            "starts",
            "restarts",
            "bounces",
            "last_error",
        ] {
            assert_eq!(ours[key], theirs[key], "{key} of {}", theirs["name"]);
        }
    }
    let plugins = json["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 3);
    for plugin in plugins {
        assert_eq!(plugin["state"]["count"], 30, "{plugin}");
        assert_eq!(plugin["handler"]["traps"], 0, "{plugin}");
    }
    assert_eq!(json["accounts"]["total"]["applied"], 90);
    host.stop().await;
}

#[tokio::test]
async fn with_no_host_at_the_address_status_says_so() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address");
    drop(listener);

    let client = StatusClient::new(&addr.to_string(), None).expect("a client");
    let err = client.fetch().await.expect_err("nothing answers");
    assert!(matches!(err, StatusError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("no sluice host answers at http://{addr}: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}
