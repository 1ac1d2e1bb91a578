//! Logs of the running pipeline: a plugin that fails on every batch is
//! reported, but does not flood the logs.

use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::handler::WARN_EVERY;
use sluice::pipeline::PluginSource;
use sluice_tests::fixtures::{self, PluginDir};
use sluice_tests::host::Host;
use sluice_tests::{Reply, TestApi, envelope};

/// Everything logged in this test binary.
static LOGGED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A writer into [`LOGGED`].
struct Captured;

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut logged = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
        logged.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The WARN lines logged so far whose message is `message`.
fn warnings(message: &str) -> Vec<serde_json::Value> {
    let logged = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&logged)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["level"] == "WARN" && line["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_fails_on_every_batch_is_logged_once_per_period() {
    tracing_subscriber::fmt()
        .json()
        .with_writer(|| Captured)
        .with_env_filter("sluice=warn")
        .try_init()
        .expect("the only subscriber of this test binary");
    let dir = PluginDir::new().with_bundled();
    dir.add(fixtures::CHAOS_BROKEN, "chaos.wasm");
    let api = TestApi::start(Vec::new(), None).await;
    api.set_idle(Reply::Entries(vec![
        envelope("chaos", json!(1)),
        envelope("load_avg", json!(0.5)),
    ]));
    let started = Instant::now();
    let path = dir.path().to_owned();
    let host = Host::start_with(&api, None, move |config| {
        config.plugins = PluginSource::Dir(path);
        // The handler comes back at once after each run of failures.
        config.engine.backoff.initial = Duration::from_millis(1);
        config.engine.backoff.max = Duration::from_millis(5);
    })
    .await;
    let slot = host.pipeline.registry().slots()["chaos"].clone();
    let traps = || slot.report()["traps"].as_u64().unwrap_or(0);
    host.wait_until(|| traps() >= 40).await;
    let elapsed = started.elapsed();
    let traps = traps();
    host.stop().await;

    // One line per period at most, the first at once.
    let periods = elapsed.as_millis() / WARN_EVERY.as_millis();
    let most = 1 + usize::try_from(periods).expect("a few periods");
    let failed = warnings("plugin failed; reinstantiating");
    assert!(
        (1..=most).contains(&failed.len()),
        "{} lines for {traps} failed calls in {elapsed:?}",
        failed.len()
    );
    assert!(
        failed
            .iter()
            .all(|line| line["fields"]["plugin"] == "chaos")
    );
    let quarantined = warnings("payloads quarantined");
    assert!(
        quarantined.len() <= most,
        "{} lines for quarantines in {elapsed:?}",
        quarantined.len()
    );
}
