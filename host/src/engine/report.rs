//! What the engine tells about its components.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a component is in its lifecycle (see the [module documentation](super)).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Waiting for its inputs to run (or for its previous run to finish exiting).
    Starting,
    /// Its run's task is spawned.
    Running,
    /// Its last run failed; it starts again when the backoff delay has elapsed.
    BackingOff,
    /// Being removed or shut down; waiting for its run to exit.
    Stopping,
    /// Shut down.
    Stopped,
}

impl ComponentState {
    /// The name used in serialized reports, e.g. `backing_off`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::BackingOff => "backing_off",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ComponentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's view of one component.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ComponentReport {
    /// The component's name.
    pub name: String,
    /// Its lifecycle state.
    pub state: ComponentState,
    /// The components it depends on.
    pub inputs: Vec<String>,
    /// How many runs have been started.
    pub starts: u64,
    /// How many failures (including restart requests) led to a restart.
    pub restarts: u64,
    /// How many runs were stopped because an input stopped.
    pub bounces: u64,
    /// The last failure, if any; kept after the component recovers.
    pub last_error: Option<String>,
    /// The current backoff delay, while backing off.
    pub backoff_ms: Option<u64>,
    /// How long the current run has been going, while running.
    pub uptime_ms: Option<u64>,
    /// The component's own report function's value, or `{}` without one.
    pub report: serde_json::Value,
}

/// The outcome of [`EngineHandle::shutdown`](super::EngineHandle::shutdown).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every run exited on its own within the grace period.
    pub clean: bool,
    /// Components whose run had not exited on its own within the grace period; they were
    /// dropped or aborted. Inputs still waiting for such a dependent are included.
    pub still_running: Vec<String>,
}
