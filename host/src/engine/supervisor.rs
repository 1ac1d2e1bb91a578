//! The engine task: owns every component's state and drives the lifecycle state machine
//! described in the [module documentation](super). Transitions are marked
//! `// Transition:` where they happen.

use std::mem;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{self, Instant};
use tracing::{debug, info, warn};

use super::ComponentState::{BackingOff, Running, Starting, Stopped, Stopping};
use super::graph;
use super::handle::Request;
use super::slot::{Exit, Removal, Slot, StopReason, failure_message, millis};
use super::{ComponentReport, EngineConfig, EngineError, Manifold, ShutdownReport};

/// Where the engine as a whole is.
enum Phase {
    /// Supervising: components start, fail and restart.
    Running,
    /// Nothing starts; runs are being stopped, dependents first.
    ShuttingDown {
        /// When to give up waiting and abort what is left.
        deadline: Instant,
        /// `shutdown` calls waiting for the outcome.
        waiters: Vec<oneshot::Sender<ShutdownReport>>,
        /// Components whose run was dropped after ignoring cancellation.
        dropped: Vec<String>,
    },
    /// Shut down; the outcome is kept for later `shutdown` calls.
    Stopped(ShutdownReport),
}

/// What woke the engine task.
enum Event {
    Request(Request),
    /// Every handle is gone.
    Closed,
    /// A run's task ended.
    Exited(Result<(Id, Exit), JoinError>),
    /// A backoff delay or the shutdown deadline has passed.
    Timer,
}

/// The state owned by the engine task.
pub(crate) struct Supervisor {
    config: EngineConfig,
    /// In declaration order, added components last.
    slots: Vec<Slot>,
    tasks: JoinSet<Exit>,
    phase: Phase,
    reports: watch::Sender<Vec<ComponentReport>>,
    /// Every handle is gone: shut down, then end the task.
    closed: bool,
}

impl Supervisor {
    /// Creates the state and starts the components whose inputs are satisfied. Must run
    /// inside a tokio runtime. `manifolds` must have been validated.
    pub(crate) fn new(
        config: EngineConfig,
        manifolds: Vec<Manifold>,
    ) -> (Self, watch::Receiver<Vec<ComponentReport>>) {
        let (reports, receiver) = watch::channel(Vec::new());
        let mut supervisor = Self {
            config,
            slots: manifolds.into_iter().map(Slot::new).collect(),
            tasks: JoinSet::new(),
            phase: Phase::Running,
            reports,
            closed: false,
        };
        supervisor.reconcile();
        supervisor.publish();
        (supervisor, receiver)
    }

