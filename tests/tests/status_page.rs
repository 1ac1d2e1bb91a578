//! The status page in a real browser: Debian's `chromium`, headless, loads
//! `GET /` from a running pipeline's admin server, lets the page's script
//! poll the JSON routes, and dumps the DOM that the script built. The tests
//! read that DOM: every component with its state and inputs, every plugin
//! with its aggregate, and the changes after a restart.
//!
//! CI installs chromium (`.ci/run`); without it these tests fail, saying so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use sluice::admin::Access;
use sluice::engine::ComponentState;
use sluice::ingest::Secret;
use sluice_tests::host::Host;
use sluice_tests::{PATIENCE, TestApi, known_entries, replies};
use tokio_util::sync::CancellationToken;

/// How long the page may run in the browser's virtual time before its DOM
/// is dumped: several of its one-second refreshes.
const VIRTUAL_TIME_MS: u32 = 5000;

/// The browser: `$SLUICE_CHROMIUM`, or `chromium` on the `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SLUICE_CHROMIUM={} is not a file",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: the status page is tested in a real headless \
                 browser. Install Debian's chromium (`apt-get install -y chromium`, as .ci/run \
                 does) or point SLUICE_CHROMIUM at a chromium binary."
            )
        })
}

/// Loads `url` in a fresh headless chromium and returns the DOM as its
/// script left it.
async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("a temporary profile directory");
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("chromium dumps the page in time")
        .expect("chromium starts");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    let dom = String::from_utf8(output.stdout).expect("the DOM is UTF-8");
    assert!(
        dom.contains("</html>"),
        "no page in chromium's output: {dom}\n{stderr}"
    );
    dom
}

/// The attributes of one opening tag's text (`a="1" b="2"`).
fn attributes(text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].split_whitespace().last().unwrap_or_default();
        let value = &rest[eq + 2..];
        let Some(close) = value.find('"') else { break };
        found.insert(key.to_owned(), value[..close].to_owned());
        rest = &value[close + 1..];
    }
    found
}

/// Every `<tag ...>` of `dom` whose attribute `key` is set: its attributes
/// and the markup from it to the next such tag.
fn elements<'a>(dom: &'a str, tag: &str, key: &str) -> Vec<(BTreeMap<String, String>, &'a str)> {
    let open = format!("<{tag} ");
    let starts: Vec<usize> = dom
        .match_indices(&open)
        .map(|(at, _)| at)
        .filter(|&at| {
            let end = dom[at..].find('>').map_or(dom.len(), |end| at + end);
            attributes(&dom[at..end]).contains_key(key)
        })
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let end = dom[at..].find('>').map_or(dom.len(), |end| at + end);
            let until = starts.get(i + 1).copied().unwrap_or(dom.len());
            (attributes(&dom[at..end]), &dom[at..until])
        })
        .collect()
}

/// The table row of the component `name`: its attributes and markup.
fn row<'a>(dom: &'a str, name: &str) -> (BTreeMap<String, String>, &'a str) {
    let (attrs, markup) = elements(dom, "tr", "data-name")
        .into_iter()
        .find(|(attrs, _)| attrs["data-name"] == name)
        .unwrap_or_else(|| panic!("no row for component {name} in the page:\n{dom}"));
    let end = markup.find("</tr>").unwrap_or(markup.len());
    (attrs, &markup[..end])
}

/// The text of `<dd data-key="key">` in `markup`.
fn field<'a>(markup: &'a str, key: &str) -> &'a str {
    let open = format!("<dd data-key=\"{key}\">");
    let start = markup
        .find(&open)
        .unwrap_or_else(|| panic!("no field {key} in {markup}"))
        + open.len();
    let end = markup[start..]
        .find("</dd>")
        .map_or(markup.len(), |end| start + end);
    &markup[start..end]
}

/// Whether the page's text for a number says `expected`.
fn shows_number(text: &str, expected: f64) -> bool {
    text.trim()
        .parse::<f64>()
        .is_ok_and(|shown| (shown - expected).abs() < 1e-3)
}

