//! The aggregates of the bundled plugins, computed independently from the
//! entries a test server delivered, in the JSON shapes `/plugins` reports.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The expected `state` of each bundled plugin.
#[derive(Debug, Default)]
pub struct Expected {
    /// `load_avg`: min, max, count.
    pub load: (Option<f64>, Option<f64>, u64),
    /// `cpu_usage`: per-CPU sums and counts, and the payload count.
    pub cpu: (Vec<(f64, u64)>, u64),
    /// `last_kernel_upgrade`: the latest instant and the count.
    pub kernel: (Option<OffsetDateTime>, u64),
}

impl Expected {
    /// The aggregates of `entries`; entries of other types, and entries that
    /// sluice must reject, are ignored.
    pub fn from_entries(entries: &[serde_json::Value]) -> Expected {
        let mut expected = Expected::default();
        for entry in entries {
            let value = &entry["payload"]["value"];
            match entry["type"].as_str() {
                Some("load_avg") => {
                    let Some(load) = value.as_f64().filter(|l| *l >= 0.0) else {
                        continue;
                    };
                    let (min, max, count) = &mut expected.load;
                    *min = Some(min.map_or(load, |m| m.min(load)));
                    *max = Some(max.map_or(load, |m| m.max(load)));
                    *count += 1;
                }
                Some("cpu_usage") => {
                    let Some(cpus) = value.as_array() else {
                        continue;
                    };
                    let fraction = |c: &serde_json::Value| {
                        c.as_f64().is_some_and(|c| (0.0..=1.0).contains(&c))
                    };
                    if cpus.is_empty() || !cpus.iter().all(fraction) {
                        continue;
                    }
                    let (sums, count) = &mut expected.cpu;
                    for (i, cpu) in cpus
                        .iter()
                        .filter_map(serde_json::Value::as_f64)
                        .enumerate()
                    {
                        if sums.len() <= i {
                            sums.push((0.0, 0));
                        }
                        sums[i].0 += cpu;
                        sums[i].1 += 1;
                    }
                    *count += 1;
                }
                Some("last_kernel_upgrade") => {
                    let Some(at) = value.as_str() else { continue };
                    let Ok(at) = OffsetDateTime::parse(at, &Rfc3339) else {
                        continue;
                    };
                    let (latest, count) = &mut expected.kernel;
                    *latest = Some(latest.map_or(at, |l| l.max(at)));
                    *count += 1;
                }
                _ => {}
            }
        }
        expected
    }

    /// Compares with the `state` JSON reported for plugin `name`; returns
    /// what differs.
    pub fn check(&self, name: &str, state: &serde_json::Value) -> Result<(), String> {
        let close =
            |a: f64, b: &serde_json::Value| b.as_f64().is_some_and(|b| (a - b).abs() < 1e-9);
        let opt = |a: Option<f64>, b: &serde_json::Value| match a {
            None => b.is_null(),
            Some(a) => close(a, b),
        };
        let ok = match name {
            "load_avg" => {
                let (min, max, count) = self.load;
                opt(min, &state["min"]) && opt(max, &state["max"]) && state["count"] == count
            }
            "cpu_usage" => {
                let (sums, count) = &self.cpu;
                let average = state["average"].as_array().cloned().unwrap_or_default();
                state["count"] == *count
                    && average.len() == sums.len()
                    && sums
                        .iter()
                        .zip(&average)
                        .all(|((sum, n), avg)| close(sum / *n as f64, avg))
            }
            "last_kernel_upgrade" => {
                let (latest, count) = self.kernel;
                let reported = state["latest"]
                    .as_str()
                    .map(|at| OffsetDateTime::parse(at, &Rfc3339));
                let same = match (latest, reported) {
                    (None, None) => true,
                    (Some(expected), Some(Ok(reported))) => expected == reported,
                    _ => false,
                };
                same && state["count"] == count
            }
            other => return Err(format!("no expectation for plugin {other}")),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{name}: expected {self:?}, reported {state}"))
        }
    }
}
