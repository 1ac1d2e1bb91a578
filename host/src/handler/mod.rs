//! Handler components: one per plugin, applying batches to its aggregate.
//!
//! The aggregate lives in the plugin's [`Slot`], not in the wasm instance:
//! each call gets the current state and returns the next one, which is kept
//! only once the call returned. A call that traps, runs past its deadline
//! or hits a memory limit therefore changes nothing; the instance is thrown
//! away and a fresh one carries on from the same state.
//!
//! Recovery of a failed batch: it is retried once on a fresh instance; if
//! that fails too, its payloads are applied one at a time, and a payload
//! that fails alone is quarantined (counted, and kept in a bounded list for
//! operators). Progress through a batch is recorded in the slot as it is
//! made, so a restart of the handler never applies a payload twice.
//!
//! Reload: a new version of the plugin is offered to the slot and waits
//! there until the next batch. That batch is its trial: the new version must
//! read the current aggregate and apply the batch without failing. If it
//! does, its result is kept and it replaces the old version; if not, it is
//! dropped with the reason recorded, and the old version applies the batch.
//! A trap is judged by the old version: if the old version traps on the
//! same batch too, the batch holds a poison payload, which is isolated as
//! usual, and the new version stays offered for the next batch. Either way,
//! no payload is lost or applied twice.
//!
//! Each slot keeps a [`latency::Histogram`] of the time from a response's
//! receipt to the commit of its payloads (`Slot::latency`), for reports and
//! benchmarks.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::batch;
use crate::engine::Context;
use crate::ledger::{Ledger, Rejection};
use crate::lock;
use crate::logs::RateLimit;
use crate::metrics::{CallMetrics, CallOutcome};
use crate::plugin::wit::{Applied, Batch};
use crate::plugin::{CallError, Instance, Plugin};

pub mod latency;

use latency::Histogram;

/// Reason under which a handler's own rejections are counted.
pub const PLUGIN_REJECTED: &str = "plugin_rejected";
/// Reason under which payloads that fail on their own are counted.
pub const QUARANTINED: &str = "quarantined";
/// Reason under which a batch is counted when the plugin refuses its state.
pub const PLUGIN_ERROR: &str = "plugin_error";
/// How many quarantined payloads each plugin keeps for operators.
pub const DEAD_LETTERS: usize = 32;
/// Reason under which payloads are counted when their plugin went away.
pub const PLUGIN_REMOVED: &str = "unhandled";
/// Failed calls in a row after which the handler stops and backs off.
pub const MAX_FAILURES_IN_A_ROW: u32 = 5;
/// A plugin's failed calls, and its quarantined payloads, are each logged
/// at WARN at most once per this period; the line says how many were held
/// back (they are all counted in the handler's report).
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A batch on its way to a handler.
#[derive(Debug)]
pub struct Delivery {
    /// The payloads, all of one type.
    pub batch: Batch,
    /// When their response was received.
    pub received_at: Instant,
}

/// A batch being worked on, and how far.
#[derive(Clone, Debug)]
struct InHand {
    delivery: Arc<Delivery>,
    /// Payloads before this index are applied or quarantined.
    done: usize,
    /// Whether the batch failed twice and is applied payload by payload.
    one_by_one: bool,
}

/// A quarantined payload.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// The payload's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its value, as JSON text.
    pub value: String,
    /// The failure it caused.
    pub error: String,
    /// When it was quarantined.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*at))
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Batches applied.
    batches: u64,
    /// Payloads applied.
    applied: u64,
    /// Payloads rejected, by reason.
    rejected: BTreeMap<&'static str, u64>,
    /// Calls that trapped, ran out of time or memory.
    traps: u64,
    /// Failed calls since the last good one.
    failures_in_a_row: u32,
    /// The last failed call.
    last_failure: Option<String>,
    /// Time from receipt to commit of each applied payload.
    #[serde(skip)]
    latency: Histogram,
}

