//! The `dispatch` component: routes each payload to the handler of its type.
//!
//! Dispatch takes one response at a time from ingest, rejects the entries
//! that could not be decoded and those of a type no plugin handles (both
//! counted, the latest kept for introspection), and hands the rest to the
//! handlers as one batch per type. A response is split and stashed before
//! any of it is delivered, and each batch leaves the stash in the same step
//! that puts it in its handler's queue, so a restart of dispatch at any
//! point neither loses nor repeats a payload.
//!
//! A handler that is merely slow fills its queue and dispatch waits for it,
//! which holds up the next poll: back-pressure. A handler that stopped on
//! errors (it failed [`MAX_FAILURES_IN_A_ROW`] calls in a row and is backing
//! off) would hold up every other type that way, so while it is stopped, a
//! batch that finds its queue full is rejected as `handler_failing` instead,
//! and counted. Before it stops, while it retries and isolates payloads
//! that trap, it is treated as slow: that lasts at most a few call
//! deadlines.
//!
//! [`MAX_FAILURES_IN_A_ROW`]: crate::handler::MAX_FAILURES_IN_A_ROW

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::batch::BatchBuilder;
use crate::engine::Context;
use crate::handler::Delivery;
use crate::ingest::{Kind, Response};
use crate::ledger::{Ledger, Rejection, UNTYPED};
use crate::lock;

#[cfg(test)]
mod tests;

/// Where the payloads of one type go.
#[derive(Clone, Debug)]
pub struct Route {
    /// The plugin that handles the type.
    pub plugin: String,
    /// Its handler's queue.
    pub queue: mpsc::Sender<Arc<Delivery>>,
    /// Whether its handler keeps failing.
    pub failing: watch::Receiver<bool>,
}

/// The routing table: payload type to route.
pub type Routes = Arc<HashMap<String, Route>>;

/// Reason under which payloads of a type no plugin handles are rejected.
pub const UNHANDLED: &str = "unhandled";
/// Reason under which batches are shed while their handler keeps failing.
pub const HANDLER_FAILING: &str = "handler_failing";

/// What outlives any one run of dispatch: its queue, routes and stash.
pub struct Dispatch {
    queue: tokio::sync::Mutex<mpsc::Receiver<Response>>,
    routes: watch::Receiver<Routes>,
    ledger: Arc<Ledger>,
    stash: Mutex<VecDeque<(Route, Arc<Delivery>)>>,
    stats: Mutex<Stats>,
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Responses taken from ingest.
    responses: u64,
    /// Batches handed to handlers.
    batches: u64,
    /// Payloads handed to handlers.
    routed: u64,
    /// Entries rejected here, by reason.
    rejected: BTreeMap<&'static str, u64>,
}

