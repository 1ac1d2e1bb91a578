//! Prometheus metrics of the pipeline, served at `GET /metrics` by the
//! admin server.
//!
//! Almost every metric is read at scrape time from the counters that the
//! components already keep for their reports: the engine report, the
//! [`Ledger`](crate::ledger::Ledger), each handler's counters and the
//! registry's events. Logs, reports and metrics therefore tell the same
//! numbers. The one thing recorded for metrics alone is how plugin calls go
//! and how long they take ([`CallMetrics`]), which the handler notes as each
//! call returns.
//!
//! Labels stay bounded: components and plugins are few, payload types are
//! capped by the ledger ([`MAX_TYPES`](crate::ledger::MAX_TYPES)), reasons
//! and outcomes are fixed names. No label ever carries a payload's value.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `sluice_component_state` | gauge, 1 for the current state | `component`, `state` |
//! | `sluice_component_starts_total` | counter | `component` |
//! | `sluice_component_restarts_total` | counter (failures and restart requests) | `component` |
//! | `sluice_component_bounces_total` | counter | `component` |
//! | `sluice_component_uptime_seconds` | gauge, 0 unless running | `component` |
//! | `sluice_polls_total` | counter | `outcome` |
//! | `sluice_poll_consecutive_failures` | gauge | |
//! | `sluice_poll_retry_delay_seconds` | gauge, 0 after a success | |
//! | `sluice_polls_per_second` | gauge, over the latest 64 polls | |
//! | `sluice_queue_depth` / `sluice_queue_capacity` | gauge | `component` (the reader) |
//! | `sluice_dispatch_stashed_batches` | gauge | |
//! | `sluice_payloads_received_total` | counter | `type` |
//! | `sluice_payloads_applied_total` | counter | `type` |
//! | `sluice_payloads_rejected_total` | counter | `type`, `reason` |
//! | `sluice_payloads_in_flight` | gauge | `type` |
//! | `sluice_plugin_info` | info | `plugin`, `version` |
//! | `sluice_plugin_calls_total` | counter | `plugin`, `outcome` (`ok`, `error`, `trap`) |
//! | `sluice_plugin_call_duration_seconds` | histogram | `plugin` |
//! | `sluice_plugin_batches_total` | counter | `plugin` |
//! | `sluice_plugin_traps_total` | counter | `plugin` |
//! | `sluice_plugin_quarantined_payloads_total` | counter | `plugin` |
//! | `sluice_plugin_failing` | gauge, 0 or 1 | `plugin` |
//! | `sluice_plugin_reloads_total` | counter | `plugin`, `outcome` (`swapped`, `turned_down`) |
//! | `sluice_plugin_file_events_total` | counter | `outcome` (`added`, `offered`, `removed`, `failed`) |
//! | `sluice_plugin_load_errors` | gauge | |

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;

use crate::engine::{ComponentReport, ComponentState};
use crate::handler::QUARANTINED;
use crate::ledger::Accounts;
use crate::pipeline::Pipeline;
use crate::plugin::CallError;

/// Upper bounds of the call-latency buckets, in seconds: from 50 µs (a
/// small batch on a warm instance) to past the default 1 s deadline.
const CALL_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Every outcome of a poll, so that each series exists from the start.
/// Outcomes missing here still show once they happen.
const POLL_OUTCOMES: [&str; 12] = [
    "ok",
    "unauthorized",
    "rate_limited",
    "server_error",
    "bad_status",
    "connect_failed",
    "timeout",
    "closed_early",
    "too_large",
    "redirect",
    "body_cut_off",
    "body_not_json",
];

/// Every state of a component, for the one-gauge-per-state encoding.
const STATES: [ComponentState; 5] = [
    ComponentState::Starting,
    ComponentState::Running,
    ComponentState::BackingOff,
    ComponentState::Stopping,
    ComponentState::Stopped,
];

/// How a plugin call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call returned a new aggregate.
    Ok,
    /// The plugin returned an error (it could not read the state).
    Error,
    /// The call trapped, ran out of time or out of memory.
    Trap,
}

impl CallOutcome {
    /// The outcome of a call that returned `result`.
    pub fn of<T>(result: &Result<T, CallError>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(err) if err.is_fatal() => CallOutcome::Trap,
            Err(_) => CallOutcome::Error,
        }
    }
}