/// How the plugin of a slot came to be, for operators.
#[derive(Clone, Debug, Default, Serialize)]
struct Versions {
    /// When the running version was loaded.
    #[serde(serialize_with = "rfc3339_opt")]
    loaded_at: Option<SystemTime>,
    /// Versions swapped in since the first.
    reloads: u64,
    /// A version waiting for its trial batch.
    pending: Option<String>,
    /// Why the last offered version was turned down.
    last_reload_error: Option<String>,
    /// Offered versions turned down at their trial.
    turned_down: u64,
}

fn rfc3339_opt<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

/// The running plugin and the instance generation it belongs to.
struct Current {
    plugin: Plugin,
    /// Bumped on every swap, so that instances of an old version are dropped.
    generation: u64,
}

/// What outlives any one run of a handler: the plugin, its queue, its
/// aggregate and its counters.
pub struct Slot {
    name: String,
    types: Vec<String>,
    current: Mutex<Current>,
    /// A version waiting for its trial, numbered by offer.
    pending: Mutex<Option<(u64, Plugin)>>,
    offers: std::sync::atomic::AtomicU64,
    versions: Mutex<Versions>,
    sender: mpsc::Sender<Arc<Delivery>>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Arc<Delivery>>>,
    state: Mutex<Arc<[u8]>>,
    in_hand: Mutex<Option<InHand>>,
    stats: Mutex<Stats>,
    failing: watch::Sender<bool>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    renderer: Mutex<Option<(u64, Instance)>>,
    /// Rate limits of the WARN lines of failed calls and of quarantines.
    warn_failed: Mutex<RateLimit>,
    warn_quarantined: Mutex<RateLimit>,
    calls: CallMetrics,
    ledger: Arc<Ledger>,
}

impl Slot {
    /// A slot for `plugin` with an empty aggregate and a queue of
    /// `capacity` batches.
    pub fn new(plugin: Plugin, capacity: usize, ledger: Arc<Ledger>) -> Slot {
        let (sender, queue) = mpsc::channel(capacity);
        Slot {
            name: plugin.name().to_owned(),
            types: plugin.types().to_vec(),
            current: Mutex::new(Current {
                plugin,
                generation: 0,
            }),
            pending: Mutex::default(),
            offers: std::sync::atomic::AtomicU64::new(0),
            versions: Mutex::new(Versions {
                loaded_at: Some(SystemTime::now()),
                ..Versions::default()
            }),
            sender,
            queue: tokio::sync::Mutex::new(queue),
            state: Mutex::new(Arc::from(Vec::new())),
            in_hand: Mutex::default(),
            stats: Mutex::default(),
            failing: watch::Sender::new(false),
            dead_letters: Mutex::default(),
            renderer: Mutex::default(),
            warn_failed: Mutex::new(RateLimit::new(WARN_EVERY)),
            warn_quarantined: Mutex::new(RateLimit::new(WARN_EVERY)),
            calls: CallMetrics::new(),
            ledger,
        }
    }

    /// The plugin's name, the same for every version.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The payload types it handles, the same for every version.
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// The running version of the plugin.
    pub fn plugin(&self) -> Plugin {
        lock(&self.current).plugin.clone()
    }

    fn current(&self) -> (u64, Plugin) {
        let current = lock(&self.current);
        (current.generation, current.plugin.clone())
    }

    /// The name of the engine component that runs this slot.
    pub fn component(&self) -> String {
        format!("handler:{}", self.name)
    }

    /// The sending end of the handler's queue.
    pub fn sender(&self) -> mpsc::Sender<Arc<Delivery>> {
        self.sender.clone()
    }

    /// Whether the handler keeps failing: it stopped on errors and has not
    /// applied a batch since. Changes are signalled.
    pub fn failing(&self) -> watch::Receiver<bool> {
        self.failing.subscribe()
    }

    /// The aggregate's bytes now.
    pub fn state(&self) -> Arc<[u8]> {
        lock(&self.state).clone()
    }

    /// How the plugin's calls went and how long they took, for metrics.
    pub fn calls(&self) -> &CallMetrics {
        &self.calls
    }

    /// Time from the receipt of their response to their commit, of every
    /// payload applied so far (plugin rejections excluded).
    pub fn latency(&self) -> Histogram {
        lock(&self.stats).latency.clone()
    }

