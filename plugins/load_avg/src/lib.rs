//! The `load_avg` handler: the smallest and largest system load observed.
//!
//! Renders as `{"min": number|null, "max": number|null, "count": n}`, where
//! `count` is the number of payloads applied and both bounds are `null`
//! until one is. A load must be a finite, non-negative number; any other
//! payload is refused and leaves the aggregate as it was.

use std::fmt;

use sluice_plugin_sdk::codec::{Reader, Writer};
use sluice_plugin_sdk::{Aggregate, Batch, Rejection, StateError, json};

sluice_plugin_sdk::export_aggregate!(State);

/// Tag of this handler's state bytes.
const TAG: u8 = b'L';
/// Layout of the state: `count: u64`, then `min: f64, max: f64` when
/// `count > 0`.
const VERSION: u8 = 1;

/// Why a load was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// NaN or an infinity.
    NotFinite,
    /// Below zero.
    Negative,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFinite => "not a finite number",
            Self::Negative => "negative load",
        })
    }
}

/// The aggregate: how many loads were applied and their range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct State {
    count: u64,
    /// `(min, max)`, present exactly when `count > 0`.
    range: Option<(f64, f64)>,
}

impl State {
    /// Number of loads applied.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest load applied, if any.
    pub fn min(&self) -> Option<f64> {
        self.range.map(|(min, _)| min)
    }

    /// Largest load applied, if any.
    pub fn max(&self) -> Option<f64> {
        self.range.map(|(_, max)| max)
    }

    /// Applies one observed load, or refuses it and changes nothing.
    pub fn apply(&mut self, load: f64) -> Result<(), Invalid> {
        if !load.is_finite() {
            return Err(Invalid::NotFinite);
        }
        if load < 0.0 {
            return Err(Invalid::Negative);
        }
        // Adding zero turns -0.0 into 0.0, so that zero renders one way.
        let load = load + 0.0;
        self.range = Some(match self.range {
            None => (load, load),
            Some((min, max)) => (min.min(load), max.max(load)),
        });
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Writes the state for the host to keep.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(TAG, VERSION);
        writer.u64(self.count);
        if let Some((min, max)) = self.range {
            writer.f64(min).f64(max);
        }
        writer.finish()
    }

    /// Reads a state written by [`State::encode`]; empty bytes are the
    /// state of no loads.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let Some(mut reader) = Reader::open(bytes, TAG, VERSION)? else {
            return Ok(Self::default());
        };
        let count = reader.u64()?;
        let range = if count == 0 {
            None
        } else {
            let (min, max) = (reader.f64()?, reader.f64()?);
            if !(min.is_finite() && max.is_finite()) {
                return Err(StateError::Invalid("bound is not finite"));
            }
            if !(0.0 <= min && min <= max) {
                return Err(StateError::Invalid("bounds out of order"));
            }
            Some((min, max))
        };
        reader.finish()?;
        Ok(Self { count, range })
    }

    /// Renders the aggregate as a JSON object.
    pub fn render(&self) -> String {
        let mut out = String::from("{\"min\":");
        json::push_opt_f64(&mut out, self.min());
        out.push_str(",\"max\":");
        json::push_opt_f64(&mut out, self.max());
        out.push_str(",\"count\":");
        json::push_u64(&mut out, self.count);
        out.push('}');
        out
    }
}

