//! The pipeline assembled: plugins loaded, components declared to the
//! engine, and the handles that operators and tests read it through.
//!
//! ```text
//!   ingest ──▶ dispatch ──▶ handler:load_avg
//!                      ├──▶ handler:cpu_usage
//!                      └──▶ handler:last_kernel_upgrade   (one per plugin)
//! ```
//!
//! The queues between components, the stash of dispatch and each plugin's
//! aggregate belong to the pipeline, not to a run of a component, so a
//! component that restarts picks up where the previous run stopped.
//!
//! # Stopping
//!
//! [`Pipeline::drain`] stops cleanly: ingest first stops polling (a poll
//! under way finishes), then the pipeline waits, up to a grace period,
//! until every payload received has been applied or rejected, and only
//! then shuts the engine down. The [`DrainReport`] says what, if anything,
//! was still in flight or did not stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::dispatch::Dispatch;
use crate::engine::{Engine, EngineConfig, EngineHandle, Manifold, ShutdownReport};
use crate::ingest::{Ingest, IngestConfig};
use crate::ledger::Ledger;
use crate::plugin::{CompileCache, Grants, Limits, Runtime};
pub use crate::registry::{PluginFailure, PluginSource, Registry};

/// Everything the pipeline needs to start.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The poller's settings.
    pub ingest: IngestConfig,
    /// Where the plugins come from.
    pub plugins: PluginSource,
    /// Limits of each plugin's sandbox.
    pub limits: Limits,
    /// Limits of the plugins named here, instead of `limits`.
    pub plugin_limits: BTreeMap<String, Limits>,
    /// What the plugins named here are granted of the host; the others are
    /// granted nothing.
    pub plugin_grants: BTreeMap<String, Grants>,
    /// Where compiled plugins are cached.
    pub cache: CompileCache,
    /// Supervision settings.
    pub engine: EngineConfig,
    /// Responses that may wait between ingest and dispatch.
    pub ingest_queue: usize,
    /// Batches that may wait in front of each handler.
    pub handler_queue: usize,
}

impl PipelineConfig {
    /// Settings for `ingest` with defaults for everything else.
    pub fn new(ingest: IngestConfig) -> PipelineConfig {
        PipelineConfig {
            // Each poll under way holds room for its response.
            ingest_queue: ingest.in_flight.max(2),
            ingest,
            plugins: PluginSource::Bundled,
            limits: Limits::default(),
            plugin_limits: BTreeMap::new(),
            plugin_grants: BTreeMap::new(),
            cache: CompileCache::Off,
            engine: EngineConfig::default(),
            handler_queue: 4,
        }
    }
}

/// The limits and grants of each plugin that has either of its own.
fn plugin_settings(config: &PipelineConfig) -> BTreeMap<String, (Limits, Grants)> {
    let names = config
        .plugin_limits
        .keys()
        .chain(config.plugin_grants.keys());
    names
        .map(|name| {
            let limits = config.plugin_limits.get(name).copied();
            let grants = config.plugin_grants.get(name).cloned();
            (
                name.clone(),
                (limits.unwrap_or(config.limits), grants.unwrap_or_default()),
            )
        })
        .collect()
}

/// A running pipeline.
pub struct Pipeline {
    engine: EngineHandle,
    ledger: Arc<Ledger>,
    registry: Arc<Registry>,
    ingest: Arc<Ingest>,
}