/// How one plugin's calls went and how long they took. Clones share the
/// same counters.
#[derive(Clone, Debug)]
pub struct CallMetrics {
    duration: Histogram,
    ok: Counter,
    error: Counter,
    trap: Counter,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics {
            duration: Histogram::new(CALL_BUCKETS),
            ok: Counter::default(),
            error: Counter::default(),
            trap: Counter::default(),
        }
    }
}

impl CallMetrics {
    /// No call yet.
    pub fn new() -> CallMetrics {
        CallMetrics::default()
    }

    /// Records a call that took `elapsed` and ended with `outcome`.
    pub fn observe(&self, elapsed: Duration, outcome: CallOutcome) {
        self.duration.observe(elapsed.as_secs_f64());
        match outcome {
            CallOutcome::Ok => self.ok.inc(),
            CallOutcome::Error => self.error.inc(),
            CallOutcome::Trap => self.trap.inc(),
        };
    }

    /// Calls recorded so far.
    pub fn count(&self) -> u64 {
        self.ok.get() + self.error.get() + self.trap.get()
    }
}

/// The text format of an exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics' text format, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format a client asks for in its `Accept` header: OpenMetrics if
    /// it names it, else Prometheus' text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What the pipeline says of itself at one scrape.
#[derive(Debug)]
pub struct Scrape {
    components: Vec<ComponentReport>,
    accounts: Accounts,
    plugins: Vec<PluginSample>,
    load_errors: usize,
    file_events: BTreeMap<&'static str, u64>,
}

/// One plugin at a scrape.
#[derive(Debug)]
struct PluginSample {
    name: String,
    version: String,
    /// Its handler's report (see [`crate::handler::Slot::report`]).
    report: Value,
    calls: CallMetrics,
}

impl Scrape {
    /// Reads the pipeline's counters now. Cancel-safe.
    pub async fn take(pipeline: &Pipeline) -> Scrape {
        let components = pipeline.engine().report().await;
        let registry = pipeline.registry();
        let plugins = registry
            .slots()
            .values()
            .map(|slot| PluginSample {
                name: slot.name().to_owned(),
                version: slot.plugin().version().to_owned(),
                report: slot.report(),
                calls: slot.calls().clone(),
            })
            .collect();
        Scrape {
            components,
            accounts: pipeline.ledger().snapshot(),
            plugins,
            load_errors: registry.failures().len(),
            file_events: registry.event_counts(),
        }
    }

    /// The exposition in `format`.
    pub fn encode(self, format: Format) -> Result<String, fmt::Error> {
        let mut registry = Registry::with_prefix("sluice");
        registry.register_collector(Box::new(self));
        let mut exposition = String::new();
        match format {
            Format::Prometheus => prometheus_text::encode(&mut exposition, &registry)?,
            Format::OpenMetrics => text::encode(&mut exposition, &registry)?,
        }
        Ok(exposition)
    }