impl Aggregate for State {
    const NAME: &'static str = "load_avg";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Self::decode(bytes)
    }

    fn encode(&self) -> Vec<u8> {
        self.encode()
    }

    fn apply_batch(&mut self, batch: &Batch) -> Vec<Rejection> {
        match batch {
            Batch::LoadAvg(loads) => {
                sluice_plugin_sdk::apply_each(loads.iter().copied(), |load| self.apply(load))
            }
            other => sluice_plugin_sdk::unsupported(other),
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

    fn state_of(loads: &[f64]) -> State {
        let mut state = State::default();
        for &load in loads {
            state.apply(load).expect("valid load");
        }
        state
    }

    #[test]
    fn empty_renders_nulls() {
        assert_eq!(
            State::default().render(),
            r#"{"min":null,"max":null,"count":0}"#
        );
    }

    #[test]
    fn single_load_is_both_bounds() {
        let state = state_of(&[0.75]);
        assert_eq!(state.render(), r#"{"min":0.75,"max":0.75,"count":1}"#);
    }

    #[test]
    fn bounds_and_count() {
        let state = state_of(&[1.5, 0.25, 3.0, 2.0]);
        assert_eq!(
            (state.min(), state.max(), state.count()),
            (Some(0.25), Some(3.0), 4)
        );
        assert_eq!(state.render(), r#"{"min":0.25,"max":3.0,"count":4}"#);
    }

    #[test]
    fn exactly_zero_is_a_load() {
        let state = state_of(&[2.0, 0.0, -0.0]);
        assert_eq!(state.render(), r#"{"min":0.0,"max":2.0,"count":3}"#);
    }

    #[test]
    fn invalid_loads_are_refused_and_change_nothing() {
        let cases = [
            (f64::NAN, Invalid::NotFinite),
            (f64::INFINITY, Invalid::NotFinite),
            (f64::NEG_INFINITY, Invalid::NotFinite),
            (-0.5, Invalid::Negative),
            (-f64::MIN_POSITIVE, Invalid::Negative),
        ];
        for (load, expected) in cases {
            let mut state = state_of(&[1.0]);
            assert_eq!(state.apply(load), Err(expected), "{load}");
            assert_eq!(state, state_of(&[1.0]), "{load}");
        }
    }

    #[test]
    fn batch_rejections_name_positions_and_reasons() {
        let mut state = State::default();
        let batch = Batch::LoadAvg(vec![1.0, f64::NAN, -1.0, 0.5]);
        let rejected = state.apply_batch(&batch);
        let rejected: Vec<_> = rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(rejected, [(1, "not a finite number"), (2, "negative load")]);
        assert_eq!(state, state_of(&[1.0, 0.5]));
    }

    #[test]
    fn other_types_are_refused_payload_by_payload() {
        let batches = [
            Batch::Json(JsonBatch {
                kind: "disk_usage".into(),
                values: vec!["1".into(), "2".into()],
            }),
            Batch::LastKernelUpgrade(vec![]),
        ];
        for batch in batches {
            let mut state = state_of(&[1.0]);
            let rejected = state.apply_batch(&batch);
            assert_eq!(rejected.len(), sluice_plugin_sdk::batch_len(&batch));
            for (index, rejection) in rejected.iter().enumerate() {
                assert_eq!(rejection.index as usize, index);
                assert_eq!(rejection.reason, UNSUPPORTED_TYPE);
            }
            assert_eq!(state, state_of(&[1.0]));
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for state in [
            State::default(),
            state_of(&[0.0]),
            state_of(&[3.5, 1e300, 0.1]),
        ] {
            assert_eq!(State::decode(&state.encode()), Ok(state));
        }
        assert_eq!(State::decode(&[]), Ok(State::default()));
    }

    #[test]
    fn corrupt_or_foreign_state_is_an_error() {
        let good = state_of(&[1.0, 2.0]).encode();
        let mut swapped = Writer::new(TAG, VERSION);
        swapped.u64(2).f64(2.0).f64(1.0);
        let mut nan = Writer::new(TAG, VERSION);
        nan.u64(1).f64(f64::NAN).f64(1.0);
        let cases: Vec<(Vec<u8>, StateError)> = vec![
            (good[..good.len() - 1].to_vec(), StateError::Truncated),
            ([good.as_slice(), &[0]].concat(), StateError::Trailing),
            (
                vec![b'C', 1, 0, 0, 0, 0, 0, 0, 0, 0],
                StateError::Foreign {
                    expected: TAG,
                    found: b'C',
                },
            ),
            (
                vec![TAG, 2],
                StateError::Version {
                    expected: VERSION,
                    found: 2,
                },
            ),
            (swapped.finish(), StateError::Invalid("bounds out of order")),
            (nan.finish(), StateError::Invalid("bound is not finite")),
            (vec![0xff], StateError::Truncated),
        ];
        for (bytes, expected) in cases {
            assert_eq!(State::decode(&bytes), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn exports_describe_the_handler_and_keep_state_on_error() {
        let metadata = sluice_plugin_sdk::metadata::<State>();
        assert_eq!(metadata.name, "load_avg");
        assert_eq!(metadata.version, "0.1.0");
        assert_eq!(metadata.types, ["load_avg"]);

        let applied = sluice_plugin_sdk::apply::<State>(&[], &Batch::LoadAvg(vec![2.0]))
            .expect("empty state is readable");
        let rendered = sluice_plugin_sdk::render::<State>(&applied.state).expect("own state");
        assert_eq!(rendered, r#"{"min":2.0,"max":2.0,"count":1}"#);

        let err = sluice_plugin_sdk::apply::<State>(&[b'X', 1], &Batch::LoadAvg(vec![2.0]))
            .expect_err("foreign state");
        assert!(err.contains("another handler"), "{err}");
    }
}