impl Dispatch {
    /// Dispatch reading from `queue` and routing by `routes`.
    pub fn new(
        queue: mpsc::Receiver<Response>,
        routes: watch::Receiver<Routes>,
        ledger: Arc<Ledger>,
    ) -> Dispatch {
        Dispatch {
            queue: tokio::sync::Mutex::new(queue),
            routes,
            ledger,
            stash: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// The component's report: its counters, the pipeline's accounts and the
    /// latest rejected entries.
    pub fn report(&self) -> serde_json::Value {
        let mut report = serde_json::to_value(&*lock(&self.stats)).unwrap_or_default();
        let accounts = self.ledger.snapshot();
        report["stashed"] = lock(&self.stash).len().into();
        report["accounts"] = accounts.to_json();
        report["recent_rejections"] =
            serde_json::to_value(accounts.recent().collect::<Vec<_>>()).unwrap_or_default();
        report
    }

    /// Runs until cancelled. Cancel-safe at every await.
    pub async fn run(self: Arc<Self>, _ctx: Context) -> anyhow::Result<()> {
        // The queue's receiving end is leased by this run alone.
        let mut queue = self.queue.lock().await;
        loop {
            if lock(&self.stash).is_empty() {
                let response = queue.recv().await.context("the ingest queue is closed")?;
                self.split(response);
            }
            self.deliver().await;
        }
    }

    /// Sorts a response into one delivery per type and stashes them; counts
    /// what cannot be routed.
    fn split(&self, response: Response) {
        let routes = self.routes.borrow().clone();
        let mut rejections = Vec::new();
        for bad in response.decoded.rejected {
            let kind = bad.kind.as_ref().map_or(UNTYPED, Kind::as_str);
            rejections.push(Rejection::now(kind, bad.reason.label(), bad.detail));
        }
        let mut groups: Vec<(Kind, Route, BatchBuilder)> = Vec::new();
        let mut unhandled: BTreeMap<Kind, u64> = BTreeMap::new();
        for payload in response.decoded.payloads {
            if let Some((.., builder)) = groups.iter_mut().find(|(k, ..)| *k == payload.kind) {
                push(builder, payload.value);
            } else if let Some(route) = routes.get(payload.kind.as_str()) {
                let mut builder = BatchBuilder::new(&payload.kind);
                push(&mut builder, payload.value);
                groups.push((payload.kind, route.clone(), builder));
            } else {
                *unhandled.entry(payload.kind).or_default() += 1;
            }
        }
        for (kind, n) in unhandled {
            let detail = format!("no plugin handles type {kind:?}");
            rejections.extend((0..n).map(|_| Rejection::now(kind.as_str(), UNHANDLED, &detail)));
        }
        let mut stats = lock(&self.stats);
        stats.responses += 1;
        for rejection in &rejections {
            *stats.rejected.entry(rejection.reason).or_default() += 1;
        }
        drop(stats);
        self.ledger.rejected(rejections);
        let received_at = response.received_at;
        lock(&self.stash).extend(groups.into_iter().map(|(_, route, builder)| {
            (
                route,
                Arc::new(Delivery {
                    batch: builder.finish(),
                    received_at,
                }),
            )
        }));
    }

    /// Hands every stashed batch to its handler, waiting for room in each
    /// handler's queue in turn.
    async fn deliver(&self) {
        loop {
            let Some(route) = lock(&self.stash).front().map(|(route, _)| route.clone()) else {
                return;
            };
            let permit = reserve(&route).await;
            let Some((_, delivery)) = lock(&self.stash).pop_front() else {
                return;
            };
            let count = crate::batch::len(&delivery.batch) as u64;
            let (reason, detail) = match permit {
                Ok(permit) => {
                    permit.send(delivery);
                    let mut stats = lock(&self.stats);
                    stats.batches += 1;
                    stats.routed += count;
                    continue;
                }
                Err(Refused::Gone) => (UNHANDLED, format!("plugin {} was removed", route.plugin)),
                Err(Refused::Failing) => (
                    HANDLER_FAILING,
                    format!("plugin {} keeps failing", route.plugin),
                ),
            };
            let kind = crate::batch::kind(&delivery.batch).to_owned();
            let rejected = (0..count).map(|_| Rejection::now(&kind, reason, &detail));
            self.ledger.rejected(rejected);
            *lock(&self.stats).rejected.entry(reason).or_default() += count;
        }
    }
}

/// Why a batch could not be handed to its handler.
enum Refused {
    /// The plugin was removed after the batch was routed.
    Gone,
    /// The handler's queue is full and the handler keeps failing.
    Failing,
}

/// Room for one batch in the queue of `route`, waiting for it unless the
/// handler keeps failing. Cancel-safe.
async fn reserve(route: &Route) -> Result<mpsc::Permit<'_, Arc<Delivery>>, Refused> {
    match route.queue.try_reserve() {
        Ok(permit) => return Ok(permit),
        Err(mpsc::error::TrySendError::Closed(())) => return Err(Refused::Gone),
        Err(mpsc::error::TrySendError::Full(())) => {}
    }
    let mut failing = route.failing.clone();
    let starts_failing = async move {
        // A handler that is gone without saying so is not failing.
        if failing.wait_for(|failing| *failing).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        permit = route.queue.reserve() => permit.map_err(|_| Refused::Gone),
        () = starts_failing => Err(Refused::Failing),
    }
}

fn push(builder: &mut BatchBuilder, value: crate::ingest::Value) {
    // Decoding guarantees that a value matches its kind.
    let pushed = builder.push(value);
    debug_assert!(pushed.is_ok(), "a decoded value does not match its kind");
}
