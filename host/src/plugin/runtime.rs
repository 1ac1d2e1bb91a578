//! The wasmtime engine, and the plugins and instances made with it.
//!
//! A [`Runtime`] owns one engine, with epoch interruption on and a ticker
//! thread that advances the epoch every [`TICK`], and one linker that
//! provides WASI 0.2 (sync) and nothing else. [`Runtime::load`] compiles a
//! component, type-checks it against the `plugin` world and instantiates it
//! once to read its metadata, giving a [`Plugin`]. Each
//! [`Plugin::instantiate`] then gives an [`Instance`] with a store of its
//! own, sandboxed as [`super::sandbox`] describes and limited by
//! [`Limits`]: every call is given the deadline of
//! [`Limits::call_deadline`], after which the epoch interrupts it.
//!
//! A runtime made by [`Runtime::with_cache`] keeps the components it
//! compiles on disk and loads them from there when their bytes come again,
//! in this process or the next: see [`super::cache`].
//!
//! [`Plugin::native`] makes a plugin whose handler is compiled into the
//! host instead: no sandbox, no limits, the same [`Instance`] interface.
//! It exists so that benchmarks can run the pipeline with the bundled
//! handlers' logic compiled natively and compare (see `BENCHMARKS.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap, WasmBacktrace};

use super::bindings;
use super::cache::{CacheStats, CompileCache, DiskCache};
use super::error::{CallError, LoadError};
use super::limits::Limits;
use super::sandbox::{self, Grants, Sandbox};
use super::wit;

/// How often the ticker thread advances the engine's epoch: the resolution
/// of call deadlines.
pub const TICK: Duration = Duration::from_millis(5);

/// The longest a plugin's name may be.
const MAX_NAME_LEN: usize = 64;

/// The engine that compiles and runs plugins. Cheap to clone.
///
/// Its ticker thread runs until the runtime, and every plugin and instance
/// made with it, are dropped: an instance outliving its runtime is still
/// held to its deadline.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
    /// What plugins with limits of their own share instead of `shared`:
    /// the same engine, linker and ticker, other limits.
    per_plugin: Arc<BTreeMap<String, Arc<Shared>>>,
    /// What the first instance of a plugin being loaded is held to, before
    /// its name, and so its own limits, are known: the largest of every
    /// limit, so that no plugin fails to load under limits tighter than
    /// those it was given. `None` when no plugin has limits of its own.
    probe: Option<Arc<Shared>>,
}

/// What a runtime, its plugins and their instances share.
struct Shared {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    /// What the plugins held to these limits are granted of the host.
    grants: Grants,
    /// Epoch ticks a call may run: the call deadline, rounded up to whole
    /// ticks, plus the tick that may be about to happen as the call starts.
    deadline_ticks: u64,
    /// The cache of compiled components, when on.
    cache: Option<DiskCache>,
    /// One per engine, shared with the limits of single plugins: a second
    /// ticker would make the epoch, and so every deadline, run faster.
    _ticker: Arc<Ticker>,
}

impl Shared {
    /// The same engine, linker and ticker, with other limits and grants; no
    /// cache (components are compiled with the runtime's `Shared`).
    fn with_limits(&self, limits: Limits, grants: Grants) -> anyhow::Result<Shared> {
        check_limits(&limits)?;
        Ok(Shared {
            engine: self.engine.clone(),
            linker: self.linker.clone(),
            limits,
            grants,
            deadline_ticks: deadline_ticks(&limits),
            cache: None,
            _ticker: Arc::clone(&self._ticker),
        })
    }
}

/// Fails on limits that cannot work: a zero deadline or memory.
fn check_limits(limits: &Limits) -> anyhow::Result<()> {
    anyhow::ensure!(
        !limits.call_deadline.is_zero(),
        "the plugin call deadline must be above zero"
    );
    anyhow::ensure!(
        limits.memory_bytes > 0,
        "the plugin memory limit must be above zero"
    );
    Ok(())
}