impl Pipeline {
    /// Loads the plugins and starts every component. Fails on settings that
    /// cannot work; a plugin that cannot be loaded is reported, not fatal.
    pub async fn start(config: PipelineConfig) -> anyhow::Result<Pipeline> {
        anyhow::ensure!(
            config.ingest_queue > 0,
            "the ingest queue needs room for a response"
        );
        anyhow::ensure!(
            config.handler_queue > 0,
            "a handler queue needs room for a batch"
        );
        let ledger = Arc::new(Ledger::new());
        let settings = plugin_settings(&config);
        let runtime = Runtime::with_cache(config.limits, config.cache)
            .context("cannot start the wasm runtime")?
            .with_plugin_settings(settings)?;
        let registry = Registry::load(
            runtime,
            config.plugins,
            config.handler_queue,
            Arc::clone(&ledger),
        )
        .await?;

        let cache = registry.runtime().cache_stats();
        tracing::info!(
            hits = cache.hits,
            misses = cache.misses,
            "compiled plugins cache"
        );

        let (ingest_tx, ingest_rx) = mpsc::channel(config.ingest_queue);
        let ingest = Arc::new(Ingest::new(config.ingest, ingest_tx, Arc::clone(&ledger))?);
        let dispatch = Arc::new(Dispatch::new(
            ingest_rx,
            registry.routes(),
            Arc::clone(&ledger),
        ));

        let mut manifolds = vec![
            manifold("ingest", &[], &ingest, Ingest::run, Ingest::report),
            manifold(
                "dispatch",
                &["ingest"],
                &dispatch,
                Dispatch::run,
                Dispatch::report,
            ),
        ];
        manifolds.extend(registry.slots().values().map(Registry::handler));
        manifolds.extend(registry.watcher());
        let engine = Engine::start(config.engine, manifolds).context("cannot start the engine")?;
        registry.attach(engine.clone());
        Ok(Pipeline {
            engine,
            ledger,
            registry,
            ingest,
        })
    }

    /// The engine that supervises the components.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// The pipeline's accounts.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The ingest component's shared state, for its report.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The plugin set.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Every plugin's description, counters and aggregate, as JSON; plugin
    /// files that could not be used follow, with their error.
    pub async fn plugins_report(&self) -> Vec<serde_json::Value> {
        let slots = self.registry.slots();
        let mut report = Vec::with_capacity(slots.len());
        for slot in slots.values() {
            let plugin = slot.plugin();
            let (state, state_error) = match slot.render().await {
                Ok(state) => (state, None),
                Err(err) => (serde_json::Value::Null, Some(err.to_string())),
            };
            report.push(serde_json::json!({
                "name": slot.name(),
                "version": plugin.version(),
                "source": plugin.source(),
                "types": slot.types(),
                "component": slot.component(),
                "state": state,
                "state_error": state_error,
                "handler": slot.report(),
                "dead_letters": slot.dead_letters(),
            }));
        }
        for failure in self.registry.failures() {
            report.push(serde_json::json!({
                "name": null,
                "source": failure.source,
                "types": [],
                "state": null,
                "load_error": failure.error,
            }));
        }
        report
    }

    /// Stops every component, dependents first, within the grace period.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.engine.shutdown().await
    }

    /// Stops the pipeline without losing what it holds, if it can:
    ///
    /// 1. ingest starts no new poll (one under way finishes and hands its
    ///    response on);
    /// 2. the pipeline waits until no poll is under way and nothing is in
    ///    flight (every payload received is applied or rejected), or until
    ///    `grace` has passed;
    /// 3. the engine shuts down, dependents first, within its own
    ///    [`EngineConfig::shutdown_grace`].
    ///
    /// The report says what was still in flight at the end, and which
    /// components did not stop. Not cancel-safe once the engine's shutdown
    /// has begun (see [`EngineHandle::shutdown`]).
    pub async fn drain(&self, grace: Duration) -> DrainReport {
        let began = tokio::time::Instant::now();
        self.ingest.stop_polling();
        let mut accounts = self.ledger.subscribe();
        let settled = async {
            self.ingest.polls_stopped().await;
            // The ledger lives in `self`: the wait cannot fail.
            let _ = accounts.wait_for(|a| a.total().in_flight() == 0).await;
        };
        let drained = tokio::time::timeout(grace, settled).await.is_ok();
        let waited = began.elapsed();
        let pending_at_deadline = self.ledger.snapshot().total().in_flight();
        if !drained {
            tracing::warn!(
                in_flight = pending_at_deadline,
                grace = ?grace,
                "grace period over; stopping with payloads in flight"
            );
        }
        let shutdown = self.engine.shutdown().await;
        let accounts = self.ledger.snapshot();
        let total = accounts.total();
        let pending = accounts
            .types()
            .iter()
            .filter(|(_, counts)| counts.in_flight() > 0)
            .map(|(kind, counts)| (kind.clone(), counts.in_flight()))
            .collect();
        let report = DrainReport {
            drained,
            waited,
            received: total.received,
            applied: total.applied,
            rejected: total.rejected_total(),
            pending,
            still_running: shutdown.still_running,
        };
        tracing::info!(
            drained = report.drained,
            received = report.received,
            applied = report.applied,
            rejected = report.rejected,
            in_flight = report.in_flight(),
            still_running = ?report.still_running,
            "pipeline stopped"
        );
        report
    }
}

