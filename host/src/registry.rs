//! The set of loaded plugins: which plugin handles which type, and what
//! happens when plugin files come, change and go.
//!
//! The registry loads every component of the plugin source at start. With
//! a plugin directory, the `reload` component watches it and rescans it
//! after each burst of changes:
//!
//! - a new file is compiled and type-checked off the hot path; if it claims
//!   no name or type already claimed, it gets a handler component and its
//!   types are routed to it;
//! - a changed file is compiled the same way and offered to its plugin's
//!   handler, which swaps it in between batches after a successful trial
//!   (see [`crate::handler`]);
//! - a removed file stops its handler; batches still queued for it, and
//!   payloads of its types from then on, are rejected as `unhandled`;
//! - a file that fails to compile or is turned down leaves what runs as it
//!   was, and its error is shown at `/plugins`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::dispatch::{Route, Routes};
use crate::engine::{Context, EngineHandle, Manifold};
use crate::handler::Slot;
use crate::ledger::Ledger;
use crate::lock;
use crate::plugin::{self, Plugin, Runtime};

/// Where the plugins come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// The handlers built into the binary.
    Bundled,
    /// Every `.wasm` file of a directory, watched for changes.
    Dir(PathBuf),
    /// Plugins the embedder loaded itself (with a [`Runtime`] of its own,
    /// or [`Plugin::native`]); not watched. Benchmarks use it to run the
    /// pipeline with native handlers.
    Loaded(Vec<Plugin>),
}

/// A plugin file that could not be used.
#[derive(Clone, Debug, Serialize)]
pub struct PluginFailure {
    /// Where it came from.
    pub source: String,
    /// Why it was not loaded.
    pub error: String,
}

/// Something that happened to the plugin set.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadEvent {
    /// When.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    /// The file.
    pub source: String,
    /// `added`, `offered`, `removed` or `failed`.
    pub outcome: &'static str,
    /// The plugin and version concerned, or the error.
    pub detail: String,
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*at))
}

/// How many reload events are kept.
const EVENTS: usize = 32;

/// How long the directory must be quiet before a rescan.
pub const SETTLE: Duration = Duration::from_millis(200);

/// What a file was when last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    fingerprint: u64,
    /// The plugin it provides, if it loaded.
    plugin: Option<String>,
}

#[derive(Default)]
struct Inner {
    slots: BTreeMap<String, Arc<Slot>>,
    files: BTreeMap<String, Seen>,
    failures: BTreeMap<String, PluginFailure>,
}

/// The loaded plugins and their routes.
pub struct Registry {
    runtime: Runtime,
    ledger: Arc<Ledger>,
    handler_queue: usize,
    source: PluginSource,
    routes: watch::Sender<Routes>,
    inner: Mutex<Inner>,
    events: watch::Sender<VecDeque<ReloadEvent>>,
    /// Every event since start, by outcome (the list above keeps the latest).
    event_counts: Mutex<BTreeMap<&'static str, u64>>,
    engine: OnceLock<EngineHandle>,
}

impl Registry {
    /// Loads every plugin of `source`. A plugin that fails is reported, not
    /// fatal; a directory that cannot be read is.
    pub async fn load(
        runtime: Runtime,
        source: PluginSource,
        handler_queue: usize,
        ledger: Arc<Ledger>,
    ) -> anyhow::Result<Arc<Registry>> {
        let registry = Arc::new(Registry {
            runtime,
            ledger,
            handler_queue,
            source,
            routes: watch::Sender::new(Arc::new(HashMap::new())),
            inner: Mutex::default(),
            events: watch::Sender::new(VecDeque::new()),
            event_counts: Mutex::default(),
            engine: OnceLock::new(),
        });
        match &registry.source {
            PluginSource::Bundled => {
                for bundled in plugin::bundled() {
                    let source = format!("bundled:{}", bundled.name);
                    let loaded = registry.runtime.load(&source, bundled.bytes);
                    let loaded = loaded.map_err(|err| err.to_string());
                    registry.settle_new(&source, 0, loaded).await;
                }
            }
            PluginSource::Loaded(plugins) => {
                for plugin in plugins {
                    let source = plugin.source().to_owned();
                    registry.settle_new(&source, 0, Ok(plugin.clone())).await;
                }
            }
            PluginSource::Dir(_) => registry.rescan().await?,
        }
        Ok(registry)
    }

    /// The runtime the plugins are compiled and run by.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Receives the routing table, which changes as plugins come and go.
    pub fn routes(&self) -> watch::Receiver<Routes> {
        self.routes.subscribe()
    }

    /// The loaded plugins, by name.
    pub fn slots(&self) -> BTreeMap<String, Arc<Slot>> {
        lock(&self.inner).slots.clone()
    }