    fn components(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let cs = &self.components;
        let mut state = encoder.encode_descriptor(
            "component_state",
            "Whether the component is in this state (1) or not (0).",
            None,
            MetricType::Gauge,
        )?;
        for c in cs {
            for s in STATES {
                let labels = [("component", c.name.as_str()), ("state", s.as_str())];
                let gauge = ConstGauge::new(i64::from(c.state == s));
                gauge.encode(state.encode_family(&labels)?)?;
            }
        }
        let by_name = |c: &ComponentReport| [("component", c.name.clone())];
        counters(
            encoder,
            "component_starts",
            "Runs of the component started.",
            cs.iter().map(|c| (by_name(c), c.starts)),
        )?;
        counters(
            encoder,
            "component_restarts",
            "Runs that failed (or were restarted by request) and led to a restart.",
            cs.iter().map(|c| (by_name(c), c.restarts)),
        )?;
        counters(
            encoder,
            "component_bounces",
            "Runs stopped because an input stopped.",
            cs.iter().map(|c| (by_name(c), c.bounces)),
        )?;
        family(
            encoder,
            "component_uptime",
            "How long the current run has been going; 0 unless running.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            cs.iter().map(|c| {
                let ms = c.uptime_ms.unwrap_or(0);
                (by_name(c), ConstGauge::new(ms as f64 / 1000.0))
            }),
        )
    }

    fn ingest(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let report = self.report_of("ingest");
        let mut polls: BTreeMap<String, u64> =
            POLL_OUTCOMES.iter().map(|o| ((*o).to_owned(), 0)).collect();
        if let Some(seen) = report.and_then(|r| r["polls"].as_object()) {
            for (outcome, n) in seen {
                polls.insert(outcome.clone(), n.as_u64().unwrap_or(0));
            }
        }
        counters(
            encoder,
            "polls",
            "Polls of the metrics API, by outcome.",
            polls.into_iter().map(|(o, n)| ([("outcome", o)], n)),
        )?;
        let field = |name: &str| report.map_or(&Value::Null, |r| &r[name]);
        let failures = field("consecutive_failures").as_u64().unwrap_or(0);
        let retry_ms = field("retry_in_ms").as_u64().unwrap_or(0);
        let rate = field("polls_per_second").as_f64().unwrap_or(0.0);
        gauge(
            encoder,
            "poll_consecutive_failures",
            "Failed polls since the last success.",
            None,
            ConstGauge::new(failures as i64),
        )?;
        gauge(
            encoder,
            "poll_retry_delay",
            "Delay before the next poll after a failure; 0 after a success.",
            Some(&Unit::Seconds),
            ConstGauge::new(retry_ms as f64 / 1000.0),
        )?;
        gauge(
            encoder,
            "polls_per_second",
            "Polls started per second, over the latest 64 polls.",
            None,
            ConstGauge::new(rate),
        )
    }

    fn queues(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        // The queue a component reads from: dispatch reads the one ingest
        // fills, each handler its own.
        let mut queues: Vec<(String, &Value)> = Vec::new();
        if let Some(report) = self.report_of("ingest") {
            queues.push(("dispatch".to_owned(), &report["queue"]));
        }
        for plugin in &self.plugins {
            queues.push((format!("handler:{}", plugin.name), &plugin.report["queue"]));
        }
        let value = |queue: &Value, key: &str| queue[key].as_i64().unwrap_or(0);
        family(
            encoder,
            "queue_depth",
            "Items waiting in the queue that the component reads from.",
            None,
            MetricType::Gauge,
            queues.iter().map(|(c, q)| {
                (
                    [("component", c.as_str())],
                    ConstGauge::new(value(q, "depth")),
                )
            }),
        )?;
        family(
            encoder,
            "queue_capacity",
            "Room of the queue that the component reads from.",
            None,
            MetricType::Gauge,
            queues.iter().map(|(c, q)| {
                let capacity = ConstGauge::new(value(q, "capacity"));
                ([("component", c.as_str())], capacity)
            }),
        )?;
        let stashed = self
            .report_of("dispatch")
            .and_then(|r| r["stashed"].as_i64())
            .unwrap_or(0);
        gauge(
            encoder,
            "dispatch_stashed_batches",
            "Batches split from a response and not yet handed to their handler.",
            None,
            ConstGauge::new(stashed),
        )
    }

    fn payloads(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let types = self.accounts.types();
        let by_type = |kind: &str| [("type", kind.to_owned())];
        counters(
            encoder,
            "payloads_received",
            "Payloads that entered the pipeline.",
            types.iter().map(|(k, c)| (by_type(k), c.received)),
        )?;
        counters(
            encoder,
            "payloads_applied",
            "Payloads applied to their plugin's aggregate.",
            types.iter().map(|(k, c)| (by_type(k), c.applied)),
        )?;
        counters(
            encoder,
            "payloads_rejected",
            "Payloads rejected, by reason.",
            types.iter().flat_map(|(kind, counts)| {
                counts.rejected.iter().map(move |(reason, n)| {
                    (
                        [("type", kind.clone()), ("reason", (*reason).to_owned())],
                        *n,
                    )
                })
            }),
        )?;
        family(
            encoder,
            "payloads_in_flight",
            "Payloads received whose fate is not known yet.",
            None,
            MetricType::Gauge,
            types
                .iter()
                .map(|(k, c)| (by_type(k), ConstGauge::new(c.in_flight() as i64))),
        )
    }

    fn plugins(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let ps = &self.plugins;
        let mut info = encoder.encode_descriptor(
            "plugin",
            "The running version of each plugin.",
            None,
            MetricType::Info,
        )?;
        for p in ps {
            let labels = [("plugin", p.name.as_str())];
            info.encode_family(&labels)?
                .encode_info(&[("version", p.version.as_str())])?;
        }
        counters(
            encoder,
            "plugin_calls",
            "Calls to a plugin, by outcome.",
            ps.iter().flat_map(|p| {
                [
                    ("ok", &p.calls.ok),
                    ("error", &p.calls.error),
                    ("trap", &p.calls.trap),
                ]
                .map(|(outcome, n)| {
                    (
                        [("plugin", p.name.clone()), ("outcome", outcome.to_owned())],
                        n.get(),
                    )
                })
            }),
        )?;
        let mut latency = encoder.encode_descriptor(
            "plugin_call_duration",
            "How long calls to a plugin took, traps included.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for p in ps {
            let labels = [("plugin", p.name.as_str())];
            p.calls.duration.encode(latency.encode_family(&labels)?)?;
        }
        let by_name = |p: &PluginSample| [("plugin", p.name.clone())];
        let stat = |p: &PluginSample, path: &[&str]| {
            path.iter()
                .fold(&p.report, |v, key| &v[key])
                .as_u64()
                .unwrap_or(0)
        };
        counters(
            encoder,
            "plugin_batches",
            "Batches a plugin's handler finished.",
            ps.iter().map(|p| (by_name(p), stat(p, &["batches"]))),
        )?;
        counters(
            encoder,
            "plugin_traps",
            "Calls that trapped, ran out of time or out of memory.",
            ps.iter().map(|p| (by_name(p), stat(p, &["traps"]))),
        )?;
        counters(
            encoder,
            "plugin_quarantined_payloads",
            "Payloads that made the plugin fail on their own.",
            ps.iter()
                .map(|p| (by_name(p), stat(p, &["rejected", QUARANTINED]))),
        )?;
        family(
            encoder,
            "plugin_failing",
            "Whether the plugin's handler stopped on errors and has not applied a batch since.",
            None,
            MetricType::Gauge,
            ps.iter().map(|p| {
                let failing = p.report["failing"].as_bool().unwrap_or(false);
                (by_name(p), ConstGauge::new(i64::from(failing)))
            }),
        )?;
        counters(
            encoder,
            "plugin_reloads",
            "New versions offered to a running plugin, by outcome of their trial.",
            ps.iter().flat_map(|p| {
                let swapped = stat(p, &["versions", "reloads"]);
                let turned_down = stat(p, &["versions", "turned_down"]);
                [("swapped", swapped), ("turned_down", turned_down)].map(|(outcome, n)| {
                    (
                        [("plugin", p.name.clone()), ("outcome", outcome.to_owned())],
                        n,
                    )
                })
            }),
        )?;
        counters(
            encoder,
            "plugin_file_events",
            "Plugin files added, offered as a new version, removed, or failed to load.",
            ["added", "offered", "removed", "failed"].map(|outcome| {
                let n = self.file_events.get(outcome).copied().unwrap_or(0);
                ([("outcome", outcome)], n)
            }),
        )?;
        gauge(
            encoder,
            "plugin_load_errors",
            "Plugin files that could not be used.",
            None,
            ConstGauge::new(self.load_errors as i64),
        )
    }

    /// The own report of the component `name`, if it is there.
    fn report_of(&self, name: &str) -> Option<&Value> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.report)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.components(&mut encoder)?;
        self.ingest(&mut encoder)?;
        self.queues(&mut encoder)?;
        self.payloads(&mut encoder)?;
        self.plugins(&mut encoder)
    }
}

/// Encodes one family of `samples`, all of type `kind`.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    M: EncodeMetric,
{
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, sample) in samples {
        sample.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one family of counters read from reports.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let samples = samples.into_iter().map(|(l, n)| (l, ConstCounter::new(n)));
    family(encoder, name, help, None, MetricType::Counter, samples)
}

/// Encodes one gauge without labels.
fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: ConstGauge<N>,
) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric: MetricEncoder = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    value.encode(metric)
}