/// Epoch ticks a call may run under `limits`: the deadline rounded up to
/// whole ticks, plus the tick that may be about to happen as it starts.
fn deadline_ticks(limits: &Limits) -> u64 {
    let ticks = limits.call_deadline.as_nanos().div_ceil(TICK.as_nanos()) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

impl Runtime {
    /// Creates the engine, the linker and the ticker thread, without a
    /// cache: every load compiles. Fails when `limits` cannot work (a zero
    /// deadline or memory), or when wasmtime cannot be set up on this
    /// machine.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        Self::with_cache(limits, CompileCache::Off)
    }

    /// Like [`Runtime::new`], and with [`CompileCache::Dir`] keeps compiled
    /// components in that directory, creating it if need be. Fails, naming
    /// the directory, when it cannot be created or written, or when another
    /// user owns it or may write it.
    pub fn with_cache(limits: Limits, cache: CompileCache) -> anyhow::Result<Self> {
        check_limits(&limits)?;

        let cache = match &cache {
            CompileCache::Off => None,
            CompileCache::Dir(dir) => Some(DiskCache::open(dir)?),
        };
        let config = engine_config(cache.as_ref().map(DiskCache::wasmtime));
        let engine = Engine::new(&config)
            .map_err(to_anyhow)
            .context("cannot create the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        sandbox::add_to_linker(&mut linker)
            .map_err(to_anyhow)
            .context("cannot add WASI to the plugin linker")?;
        let ticker = Ticker::start(engine.clone()).context("cannot start the epoch ticker")?;

        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                limits,
                grants: Grants::default(),
                deadline_ticks: deadline_ticks(&limits),
                cache,
                _ticker: Arc::new(ticker),
            }),
            per_plugin: Arc::default(),
            probe: None,
        })
    }

    /// This runtime, where the plugins named in `limits` are held to the
    /// limits given for them instead of the runtime's. A plugin is known by
    /// the name its metadata gives, so its metadata is read under the
    /// largest of all the limits; once its name is known, it must also
    /// instantiate under its own. Fails, naming the plugin, on limits that
    /// cannot work.
    pub fn with_plugin_limits(self, limits: BTreeMap<String, Limits>) -> anyhow::Result<Self> {
        let settings = limits
            .into_iter()
            .map(|(name, limits)| (name, (limits, Grants::default())))
            .collect();
        self.with_plugin_settings(settings)
    }

    /// Like [`Runtime::with_plugin_limits`], where each plugin named is
    /// also granted what its [`Grants`] say. The first instance of a plugin
    /// being loaded, which reads its name, is granted nothing.
    pub fn with_plugin_settings(
        mut self,
        settings: BTreeMap<String, (Limits, Grants)>,
    ) -> anyhow::Result<Self> {
        let mut per_plugin = BTreeMap::new();
        let mut widest = self.shared.limits;
        for (name, (limits, grants)) in settings {
            let shared = self
                .shared
                .with_limits(limits, grants)
                .with_context(|| format!("invalid limits for plugin {name}"))?;
            widest = widest.widest(&limits);
            per_plugin.insert(name, Arc::new(shared));
        }
        self.probe = if per_plugin.is_empty() {
            None
        } else {
            Some(Arc::new(
                self.shared.with_limits(widest, Grants::default())?,
            ))
        };
        self.per_plugin = Arc::new(per_plugin);
        Ok(self)
    }

    /// The limits the plugin `name` is held to.
    pub fn limits_of(&self, name: &str) -> &Limits {
        self.per_plugin
            .get(name)
            .map_or(&self.shared.limits, |shared| &shared.limits)
    }

    /// The limits every instance is held to.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// How the cache served the loads so far; zeros when it is off.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared
            .cache
            .as_ref()
            .map(DiskCache::stats)
            .unwrap_or_default()
    }

    /// Compiles `bytes` as a plugin, or loads it from the cache, checks it
    /// against the `plugin` world and reads its metadata from a first
    /// instance. `source` names the plugin in every error: its file, or
    /// `"bundled:<name>"`.
    ///
    /// Compiling takes from milliseconds to a second, loading from the
    /// cache a few milliseconds: call it where blocking is allowed.
    pub fn load(&self, source: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let plugin = source.to_owned();
        if let Some(cache) = &self.shared.cache {
            cache.count_lookup();
        }
        let component =
            Component::new(&self.shared.engine, bytes).map_err(|err| LoadError::Compile {
                plugin: plugin.clone(),
                reason: describe(&err),
            })?;
        let instance_pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|err| LoadError::Imports {
                plugin: plugin.clone(),
                reason: describe(&err),
            })?;
        let pre = bindings::PluginPre::new(instance_pre).map_err(|err| LoadError::World {
            plugin: plugin.clone(),
            reason: describe(&err),
        })?;

        // Until the metadata is read, the instance goes by the source.
        let label: Arc<str> = Arc::from(source);
        let probe = self.probe.as_ref().unwrap_or(&self.shared);
        let mut instance =
            Instance::start(probe, &pre, label).map_err(|error| LoadError::Instantiate {
                plugin: plugin.clone(),
                error,
            })?;
        let metadata = instance.metadata().map_err(|error| LoadError::Metadata {
            plugin: plugin.clone(),
            error,
        })?;
        check_metadata(&metadata).map_err(|reason| LoadError::InvalidMetadata {
            plugin: plugin.clone(),
            reason,
        })?;

        // From here on, the plugin is held to its own limits, if it has any.
        let shared = self.per_plugin.get(&metadata.name).unwrap_or(&self.shared);
        if !Arc::ptr_eq(shared, probe) {
            Instance::start(shared, &pre, Arc::from(source)).map_err(|error| {
                LoadError::Instantiate {
                    plugin: plugin.clone(),
                    error,
                }
            })?;
        }
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: Arc::from(metadata.name.as_str()),
                source: plugin,
                metadata,
                backend: Backend::Wasm {
                    pre,
                    shared: Arc::clone(shared),
                },
            }),
        })
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.shared.cache.as_ref().map(DiskCache::dir);
        f.debug_struct("Runtime")
            .field("limits", &self.shared.limits)
            .field("cache", &cache)
            .finish_non_exhaustive()
    }
}