    /// Plugin files that could not be used.
    pub fn failures(&self) -> Vec<PluginFailure> {
        lock(&self.inner).failures.values().cloned().collect()
    }

    /// The latest reload events; changes are signalled.
    pub fn events(&self) -> watch::Receiver<VecDeque<ReloadEvent>> {
        self.events.subscribe()
    }

    /// How many events of each outcome (`added`, `offered`, `removed`,
    /// `failed`) happened since start.
    pub fn event_counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.event_counts).clone()
    }

    /// The manifold of the handler of `slot`.
    pub fn handler(slot: &Arc<Slot>) -> Manifold {
        crate::pipeline::manifold(
            &slot.component(),
            &["dispatch"],
            slot,
            Slot::run,
            Slot::report,
        )
    }

    /// The manifold of the `reload` component, when plugins come from a
    /// directory.
    pub fn watcher(self: &Arc<Self>) -> Option<Manifold> {
        let PluginSource::Dir(_) = &self.source else {
            return None;
        };
        let report = |registry: &Registry| {
            let PluginSource::Dir(dir) = &registry.source else {
                return serde_json::Value::Null;
            };
            serde_json::json!({
                "watching": dir.display().to_string(),
                "events": serde_json::to_value(&*registry.events.borrow()).unwrap_or_default(),
            })
        };
        Some(crate::pipeline::manifold(
            "reload",
            &[],
            self,
            Registry::watch,
            report,
        ))
    }

    /// Lets the registry start and stop handler components from now on.
    pub fn attach(&self, engine: EngineHandle) {
        let _ = self.engine.set(engine);
    }

    /// Watches the plugin directory and rescans it after each burst of
    /// changes. Cancel-safe.
    async fn watch(self: Arc<Self>, _ctx: Context) -> anyhow::Result<()> {
        use notify::Watcher as _;
        let PluginSource::Dir(dir) = &self.source else {
            return Ok(());
        };
        let changed = Arc::new(Notify::new());
        let signal = Arc::clone(&changed);
        let mut watcher = notify::recommended_watcher(move |_event| signal.notify_one())
            .context("cannot watch the plugin directory")?;
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        // Changes made before the watch began are seen by this first scan.
        self.rescan().await?;
        loop {
            changed.notified().await;
            // A copy or a build writes in bursts: wait for quiet.
            while tokio::time::timeout(SETTLE, changed.notified())
                .await
                .is_ok()
            {}
            self.rescan().await?;
        }
    }

    /// Brings the plugin set in line with the directory's files.
    pub async fn rescan(&self) -> anyhow::Result<()> {
        let PluginSource::Dir(dir) = &self.source else {
            return Ok(());
        };
        let mut present = BTreeMap::new();
        for path in wasm_files(dir)? {
            let source = path.display().to_string();
            match std::fs::read(&path) {
                Ok(bytes) => {
                    present.insert(source, bytes);
                }
                // Gone between the listing and the read: the next scan sees it.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    self.fail(&source, 0, format!("cannot read: {err}"));
                }
            }
        }
        let known: Vec<(String, Seen)> = lock(&self.inner)
            .files
            .iter()
            .map(|(s, seen)| (s.clone(), seen.clone()))
            .collect();
        for (source, seen) in &known {
            if !present.contains_key(source) {
                self.remove_file(source, seen).await;
            }
        }
        for (source, bytes) in present {
            let fingerprint = fingerprint(&bytes);
            let seen = lock(&self.inner).files.get(&source).cloned();
            if seen
                .as_ref()
                .is_some_and(|seen| seen.fingerprint == fingerprint)
            {
                continue;
            }
            let runtime = self.runtime.clone();
            let compiled = source.clone();
            let loaded = tokio::task::spawn_blocking(move || runtime.load(&compiled, &bytes))
                .await
                .context("compiling a plugin panicked")?
                .map_err(|err| err.to_string());
            match seen.and_then(|seen| seen.plugin) {
                Some(name) => self.settle_changed(&source, fingerprint, &name, loaded),
                None => self.settle_new(&source, fingerprint, loaded).await,
            }
        }
        Ok(())
    }

    /// Adds the plugin of a new file, or records why not.
    async fn settle_new(&self, source: &str, fingerprint: u64, loaded: Result<Plugin, String>) {
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(error) => return self.fail(source, fingerprint, error),
        };
        let slot = {
            let mut inner = lock(&self.inner);
            if let Err(error) = claim(&inner.slots, &plugin) {
                drop(inner);
                return self.fail(source, fingerprint, error);
            }
            let slot = Arc::new(Slot::new(
                plugin,
                self.handler_queue,
                Arc::clone(&self.ledger),
            ));
            inner
                .slots
                .insert(slot.name().to_owned(), Arc::clone(&slot));
            let seen = Seen {
                fingerprint,
                plugin: Some(slot.name().to_owned()),
            };
            inner.files.insert(source.to_owned(), seen);
            inner.failures.remove(source);
            self.publish_routes(&inner);
            slot
        };
        let plugin = slot.plugin();
        tracing::info!(
            plugin = %plugin.name(), version = %plugin.version(), types = ?plugin.types(),
            %source, "plugin loaded"
        );
        let detail = format!("{} {}", plugin.name(), plugin.version());
        self.event(source, "added", detail);
        if let Some(engine) = self.engine.get()
            && let Err(err) = engine.add(Registry::handler(&slot)).await
        {
            tracing::error!(plugin = %slot.name(), error = %err, "cannot start the handler");
        }
    }

    /// Offers the new version in a changed file to its plugin's handler.
    fn settle_changed(
        &self,
        source: &str,
        fingerprint: u64,
        name: &str,
        loaded: Result<Plugin, String>,
    ) {
        let slot = lock(&self.inner).slots.get(name).cloned();
        let offered = loaded.and_then(|plugin| match &slot {
            Some(slot) => slot.offer(plugin.clone()).map(|()| plugin),
            None => Err(format!("plugin {name} is no longer loaded")),
        });
        match offered {
            Ok(plugin) => {
                let mut inner = lock(&self.inner);
                let seen = Seen {
                    fingerprint,
                    plugin: Some(name.to_owned()),
                };
                inner.files.insert(source.to_owned(), seen);
                inner.failures.remove(source);
                drop(inner);
                tracing::info!(plugin = %name, version = %plugin.version(), %source, "new version offered");
                self.event(source, "offered", format!("{name} {}", plugin.version()));
            }
            Err(error) => {
                // The running version carries on; the file is judged again
                // when it changes.
                let mut inner = lock(&self.inner);
                if let Some(seen) = inner.files.get_mut(source) {
                    seen.fingerprint = fingerprint;
                }
                drop(inner);
                self.fail(source, fingerprint, error);
            }
        }
    }

    /// Stops the plugin of a removed file and rejects what it still held.
    async fn remove_file(&self, source: &str, seen: &Seen) {
        let slot = {
            let mut inner = lock(&self.inner);
            inner.files.remove(source);
            inner.failures.remove(source);
            let slot = seen
                .plugin
                .as_ref()
                .and_then(|name| inner.slots.remove(name));
            self.publish_routes(&inner);
            slot
        };
        let Some(slot) = slot else { return };
        if let Some(engine) = self.engine.get()
            && let Err(err) = engine.remove(&slot.component()).await
        {
            tracing::error!(plugin = %slot.name(), error = %err, "cannot stop the handler");
        }
        slot.close().await;
        tracing::info!(plugin = %slot.name(), %source, "plugin removed");
        self.event(source, "removed", slot.name().to_owned());
    }

    fn fail(&self, source: &str, fingerprint: u64, error: String) {
        tracing::error!(plugin = %source, %error, "plugin not loaded");
        let mut inner = lock(&self.inner);
        inner.files.entry(source.to_owned()).or_insert(Seen {
            fingerprint,
            plugin: None,
        });
        let failure = PluginFailure {
            source: source.to_owned(),
            error: error.clone(),
        };
        inner.failures.insert(source.to_owned(), failure);
        drop(inner);
        self.event(source, "failed", error);
    }

    fn event(&self, source: &str, outcome: &'static str, detail: String) {
        let event = ReloadEvent {
            at: SystemTime::now(),
            source: source.to_owned(),
            outcome,
            detail,
        };
        *lock(&self.event_counts).entry(outcome).or_default() += 1;
        self.events.send_modify(|events| {
            if events.len() == EVENTS {
                events.pop_front();
            }
            events.push_back(event);
        });
    }

    fn publish_routes(&self, inner: &Inner) {
        let mut routes = HashMap::new();
        for slot in inner.slots.values() {
            for kind in slot.types() {
                let route = Route {
                    plugin: slot.name().to_owned(),
                    queue: slot.sender(),
                    failing: slot.failing(),
                };
                routes.insert(kind.clone(), route);
            }
        }
        self.routes.send_replace(Arc::new(routes));
    }
}

/// Checks that `plugin` takes no name or type already taken.
fn claim(slots: &BTreeMap<String, Arc<Slot>>, plugin: &Plugin) -> Result<(), String> {
    if slots.contains_key(plugin.name()) {
        return Err(format!(
            "another plugin is already named {:?}",
            plugin.name()
        ));
    }
    for slot in slots.values() {
        if let Some(kind) = plugin
            .types()
            .iter()
            .find(|kind| slot.types().contains(kind))
        {
            return Err(format!(
                "type {kind:?} is already handled by plugin {:?}",
                slot.name()
            ));
        }
    }
    Ok(())
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
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
