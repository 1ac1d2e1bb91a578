//! The `cpu_usage` handler: the average usage of each CPU.
//!
//! Renders as `{"average": [numbers], "count": n}`, where `count` is the
//! number of payloads applied and `average[i]` is the mean of CPU `i` over
//! the payloads that reported CPU `i`: the number of CPUs may change from
//! payload to payload, both ways. Sums are kept in `f64`.
//!
//! A payload is refused, leaving the aggregate as it was, when it has no
//! values, more than [`MAX_CPUS`] values, a value that is not finite, or a
//! value that would carry a sum out of the range of `f64`.

use std::fmt;

use sluice_plugin_sdk::codec::{Reader, Writer};
use sluice_plugin_sdk::{Aggregate, Batch, CpuUsageBatch, Rejection, StateError, json};

sluice_plugin_sdk::export_aggregate!(State);

/// Tag of this handler's state bytes.
const TAG: u8 = b'C';
/// Layout of the state: `count: u64, cpus: u32`, then `sum: f64,
/// samples: u64` for each CPU.
const VERSION: u8 = 1;

/// The most CPUs one payload may report (the most Linux supports on
/// x86-64), which bounds the state at 128 KiB.
pub const MAX_CPUS: usize = 8192;

/// Reason given for every payload of a batch whose `lengths` do not add up
/// to its number of `values`.
pub const MALFORMED_BATCH: &str = "lengths do not match values";

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The payload reports no CPU.
    Empty,
    /// The payload reports more than [`MAX_CPUS`] CPUs.
    TooManyCpus,
    /// A value is NaN or an infinity.
    NotFinite,
    /// A value would carry a sum out of the range of `f64`.
    SumOutOfRange,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "no cpu values",
            Self::TooManyCpus => "too many cpus",
            Self::NotFinite => "not a finite number",
            Self::SumOutOfRange => "sum out of range",
        })
    }
}

/// What is known of one CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cpu {
    /// Sum of the values reported for this CPU.
    sum: f64,
    /// Number of payloads that reported this CPU; at least 1.
    samples: u64,
}

/// The aggregate: per CPU, the sum and number of values reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    count: u64,
    /// Indexed by CPU. A payload of `n` values reports CPUs `0..n`, so the
    /// number of samples never grows with the index, and CPU 0 has one per
    /// payload.
    cpus: Vec<Cpu>,
}

impl State {
    /// Number of payloads applied.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Average of each CPU over the payloads that reported it.
    pub fn average(&self) -> Vec<f64> {
        // `samples` is at least 1 for every CPU held.
        self.cpus
            .iter()
            .map(|cpu| cpu.sum / cpu.samples as f64)
            .collect()
    }

    /// Applies one payload, the usage of CPUs `0..usage.len()`, or refuses
    /// it and changes nothing.
    pub fn apply(&mut self, usage: &[f64]) -> Result<(), Invalid> {
        if usage.is_empty() {
            return Err(Invalid::Empty);
        }
        if usage.len() > MAX_CPUS {
            return Err(Invalid::TooManyCpus);
        }
        if usage.iter().any(|value| !value.is_finite()) {
            return Err(Invalid::NotFinite);
        }
        let overflows = usage
            .iter()
            .zip(&self.cpus)
            .any(|(value, cpu)| !(cpu.sum + value).is_finite());
        if overflows {
            return Err(Invalid::SumOutOfRange);
        }
        for (index, &value) in usage.iter().enumerate() {
            match self.cpus.get_mut(index) {
                Some(cpu) => {
                    cpu.sum += value;
                    cpu.samples = cpu.samples.saturating_add(1);
                }
                None => self.cpus.push(Cpu {
                    sum: value,
                    samples: 1,
                }),
            }
        }
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Writes the state for the host to keep.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(TAG, VERSION);
        // At most `MAX_CPUS` CPUs are ever held.
        let cpus = u32::try_from(self.cpus.len()).expect("at most MAX_CPUS cpus");
        writer.u64(self.count).u32(cpus);
        for cpu in &self.cpus {
            writer.f64(cpu.sum).u64(cpu.samples);
        }
        writer.finish()
    }

    /// Reads a state written by [`State::encode`]; empty bytes are the
    /// state of no payloads.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let Some(mut reader) = Reader::open(bytes, TAG, VERSION)? else {
            return Ok(Self::default());
        };
        let count = reader.u64()?;
        let len = reader.u32()? as usize;
        if len > MAX_CPUS {
            return Err(StateError::Invalid("too many cpus"));
        }
        if (count == 0) != (len == 0) {
            return Err(StateError::Invalid("cpus do not match count"));
        }
        let mut cpus = Vec::with_capacity(len);
        // Each CPU has as many samples as the previous one at most, and
        // CPU 0 one per payload.
        let mut bound = count;
        for _ in 0..len {
            let cpu = Cpu {
                sum: reader.f64()?,
                samples: reader.u64()?,
            };
            if !cpu.sum.is_finite() {
                return Err(StateError::Invalid("sum is not finite"));
            }
            let expected = if cpus.is_empty() {
                cpu.samples == count
            } else {
                cpu.samples <= bound
            };
            if cpu.samples == 0 || !expected {
                return Err(StateError::Invalid("samples do not match count"));
            }
            bound = cpu.samples;
            cpus.push(cpu);
        }
        reader.finish()?;
        Ok(Self { count, cpus })
    }

    /// Renders the aggregate as a JSON object.
    pub fn render(&self) -> String {
        let mut out = String::from("{\"average\":[");
        for (index, average) in self.average().into_iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            json::push_f64(&mut out, average);
        }
        out.push_str("],\"count\":");
        json::push_u64(&mut out, self.count);
        out.push('}');
        out
    }
}

