//! The supervision engine: runs a set of named components, starts each one once the
//! components it depends on are running, restarts failed ones after an exponential backoff
//! and restarts ("bounces") dependents when something they depend on stops.
//!
//! The engine is generic: it knows nothing about what a component does. It follows the
//! model of Juju's dependency engine.
//!
//! # Vocabulary
//!
//! * **Manifold** ([`Manifold`]): the declaration of a component: a unique `name`, the names
//!   of its `inputs`, a `start` function and an optional `report` function.
//! * **Input**: a component that another one depends on. A component runs only while all
//!   of its inputs run. Inputs must name declared components and must not form a cycle.
//! * **Dependent**: the reverse relation: `b` is a dependent of `a` when `a` is an input of
//!   `b`, directly or through other components.
//! * **Start** / **run**: the engine calls `start` with a fresh [`Context`] and drives the
//!   returned future as its own tokio task. One such execution is a *run*; runs are
//!   numbered from 1 ([`Context::run`]). A component never has two runs at once: a new run
//!   is spawned only after the previous one has fully exited.
//! * **Failure**: a run that ends without having been asked to stop: it returned `Err`,
//!   returned `Ok(())` on its own, or panicked. The engine records the error and starts the
//!   component again after an exponential backoff with jitter ([`BackoffConfig`]).
//! * **Bounce**: when a component stops running for any reason (failure, restart request,
//!   removal), every running component that depends on it, transitively, is stopped and
//!   goes back to waiting for its inputs; it starts again as soon as they run, so it picks
//!   up the new instance of its input. A bounce is not a failure: no backoff, no error.
//! * **Report**: [`ComponentReport`], the engine's view of one component (state, counters,
//!   last error) plus the value of the component's own `report` function.
//!
//! # Lifecycle
//!
//! Each component is a small state machine ([`ComponentState`]):
//!
//! ```text
//!              all inputs running                 run failed / restart requested
//!   Starting ─────────────────────▶ Running ─────────────────────────────────▶ BackingOff
//!      ▲                               │                                          │
//!      ├──── an input stopped ◀────────┘                                          │
//!      │     (bounce)                                                             │
//!      └─────────────────────────── backoff elapsed ◀─────────────────────────────┘
//!
//!   any state ── remove / shutdown ──▶ Stopping ── run exited ──▶ Stopped (or forgotten)
//! ```
//!
//! A component is `Running` as soon as its task is spawned; `Starting` means it waits for
//! its inputs (or for its previous run to finish exiting).
//!
//! # Stopping a run
//!
//! To stop a run the engine cancels the run's [`CancellationToken`](Context::token).
//! Components should watch [`Context::cancelled`] and return; they may do asynchronous
//! cleanup first (flush, acknowledge). The engine races the run against the token: a run
//! that has not returned `shutdown_grace` after being cancelled (for example one awaiting
//! `std::future::pending()` and ignoring the token) is dropped where it is suspended. A run
//! that blocks its thread cannot be dropped; [`EngineHandle::shutdown`] gives up on it after
//! the grace period and names it in [`ShutdownReport::still_running`].
//!
//! # Concurrency
//!
//! [`Engine::start`] spawns one engine task that owns all the state. [`EngineHandle`]s talk
//! to it over channels and [`EngineHandle::watch`] publishes every state change, so no lock
//! is shared and none is held across an `.await`.

mod config;
mod error;
mod graph;
mod handle;
mod manifold;
mod report;
mod slot;
mod supervisor;

#[cfg(test)]
mod tests;

pub use config::{BackoffConfig, ConfigError, EngineConfig};
pub use error::EngineError;
pub use handle::{Engine, EngineHandle};
pub use manifold::{BoxFuture, Context, Manifold, ReportFn, StartFn};
pub use report::{ComponentReport, ComponentState, ShutdownReport};
