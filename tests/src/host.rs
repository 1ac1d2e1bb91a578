//! A pipeline under test: the real host polling a [`TestApi`], with its
//! admin server on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use sluice::backoff::BackoffSettings;
use sluice::engine::ComponentReport;
use sluice::ingest::{IngestConfig, Secret, SourceConfig};
use sluice::pipeline::{Pipeline, PipelineConfig};
use tokio_util::sync::CancellationToken;

use crate::expected::Expected;
use crate::{PATIENCE, TestApi};

/// A pipeline polling `api`, with its admin server on a loopback port.
pub struct Host {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The admin server's base URL.
    pub admin: String,
    stop: CancellationToken,
}

impl Host {
    /// Starts the bundled pipeline against `api`.
    pub async fn start(api: &TestApi, token: Option<&str>) -> Host {
        Host::start_with(api, token, |_| {}).await
    }

    /// Starts a pipeline against `api`, with settings changed by `adjust`.
    pub async fn start_with(
        api: &TestApi,
        token: Option<&str>,
        adjust: impl FnOnce(&mut PipelineConfig),
    ) -> Host {
        let mut source = SourceConfig::new(api.url().parse().expect("a valid URL"));
        source.token = token.map(Secret::new);
        let retry = BackoffSettings {
            min: Duration::from_millis(1),
            max: Duration::from_millis(20),
            factor: 2.0,
        };
        let mut config = PipelineConfig::new(IngestConfig {
            source,
            retry,
            min_interval: Duration::ZERO,
            in_flight: sluice::ingest::DEFAULT_IN_FLIGHT,
        });
        adjust(&mut config);
        let pipeline = Arc::new(Pipeline::start(config).await.expect("the pipeline starts"));
        let access = sluice::admin::Access::open();
        let listener = sluice::admin::bind("127.0.0.1:0".parse().expect("an address"), &access)
            .await
            .expect("bind the admin port");
        let admin = format!("http://{}", listener.local_addr().expect("an address"));
        let stop = CancellationToken::new();
        tokio::spawn(sluice::admin::serve(
            listener,
            Arc::clone(&pipeline),
            access,
            stop.clone(),
        ));
        Host {
            pipeline,
            admin,
            stop,
        }
    }

    /// GETs an admin route as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.admin))
            .await
            .expect("the admin server answers")
            .json()
            .await
            .expect("the admin server answers JSON")
    }

    /// Waits until every payload the server delivered has met its fate.
    pub async fn settle(&self, delivered: usize) {
        let mut accounts = self.pipeline.ledger().subscribe();
        let settled = accounts.wait_for(|a| {
            let total = a.total();
            total.received == delivered as u64 && total.in_flight() == 0
        });
        tokio::time::timeout(PATIENCE, settled)
            .await
            .expect("every payload is accounted for in time")
            .expect("the ledger lives");
    }

    /// Waits until the engine report satisfies `done`.
    pub async fn wait_components(&self, done: impl FnMut(&Vec<ComponentReport>) -> bool) {
        let mut states = self.pipeline.engine().watch();
        tokio::time::timeout(PATIENCE, states.wait_for(done))
            .await
            .expect("the components reach the state in time")
            .expect("the engine lives");
    }

    /// Checks the bundled plugins' aggregates against `entries`.
    pub async fn check_aggregates(&self, entries: &[serde_json::Value]) {
        let expected = Expected::from_entries(entries);
        for name in ["load_avg", "cpu_usage", "last_kernel_upgrade"] {
            let plugin = self.plugin(name).await;
            assert_eq!(plugin["types"], serde_json::json!([name]));
            expected
                .check(name, &plugin["state"])
                .unwrap_or_else(|diff| panic!("{diff}"));
        }
    }

    /// The `/plugins` entry of the plugin `name`.
    pub async fn plugin(&self, name: &str) -> serde_json::Value {
        let plugins = self.get("/plugins").await;
        plugins
            .as_array()
            .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {name} in {plugins}"))
    }

    /// The report of the component `name`.
    pub async fn component(&self, name: &str) -> serde_json::Value {
        let components = self.get("/components").await;
        components
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no component {name} in {components}"))
    }

    /// Waits until `done` holds; it is checked again after every change of
    /// the accounts, that is after every batch.
    ///
    /// `done` runs with no lock held, so it may read the ledger itself:
    /// `wait_for` would call it under the accounts' read lock, which a
    /// second read from the same thread can deadlock on once a writer
    /// waits.
    pub async fn wait_until(&self, mut done: impl FnMut() -> bool) {
        let mut accounts = self.pipeline.ledger().subscribe();
        let until = async {
            loop {
                accounts.mark_unchanged();
                if done() {
                    return;
                }
                accounts.changed().await.expect("the ledger lives");
            }
        };
        tokio::time::timeout(PATIENCE, until)
            .await
            .expect("the condition holds in time");
    }

    /// Shuts the pipeline down and checks that it stopped cleanly.
    pub async fn stop(self) {
        let report = self.pipeline.shutdown().await;
        assert!(
            report.clean,
            "components did not stop: {:?}",
            report.still_running
        );
        self.stop.cancel();
    }
}
