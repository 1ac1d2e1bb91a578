//! Accounting of every payload that enters the pipeline.
//!
//! Each payload is counted once as received, when ingest hands its response
//! on, and once more when its fate is known: applied by a handler, or
//! rejected under a reason. What is neither is in flight, so at every moment
//! `received = applied + rejected + in_flight`, for the pipeline as a whole
//! and for each type.
//!
//! Types come from the API and are not trusted to be few: past
//! [`MAX_TYPES`] distinct names, further types are counted under
//! [`OVERFLOW_TYPE`].

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// How many distinct type names are counted on their own.
pub const MAX_TYPES: usize = 64;

/// The name under which types past [`MAX_TYPES`] are counted.
pub const OVERFLOW_TYPE: &str = "(other)";

/// The name under which entries with no readable type are counted.
pub const UNTYPED: &str = "(untyped)";

/// How many recent rejections are kept for introspection.
pub const RECENT: usize = 32;

/// The counts of one type, or of the whole pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Payloads that entered the pipeline.
    pub received: u64,
    /// Payloads applied to a handler's aggregate.
    pub applied: u64,
    /// Payloads rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// Payloads rejected for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Payloads received whose fate is not known yet.
    pub fn in_flight(&self) -> u64 {
        self.received
            .saturating_sub(self.applied + self.rejected_total())
    }

    fn add(&mut self, other: &Counts) {
        self.received += other.received;
        self.applied += other.applied;
        for (reason, n) in &other.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
    }
}

/// A rejected payload, kept for introspection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejection {
    /// The payload's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason it is counted under.
    pub reason: &'static str,
    /// What exactly was wrong.
    pub detail: String,
    /// When it was rejected.
    #[serde(with = "humantime_serde_rfc3339")]
    pub at: SystemTime,
}

mod humantime_serde_rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*at))
    }
}

/// The state of the accounts at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accounts {
    types: BTreeMap<String, Counts>,
    recent: VecDeque<Rejection>,
}

impl Accounts {
    /// Counts of each type.
    pub fn types(&self) -> &BTreeMap<String, Counts> {
        &self.types
    }

    /// Counts of one type, zero if it was never seen.
    pub fn of(&self, kind: &str) -> Counts {
        self.types.get(kind).cloned().unwrap_or_default()
    }

    /// Counts of the whole pipeline.
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        for counts in self.types.values() {
            total.add(counts);
        }
        total
    }

    /// The most recent rejections, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Rejection> {
        self.recent.iter()
    }

    /// The accounts as JSON, for reports.
    pub fn to_json(&self) -> serde_json::Value {
        let view = |c: &Counts| {
            serde_json::json!({
                "received": c.received,
                "applied": c.applied,
                "rejected": c.rejected,
                "in_flight": c.in_flight(),
            })
        };
        let types: serde_json::Map<_, _> = self
            .types
            .iter()
            .map(|(kind, c)| (kind.clone(), view(c)))
            .collect();
        serde_json::json!({ "total": view(&self.total()), "types": types })
    }

    fn entry(&mut self, kind: &str) -> &mut Counts {
        if !self.types.contains_key(kind) && self.types.len() >= MAX_TYPES {
            return self.types.entry(OVERFLOW_TYPE.to_owned()).or_default();
        }
        self.types.entry(kind.to_owned()).or_default()
    }
}

/// The pipeline's accounts, shared by every component.
///
/// Updates take a short lock and never wait; readers get a consistent
/// [`Accounts`] and can wait for a change with [`Ledger::subscribe`].
#[derive(Debug)]
pub struct Ledger {
    accounts: watch::Sender<Accounts>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            accounts: watch::Sender::new(Accounts::default()),
        }
    }
}

impl Ledger {
    /// A ledger with nothing counted.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Counts payloads that entered the pipeline, `n` of type `kind` at a time.
    pub fn received<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        self.accounts.send_modify(|accounts| {
            for (kind, n) in counts {
                accounts.entry(kind).received += n;
            }
        });
    }

    /// Counts `n` payloads of type `kind` applied to their aggregate.
    pub fn applied(&self, kind: &str, n: u64) {
        if n > 0 {
            self.accounts
                .send_modify(|accounts| accounts.entry(kind).applied += n);
        }
    }

    /// Counts rejected payloads and keeps each for introspection.
    pub fn rejected(&self, rejections: impl IntoIterator<Item = Rejection>) {
        self.accounts.send_modify(|accounts| {
            for rejection in rejections {
                *accounts
                    .entry(&rejection.kind)
                    .rejected
                    .entry(rejection.reason)
                    .or_default() += 1;
                if accounts.recent.len() == RECENT {
                    accounts.recent.pop_front();
                }
                accounts.recent.push_back(rejection);
            }
        });
    }

    /// A copy of the accounts now.
    pub fn snapshot(&self) -> Accounts {
        self.accounts.borrow().clone()
    }

    /// A receiver that sees every change, for waiting on a condition.
    pub fn subscribe(&self) -> watch::Receiver<Accounts> {
        self.accounts.subscribe()
    }
}

impl Rejection {
    /// A rejection made now.
    pub fn now(kind: &str, reason: &'static str, detail: impl Into<String>) -> Rejection {
        Rejection {
            kind: kind.to_owned(),
            reason,
            detail: detail.into(),
            at: SystemTime::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_balance_per_type_and_in_total() {
        let ledger = Ledger::new();
        ledger.received([("load_avg", 5), ("cpu_usage", 3)]);
        ledger.applied("load_avg", 3);
        ledger.rejected([Rejection::now("load_avg", "out_of_range", "-1")]);
        ledger.applied("cpu_usage", 3);
        let accounts = ledger.snapshot();
        let load = accounts.of("load_avg");
        assert_eq!(
            (load.received, load.applied, load.rejected_total()),
            (5, 3, 1)
        );
        assert_eq!(load.in_flight(), 1);
        assert_eq!(accounts.of("cpu_usage").in_flight(), 0);
        let total = accounts.total();
        assert_eq!(
            (total.received, total.applied, total.in_flight()),
            (8, 6, 1)
        );
        assert_eq!(
            accounts.to_json()["types"]["load_avg"]["rejected"]["out_of_range"],
            1
        );
    }

    #[test]
    fn types_past_the_limit_share_one_bucket() {
        let ledger = Ledger::new();
        let names: Vec<String> = (0..MAX_TYPES + 10).map(|i| format!("t{i}")).collect();
        ledger.received(names.iter().map(|n| (n.as_str(), 1)));
        let accounts = ledger.snapshot();
        assert_eq!(accounts.types().len(), MAX_TYPES + 1);
        assert_eq!(accounts.of(OVERFLOW_TYPE).received, 10);
        assert_eq!(accounts.total().received, (MAX_TYPES + 10) as u64);
    }

    #[test]
    fn recent_rejections_are_bounded_and_keep_the_newest() {
        let ledger = Ledger::new();
        let many = (0..RECENT + 5).map(|i| Rejection::now("x", "wrong_shape", i.to_string()));
        ledger.rejected(many);
        let accounts = ledger.snapshot();
        let kept: Vec<_> = accounts.recent().map(|r| r.detail.clone()).collect();
        assert_eq!(kept.len(), RECENT);
        assert_eq!(kept.first().map(String::as_str), Some("5"));
        assert_eq!(
            accounts.of("x").rejected["wrong_shape"],
            (RECENT + 5) as u64
        );
    }
}