    /// Quarantined payloads, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead_letters).iter().cloned().collect()
    }

    /// Offers a new version of the plugin, to replace the running one after
    /// a successful trial on the next batch. It must keep the name and the
    /// types; a version already waiting is replaced.
    pub fn offer(&self, plugin: Plugin) -> Result<(), String> {
        if plugin.name() != self.name || plugin.types() != self.types.as_slice() {
            return Err(format!(
                "a new version must keep the name {:?} and the types {:?} (it has {:?} and {:?}); \
                 remove the plugin and add the new one instead",
                self.name,
                self.types,
                plugin.name(),
                plugin.types()
            ));
        }
        lock(&self.versions).pending = Some(plugin.version().to_owned());
        let offer = self
            .offers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *lock(&self.pending) = Some((offer, plugin));
        Ok(())
    }

    /// The handler's counters, versions and queue, for reports.
    pub fn report(&self) -> serde_json::Value {
        let stats = lock(&self.stats);
        let mut report = serde_json::to_value(&*stats).unwrap_or_default();
        let micros = |q| stats.latency.quantile(q).map(|d| d.as_micros() as u64);
        report["receipt_to_applied_us"] = serde_json::json!({
            "p50": micros(0.5),
            "p99": micros(0.99),
        });
        drop(stats);
        let (plugin, versions) = {
            let current = lock(&self.current);
            let versions = serde_json::to_value(&*lock(&self.versions)).unwrap_or_default();
            (current.plugin.clone(), versions)
        };
        report["plugin"] = self.name.as_str().into();
        report["version"] = plugin.version().into();
        report["source"] = plugin.source().into();
        report["versions"] = versions;
        report["failing"] = (*self.failing.borrow()).into();
        report["in_hand"] = lock(&self.in_hand)
            .as_ref()
            .map(|h| batch::len(&h.delivery.batch) - h.done)
            .unwrap_or(0)
            .into();
        report["queue"] = serde_json::json!({
            "capacity": self.sender.max_capacity(),
            "depth": self.sender.max_capacity() - self.sender.capacity(),
        });
        report["quarantined"] = lock(&self.dead_letters).len().into();
        report
    }

    /// Renders the aggregate as JSON with an instance of its own, so that
    /// it answers while the handler is busy or restarting.
    pub async fn render(self: &Arc<Self>) -> Result<serde_json::Value, CallError> {
        let slot = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let (generation, plugin) = slot.current();
            let mut renderer = lock(&slot.renderer);
            let mut instance = match renderer.take() {
                Some((made_for, instance)) if made_for == generation => instance,
                _ => plugin.instantiate()?,
            };
            let result = instance.render(&slot.state());
            if !result.as_ref().is_err_and(CallError::is_fatal) {
                *renderer = Some((generation, instance));
            }
            result
        })
        .await
        .unwrap_or_else(|join| Err(CallError::BadOutput(format!("render task failed: {join}"))))
    }

    /// Runs the handler until cancelled. Cancel-safe: a batch's effect on
    /// the aggregate, the accounts and the record of progress is made in one
    /// step after the call returns.
    pub async fn run(self: Arc<Self>, ctx: Context) -> anyhow::Result<()> {
        // The queue's receiving end is leased by this run alone.
        let mut queue = self.queue.lock().await;
        // The engine backed off before this run: give the plugin a new chance.
        lock(&self.stats).failures_in_a_row = 0;
        let mut worker = Worker {
            slot: Arc::clone(&self),
            instance: None,
        };
        tracing::info!(plugin = %self.name, run = ctx.run(), "handling");
        loop {
            let in_hand = lock(&self.in_hand).clone();
            let in_hand = match in_hand {
                Some(in_hand) => in_hand,
                None => {
                    let delivery = queue.recv().await.context("the handler queue is closed")?;
                    let in_hand = InHand {
                        delivery,
                        done: 0,
                        one_by_one: false,
                    };
                    *lock(&self.in_hand) = Some(in_hand.clone());
                    in_hand
                }
            };
            let result = worker.work(in_hand).await;
            if result.is_err() {
                self.failing.send_replace(true);
            }
            result?;
        }
    }

    /// Closes the queue of a plugin that was removed and rejects what it
    /// still held. Call once the handler no longer runs.
    pub async fn close(&self) {
        let mut queue = self.queue.lock().await;
        queue.close();
        let detail = format!("plugin {} was removed", self.name);
        let error = CallError::Guest(detail);
        if let Some(in_hand) = lock(&self.in_hand).clone() {
            let total = batch::len(&in_hand.delivery.batch);
            self.reject(in_hand.done, total - in_hand.done, PLUGIN_REMOVED, &error);
        }
        while let Ok(delivery) = queue.try_recv() {
            let total = batch::len(&delivery.batch);
            *lock(&self.in_hand) = Some(InHand {
                delivery,
                done: 0,
                one_by_one: false,
            });
            self.reject(0, total, PLUGIN_REMOVED, &error);
        }
    }

    /// Keeps the outcome of a call on payloads `from..from + count` of the
    /// batch in hand, and records the progress.
    fn commit(&self, from: usize, count: usize, applied: Applied) {
        let in_hand = lock(&self.in_hand)
            .clone()
            .expect("a batch is in hand while committing");
        let kind = batch::kind(&in_hand.delivery.batch);
        let rejections: Vec<_> = applied
            .rejected
            .iter()
            .map(|r| Rejection::now(kind, PLUGIN_REJECTED, r.reason.clone()))
            .collect();
        let applied_count = (count - rejections.len()) as u64;
        let rejected_count = rejections.len() as u64;
        *lock(&self.state) = Arc::from(applied.state);
        // The handler's own counts come before the ledger's: whoever sees
        // the payloads settled there sees them, and their latency, here too.
        let latency = in_hand.delivery.received_at.elapsed();
        let mut stats = lock(&self.stats);
        stats.latency.record(latency, applied_count);
        stats.applied += applied_count;
        if rejected_count > 0 {
            *stats.rejected.entry(PLUGIN_REJECTED).or_default() += rejected_count;
        }
        stats.failures_in_a_row = 0;
        drop(stats);
        self.failing
            .send_if_modified(|failing| std::mem::replace(failing, false));
        self.advance(from + count);
        self.ledger.applied(kind, applied_count);
        self.ledger.rejected(rejections);
    }

    /// Rejects payloads `from..from + count` under `reason`.
    fn reject(&self, from: usize, count: usize, reason: &'static str, error: &CallError) {
        let in_hand = lock(&self.in_hand)
            .clone()
            .expect("a batch is in hand while rejecting");
        let batch = &in_hand.delivery.batch;
        let kind = batch::kind(batch);
        let detail = error.to_string();
        if reason == QUARANTINED {
            let mut dead = lock(&self.dead_letters);
            for index in from..from + count {
                if dead.len() == DEAD_LETTERS {
                    dead.pop_front();
                }
                dead.push_back(DeadLetter {
                    kind: kind.to_owned(),
                    value: batch::describe(batch, index),
                    error: detail.clone(),
                    at: SystemTime::now(),
                });
            }
            match lock(&self.warn_quarantined).check(Instant::now()) {
                Some(suppressed) => tracing::warn!(
                    plugin = %self.name, count, error = %detail, suppressed,
                    "payloads quarantined"
                ),
                None => tracing::debug!(plugin = %self.name, count, error = %detail,
                    "payloads quarantined"),
            }
        }
        // As in `commit`, the handler's counts before the ledger's.
        *lock(&self.stats).rejected.entry(reason).or_default() += count as u64;
        self.advance(from + count);
        self.ledger
            .rejected((0..count).map(|_| Rejection::now(kind, reason, &detail)));
    }

    /// Records that the batch in hand is done up to `done`.
    fn advance(&self, done: usize) {
        let mut in_hand = lock(&self.in_hand);
        let finished = in_hand.as_mut().is_some_and(|h| {
            h.done = done;
            done >= batch::len(&h.delivery.batch)
        });
        if finished {
            *in_hand = None;
            lock(&self.stats).batches += 1;
        }
    }

    fn failed(&self, error: &CallError) {
        let mut stats = lock(&self.stats);
        stats.traps += 1;
        stats.failures_in_a_row += 1;
        stats.last_failure = Some(error.to_string());
    }

    /// Makes `candidate` the running version.
    fn promote(&self, candidate: Plugin) -> u64 {
        let version = candidate.version().to_owned();
        // Both in one step, so that no report shows the new version with
        // the old counts (`current` is always locked before `versions`).
        let mut current = lock(&self.current);
        let mut versions = lock(&self.versions);
        current.plugin = candidate;
        current.generation += 1;
        let generation = current.generation;
        versions.loaded_at = Some(SystemTime::now());
        versions.reloads += 1;
        versions.last_reload_error = None;
        if versions.pending.as_deref() == Some(version.as_str()) {
            versions.pending = None;
        }
        drop((versions, current));
        tracing::info!(plugin = %self.name, %version, "new version swapped in");
        generation
    }

    /// Withdraws the offer numbered `offer`, unless a newer one replaced it.
    fn decide(&self, offer: u64) {
        let mut pending = lock(&self.pending);
        if pending
            .as_ref()
            .is_some_and(|(waiting, _)| *waiting == offer)
        {
            *pending = None;
        }
    }

    /// Drops `candidate` for `error`; the running version carries on.
    fn turn_down(&self, candidate: &Plugin, error: String) {
        tracing::error!(
            plugin = %self.name, version = %candidate.version(), %error,
            "new version turned down; the running version carries on"
        );
        let mut versions = lock(&self.versions);
        versions.pending = None;
        versions.turned_down += 1;
        versions.last_reload_error = Some(format!("version {}: {error}", candidate.version()));
    }
}

