//! The engine's record of one component ([`Slot`]) and of its current run ([`Instance`]),
//! and the task wrapper that drives a run ([`drive`]).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::{AbortHandle, Id, JoinError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ComponentReport, ComponentState, Context, EngineError, Manifold, StartFn};

/// Why the engine stopped a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// An input stopped.
    Bounce,
    /// [`EngineHandle::restart`](super::EngineHandle::restart).
    Restart,
    /// [`EngineHandle::remove`](super::EngineHandle::remove).
    Remove,
    /// [`EngineHandle::shutdown`](super::EngineHandle::shutdown).
    Shutdown,
}

/// How a run's task ended, when it did not panic or get aborted.
#[derive(Debug)]
pub(crate) enum Exit {
    /// The run's future completed.
    Returned(anyhow::Result<()>),
    /// The run was cancelled and had not completed after the grace period: it was dropped.
    Dropped,
}

/// A run whose task has not been joined yet (possibly cancelled and exiting).
#[derive(Debug)]
pub(crate) struct Instance {
    /// The run's task.
    pub(crate) id: Id,
    abort: AbortHandle,
    /// Cancelled by the engine to stop the run; the run's context holds a child token.
    token: CancellationToken,
    /// When the task was spawned.
    pub(crate) started: Instant,
    /// Set once the engine has asked the run to stop.
    pub(crate) stop: Option<StopReason>,
}

impl Instance {
    /// Aborts the task: it is dropped at its next await (not if it blocks its thread).
    pub(crate) fn abort(&self) {
        self.abort.abort();
    }
}

/// Replies to [`EngineHandle::remove`](super::EngineHandle::remove) calls.
pub(crate) type Removal = oneshot::Sender<Result<(), EngineError>>;

/// Everything the engine knows about one component.
pub(crate) struct Slot {
    pub(crate) manifold: Manifold,
    pub(crate) state: ComponentState,
    pub(crate) starts: u64,
    pub(crate) restarts: u64,
    pub(crate) bounces: u64,
    pub(crate) last_error: Option<String>,
    /// Consecutive failures, for the backoff.
    pub(crate) failures: u32,
    /// While backing off: when to start again, and the delay that led there.
    pub(crate) retry: Option<(Instant, Duration)>,
    pub(crate) instance: Option<Instance>,
    /// Pending `remove` calls; non-empty while the component is being removed.
    pub(crate) removals: Vec<Removal>,
}

impl Slot {
    /// A new component waits for its inputs.
    pub(crate) fn new(manifold: Manifold) -> Self {
        Self {
            manifold,
            state: ComponentState::Starting,
            starts: 0,
            restarts: 0,
            bounces: 0,
            last_error: None,
            failures: 0,
            retry: None,
            instance: None,
            removals: Vec::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.manifold.name
    }

    pub(crate) fn depends_on(&self, name: &str) -> bool {
        self.manifold.inputs.iter().any(|input| input == name)
    }

    /// Whether a run's task exists (running, or cancelled and still exiting).
    pub(crate) fn is_live(&self) -> bool {
        self.instance.is_some()
    }

    /// Spawns the next run on `tasks` and records it. The caller sets the state.
    pub(crate) fn spawn(&mut self, tasks: &mut tokio::task::JoinSet<Exit>, grace: Duration) {
        self.starts += 1;
        let token = CancellationToken::new();
        let ctx = Context::new(self.name(), token.child_token(), self.starts);
        let abort = tasks.spawn(drive(
            self.manifold.start.clone(),
            ctx,
            token.clone(),
            grace,
        ));
        self.instance = Some(Instance {
            id: abort.id(),
            abort,
            token,
            started: Instant::now(),
            stop: None,
        });
    }

    /// Asks the current run to stop, once; a later reason does not replace the first.
    pub(crate) fn cancel(&mut self, reason: StopReason) {
        if let Some(instance) = self.instance.as_mut().filter(|i| i.stop.is_none()) {
            instance.stop = Some(reason);
            instance.token.cancel();
        }
    }

    /// Whether the current run exists and has not been asked to stop.
    pub(crate) fn is_uncancelled(&self) -> bool {
        self.instance.as_ref().is_some_and(|i| i.stop.is_none())
    }

    /// The report of this component at `now`.
    pub(crate) fn report(&self, now: Instant) -> ComponentReport {
        let running = self.state == ComponentState::Running;
        let uptime = self
            .instance
            .as_ref()
            .filter(|_| running)
            .map(|i| now - i.started);
        ComponentReport {
            name: self.manifold.name.clone(),
            state: self.state,
            inputs: self.manifold.inputs.clone(),
            starts: self.starts,
            restarts: self.restarts,
            bounces: self.bounces,
            last_error: self.last_error.clone(),
            backoff_ms: self.retry.map(|(_, delay)| millis(delay)),
            uptime_ms: uptime.map(millis),
            report: self.custom_report(),
        }
    }

    /// The component's own report; a panicking report function must not take the engine
    /// down with it.
    fn custom_report(&self) -> serde_json::Value {
        let Some(report) = &self.manifold.report else {
            return serde_json::json!({});
        };
        panic::catch_unwind(AssertUnwindSafe(|| report())).unwrap_or_else(|payload| {
            serde_json::json!({ "error": format!("report panicked: {}", panic_message(&*payload)) })
        })
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The body of a run's task: calls `start` (inside the task, so that a panicking start
/// function is caught like a panicking run) and races the run against `token`. Once
/// cancelled, the run gets `grace` to return before it is dropped.
async fn drive(start: StartFn, ctx: Context, token: CancellationToken, grace: Duration) -> Exit {
    let mut run = start(ctx);
    tokio::select! {
        biased;
        result = &mut run => Exit::Returned(result),
        () = token.cancelled() => match tokio::time::timeout(grace, run).await {
            Ok(result) => Exit::Returned(result),
            Err(_elapsed) => Exit::Dropped,
        },
    }
}

/// Describes why a run that was not asked to stop ended.
pub(crate) fn failure_message(outcome: Result<Exit, JoinError>) -> String {
    match outcome {
        Ok(Exit::Returned(Ok(()))) => "exited without being asked to stop".to_owned(),
        Ok(Exit::Returned(Err(err))) => format!("{err:#}"),
        Ok(Exit::Dropped) => "dropped after ignoring cancellation".to_owned(),
        Err(err) if err.is_panic() => {
            format!("panicked: {}", panic_message(&*err.into_panic()))
        }
        Err(_) => "aborted".to_owned(),
    }
}

/// The text of a panic payload (`panic!` produces `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