    /// The engine task's loop: handle one event, start or stop what that allows, publish.
    pub(crate) async fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        while !(self.closed && matches!(self.phase, Phase::Stopped(_))) {
            let changed = match self.next_event(&mut inbox).await {
                Event::Request(request) => self.on_request(request),
                Event::Closed => {
                    self.closed = true;
                    self.begin_shutdown(None);
                    true
                }
                Event::Exited(joined) => {
                    self.on_exit(joined);
                    true
                }
                Event::Timer => {
                    self.on_timer();
                    true
                }
            };
            if changed {
                self.reconcile();
                self.publish();
            }
        }
        debug!("engine task finished");
    }

    async fn next_event(&mut self, inbox: &mut mpsc::Receiver<Request>) -> Event {
        let deadline = self.next_deadline();
        let (closed, idle) = (self.closed, self.tasks.is_empty());
        tokio::select! {
            request = inbox.recv(), if !closed => request.map_or(Event::Closed, Event::Request),
            Some(joined) = self.tasks.join_next_with_id(), if !idle => Event::Exited(joined),
            () = sleep_until(deadline) => Event::Timer,
        }
    }

    /// The earliest backoff expiry or shutdown deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let shutdown = match &self.phase {
            Phase::ShuttingDown { deadline, .. } => Some(*deadline),
            _ => None,
        };
        self.slots
            .iter()
            .filter_map(|s| s.retry.map(|(at, _)| at))
            .chain(shutdown)
            .min()
    }

    /// Handles a request; returns whether the state may have changed.
    fn on_request(&mut self, request: Request) -> bool {
        // A dropped reply channel means the caller stopped waiting; nothing to do.
        match request {
            Request::Report(reply) => {
                let _ = reply.send(self.snapshot());
                return false;
            }
            Request::Ready(reply) => {
                let _ = reply.send(self.is_ready());
                return false;
            }
            Request::Restart(name, reply) => {
                let _ = reply.send(self.restart(&name));
            }
            Request::Add(manifold, reply) => {
                let _ = reply.send(self.add(manifold));
            }
            Request::Remove(name, reply) => self.remove(&name, reply),
            Request::Shutdown(reply) => self.begin_shutdown(Some(reply)),
        }
        true
    }

    fn restart(&mut self, name: &str) -> Result<(), EngineError> {
        self.ensure_running()?;
        let idx = self.index(name)?;
        let slot = &mut self.slots[idx];
        if slot.state != Running {
            let (name, state) = (name.to_owned(), slot.state);
            return Err(EngineError::NotRunning { name, state });
        }
        let ran_for = slot
            .instance
            .as_ref()
            .map_or(Duration::ZERO, |i| i.started.elapsed());
        info!(component = %name, "restart requested");
        slot.cancel(StopReason::Restart);
        self.fail(idx, "restarted by request".to_owned(), ran_for);
        Ok(())
    }

    fn add(&mut self, manifold: Manifold) -> Result<(), EngineError> {
        self.ensure_running()?;
        if self.slots.iter().any(|s| s.name() == manifold.name) {
            return Err(EngineError::DuplicateName(manifold.name));
        }
        // Components being removed cannot be inputs any more.
        let mut nodes: Vec<graph::Node<'_>> = (self.slots.iter())
            .filter(|s| s.removals.is_empty())
            .map(|s| (s.name(), s.manifold.inputs.as_slice()))
            .collect();
        nodes.push((&manifold.name, &manifold.inputs));
        graph::validate(&nodes)?;
        info!(component = %manifold.name, "component added");
        // Transition: (new) -> Starting; `reconcile` starts it once its inputs run.
        self.slots.push(Slot::new(manifold));
        Ok(())
    }

    fn remove(&mut self, name: &str, reply: Removal) {
        match self.removable(name) {
            Ok(idx) => {
                self.slots[idx].removals.push(reply);
                self.stop_for_removal(idx);
            }
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
    }

    fn removable(&self, name: &str) -> Result<usize, EngineError> {
        self.ensure_running()?;
        let idx = self.index(name)?;
        let dependents: Vec<String> = (self.slots.iter())
            .filter(|s| s.depends_on(name))
            .map(|s| s.name().to_owned())
            .collect();
        if dependents.is_empty() {
            Ok(idx)
        } else {
            Err(EngineError::HasDependents {
                name: name.to_owned(),
                dependents,
            })
        }
    }

    fn stop_for_removal(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        if !slot.is_live() {
            self.forget(idx);
            return;
        }
        info!(component = %slot.name(), "stopping component for removal");
        // Nothing depends on it, so there is nobody to bounce.
        slot.cancel(StopReason::Remove);
        slot.retry = None;
        // Transition: any -> Stopping; forgotten once its run has exited.
        slot.state = Stopping;
    }

    /// Drops a component being removed and answers the `remove` calls.
    fn forget(&mut self, idx: usize) {
        let slot = self.slots.remove(idx);
        if let Some(instance) = &slot.instance {
            instance.abort();
        }
        info!(component = %slot.name(), "component removed");
        for reply in slot.removals {
            let _ = reply.send(Ok(()));
        }
    }

    /// Records the failure of a running component, schedules its restart and bounces its
    /// dependents. Its run has exited or has just been cancelled.
    fn fail(&mut self, idx: usize, error: String, ran_for: Duration) {
        let backoff = &self.config.backoff;
        let slot = &mut self.slots[idx];
        if ran_for >= backoff.reset_after {
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        let delay = backoff.delay(slot.failures);
        warn!(
            component = %slot.name(), error = %error, delay_ms = millis(delay),
            failures = slot.failures, "component failed; restarting after backoff"
        );
        slot.restarts += 1;
        slot.last_error = Some(error);
        slot.retry = Some((Instant::now() + delay, delay));
        // Transition: Running -> BackingOff; back to Starting when the delay has elapsed.
        slot.state = BackingOff;
        let name = slot.name().to_owned();
        self.bounce_dependents(&name);
    }

    /// Stops every running component that depends, transitively, on `stopped`.
    fn bounce_dependents(&mut self, stopped: &str) {
        let mut queue = vec![stopped.to_owned()];
        while let Some(input) = queue.pop() {
            for slot in &mut self.slots {
                if slot.state == Running && slot.depends_on(&input) {
                    debug!(component = %slot.name(), input = %input, "input stopped; bouncing");
                    slot.cancel(StopReason::Bounce);
                    slot.bounces += 1;
                    // Transition: Running -> Starting; restarts when its inputs run again.
                    slot.state = Starting;
                    queue.push(slot.name().to_owned());
                }
            }
        }
    }

    fn on_exit(&mut self, joined: Result<(Id, Exit), JoinError>) {
        let (id, outcome) = match joined {
            Ok((id, exit)) => (id, Ok(exit)),
            Err(err) => (err.id(), Err(err)),
        };
        let owner = self
            .slots
            .iter()
            .position(|s| s.instance.as_ref().is_some_and(|i| i.id == id));
        // A run aborted at the shutdown deadline has already been written off.
        let Some(idx) = owner else { return };
        let instance = self.slots[idx]
            .instance
            .take()
            .expect("owner has an instance");
        match instance.stop {
            Some(reason) => self.on_stopped(idx, reason, outcome),
            None => self.on_failed(idx, instance.started.elapsed(), failure_message(outcome)),
        }
    }

    /// A run the engine had asked to stop has exited.
    fn on_stopped(&mut self, idx: usize, reason: StopReason, outcome: Result<Exit, JoinError>) {
        let name = self.slots[idx].name().to_owned();
        match outcome {
            Ok(Exit::Returned(Ok(()))) => info!(component = %name, ?reason, "component stopped"),
            Ok(Exit::Dropped) => {
                let grace_ms = millis(self.config.shutdown_grace);
                warn!(component = %name, grace_ms, "component ignored cancellation; dropped");
                if let Phase::ShuttingDown { dropped, .. } = &mut self.phase {
                    dropped.push(name);
                }
            }
            other => {
                let error = failure_message(other);
                let message = "component stopped with an error";
                warn!(component = %name, ?reason, error = %error, "{message}");
            }
        }
        self.settle(idx);
    }

    /// A run ended without being asked to: a failure.
    fn on_failed(&mut self, idx: usize, ran_for: Duration, error: String) {
        if !self.is_shutting_down() {
            self.fail(idx, error, ran_for);
            return;
        }
        let slot = &mut self.slots[idx];
        warn!(component = %slot.name(), error = %error, "component failed during shutdown");
        slot.last_error = Some(error);
        self.settle(idx);
    }

    /// Bookkeeping once a component has no run any more.
    fn settle(&mut self, idx: usize) {
        if !self.slots[idx].removals.is_empty() {
            // Transition: Stopping -> (forgotten); its run has exited.
            self.forget(idx);
        } else if self.is_shutting_down() {
            // Transition: Running/Stopping -> Stopped; its run has exited.
            self.slots[idx].state = Stopped;
        }
        // Otherwise it is Starting or BackingOff and `reconcile`/`on_timer` move it on.
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if slot.retry.is_some_and(|(at, _)| at <= now) {
                debug!(component = %slot.name(), "backoff elapsed");
                slot.retry = None;
                // Transition: BackingOff -> Starting; starts once its inputs run.
                slot.state = Starting;
            }
        }
        if let Phase::ShuttingDown { deadline, .. } = &self.phase
            && *deadline <= now
        {
            self.abandon_shutdown();
        }
    }

    /// Starts or stops whatever the current state allows.
    fn reconcile(&mut self) {
        match self.phase {
            Phase::Running => self.start_ready(),
            Phase::ShuttingDown { .. } => self.progress_shutdown(),
            Phase::Stopped(_) => {}
        }
    }

    /// Starts every component that waits and whose inputs all run, until none is left:
    /// starting one can allow its dependents to start.
    fn start_ready(&mut self) {
        while let Some(idx) = (0..self.slots.len()).find(|&idx| self.can_start(idx)) {
            let grace = self.config.shutdown_grace;
            let slot = &mut self.slots[idx];
            slot.spawn(&mut self.tasks, grace);
            // Transition: Starting -> Running; inputs run and the previous run has exited.
            slot.state = Running;
            info!(component = %slot.name(), run = slot.starts, "component started");
        }
    }

    fn can_start(&self, idx: usize) -> bool {
        let slot = &self.slots[idx];
        slot.state == Starting
            && !slot.is_live()
            && slot
                .manifold
                .inputs
                .iter()
                .all(|input| self.state_of(input) == Some(Running))
    }

    fn begin_shutdown(&mut self, waiter: Option<oneshot::Sender<ShutdownReport>>) {
        match &mut self.phase {
            Phase::Stopped(report) => {
                if let Some(waiter) = waiter {
                    let _ = waiter.send(report.clone());
                }
            }
            Phase::ShuttingDown { waiters, .. } => waiters.extend(waiter),
            Phase::Running => {
                let grace = self.config.shutdown_grace;
                info!(grace_ms = millis(grace), "engine shutting down");
                let (deadline, waiters) = (Instant::now() + grace, waiter.into_iter().collect());
                self.phase = Phase::ShuttingDown {
                    deadline,
                    waiters,
                    dropped: Vec::new(),
                };
                self.slots.iter_mut().for_each(settle_for_shutdown);
            }
        }
    }

    /// Cancels every run none of whose dependents still has a run; finishes the shutdown
    /// when no run is left.
    fn progress_shutdown(&mut self) {
        for idx in 0..self.slots.len() {
            if self.slots[idx].is_uncancelled() && !self.has_live_dependent(idx) {
                let slot = &mut self.slots[idx];
                info!(component = %slot.name(), "stopping component");
                slot.cancel(StopReason::Shutdown);
                // Transition: Running -> Stopping; all its dependents have exited.
                slot.state = Stopping;
            }
        }
        if !self.slots.iter().any(Slot::is_live) {
            self.finish_shutdown(Vec::new());
        }
    }

    fn has_live_dependent(&self, idx: usize) -> bool {
        let name = self.slots[idx].name();
        self.slots.iter().any(|s| s.is_live() && s.depends_on(name))
    }

    /// The shutdown deadline has passed: abort every run left and finish.
    fn abandon_shutdown(&mut self) {
        let mut late = Vec::new();
        for slot in &mut self.slots {
            if let Some(instance) = slot.instance.take() {
                warn!(component = %slot.name(), "component did not stop in time; aborting");
                instance.abort();
                late.push(slot.name().to_owned());
                // Transition: Running/Stopping -> Stopped; aborted at the deadline.
                slot.state = Stopped;
            }
        }
        while let Some(idx) = self.slots.iter().position(|s| !s.removals.is_empty()) {
            self.forget(idx);
        }
        self.finish_shutdown(late);
    }

    fn finish_shutdown(&mut self, late: Vec<String>) {
        let (waiters, mut dropped) = match &mut self.phase {
            Phase::ShuttingDown {
                waiters, dropped, ..
            } => (mem::take(waiters), mem::take(dropped)),
            Phase::Running | Phase::Stopped(_) => return,
        };
        dropped.extend(late);
        let report = ShutdownReport {
            clean: dropped.is_empty(),
            still_running: dropped,
        };
        info!(clean = report.clean, still_running = ?report.still_running, "engine shut down");
        for waiter in waiters {
            let _ = waiter.send(report.clone());
        }
        self.phase = Phase::Stopped(report);
    }

    fn ensure_running(&self) -> Result<(), EngineError> {
        match self.phase {
            Phase::Running => Ok(()),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    fn is_shutting_down(&self) -> bool {
        matches!(self.phase, Phase::ShuttingDown { .. })
    }

    fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Running) && self.slots.iter().all(|s| s.state == Running)
    }

    fn index(&self, name: &str) -> Result<usize, EngineError> {
        (self.slots.iter().position(|s| s.name() == name))
            .ok_or_else(|| EngineError::UnknownComponent(name.to_owned()))
    }

    fn state_of(&self, name: &str) -> Option<super::ComponentState> {
        self.slots
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.state)
    }

    fn snapshot(&self) -> Vec<ComponentReport> {
        let now = Instant::now();
        self.slots.iter().map(|slot| slot.report(now)).collect()
    }

    fn publish(&self) {
        self.reports.send_replace(self.snapshot());
    }
}

/// Shutdown has begun: a component without a run is done; one whose run is already
/// exiting (bounce, restart, removal) waits for it.
fn settle_for_shutdown(slot: &mut Slot) {
    slot.retry = None;
    if !slot.is_live() {
        // Transition: Starting/BackingOff -> Stopped; nothing to stop.
        slot.state = Stopped;
    } else if !slot.is_uncancelled() {
        // Transition: Starting/BackingOff/Stopping -> Stopping; waits for its run to exit.
        slot.state = Stopping;
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