/// Splits a batch into its payloads, or `None` when its `lengths` do not add
/// up to its number of `values`.
pub fn payloads(batch: &CpuUsageBatch) -> Option<Vec<&[f64]>> {
    let mut rest = batch.values.as_slice();
    let mut payloads = Vec::with_capacity(batch.lengths.len());
    for &len in &batch.lengths {
        let (payload, after) = rest.split_at_checked(len as usize)?;
        payloads.push(payload);
        rest = after;
    }
    rest.is_empty().then_some(payloads)
}

impl Aggregate for State {
    const NAME: &'static str = "cpu_usage";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Self::decode(bytes)
    }

    fn encode(&self) -> Vec<u8> {
        self.encode()
    }

    fn apply_batch(&mut self, batch: &Batch) -> Vec<Rejection> {
        let Batch::CpuUsage(cpu_batch) = batch else {
            return sluice_plugin_sdk::unsupported(batch);
        };
        match payloads(cpu_batch) {
            Some(payloads) => sluice_plugin_sdk::apply_each(payloads, |usage| self.apply(usage)),
            None => sluice_plugin_sdk::reject_all(batch, MALFORMED_BATCH),
        }
    }

    fn render(&self) -> String {
        self.render()
    }
}

#[cfg(test)]
mod tests {
    use sluice_plugin_sdk::{JsonBatch, UNSUPPORTED_TYPE};

    use super::*;

    fn state_of(payloads: &[&[f64]]) -> State {
        let mut state = State::default();
        for payload in payloads {
            state.apply(payload).expect("valid payload");
        }
        state
    }

    fn batch_of(payloads: &[&[f64]]) -> Batch {
        Batch::CpuUsage(CpuUsageBatch {
            lengths: payloads.iter().map(|p| p.len() as u32).collect(),
            values: payloads.concat(),
        })
    }

    fn reasons(rejected: &[Rejection]) -> Vec<(u32, &str)> {
        rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect()
    }

