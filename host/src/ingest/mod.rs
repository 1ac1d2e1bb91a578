//! The `ingest` component: polls the metrics API and hands each response on.
//!
//! Ingest asks for the next response only once the dispatch queue has room
//! for it, so polling follows the pace of the handlers. A failed poll is
//! never fatal: it is counted under its outcome, logged the first time that
//! outcome occurs in a spell of failures (the polls since the last success),
//! and retried after a backoff (or after the server's `Retry-After`).
//!
//! While polls succeed, up to [`IngestConfig::in_flight`] of them are under
//! way at once, each on a task of its own: one body is fetched while the one
//! before it is decoded. Their responses are still handled, and handed on,
//! in the order the polls started. After a failure polls go one at a time,
//! so that a backoff or a `Retry-After` holds back every poll, until one
//! succeeds again.
//!
//! For a clean stop, [`Ingest::stop_polling`] makes every run, present and
//! future, start no new poll; a poll under way finishes and hands its
//! response on, and [`Ingest::polls_stopped`] tells when none is under way.

pub mod decode;
mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::task::AbortOnDropHandle;

pub use self::decode::{Decoded, Kind, Payload, Value};
pub use self::source::{PollError, Secret, Source, SourceConfig};
use crate::backoff::{Backoff, BackoffSettings};
use crate::engine::Context;
use crate::ledger::{Ledger, UNTYPED};

/// One decoded response, on its way to dispatch.
#[derive(Debug)]
pub struct Response {
    /// Its entries.
    pub decoded: Decoded,
    /// When the response was received.
    pub received_at: Instant,
}

/// How many polls are under way at once by default, while polls succeed.
pub const DEFAULT_IN_FLIGHT: usize = 2;

/// Settings of the poll loop.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Where and how to poll.
    pub source: SourceConfig,
    /// Delays between failed polls.
    pub retry: BackoffSettings,
    /// The shortest time from the start of one poll to the start of the next.
    pub min_interval: Duration,
    /// The most polls under way at once while polls succeed (at least 1).
    pub in_flight: usize,
}

/// Where responses come from: the HTTP [`Source`], or a fake in tests.
pub trait Poll: Send + Sync + 'static {
    /// Polls once. Must be cancel-safe.
    fn poll(&self) -> impl Future<Output = Result<Decoded, PollError>> + Send;

    /// Names what is polled, for logs and reports.
    fn describe(&self) -> String;
}

impl Poll for Source {
    async fn poll(&self) -> Result<Decoded, PollError> {
        Source::poll(self).await
    }

    fn describe(&self) -> String {
        self.url().to_string()
    }
}

/// What outlives any one run of ingest: its settings, queue and counters.
pub struct Ingest<S = Source> {
    config: IngestConfig,
    source: S,
    queue: mpsc::Sender<Response>,
    ledger: Arc<Ledger>,
    stats: Mutex<Stats>,
    polling: watch::Sender<Polling>,
}

/// Whether ingest may poll, and how many polls are under way.
#[derive(Clone, Copy, Debug, Default)]
struct Polling {
    /// Asked to start no new poll; never cleared.
    stopped: bool,
    /// Polls under way, or whose response is being handed on.
    busy: usize,
}

/// Marks a poll under way until dropped (also when a run is cancelled).
struct Busy<'a>(&'a watch::Sender<Polling>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|polling| polling.busy -= 1);
    }
}

/// A poll under way, with the room its response will take downstream.
struct UnderWay<'a> {
    task: AbortOnDropHandle<Result<Decoded, PollError>>,
    permit: mpsc::Permit<'a, Response>,
    _busy: Busy<'a>,
}

/// Counters of the ingest component, shown in its report.
#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Polls by outcome (`ok`, `unauthorized`, `timeout`, ...).
    polls: BTreeMap<&'static str, u64>,
    /// Entries received in successful polls.
    entries: u64,
    /// Failed polls since the last success.
    consecutive_failures: u32,
    /// The last failure, if the last poll failed.
    last_error: Option<String>,
    /// The delay before the next poll after a failure, in milliseconds.
    retry_in_ms: Option<u128>,
    /// When the last poll ended.
    #[serde(serialize_with = "rfc3339_opt")]
    last_poll_at: Option<SystemTime>,
    /// When the latest polls started, oldest first, for the poll rate.
    #[serde(skip)]
    recent: std::collections::VecDeque<tokio::time::Instant>,
}

/// How many recent polls the poll rate is measured over.
const RATE_WINDOW: usize = 64;

impl Stats {
    fn started(&mut self, at: tokio::time::Instant) {
        if self.recent.len() == RATE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
    }

