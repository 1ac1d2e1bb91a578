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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::dispatch::{Dispatch, Route, Routes};
use crate::engine::{Engine, EngineConfig, EngineHandle, Manifold, ShutdownReport};
use crate::handler::Slot;
use crate::ingest::{Ingest, IngestConfig};
use crate::ledger::Ledger;
use crate::plugin::{self, Limits, Plugin, Runtime};

/// Where the plugins come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// The handlers built into the binary.
    Bundled,
    /// Every `.wasm` file of a directory.
    Dir(PathBuf),
}

/// Everything the pipeline needs to start.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The poller's settings.
    pub ingest: IngestConfig,
    /// Where the plugins come from.
    pub plugins: PluginSource,
    /// Limits of each plugin's sandbox.
    pub limits: Limits,
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
            engine: EngineConfig::default(),
            ingest_queue: 2,
            handler_queue: 4,
        }
    }
}

/// A plugin file that could not be used.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginFailure {
    /// Where it came from.
    pub source: String,
    /// Why it was not loaded.
    pub error: String,
}

/// A running pipeline.
pub struct Pipeline {
    engine: EngineHandle,
    ledger: Arc<Ledger>,
    slots: BTreeMap<String, Arc<Slot>>,
    failures: Vec<PluginFailure>,
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
        let runtime = Runtime::new(config.limits).context("cannot start the wasm runtime")?;
        let (plugins, mut failures) = load_plugins(&runtime, &config.plugins)?;

        let mut slots = BTreeMap::new();
        let mut routes = HashMap::new();
        for plugin in plugins {
            if let Err(error) = claim(&mut routes, &slots, &plugin) {
                tracing::error!(plugin = %plugin.source(), %error, "plugin not loaded");
                failures.push(PluginFailure {
                    source: plugin.source().to_owned(),
                    error,
                });
                continue;
            }
            let slot = Arc::new(Slot::new(plugin, config.handler_queue, Arc::clone(&ledger)));
            for kind in slot.plugin().types() {
                let route = Route {
                    plugin: slot.plugin().name().to_owned(),
                    queue: slot.sender(),
                };
                routes.insert(kind.clone(), route);
            }
            slots.insert(slot.plugin().name().to_owned(), slot);
        }
        for slot in slots.values() {
            let plugin = slot.plugin();
            tracing::info!(
                plugin = %plugin.name(), version = %plugin.version(), types = ?plugin.types(),
                source = %plugin.source(), "plugin loaded"
            );
        }
        let (_routes_tx, routes_rx) = watch::channel::<Routes>(Arc::new(routes));

        let (ingest_tx, ingest_rx) = mpsc::channel(config.ingest_queue);
        let ingest = Arc::new(Ingest::new(config.ingest, ingest_tx, Arc::clone(&ledger))?);
        let dispatch = Arc::new(Dispatch::new(ingest_rx, routes_rx, Arc::clone(&ledger)));

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
        for slot in slots.values() {
            manifolds.push(manifold(
                &slot.component(),
                &["dispatch"],
                slot,
                Slot::run,
                Slot::report,
            ));
        }
        let engine = Engine::start(config.engine, manifolds).context("cannot start the engine")?;
        Ok(Pipeline {
            engine,
            ledger,
            slots,
            failures,
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

    /// The loaded plugins, by name.
    pub fn slots(&self) -> &BTreeMap<String, Arc<Slot>> {
        &self.slots
    }

    /// Plugin files that could not be used.
    pub fn failures(&self) -> &[PluginFailure] {
        &self.failures
    }

    /// Every plugin's description, counters and aggregate, as JSON.
    pub async fn plugins_report(&self) -> Vec<serde_json::Value> {
        let mut report = Vec::with_capacity(self.slots.len());
        for slot in self.slots.values() {
            let plugin = slot.plugin();
            let (state, state_error) = match slot.render().await {
                Ok(state) => (state, None),
                Err(err) => (serde_json::Value::Null, Some(err.to_string())),
            };
            report.push(serde_json::json!({
                "name": plugin.name(),
                "version": plugin.version(),
                "source": plugin.source(),
                "types": plugin.types(),
                "component": slot.component(),
                "state": state,
                "state_error": state_error,
                "handler": slot.report(),
                "dead_letters": slot.dead_letters(),
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
fn manifold<T, F, Fut>(
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

/// Checks that `plugin` takes no type or name already taken.
fn claim(
    routes: &mut HashMap<String, Route>,
    slots: &BTreeMap<String, Arc<Slot>>,
    plugin: &Plugin,
) -> Result<(), String> {
    if slots.contains_key(plugin.name()) {
        return Err(format!(
            "another plugin is already named {:?}",
            plugin.name()
        ));
    }
    for kind in plugin.types() {
        if let Some(route) = routes.get(kind) {
            return Err(format!(
                "type {kind:?} is already handled by plugin {:?}",
                route.plugin
            ));
        }
    }
    Ok(())
}

/// Loads the plugins of `source`; a file that fails is reported, not fatal.
fn load_plugins(
    runtime: &Runtime,
    source: &PluginSource,
) -> anyhow::Result<(Vec<Plugin>, Vec<PluginFailure>)> {
    let mut candidates: Vec<(String, Result<Vec<u8>, String>)> = Vec::new();
    match source {
        PluginSource::Bundled => {
            for bundled in plugin::bundled() {
                candidates.push((
                    format!("bundled:{}", bundled.name),
                    Ok(bundled.bytes.to_vec()),
                ));
            }
        }
        PluginSource::Dir(dir) => {
            for path in wasm_files(dir)? {
                let bytes = std::fs::read(&path).map_err(|err| format!("cannot read: {err}"));
                candidates.push((path.display().to_string(), bytes));
            }
        }
    }
    let mut plugins = Vec::new();
    let mut failures = Vec::new();
    for (source, bytes) in candidates {
        match bytes.and_then(|bytes| runtime.load(&source, &bytes).map_err(|e| e.to_string())) {
            Ok(plugin) => plugins.push(plugin),
            Err(error) => {
                tracing::error!(plugin = %source, %error, "plugin not loaded");
                failures.push(PluginFailure { source, error });
            }
        }
    }
    Ok((plugins, failures))
}

/// The `.wasm` files of `dir`, in name order.
fn wasm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the plugin directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
