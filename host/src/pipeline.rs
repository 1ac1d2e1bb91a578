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

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::dispatch::Dispatch;
use crate::engine::{Engine, EngineConfig, EngineHandle, Manifold, ShutdownReport};
use crate::ingest::{Ingest, IngestConfig};
use crate::ledger::Ledger;
use crate::plugin::{CompileCache, Limits, Runtime};
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
            ingest,
            plugins: PluginSource::Bundled,
            limits: Limits::default(),
            cache: CompileCache::Off,
            engine: EngineConfig::default(),
            ingest_queue: 2,
            handler_queue: 4,
        }
    }
}

/// A running pipeline.
pub struct Pipeline {
    engine: EngineHandle,
    ledger: Arc<Ledger>,
    registry: Arc<Registry>,
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
        let runtime = Runtime::with_cache(config.limits, config.cache)
            .context("cannot start the wasm runtime")?;
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