/// How the trial of a new version went.
enum Trial {
    /// No version was waiting, or it was turned down.
    None,
    /// The new version applied the batch and runs from now on.
    Applied,
    /// The new version trapped on the batch; still offered.
    Trapped(TrappedTrial),
}

/// A new version that trapped on its trial batch.
struct TrappedTrial {
    offer: u64,
    candidate: Plugin,
    error: String,
}

/// One run's instance of the plugin.
struct Worker {
    slot: Arc<Slot>,
    /// An instance, and the generation of the plugin it was made from.
    instance: Option<(u64, Instance)>,
}

impl Worker {
    /// Applies the rest of the batch in hand.
    async fn work(&mut self, in_hand: InHand) -> anyhow::Result<()> {
        let total = batch::len(&in_hand.delivery.batch);
        let from = in_hand.done;
        let mut trapped_trial = None;
        if from == 0 && !in_hand.one_by_one {
            match self.try_new_version(&in_hand).await? {
                Trial::Applied => return Ok(()),
                Trial::Trapped(trial) => trapped_trial = Some(trial),
                Trial::None => {}
            }
        }
        if !in_hand.one_by_one {
            // The whole rest of the batch in one call, and once more on a
            // fresh instance if the first call failed.
            for _attempt in 0..2 {
                let result = self.call(&in_hand, from..total).await?;
                if !result.as_ref().is_err_and(CallError::is_fatal) {
                    // The running version took the batch that the new one
                    // trapped on: the new version is at fault.
                    if let Some(trial) = trapped_trial.take() {
                        self.slot.decide(trial.offer);
                        self.slot.turn_down(&trial.candidate, trial.error);
                    }
                }
                match result {
                    Ok(applied) => {
                        self.slot.commit(from, total - from, applied);
                        return Ok(());
                    }
                    Err(err) if !err.is_fatal() => {
                        self.slot.reject(from, total - from, PLUGIN_ERROR, &err);
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
            // The running version trapped on the batch too: the batch, not
            // a new version that trapped on it, is at fault. That version
            // stays offered, for a trial on the next batch.
            if let Some(trial) = trapped_trial {
                tracing::info!(
                    plugin = %self.slot.name, version = %trial.candidate.version(),
                    "the trial batch traps the running version too; the new version waits for \
                     the next batch"
                );
            }
            if let Some(h) = lock(&self.slot.in_hand).as_mut() {
                h.one_by_one = true;
            }
        }
        for index in from..total {
            match self.call(&in_hand, index..index + 1).await? {
                Ok(applied) => self.slot.commit(index, 1, applied),
                Err(err) if err.is_fatal() => self.slot.reject(index, 1, QUARANTINED, &err),
                Err(err) => self.slot.reject(index, 1, PLUGIN_ERROR, &err),
            }
        }
        Ok(())
    }

    /// Gives a version waiting in the slot its trial on the whole batch in
    /// hand. A version that cannot read the aggregate, or returns an error
    /// on it, is turned down at once; one that traps is judged against the
    /// running version on the same batch (see [`Worker::work`]).
    async fn try_new_version(&mut self, in_hand: &InHand) -> anyhow::Result<Trial> {
        // The candidate stays offered until decided on, so that a run
        // cancelled during the trial leaves it for the next run.
        let Some((offer, candidate)) = lock(&self.slot.pending).clone() else {
            return Ok(Trial::None);
        };
        let state = self.slot.state();
        let delivery = Arc::clone(&in_hand.delivery);
        let trial = candidate.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut instance = trial.instantiate()?;
            // The new version must read the aggregate as it stands...
            instance.render(&state)?;
            // ...and apply a batch to it.
            let applied = instance.apply(&state, &delivery.batch)?;
            Ok::<_, CallError>((instance, applied))
        })
        .await
        .context("the trial of a new plugin version panicked")?;
        match outcome {
            Ok((instance, applied)) => {
                self.slot.decide(offer);
                let total = batch::len(&in_hand.delivery.batch);
                let generation = self.slot.promote(candidate);
                self.instance = Some((generation, instance));
                self.slot.commit(0, total, applied);
                Ok(Trial::Applied)
            }
            Err(err) if err.is_fatal() => Ok(Trial::Trapped(TrappedTrial {
                offer,
                candidate,
                error: err.to_string(),
            })),
            Err(err) => {
                self.slot.decide(offer);
                self.slot.turn_down(&candidate, err.to_string());
                Ok(Trial::None)
            }
        }
    }

    /// Calls the plugin on payloads `range` of the batch in hand. The outer
    /// error means the handler must stop: the plugin keeps failing or cannot
    /// be instantiated.
    async fn call(
        &mut self,
        in_hand: &InHand,
        range: Range<usize>,
    ) -> anyhow::Result<Result<Applied, CallError>> {
        let slot = &self.slot;
        let failures = lock(&slot.stats).failures_in_a_row;
        anyhow::ensure!(
            failures < MAX_FAILURES_IN_A_ROW,
            "plugin {} failed {failures} calls in a row",
            slot.name
        );
        let (generation, plugin) = slot.current();
        let mut instance = match self.instance.take() {
            Some((made_for, instance)) if made_for == generation => instance,
            _ => plugin
                .instantiate()
                .with_context(|| format!("cannot instantiate plugin {}", slot.name))?,
        };
        let state = slot.state();
        let delivery = Arc::clone(&in_hand.delivery);
        let whole = range.start == 0 && range.end == batch::len(&delivery.batch);
        let started = Instant::now();
        let (instance, result) = tokio::task::spawn_blocking(move || {
            let result = if whole {
                instance.apply(&state, &delivery.batch)
            } else {
                instance.apply(&state, &batch::slice(&delivery.batch, range))
            };
            (instance, result)
        })
        .await
        .context("the plugin call panicked")?;
        slot.calls
            .observe(started.elapsed(), CallOutcome::of(&result));
        match &result {
            Err(err) if err.is_fatal() => {
                slot.failed(err);
                match lock(&slot.warn_failed).check(Instant::now()) {
                    Some(suppressed) => tracing::warn!(
                        plugin = %slot.name, error = %err, suppressed,
                        "plugin failed; reinstantiating"
                    ),
                    None => tracing::debug!(plugin = %slot.name, error = %err,
                        "plugin failed; reinstantiating"),
                }
            }
            _ => self.instance = Some((generation, instance)),
        }
        Ok(result)
    }
}