/// The engine's configuration: epoch interruption for call deadlines, the
/// component model, and `cache` if any.
pub(super) fn engine_config(cache: Option<&wasmtime::Cache>) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        .cache(cache.cloned());
    config
}

/// Checks what the host relies on: a name of at most [`MAX_NAME_LEN`]
/// ASCII letters, digits, `_`, `-` or `.`; a version; at least one type,
/// none empty or repeated.
fn check_metadata(metadata: &wit::Metadata) -> Result<(), String> {
    let name = &metadata.name;
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.len() > MAX_NAME_LEN || !name.chars().all(name_char) {
        return Err(format!(
            "name {name:?} is not 1 to {MAX_NAME_LEN} ASCII letters, digits, '_', '-' or '.'"
        ));
    }
    if metadata.version.trim().is_empty() {
        return Err("empty version".to_owned());
    }
    if metadata.types.is_empty() {
        return Err("no types".to_owned());
    }
    for (index, kind) in metadata.types.iter().enumerate() {
        if kind.is_empty() {
            return Err("empty type".to_owned());
        }
        if metadata.types[..index].contains(kind) {
            return Err(format!("type {kind:?} listed twice"));
        }
    }
    Ok(())
}

/// The `apply` of a handler compiled into the host: the same contract as
/// the WIT export (`wit/plugin.wit`), over the host's types.
pub type NativeApply = fn(&[u8], &wit::Batch) -> Result<wit::Applied, String>;

/// The `render` of a handler compiled into the host.
pub type NativeRender = fn(&[u8]) -> Result<String, String>;

/// A loaded plugin: its metadata and its component, compiled and
/// type-checked, ready to instantiate. Cheap to clone.
///
/// Two plugins are equal when they are clones of one load.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    /// `metadata.name`, shared with the plugin's instances.
    name: Arc<str>,
    source: String,
    metadata: wit::Metadata,
    backend: Backend,
}

/// What runs a plugin's calls.
enum Backend {
    /// A component, pre-instantiated with the runtime's linker.
    Wasm {
        pre: bindings::PluginPre<Sandbox>,
        shared: Arc<Shared>,
    },
    /// Functions compiled into the host.
    Native {
        apply: NativeApply,
        render: NativeRender,
    },
}