    #[test]
    fn empty_renders_no_cpus() {
        assert_eq!(State::default().render(), r#"{"average":[],"count":0}"#);
    }

    #[test]
    fn single_payload_is_its_own_average() {
        let state = state_of(&[&[10.0, 0.0, 55.5]]);
        assert_eq!(state.render(), r#"{"average":[10.0,0.0,55.5],"count":1}"#);
    }

    #[test]
    fn averages_per_cpu() {
        let state = state_of(&[&[10.0, 20.0], &[30.0, 40.0]]);
        assert_eq!(state.average(), [20.0, 30.0]);
        assert_eq!(state.count(), 2);
    }

    #[test]
    fn cpu_count_growing_averages_over_payloads_that_had_the_cpu() {
        let state = state_of(&[&[10.0], &[20.0, 50.0, 60.0]]);
        assert_eq!(state.render(), r#"{"average":[15.0,50.0,60.0],"count":2}"#);
    }

    #[test]
    fn cpu_count_shrinking_keeps_the_cpus_that_went_away() {
        let state = state_of(&[&[20.0, 50.0, 60.0], &[10.0], &[30.0, 20.0]]);
        assert_eq!(state.average(), [20.0, 35.0, 60.0]);
        assert_eq!(state.count(), 3);
    }

    #[test]
    fn zero_is_a_value() {
        let state = state_of(&[&[0.0, 0.0], &[0.0]]);
        assert_eq!(state.render(), r#"{"average":[0.0,0.0],"count":2}"#);
    }

    #[test]
    fn invalid_payloads_are_refused_and_change_nothing() {
        let too_many = vec![1.0; MAX_CPUS + 1];
        let cases: [(&[f64], Invalid); 6] = [
            (&[], Invalid::Empty),
            (&too_many, Invalid::TooManyCpus),
            (&[1.0, f64::NAN], Invalid::NotFinite),
            (&[f64::INFINITY], Invalid::NotFinite),
            (&[1.0, f64::NEG_INFINITY], Invalid::NotFinite),
            (&[f64::MAX], Invalid::SumOutOfRange),
        ];
        let before = state_of(&[&[f64::MAX, 1.0]]);
        for (payload, expected) in cases {
            let mut state = before.clone();
            assert_eq!(state.apply(payload), Err(expected), "{payload:?}");
            assert_eq!(state, before, "{payload:?}");
        }
        let mut state = before.clone();
        state
            .apply(&vec![1.0; MAX_CPUS])
            .expect("MAX_CPUS cpus are allowed");
    }

    #[test]
    fn batch_splits_payloads_and_names_rejections() {
        let mut state = State::default();
        let batch = batch_of(&[&[10.0, 20.0], &[], &[f64::NAN], &[30.0]]);
        let rejected = state.apply_batch(&batch);
        assert_eq!(
            reasons(&rejected),
            [(1, "no cpu values"), (2, "not a finite number")]
        );
        assert_eq!(state, state_of(&[&[10.0, 20.0], &[30.0]]));
    }

    #[test]
    fn batch_whose_lengths_do_not_add_up_is_refused_whole() {
        let cases = [
            CpuUsageBatch {
                lengths: vec![1, 2],
                values: vec![1.0, 2.0],
            },
            CpuUsageBatch {
                lengths: vec![1],
                values: vec![1.0, 2.0],
            },
            CpuUsageBatch {
                lengths: vec![u32::MAX, 1],
                values: vec![1.0],
            },
        ];
        for cpu_batch in cases {
            let mut state = State::default();
            let rejected = state.apply_batch(&Batch::CpuUsage(cpu_batch.clone()));
            let expected: Vec<_> = (0..cpu_batch.lengths.len() as u32)
                .map(|index| (index, MALFORMED_BATCH))
                .collect();
            assert_eq!(reasons(&rejected), expected, "{cpu_batch:?}");
            assert_eq!(state, State::default());
        }
    }

    #[test]
    fn other_types_are_refused_payload_by_payload() {
        let mut state = State::default();
        let batch = Batch::Json(JsonBatch {
            kind: "json".into(),
            values: vec!["{}".into(), "[]".into(), "1".into()],
        });
        let rejected = state.apply_batch(&batch);
        let expected = [
            (0, UNSUPPORTED_TYPE),
            (1, UNSUPPORTED_TYPE),
            (2, UNSUPPORTED_TYPE),
        ];
        assert_eq!(reasons(&rejected), expected);
        assert_eq!(state.apply_batch(&Batch::LoadAvg(vec![1.0])).len(), 1);
        assert_eq!(state, State::default());
    }

    #[test]
    fn encode_decode_round_trip() {
        let states = [
            State::default(),
            state_of(&[&[0.5]]),
            state_of(&[&[1.0, 2.0, 3.0], &[4.0], &[5.0, 6.0]]),
        ];
        for state in states {
            assert_eq!(State::decode(&state.encode()), Ok(state));
        }
        assert_eq!(State::decode(&[]), Ok(State::default()));
    }

    #[test]
    fn corrupt_or_foreign_state_is_an_error() {
        fn state(count: u64, cpus: &[(f64, u64)]) -> Vec<u8> {
            let mut writer = Writer::new(TAG, VERSION);
            writer.u64(count).u32(cpus.len() as u32);
            for &(sum, samples) in cpus {
                writer.f64(sum).u64(samples);
            }
            writer.finish()
        }
        let good = state(2, &[(1.0, 2), (1.0, 1)]);
        assert!(State::decode(&good).is_ok());
        let mut huge = Writer::new(TAG, VERSION);
        huge.u64(1).u32(u32::MAX);
        let cases: Vec<(Vec<u8>, StateError)> = vec![
            (good[..good.len() - 3].to_vec(), StateError::Truncated),
            ([good.as_slice(), &[1]].concat(), StateError::Trailing),
            (
                vec![b'L', 1],
                StateError::Foreign {
                    expected: TAG,
                    found: b'L',
                },
            ),
            (
                vec![TAG, 0],
                StateError::Version {
                    expected: VERSION,
                    found: 0,
                },
            ),
            (huge.finish(), StateError::Invalid("too many cpus")),
            (
                state(1, &[]),
                StateError::Invalid("cpus do not match count"),
            ),
            (
                state(0, &[(1.0, 1)]),
                StateError::Invalid("cpus do not match count"),
            ),
            (
                state(1, &[(f64::NAN, 1)]),
                StateError::Invalid("sum is not finite"),
            ),
            (
                state(2, &[(1.0, 1)]),
                StateError::Invalid("samples do not match count"),
            ),
            (
                state(2, &[(1.0, 2), (1.0, 3)]),
                StateError::Invalid("samples do not match count"),
            ),
            (
                state(2, &[(1.0, 2), (1.0, 0)]),
                StateError::Invalid("samples do not match count"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(State::decode(&bytes), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn exports_describe_the_handler() {
        let metadata = sluice_plugin_sdk::metadata::<State>();
        assert_eq!(metadata.name, "cpu_usage");
        assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(metadata.types, ["cpu_usage"]);
        let applied = sluice_plugin_sdk::apply::<State>(&[], &batch_of(&[&[1.0, 3.0]]))
            .expect("empty state is readable");
        let rendered = sluice_plugin_sdk::render::<State>(&applied.state).expect("own state");
        assert_eq!(rendered, r#"{"average":[1.0,3.0],"count":1}"#);
    }
}