    /// Polls per second over the recent window, up to now.
    fn rate(&self) -> f64 {
        let (Some(first), n) = (self.recent.front(), self.recent.len()) else {
            return 0.0;
        };
        let span = tokio::time::Instant::now()
            .duration_since(*first)
            .as_secs_f64();
        if span > 0.0 { n as f64 / span } else { 0.0 }
    }
}

fn rfc3339_opt<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.collect_str(&humantime::format_rfc3339_millis(*at)),
        None => s.serialize_none(),
    }
}

impl Ingest<Source> {
    /// Builds the ingest side of the pipeline. Fails on invalid settings.
    pub fn new(
        config: IngestConfig,
        queue: mpsc::Sender<Response>,
        ledger: Arc<Ledger>,
    ) -> anyhow::Result<Ingest> {
        let source = Source::new(&config.source)?;
        Ingest::with_source(config, source, queue, ledger)
    }
}

impl<S: Poll> Ingest<S> {
    /// Builds ingest over another source of responses.
    pub fn with_source(
        config: IngestConfig,
        source: S,
        queue: mpsc::Sender<Response>,
        ledger: Arc<Ledger>,
    ) -> anyhow::Result<Ingest<S>> {
        config.retry.validate().context("invalid retry backoff")?;
        anyhow::ensure!(config.in_flight > 0, "ingest needs room for one poll");
        Ok(Ingest {
            config,
            source,
            queue,
            ledger,
            stats: Mutex::default(),
            polling: watch::Sender::new(Polling::default()),
        })
    }

    /// Starts no new poll from now on, in this run or any later one. A poll
    /// under way finishes and hands its response on.
    pub fn stop_polling(&self) {
        self.polling.send_modify(|polling| polling.stopped = true);
    }

    /// Resolves once polling was stopped and no poll is under way.
    /// Cancel-safe.
    pub async fn polls_stopped(&self) {
        let mut polling = self.polling.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = polling.wait_for(|p| p.stopped && p.busy == 0).await;
    }

    /// Resolves once polling was stopped. Cancel-safe.
    async fn stopped(&self) {
        let mut polling = self.polling.subscribe();
        let _ = polling.wait_for(|p| p.stopped).await;
    }

