//! The `disk_usage` handler: the largest used fraction seen per mount point.
//!
//! A `disk_usage` payload's value is a JSON object of mount point to used
//! fraction, `{"/": 0.71, "/home": 0.42}`. The aggregate keeps, per mount
//! point, the largest fraction applied, and how many payloads were applied;
//! it renders as `{"count": 2, "max": {"/": 0.71, "/home": 0.42}}`.
//!
//! A payload is applied whole or not at all: one that is not an object of
//! fractions within 0..=1 is refused with a reason, and changes nothing.
//!
//! The state bytes are the JSON text `{"v":1,"max":{...},"count":n}`, the
//! same in the Python, JavaScript and C versions of this example, so one
//! can replace another and carry on from its state; they also give the
//! same reasons for the payloads they refuse.
//!
//! This crate is also the template that `sluice plugin new NAME --lang
//! rust` starts from: rename the type, then change [`State::apply`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sluice_plugin_sdk::{Aggregate, Batch, Rejection, StateError};

sluice_plugin_sdk::export_aggregate!(State);

/// The payload type this handler accepts, which also names it.
const TYPE: &str = "disk_usage";
/// Version of the layout of the state bytes.
const STATE_VERSION: u64 = 1;
/// The fields of a state.
const STATE_FIELDS: [&str; 3] = ["count", "max", "v"];
/// The count stops here: 2^53 - 1, the largest integer that every JSON
/// reader (and so every version of this example) reads exactly.
const MAX_COUNT: u64 = (1 << 53) - 1;
/// Mount points quoted in a reason are cut to this many characters.
const MAX_QUOTED_CHARS: usize = 64;

/// The aggregate: the largest fraction per mount point, and the number of
/// payloads applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    max: BTreeMap<String, f64>,
    count: u64,
}

impl State {
    /// The largest fraction applied for each mount point.
    pub fn max(&self) -> &BTreeMap<String, f64> {
        &self.max
    }

    /// Number of payloads applied.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Applies one payload, given as the JSON text of its value, or refuses
    /// it with a reason and changes nothing.
    pub fn apply(&mut self, value: &str) -> Result<(), String> {
        // serde_json refuses text nested deeper than 128 levels, like the
        // other versions.
        let value: Value = serde_json::from_str(value).map_err(|_| "not valid json")?;
        let Value::Object(mounts) = value else {
            return Err("not a json object".to_owned());
        };
        // Check every mount before changing any, so that a refused payload
        // leaves no trace. The map is sorted, so the first bad mount named
        // is the first in code point order, as in the other versions.
        let fractions = mounts
            .iter()
            .map(|(mount, fraction)| Ok((mount, fraction_of(mount, fraction)?)))
            .collect::<Result<Vec<_>, String>>()?;
        for (mount, fraction) in fractions {
            let max = self.max.entry(mount.clone()).or_insert(fraction);
            *max = max.max(fraction);
        }
        self.count = (self.count + 1).min(MAX_COUNT);
        Ok(())
    }
}

/// The used fraction of `mount`, if `value` is one.
fn fraction_of(mount: &str, value: &Value) -> Result<f64, String> {
    let fraction = value
        .as_f64()
        .ok_or_else(|| format!("mount {}: not a number", quote(mount)))?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!(
            "mount {}: {fraction} is outside 0..=1",
            quote(mount)
        ));
    }
    // Adding zero turns -0.0 into 0.0, so that zero renders one way.
    Ok(fraction + 0.0)
}

/// `mount` as a JSON string for a reason, cut to [`MAX_QUOTED_CHARS`].
fn quote(mount: &str) -> String {
    let cut = match mount.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}\u{2026}", &mount[..end]),
        None => mount.to_owned(),
    };
    Value::from(cut).to_string()
}