/// The outcome of [`Pipeline::drain`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Whether polls stopped and nothing was in flight within the grace
    /// period.
    pub drained: bool,
    /// How long the drain waited, before the engine's shutdown.
    #[serde(serialize_with = "millis")]
    pub waited: Duration,
    /// Payloads received since start.
    pub received: u64,
    /// Payloads applied since start.
    pub applied: u64,
    /// Payloads rejected since start, for any reason.
    pub rejected: u64,
    /// Payloads still in flight when the pipeline stopped, by type: lost,
    /// since nothing keeps them across a restart. Empty when none.
    pub pending: BTreeMap<String, u64>,
    /// Components that did not stop within the engine's grace period.
    pub still_running: Vec<String>,
}

impl DrainReport {
    /// Payloads still in flight when the pipeline stopped.
    pub fn in_flight(&self) -> u64 {
        self.pending.values().sum()
    }

    /// Whether anything was lost: payloads in flight, or components that
    /// did not stop.
    pub fn lost(&self) -> bool {
        self.in_flight() > 0 || !self.still_running.is_empty()
    }
}

fn millis<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Declares a component whose state is `shared` and whose runs are `run`.
pub(crate) fn manifold<T, F, Fut>(
    name: &str,
    inputs: &[&str],
    shared: &Arc<T>,
    run: F,
    report: fn(&T) -> serde_json::Value,
) -> Manifold
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, crate::engine::Context) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let for_run = Arc::clone(shared);
    let for_report = Arc::clone(shared);
    Manifold {
        name: name.to_owned(),
        inputs: inputs.iter().map(|input| (*input).to_owned()).collect(),
        start: Arc::new(move |ctx| {
            let run = run(Arc::clone(&for_run), ctx.clone());
            // Every await of a run is cancel-safe, so a bounced run can stop
            // wherever it waits.
            Box::pin(async move {
                tokio::select! {
                    () = ctx.cancelled() => Ok(()),
                    result = run => result,
                }
            })
        }),
        report: Some(Arc::new(move || report(&for_report))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::GrantedDir;

    #[test]
    fn a_plugin_with_grants_only_keeps_the_runtime_limits() {
        let ingest = IngestConfig {
            source: crate::ingest::SourceConfig::new(
                "http://127.0.0.1:1/metrics".parse().expect("a URL"),
            ),
            retry: crate::backoff::BackoffSettings {
                min: Duration::from_millis(1),
                max: Duration::from_millis(2),
                factor: 2.0,
            },
            min_interval: Duration::ZERO,
            in_flight: 1,
        };
        let mut config = PipelineConfig::new(ingest);
        let tight = Limits {
            memory_bytes: 1 << 20,
            ..config.limits
        };
        let grants = Grants {
            env: [("TZ".to_owned(), "UTC".to_owned())].into(),
            dirs: vec![GrantedDir {
                host: "/srv/data".into(),
                guest: "/data".to_owned(),
            }],
        };
        config.plugin_limits.insert("tight".to_owned(), tight);
        config
            .plugin_grants
            .insert("granted".to_owned(), grants.clone());
        let settings = plugin_settings(&config);
        assert_eq!(
            settings,
            [
                ("granted".to_owned(), (config.limits, grants)),
                ("tight".to_owned(), (tight, Grants::default())),
            ]
            .into()
        );
    }
}