impl Plugin {
    /// A plugin whose handler is compiled into the host: `apply` and
    /// `render` are called directly, with no sandbox and no limits (a
    /// panic is caught and reported as a trap). Its source is
    /// `"native:<name>"`. Fails when `metadata` is not usable, as a
    /// component's would.
    pub fn native(
        metadata: wit::Metadata,
        apply: NativeApply,
        render: NativeRender,
    ) -> Result<Plugin, LoadError> {
        let source = format!("native:{}", metadata.name);
        check_metadata(&metadata).map_err(|reason| LoadError::InvalidMetadata {
            plugin: source.clone(),
            reason,
        })?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: Arc::from(metadata.name.as_str()),
                source,
                metadata,
                backend: Backend::Native { apply, render },
            }),
        })
    }

    /// The handler's name, unique among loaded plugins (`"load_avg"`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The handler's version (`"0.1.0"`).
    pub fn version(&self) -> &str {
        &self.inner.metadata.version
    }

    /// The payload types the handler accepts; never empty.
    pub fn types(&self) -> &[String] {
        &self.inner.metadata.types
    }

    /// Where the plugin came from: its file, or `"bundled:<name>"`.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The limits its instances are held to; `None` for a native plugin,
    /// which has none.
    pub fn limits(&self) -> Option<&Limits> {
        match &self.inner.backend {
            Backend::Wasm { shared, .. } => Some(&shared.limits),
            Backend::Native { .. } => None,
        }
    }

    /// A fresh instance, with a store of its own. Cheap (microseconds): the
    /// component is compiled once, at load.
    pub fn instantiate(&self) -> Result<Instance, CallError> {
        let name = Arc::clone(&self.inner.name);
        match &self.inner.backend {
            Backend::Wasm { pre, shared } => Instance::start(shared, pre, name),
            Backend::Native { apply, render } => Ok(Instance {
                name,
                backend: InstanceBackend::Native {
                    apply: *apply,
                    render: *render,
                },
            }),
        }
    }
}

impl PartialEq for Plugin {
    fn eq(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Plugin {}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("types", &self.types())
            .field("source", &self.source())
            .finish_non_exhaustive()
    }
}

/// A running instance of a plugin, with its own store.
///
/// Calls block the calling thread for up to the call deadline, and a
/// guest's WASI calls may enter the tokio runtime to wait: run them where
/// blocking is allowed (`spawn_blocking`), never on an async worker thread.
/// After a fatal [`CallError`] the instance is dead; drop it and
/// instantiate anew.
pub struct Instance {
    /// The plugin's name, or its source while it is being loaded.
    name: Arc<str>,
    backend: InstanceBackend,
}

/// What an instance calls into.
enum InstanceBackend {
    /// A component instance in a store of its own.
    Wasm(Wasm),
    /// A handler compiled into the host.
    Native {
        apply: NativeApply,
        render: NativeRender,
    },
}

/// A component instance and its store.
struct Wasm {
    store: Store<Sandbox>,
    world: bindings::Plugin,
    /// Keeps the engine's ticker running while the instance lives.
    shared: Arc<Shared>,
}

