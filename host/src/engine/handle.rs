//! Starting the engine ([`Engine`]) and talking to it ([`EngineHandle`]).

use tokio::sync::{mpsc, oneshot, watch};

use super::supervisor::Supervisor;
use super::{ComponentReport, ComponentState, EngineConfig, EngineError, Manifold};
use super::{ShutdownReport, graph};

/// A request to the engine task, with the channel for its answer.
#[derive(Debug)]
pub(crate) enum Request {
    Report(oneshot::Sender<Vec<ComponentReport>>),
    Ready(oneshot::Sender<bool>),
    Restart(String, oneshot::Sender<Result<(), EngineError>>),
    Add(Manifold, oneshot::Sender<Result<(), EngineError>>),
    Remove(String, oneshot::Sender<Result<(), EngineError>>),
    Shutdown(oneshot::Sender<ShutdownReport>),
}

/// Requests waiting for the engine task; senders wait when it is full.
const REQUEST_QUEUE: usize = 64;

/// Entry point of the supervision engine.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// Validates `config` and `manifolds` (unique non-empty names, known inputs, no cycle),
    /// starts the components that have no inputs (and, transitively, those whose inputs
    /// are then running) and spawns the engine task that supervises them.
    ///
    /// Must be called inside a tokio runtime. The engine runs until
    /// [`EngineHandle::shutdown`], or until every handle is dropped, which shuts it down
    /// the same way.
    pub fn start(
        config: EngineConfig,
        manifolds: Vec<Manifold>,
    ) -> Result<EngineHandle, EngineError> {
        config.validate()?;
        let nodes: Vec<graph::Node<'_>> = manifolds
            .iter()
            .map(|m| (m.name.as_str(), m.inputs.as_slice()))
            .collect();
        graph::validate(&nodes)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EngineError::NoRuntime)?;
        let (requests, inbox) = mpsc::channel(REQUEST_QUEUE);
        let (supervisor, reports) = Supervisor::new(config, manifolds);
        runtime.spawn(supervisor.run(inbox));
        Ok(EngineHandle { requests, reports })
    }
}

/// A cheap, cloneable handle to a running engine.
///
/// When the last handle is dropped, the engine shuts down (as with [`Self::shutdown`]).
#[derive(Clone, Debug)]
pub struct EngineHandle {
    requests: mpsc::Sender<Request>,
    reports: watch::Receiver<Vec<ComponentReport>>,
}

impl EngineHandle {
    /// Sends a request and waits for its answer; `None` if the engine task is gone.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).await.ok()?;
        answer.await.ok()
    }

    /// One report per component, in declaration order (components added later come last),
    /// with the components' own report values read now. Answers while components restart
    /// and after shutdown. Cancel-safe.
    pub async fn report(&self) -> Vec<ComponentReport> {
        match self.ask(Request::Report).await {
            Some(reports) => reports,
            None => self.reports.borrow().clone(),
        }
    }

    /// A receiver of the reports, updated on every state change: wait for a condition
    /// with [`watch::Receiver::wait_for`]. The components' own report values are read at
    /// each change, so they may be stale; [`Self::report`] reads them fresh.
    pub fn watch(&self) -> watch::Receiver<Vec<ComponentReport>> {
        self.reports.clone()
    }

    /// Whether every component is running (vacuously true with none); false once the
    /// engine is shutting down. Cancel-safe.
    pub async fn ready(&self) -> bool {
        self.ask(Request::Ready).await.unwrap_or(false)
    }

    /// Makes a running component fail as if it had crashed, with the error "restarted by
    /// request": it is stopped, its dependents are bounced, and it starts again after the
    /// usual backoff.
    ///
    /// Not cancel-safe: once the request is sent, dropping the future does not undo it.
    pub async fn restart(&self, name: &str) -> Result<(), EngineError> {
        let name = name.to_owned();
        let answer = self.ask(|reply| Request::Restart(name, reply)).await;
        answer.unwrap_or(Err(EngineError::Closed))
    }

    /// Adds a component, validated like those given to [`Engine::start`]; it starts as soon
    /// as its inputs run.
    ///
    /// Not cancel-safe: once the request is sent, dropping the future does not undo it.
    pub async fn add(&self, manifold: Manifold) -> Result<(), EngineError> {
        let answer = self.ask(|reply| Request::Add(manifold, reply)).await;
        answer.unwrap_or(Err(EngineError::Closed))
    }

    /// Stops a component that no other component depends on, waits for its run to exit
    /// and forgets it (its name can then be added again).
    ///
    /// Not cancel-safe: once the request is sent, dropping the future does not undo it.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        let name = name.to_owned();
        let answer = self.ask(|reply| Request::Remove(name, reply)).await;
        answer.unwrap_or(Err(EngineError::Closed))
    }

    /// Shuts the engine down: nothing starts any more; runs are cancelled dependents
    /// first, each input once all its dependents have exited. Returns once every run has
    /// exited, or when `shutdown_grace` has passed since the call, whichever is first;
    /// runs still going then are aborted and named in the report. Afterwards every
    /// component is `Stopped` and [`Self::report`] still answers. Calling it again returns
    /// the same report.
    ///
    /// Dropping the future does not stop the shutdown once the request is sent; calling
    /// again waits for the same outcome.
    pub async fn shutdown(&self) -> ShutdownReport {
        match self.ask(Request::Shutdown).await {
            Some(report) => report,
            None => self.lost_engine_report(),
        }
    }

    /// The best account of a shutdown when the engine task is gone (it panicked).
    fn lost_engine_report(&self) -> ShutdownReport {
        let still_running = self
            .reports
            .borrow()
            .iter()
            .filter(|r| r.state != ComponentState::Stopped)
            .map(|r| r.name.clone())
            .collect();
        ShutdownReport {
            clean: false,
            still_running,
        }
    }
}