    /// Marks a poll under way, unless polling was stopped: in one step, so
    /// that [`Ingest::polls_stopped`] never misses a poll that starts.
    fn begin_poll(&self) -> Option<Busy<'_>> {
        let began = self.polling.send_if_modified(|polling| {
            let may = !polling.stopped;
            polling.busy += usize::from(may);
            may
        });
        began.then_some(Busy(&self.polling))
    }

    /// Room downstream for one more response, once the pause between two
    /// polls that starts at `next_poll` is over. Cancel-safe.
    async fn room(
        &self,
        next_poll: tokio::time::Instant,
    ) -> anyhow::Result<mpsc::Permit<'_, Response>> {
        let permit = self
            .queue
            .reserve()
            .await
            .context("the dispatch queue is closed")?;
        // A timer, even one already due, fires on the timer's next tick
        // (a millisecond): with no pause to keep, poll at once.
        if next_poll > tokio::time::Instant::now() {
            tokio::time::sleep_until(next_poll).await;
        }
        Ok(permit)
    }

    /// What a run does once polling was stopped: nothing, until cancelled.
    async fn idle(&self) -> anyhow::Result<()> {
        tracing::info!("polling stopped");
        std::future::pending().await
    }

    /// The component's report.
    pub fn report(&self) -> serde_json::Value {
        let stats = self.stats();
        let mut report = serde_json::to_value(&*stats).unwrap_or_default();
        report["polls_per_second"] = ((stats.rate() * 100.0).round() / 100.0).into();
        drop(stats);
        report["source"] = self.source.describe().into();
        report["polls_under_way"] = self.polling.borrow().busy.into();
        report["polls_in_flight"] = self.config.in_flight.into();
        report["queue"] = serde_json::json!({
            "capacity": self.queue.max_capacity(),
            "depth": self.queue.max_capacity() - self.queue.capacity(),
        });
        report
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        crate::lock(&self.stats)
    }

    /// Runs the poll loop until cancelled. Cancel-safe: a response is counted
    /// and handed on in one step, or not at all.
    pub async fn run(self: Arc<Self>, ctx: Context) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(self.config.retry)?;
        let mut next_poll = tokio::time::Instant::now();
        // The outcomes already logged in this spell of failures: each is
        // logged once, however the failures alternate (the reference server
        // draws its 500s before it checks the token, so a bad token shows as
        // 401s and 500s in turn).
        let mut logged: BTreeSet<&'static str> = BTreeSet::new();
        // Polls under way, oldest first. Until the first poll of a run
        // succeeds, and after any failure, only one at a time.
        let mut under_way: VecDeque<UnderWay<'_>> = VecDeque::new();
        let mut succeeding = false;
        tracing::info!(source = %self.source.describe(), run = ctx.run(), "polling");
        loop {
            let stopped = self.polling.borrow().stopped;
            if stopped && under_way.is_empty() {
                return self.idle().await;
            }
            let most = if succeeding { self.config.in_flight } else { 1 };
            let may_start = !stopped && under_way.len() < most;
            tokio::select! {
                biased;
                result = async { (&mut under_way.front_mut()?.task).await.ok() }, if !under_way.is_empty() => {
                    let poll = under_way.pop_front().context("a poll was under way")?;
                    let result = result.context("a poll panicked")?;
                    succeeding = result.is_ok();
                    self.finish(result, poll.permit, &mut backoff, &mut next_poll, &mut logged);
                    // Dropping `poll` marks it done: its response, if any,
                    // is counted and handed on.
                }
                () = self.stopped(), if !stopped => {}
                permit = self.room(next_poll), if may_start => {
                    let permit = permit?;
                    let Some(busy) = self.begin_poll() else { continue };
                    let started = tokio::time::Instant::now();
                    self.stats().started(started);
                    // Pace from when this poll started: a stall is not caught up on.
                    next_poll = started + self.config.min_interval;
                    let ingest = Arc::clone(&self);
                    let task = tokio::spawn(async move { ingest.source.poll().await });
                    under_way.push_back(UnderWay {
                        task: AbortOnDropHandle::new(task),
                        permit,
                        _busy: busy,
                    });
                }
            }
        }
    }

    /// Counts the outcome of a poll and hands its response on with `permit`,
    /// or sets the delay before the next poll after a failure.
    fn finish(
        &self,
        result: Result<Decoded, PollError>,
        permit: mpsc::Permit<'_, Response>,
        backoff: &mut Backoff,
        next_poll: &mut tokio::time::Instant,
        logged: &mut BTreeSet<&'static str>,
    ) {
        let mut stats = self.stats();
        stats.last_poll_at = Some(SystemTime::now());
        match result {
            Ok(decoded) => {
                *stats.polls.entry("ok").or_default() += 1;
                stats.entries += decoded.len() as u64;
                stats.consecutive_failures = 0;
                stats.last_error = None;
                stats.retry_in_ms = None;
                drop(stats);
                if !logged.is_empty() {
                    let after: Vec<_> = std::mem::take(logged).into_iter().collect();
                    tracing::info!(after = ?after, "polls succeed again");
                }
                backoff.reset();
                // An empty answer is normal, and takes no room downstream.
                if !decoded.is_empty() {
                    self.ledger.received(received_counts(&decoded));
                    permit.send(Response {
                        decoded,
                        received_at: Instant::now(),
                    });
                }
            }
            Err(err) => {
                let outcome = err.label();
                *stats.polls.entry(outcome).or_default() += 1;
                stats.consecutive_failures += 1;
                stats.last_error = Some(err.to_string());
                let delay = match &err {
                    PollError::Unauthorized => backoff.max(),
                    // The server's word, within our own bounds.
                    PollError::RateLimited {
                        retry_after: Some(after),
                        ..
                    } => (*after).clamp(self.config.retry.min, self.config.retry.max),
                    _ => backoff.next_delay(),
                };
                stats.retry_in_ms = Some(delay.as_millis());
                drop(stats);
                // One line per outcome and spell; repeats go to DEBUG.
                if logged.insert(outcome) {
                    if matches!(err, PollError::Unauthorized) {
                        tracing::error!(error = %err, retry_in = ?delay, "poll failed");
                    } else {
                        tracing::warn!(error = %err, retry_in = ?delay, "poll failed");
                    }
                } else {
                    tracing::debug!(error = %err, retry_in = ?delay, "poll failed again");
                }
                *next_poll = (*next_poll).max(tokio::time::Instant::now() + delay);
            }
        }
    }
}

/// Entries of a response by type, as they enter the pipeline.
pub(crate) fn received_counts(decoded: &Decoded) -> Vec<(&str, u64)> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for payload in &decoded.payloads {
        *counts.entry(payload.kind.as_str()).or_default() += 1;
    }
    for bad in &decoded.rejected {
        *counts
            .entry(bad.kind.as_ref().map_or(UNTYPED, Kind::as_str))
            .or_default() += 1;
    }
    counts.into_iter().collect()
}