impl Instance {
    fn start(
        shared: &Arc<Shared>,
        pre: &bindings::PluginPre<Sandbox>,
        name: Arc<str>,
    ) -> Result<Self, CallError> {
        let sandbox =
            Sandbox::new(&shared.limits, &shared.grants).map_err(|reason| CallError::Sandbox {
                plugin: name.to_string(),
                reason,
            })?;
        let mut store = Store::new(&shared.engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        store.set_epoch_deadline(shared.deadline_ticks);
        match pre.instantiate(&mut store) {
            Ok(world) => Ok(Self {
                name,
                backend: InstanceBackend::Wasm(Wasm {
                    store,
                    world,
                    shared: Arc::clone(shared),
                }),
            }),
            Err(err) => Err(classify(&name, "instantiate", &store, shared, &err)),
        }
    }

    /// Applies `batch` to the aggregate encoded in `state` and returns the
    /// new aggregate and the payloads the handler refused.
    ///
    /// Fails with [`CallError::BadOutput`] when a refusal names a payload
    /// that is not in the batch, or one already refused.
    pub fn apply(&mut self, state: &[u8], batch: &wit::Batch) -> Result<wit::Applied, CallError> {
        let applied = match &mut self.backend {
            InstanceBackend::Native { apply, .. } => {
                call_native(&self.name, "apply", || apply(state, batch))?
            }
            InstanceBackend::Wasm(wasm) => wasm.call(&self.name, "apply", |world, store| {
                world
                    .sluice_plugin_handler()
                    .call_apply(store, state, batch)
            })?,
        }
        .map_err(CallError::Guest)?;
        check_rejections(&applied.rejected, batch_len(batch))?;
        Ok(applied)
    }

    /// Renders the aggregate encoded in `state` as a JSON object.
    ///
    /// Fails with [`CallError::BadOutput`] when the handler returns text
    /// that is not a JSON object.
    pub fn render(&mut self, state: &[u8]) -> Result<serde_json::Value, CallError> {
        let text = match &mut self.backend {
            InstanceBackend::Native { render, .. } => {
                call_native(&self.name, "render", || render(state))?
            }
            InstanceBackend::Wasm(wasm) => wasm.call(&self.name, "render", |world, store| {
                world.sluice_plugin_handler().call_render(store, state)
            })?,
        }
        .map_err(CallError::Guest)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| CallError::BadOutput(format!("render returned invalid JSON: {err}")))?;
        if !value.is_object() {
            return Err(CallError::BadOutput(
                "render returned JSON that is not an object".to_owned(),
            ));
        }
        Ok(value)
    }

    /// The handler's description, as a component gives it; a native
    /// handler's is known without asking.
    fn metadata(&mut self) -> Result<wit::Metadata, CallError> {
        match &mut self.backend {
            InstanceBackend::Wasm(wasm) => wasm.call(&self.name, "metadata", |world, store| {
                world.sluice_plugin_handler().call_metadata(store)
            }),
            InstanceBackend::Native { .. } => Err(CallError::BadOutput(
                "a native handler is not asked for its metadata".to_owned(),
            )),
        }
    }
}

impl Wasm {
    /// Calls `function` through `call` under the limits, then logs what the
    /// guest wrote to stdout and stderr.
    fn call<R>(
        &mut self,
        name: &str,
        function: &'static str,
        call: impl FnOnce(&bindings::Plugin, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.data_mut().limiter.reset();
        self.store.set_epoch_deadline(self.shared.deadline_ticks);
        let result = call(&self.world, &mut self.store);
        self.log_output(name, function);
        result.map_err(|err| classify(name, function, &self.store, &self.shared, &err))
    }

    fn log_output(&self, name: &str, function: &'static str) {
        let sandbox = self.store.data();
        if let Some((output, dropped)) = sandbox.stdout.take() {
            tracing::debug!(plugin = %name, function, dropped, %output, "plugin stdout");
        }
        if let Some((output, dropped)) = sandbox.stderr.take() {
            tracing::warn!(plugin = %name, function, dropped, %output, "plugin stderr");
        }
    }
}

/// Calls a native handler's `function`; a panic in it is reported as a
/// trap, as it would be in wasm.
fn call_native<R>(
    name: &str,
    function: &'static str,
    call: impl FnOnce() -> R,
) -> Result<R, CallError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "native handler panicked".to_owned());
        CallError::Trap {
            plugin: name.to_owned(),
            function,
            message,
        }
    })
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.name)
            .finish_non_exhaustive()
    }
}

/// Tells apart the ways a call into wasm can fail. A refused memory growth
/// comes first: a guest refused memory usually traps next.
fn classify(
    name: &str,
    function: &'static str,
    store: &Store<Sandbox>,
    shared: &Shared,
    err: &wasmtime::Error,
) -> CallError {
    let plugin = name.to_owned();
    if store.data().limiter.memory_refused() {
        CallError::Memory {
            plugin,
            function,
            limit: shared.limits.memory_bytes,
        }
    } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        CallError::Deadline {
            plugin,
            function,
            deadline: shared.limits.call_deadline,
        }
    } else {
        CallError::Trap {
            plugin,
            function,
            message: describe(err),
        }
    }
}

/// Number of payloads in `batch`.
fn batch_len(batch: &wit::Batch) -> usize {
    match batch {
        wit::Batch::LoadAvg(values) => values.len(),
        wit::Batch::CpuUsage(batch) => batch.lengths.len(),
        wit::Batch::LastKernelUpgrade(instants) => instants.len(),
        wit::Batch::Json(batch) => batch.values.len(),
    }
}