/// Checks that the page shows `state`, a plugin's aggregate, field by field.
fn check_aggregate(card: &str, plugin: &str, state: &Value) {
    let fields = state
        .as_object()
        .unwrap_or_else(|| panic!("{plugin}: {state}"));
    for (key, value) in fields {
        let text = field(card, key);
        let shown = match value {
            Value::Number(n) => shows_number(text, n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => text == s,
            Value::Array(items) => {
                let inner = text.trim_start_matches('[').trim_end_matches(']');
                let parts: Vec<&str> = inner.split(", ").collect();
                parts.len() == items.len()
                    && parts
                        .iter()
                        .zip(items)
                        .all(|(part, item)| shows_number(part, item.as_f64().unwrap_or(f64::NAN)))
            }
            Value::Null => text == "-",
            other => *other == text,
        };
        assert!(
            shown,
            "{plugin}.{key} is {value} but the page shows {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_every_component_and_plugin_and_follows_a_restart() {
    chromium();
    let entries = known_entries(90);
    let api = TestApi::start(replies(&entries, 9), None).await;
    let host = Host::start(&api, None).await;
    host.settle(entries.len()).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;
    let page = format!("{}/", host.admin);

    let dom = dump_dom(&page).await;
    let refreshes: u32 = elements(&dom, "body", "data-refreshes")[0].0["data-refreshes"]
        .parse()
        .expect("a number of refreshes");
    assert!(
        refreshes >= 2,
        "the page refreshed {refreshes} times, not live"
    );
    let reports = host.pipeline.engine().report().await;
    assert_eq!(reports.len(), 5);
    let boxes = elements(&dom, "g", "data-name");
    for report in &reports {
        let (attrs, markup) = row(&dom, &report.name);
        assert_eq!(attrs["data-state"], "running", "{markup}");
        assert_eq!(attrs["data-starts"], "1", "{markup}");
        assert!(markup.contains(">running<"), "{markup}");
        let drawn = boxes
            .iter()
            .find(|(attrs, _)| attrs["data-name"] == report.name)
            .unwrap_or_else(|| panic!("no box for {} in the graph", report.name));
        assert_eq!(drawn.0["data-state"], "running");
        for input in &report.inputs {
            let arrow = format!("data-from=\"{input}\" data-to=\"{}\"", report.name);
            assert!(dom.contains(&arrow), "no arrow {input} -> {}", report.name);
        }
    }
    let cards = elements(&dom, "div", "data-plugin");
    assert_eq!(cards.len(), 3, "one card per plugin");
    for name in ["load_avg", "cpu_usage", "last_kernel_upgrade"] {
        let plugin = host.plugin(name).await;
        let (attrs, card) = cards
            .iter()
            .find(|(attrs, _)| attrs["data-plugin"] == name)
            .unwrap_or_else(|| panic!("no card for plugin {name}"));
        assert_eq!(attrs["data-count"], "30", "{card}");
        assert!(card.contains("types: "), "{card}");
        check_aggregate(card, name, &plugin["state"]);
    }

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

    let dom = dump_dom(&page).await;
    let (attrs, markup) = row(&dom, "dispatch");
    assert_eq!(attrs["data-starts"], "2", "{markup}");
    assert_eq!(attrs["data-state"], "running", "{markup}");
    assert!(markup.contains("restarted by request"), "{markup}");
    for handler in [
        "handler:load_avg",
        "handler:cpu_usage",
        "handler:last_kernel_upgrade",
    ] {
        let (attrs, markup) = row(&dom, handler);
        assert_eq!(
            attrs["data-starts"], "2",
            "{handler} was not shown bounced: {markup}"
        );
    }
    let (attrs, _) = row(&dom, "ingest");
    assert_eq!(attrs["data-starts"], "1");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_token_the_page_asks_for_it_and_shows_everything_with_it() {
    chromium();
    let api = TestApi::start(Vec::new(), None).await;
    let host = Host::start(&api, None).await;
    host.wait_components(|rs| rs.iter().all(|r| r.state == ComponentState::Running))
        .await;
    let access = Access::with_token(Secret::new("page-t0ken")).expect("a token");
    let listener = sluice::admin::bind("127.0.0.1:0".parse().expect("an address"), &access)
        .await
        .expect("bind a loopback port");
    let guarded = format!("http://{}/", listener.local_addr().expect("an address"));
    let stop = CancellationToken::new();
    let server = tokio::spawn(sluice::admin::serve(
        listener,
        Arc::clone(&host.pipeline),
        access,
        stop.clone(),
    ));

    let dom = dump_dom(&guarded).await;
    let login = elements(&dom, "form", "id");
    assert!(
        login.iter().any(|(attrs, _)| attrs["id"] == "login"
            && attrs.get("style").is_some_and(|s| s.contains("block"))),
        "no token form shown: {dom}"
    );
    assert!(
        elements(&dom, "tr", "data-name").is_empty(),
        "data shown without the token"
    );

    let dom = dump_dom(&format!("{guarded}#token=page-t0ken")).await;
    for name in ["ingest", "dispatch", "handler:load_avg"] {
        let (attrs, _) = row(&dom, name);
        assert_eq!(attrs["data-state"], "running");
    }
    assert!(!dom.contains("page-t0ken"), "the token shows in the page");
    stop.cancel();
    let _ = server.await;
    host.stop().await;
}
