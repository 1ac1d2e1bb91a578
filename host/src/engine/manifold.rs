//! Component declarations ([`Manifold`]) and what a run sees of the engine ([`Context`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// A boxed, `Send` future, as returned by a [`StartFn`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts one run of a component. The returned future is the run: it should work until
/// [`Context::cancelled`] resolves and then return `Ok(())`. Returning on its own (with
/// `Err` or `Ok`) or panicking is a failure.
pub type StartFn = Arc<dyn Fn(Context) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Reads a component's own counters, as JSON, when a report is made. It is called on the
/// engine task, so it must be quick and must not block.
pub type ReportFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The declaration of a component: its name, its inputs and how to start and report it.
#[derive(Clone)]
pub struct Manifold {
    /// Unique, non-empty name of the component.
    pub name: String,
    /// Names of the components this one depends on; it runs only while they all run.
    pub inputs: Vec<String>,
    /// Starts one run of the component.
    pub start: StartFn,
    /// The component's own counters, included in its [`ComponentReport`](super::ComponentReport).
    pub report: Option<ReportFn>,
}

impl Manifold {
    /// Declares a component named `name` that depends on `inputs` and runs `start`.
    ///
    /// ```ignore
    /// Manifold::new("dispatch", &["ingest"], |ctx| async move {
    ///     ctx.cancelled().await;
    ///     Ok(())
    /// })
    /// ```
    pub fn new<F, Fut>(name: impl Into<String>, inputs: &[&str], start: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            inputs: inputs.iter().map(|&input| input.to_owned()).collect(),
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
            report: None,
        }
    }

    /// Sets the function that reports the component's own counters.
    #[must_use]
    pub fn with_report<R>(mut self, report: R) -> Self
    where
        R: Fn() -> serde_json::Value + Send + Sync + 'static,
    {
        self.report = Some(Arc::new(report));
        self
    }
}

impl fmt::Debug for Manifold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifold")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("report", &self.report.is_some())
            .finish_non_exhaustive()
    }
}

/// What one run of a component gets from the engine.
#[derive(Clone, Debug)]
pub struct Context {
    name: Arc<str>,
    token: CancellationToken,
    run: u64,
}

impl Context {
    /// Builds the context of run number `run`; `token` is cancelled to stop the run.
    pub(crate) fn new(name: &str, token: CancellationToken, run: u64) -> Self {
        Self {
            name: name.into(),
            token,
            run,
        }
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves when the engine asks this run to stop. Cancel-safe.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + '_ {
        self.token.cancelled()
    }

    /// Whether the engine has asked this run to stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token the engine cancels to stop this run. It is a child of the engine's own
    /// token, so cancelling it does not stop the run (the run just sees itself cancelled).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The run number: 1 for the first start of the component, counting every start.
    pub fn run(&self) -> u64 {
        self.run
    }
}