/// Checks that every refusal names a payload of the batch, once.
fn check_rejections(rejected: &[wit::Rejection], batch_len: usize) -> Result<(), CallError> {
    let mut seen = vec![false; batch_len];
    for rejection in rejected {
        let index = rejection.index as usize;
        let Some(seen) = seen.get_mut(index) else {
            return Err(CallError::BadOutput(format!(
                "apply rejected payload {index} of a batch of {batch_len}"
            )));
        };
        if std::mem::replace(seen, true) {
            return Err(CallError::BadOutput(format!(
                "apply rejected payload {index} twice"
            )));
        }
    }
    Ok(())
}

/// A wasmtime error and its causes on one line, without the wasm backtrace
/// that a trap carries (a stripped plugin's frames have no names).
fn describe(err: &wasmtime::Error) -> String {
    let backtrace = err.downcast_ref::<WasmBacktrace>().map(ToString::to_string);
    err.chain()
        .map(|cause| cause.to_string())
        .filter(|cause| Some(cause) != backtrace.as_ref())
        .map(|cause| cause.replace('\n', " ").trim().to_owned())
        .collect::<Vec<_>>()
        .join(": ")
}

pub(super) fn to_anyhow(err: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from_boxed(err.into_boxed_dyn_error())
}

/// The thread that advances the engine's epoch every [`TICK`], until its
/// owner drops it.
struct Ticker {
    /// Dropping it wakes the thread and tells it to stop.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-plugin-epoch".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only loops on the channel, which is now closed; it
            // cannot panic, and ends within one tick.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(name: &str, version: &str, types: &[&str]) -> wit::Metadata {
        wit::Metadata {
            name: name.to_owned(),
            version: version.to_owned(),
            types: types.iter().map(|kind| (*kind).to_owned()).collect(),
        }
    }

    #[test]
    fn metadata_the_host_cannot_use_is_refused() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let cases = [
            (metadata("", "1.0.0", &["a"]), "empty name"),
            (metadata("load avg", "1.0.0", &["a"]), "is not 1 to 64"),
            (metadata(&long, "1.0.0", &["a"]), "is not 1 to 64"),
            (metadata("a", " ", &["a"]), "empty version"),
            (metadata("a", "1.0.0", &[]), "no types"),
            (metadata("a", "1.0.0", &["a", ""]), "empty type"),
            (
                metadata("a", "1.0.0", &["a", "b", "a"]),
                "type \"a\" listed twice",
            ),
        ];
        for (metadata, expected) in cases {
            let reason = check_metadata(&metadata).expect_err("invalid");
            assert!(reason.contains(expected), "{metadata:?}: {reason}");
        }
        let valid = metadata("load_avg-2.x", "0.1.0", &["load_avg", "load average"]);
        assert_eq!(check_metadata(&valid), Ok(()));
    }

    #[test]
    fn rejections_must_name_payloads_of_the_batch_once() {
        let rejection = |index| wit::Rejection {
            index,
            reason: "no".to_owned(),
        };
        assert!(check_rejections(&[rejection(0), rejection(2)], 3).is_ok());
        let out_of_range = check_rejections(&[rejection(3)], 3).expect_err("out of range");
        assert!(
            out_of_range
                .to_string()
                .contains("payload 3 of a batch of 3")
        );
        let twice = check_rejections(&[rejection(1), rejection(1)], 3).expect_err("twice");
        assert!(twice.to_string().contains("payload 1 twice"));
    }

    #[test]
    fn deadline_is_rounded_up_to_whole_ticks_plus_one() {
        let runtime = Runtime::new(Limits {
            call_deadline: TICK * 3 + Duration::from_micros(1),
            ..Limits::default()
        })
        .expect("runtime");
        assert_eq!(runtime.shared.deadline_ticks, 5);
    }

    #[test]
    fn dropping_the_runtime_stops_the_ticker() {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        let clone = runtime.clone();
        drop(runtime);
        // Dropping the last handle joins the ticker thread: this returns
        // only once the thread has ended.
        drop(clone);
    }
}