impl Aggregate for State {
    const NAME: &'static str = TYPE;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.is_empty() {
            return Ok(State::default());
        }
        let corrupt = || StateError::Invalid("not a disk_usage state");
        let state: Map<String, Value> = serde_json::from_slice(bytes).map_err(|_| corrupt())?;
        match state.get("v").and_then(Value::as_u64) {
            Some(STATE_VERSION) => {}
            Some(found) => {
                return Err(StateError::Version {
                    expected: STATE_VERSION as u8,
                    found: u8::try_from(found).unwrap_or(u8::MAX),
                });
            }
            None => return Err(corrupt()),
        }
        if state
            .keys()
            .any(|field| !STATE_FIELDS.contains(&field.as_str()))
        {
            return Err(StateError::Invalid("unknown field in a disk_usage state"));
        }
        let count = state
            .get("count")
            .and_then(Value::as_u64)
            .filter(|count| *count <= MAX_COUNT)
            .ok_or_else(corrupt)?;
        let mounts = state
            .get("max")
            .and_then(Value::as_object)
            .ok_or_else(corrupt)?;
        let max = mounts
            .iter()
            .map(|(mount, fraction)| {
                let fraction = fraction_of(mount, fraction).map_err(|_| corrupt())?;
                Ok((mount.clone(), fraction))
            })
            .collect::<Result<_, StateError>>()?;
        Ok(State { max, count })
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::json!({ "v": STATE_VERSION, "max": self.max, "count": self.count })
            .to_string()
            .into_bytes()
    }

    fn apply_batch(&mut self, batch: &Batch) -> Vec<Rejection> {
        match batch {
            Batch::Json(batch) if batch.kind == TYPE => {
                sluice_plugin_sdk::apply_each(&batch.values, |value| self.apply(value))
            }
            _ => sluice_plugin_sdk::unsupported(batch),
        }
    }

    fn render(&self) -> String {
        serde_json::json!({ "max": self.max, "count": self.count }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use sluice_plugin_sdk::JsonBatch;

    use super::*;

    fn batch(values: &[&str]) -> Batch {
        Batch::Json(JsonBatch {
            kind: TYPE.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        })
    }

    #[test]
    fn keeps_the_largest_fraction_per_mount() {
        let mut state = State::default();
        let rejected = state.apply_batch(&batch(&[
            r#"{"/": 0.5, "/home": 0.25}"#,
            r#"{"/": 0.25, "/var": 1}"#,
            r#"{}"#,
        ]));
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(state.count(), 3);
        let expected = [("/", 0.5), ("/home", 0.25), ("/var", 1.0)];
        let expected = expected.map(|(m, f)| (m.to_owned(), f));
        assert_eq!(state.max(), &BTreeMap::from(expected));
        assert_eq!(
            state.render(),
            r#"{"count":3,"max":{"/":0.5,"/home":0.25,"/var":1.0}}"#
        );
    }

    #[test]
    fn a_bad_payload_is_refused_whole_and_the_rest_apply() {
        let mut state = State::default();
        let rejected = state.apply_batch(&batch(&[
            r#"{"/": 0.5}"#,
            r#"{"/": 0.9, "/home": 1.5}"#,
            r#"{"/": "full"}"#,
            r#"[0.5]"#,
            r#"{"/": 0.5"#,
            r#"{"/tmp": 0.125}"#,
        ]));
        let refused: Vec<u32> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(refused, [1, 2, 3, 4]);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                r#"mount "/home": 1.5 is outside 0..=1"#,
                r#"mount "/": not a number"#,
                "not a json object",
                "not valid json",
            ]
        );
        assert_eq!(state.count(), 2);
        // The refused payload's 0.9 for `/` left no trace.
        assert_eq!(state.max().get("/"), Some(&0.5));
        assert_eq!(state.max().get("/home"), None);
    }

    #[test]
    fn a_long_mount_point_is_cut_short_in_a_reason() {
        let mount = format!("/{}", "é".repeat(100));
        let payload = Value::Object([(mount.clone(), Value::from(2))].into_iter().collect());
        let mut state = State::default();
        let rejected = state.apply_batch(&batch(&[&payload.to_string()]));
        let cut: String = mount.chars().take(MAX_QUOTED_CHARS).collect();
        assert_eq!(
            rejected[0].reason,
            format!("mount \"{cut}\u{2026}\": 2 is outside 0..=1")
        );
    }

    #[test]
    fn other_types_are_refused_whole() {
        let mut state = State::default();
        let rejected = state.apply_batch(&Batch::LoadAvg(vec![0.5, 0.7]));
        assert_eq!(rejected.len(), 2);
        assert!(rejected.iter().all(|r| r.reason == "unsupported type"));
        assert_eq!(state, State::default());
    }

    #[test]
    fn the_state_round_trips_and_foreign_bytes_are_refused() {
        let mut state = State::default();
        state.apply_batch(&batch(&[r#"{"/": 0.1, "/boot": 0.75}"#]));
        assert_eq!(State::decode(&state.encode()), Ok(state));
        assert_eq!(State::decode(b""), Ok(State::default()));
        for bad in [
            &b"L\x01"[..],
            br#"{"v":1,"max":{"/":2},"count":1}"#,
            br#"{"v":1,"max":[],"count":1}"#,
            br#"{"max":{},"count":0}"#,
            br#"{"v":1,"max":{},"count":0,"extra":1}"#,
            br#"{"v":1,"max":{},"count":9007199254740992}"#,
        ] {
            let read = State::decode(bad);
            assert!(read.is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(
            State::decode(br#"{"v":2,"max":{},"count":0}"#),
            Err(StateError::Version { found: 2, .. })
        ));
    }
}
