//! Decoding a `/metrics` response body into typed payloads.
//!
//! A body is judged in two steps. The body as a whole must be a complete
//! JSON array: a body that is cut off or is not JSON is rejected whole,
//! since nothing can be known of what the rest would have said. Then each
//! entry is decoded on its own, so one bad entry is rejected with a reason
//! while the others of the same body go through.
//!
//! Two readings implement this. [`decode_by_parts`] is the reference: it
//! splits the body into raw entries, then reads each entry, its payload and
//! its value in turn, so any shape at all can be judged. [`decode`] reads a
//! body in one pass, entry by entry, and leaves to the reference the bodies
//! it cannot judge in that pass: entries or payloads that are not objects,
//! repeated fields, a `type` that is not a string, a number beyond the
//! range of `f64` where it was not expected, and bodies that are not whole
//! arrays. The two agree on every body (see the tests); the one pass costs
//! about a third of the reference on the bodies the API sends.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The type of a payload, as named by the envelope's `type` field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `load_avg`: a number.
    LoadAvg,
    /// `cpu_usage`: a list of numbers, one per CPU.
    CpuUsage,
    /// `last_kernel_upgrade`: an RFC 3339 timestamp.
    LastKernelUpgrade,
    /// Any other type; its value is carried as JSON text.
    Other(Box<str>),
}

impl Kind {
    /// The kind named `name` on the wire.
    pub fn from_name(name: &str) -> Kind {
        match name {
            "load_avg" => Kind::LoadAvg,
            "cpu_usage" => Kind::CpuUsage,
            "last_kernel_upgrade" => Kind::LastKernelUpgrade,
            other => Kind::Other(other.into()),
        }
    }

    /// The name of the kind on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Kind::LoadAvg => "load_avg",
            Kind::CpuUsage => "cpu_usage",
            Kind::LastKernelUpgrade => "last_kernel_upgrade",
            Kind::Other(name) => name,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instant on the UTC time line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds past `seconds`, below one billion.
    pub nanoseconds: u32,
}

/// The decoded value of a payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A `load_avg` value: finite and not negative.
    LoadAvg(f64),
    /// A `cpu_usage` value: at least one CPU, each a fraction in `0..=1`.
    CpuUsage(Vec<f64>),
    /// A `last_kernel_upgrade` value, normalised to UTC.
    LastKernelUpgrade(Timestamp),
    /// The JSON text of the value of a payload of another type.
    Json(Box<str>),
}

/// One well-formed payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// Its type.
    pub kind: Kind,
    /// Its value, whose variant always matches `kind`.
    pub value: Value,
}

/// Why an entry was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The entry is not a JSON object.
    NotAnObject,
    /// The entry has no `type` string.
    MissingType,
    /// The entry has no `payload.value`.
    MissingValue,
    /// The value has the wrong JSON shape for its type.
    WrongShape,
    /// The value has the right shape but cannot be a real observation.
    OutOfRange,
}

impl Reason {
    /// A stable label for counters and reports.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NotAnObject => "not_an_object",
            Reason::MissingType => "missing_type",
            Reason::MissingValue => "missing_value",
            Reason::WrongShape => "wrong_shape",
            Reason::OutOfRange => "out_of_range",
        }
    }
}

/// An entry that was rejected while decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct BadEntry {
    /// The entry's type, when it had a readable one.
    pub kind: Option<Kind>,
    /// Why it was rejected.
    pub reason: Reason,
    /// What exactly was wrong, for operators.
    pub detail: String,
}

/// The entries of one response body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// Well-formed payloads, in body order.
    pub payloads: Vec<Payload>,
    /// Entries that were rejected, in body order.
    pub rejected: Vec<BadEntry>,
}

impl Decoded {
    /// Number of entries in the body.
    pub fn len(&self) -> usize {
        self.payloads.len() + self.rejected.len()
    }

    /// Whether the body held no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a whole body was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ends before the JSON array does.
    #[error("body is cut off at byte {at}")]
    Truncated {
        /// Length of the body received.
        at: usize,
    },
    /// The body is not JSON, or not a JSON array.
    #[error("body is not a JSON array: {reason}")]
    NotAnArray {
        /// What the JSON parser said.
        reason: String,
    },
}

/// Decodes a response body.
pub fn decode(body: &[u8]) -> Result<Decoded, DecodeError> {
    one_pass(body).or_else(|_| decode_by_parts(body))
}

/// Decodes a body in one pass, or fails if it holds anything that only the
/// reference reading can judge.
fn one_pass(body: &[u8]) -> Result<Decoded, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let decoded = de::Deserializer::deserialize_seq(&mut reader, BodyVisitor)?;
    reader.end()?;
    Ok(decoded)
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Decoded;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut entries: A) -> Result<Decoded, A::Error> {
        let mut decoded = Decoded::default();
        while let Some(entry) = entries.next_element_seed(EntrySeed)? {
            match entry {
                Ok(payload) => decoded.payloads.push(payload),
                Err(bad) => decoded.rejected.push(bad),
            }
        }
        Ok(decoded)
    }
}

/// Reads one entry, which must be an object.
struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Result<Payload, BadEntry>;

    fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_map(self)
    }
}

/// The fields of an envelope; any other field is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum EnvelopeField {
    Type,
    Payload,
    #[serde(other)]
    Other,
}

/// The fields of a payload object; any other field is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PayloadField {
    Value,
    #[serde(other)]
    Other,
}

/// What the `payload` field of an envelope held.
enum PayloadSeen<'de> {
    /// Its `value`, read once the type was known (`None`: it had none).
    Value(Option<&'de RawValue>),
    /// The whole payload, when it came before the type.
    Raw(&'de RawValue),
}

fn repeated<E: de::Error>(field: &str) -> E {
    E::custom(format_args!("field {field:?} appears twice"))
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Result<Payload, BadEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let mut kind: Option<Kind> = None;
        let mut payload: Option<PayloadSeen<'de>> = None;
        while let Some(field) = fields.next_key()? {
            match field {
                EnvelopeField::Type => {
                    if kind.is_some() {
                        return Err(repeated("type"));
                    }
                    kind = Some(fields.next_value_seed(KindSeed)?);
                }
                EnvelopeField::Payload => {
                    if payload.is_some() {
                        return Err(repeated("payload"));
                    }
                    payload = Some(if kind.is_some() {
                        PayloadSeen::Value(fields.next_value_seed(PayloadSeed)?)
                    } else {
                        PayloadSeen::Raw(fields.next_value()?)
                    });
                }
                EnvelopeField::Other => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        let value = match payload {
            Some(PayloadSeen::Value(value)) => value,
            Some(PayloadSeen::Raw(raw)) => {
                let mut reader = serde_json::Deserializer::from_str(raw.get());
                de::Deserializer::deserialize_map(&mut reader, PayloadSeed)
                    .map_err(de::Error::custom)?
            }
            None => None,
        };
        Ok(match kind {
            Some(kind) => finish(kind, value),
            None => Err(missing_type()),
        })
    }
}

/// Reads the `type` string of an entry, without a copy when it names a
/// bundled type.
struct KindSeed;

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;

    fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<Kind, D::Error> {
        reader.deserialize_str(self)
    }
}

impl Visitor<'_> for KindSeed {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a type name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Kind, E> {
        Ok(Kind::from_name(name))
    }
}

/// Reads a payload object down to its raw `value`.
struct PayloadSeed;

impl<'de> DeserializeSeed<'de> for PayloadSeed {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<Self::Value, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a payload object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        while let Some(field) = fields.next_key()? {
            match field {
                PayloadField::Value => {
                    if value.is_some() {
                        return Err(repeated("value"));
                    }
                    value = Some(fields.next_value()?);
                }
                PayloadField::Other => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(value)
    }
}

/// Decodes a response body by parts: the reference reading of a body,
/// which judges any shape of entry.
pub fn decode_by_parts(body: &[u8]) -> Result<Decoded, DecodeError> {
    let entries: Vec<&RawValue> = serde_json::from_slice(body).map_err(|err| {
        if err.is_eof() {
            DecodeError::Truncated { at: body.len() }
        } else {
            DecodeError::NotAnArray {
                reason: err.to_string(),
            }
        }
    })?;
    let mut decoded = Decoded {
        payloads: Vec::with_capacity(entries.len()),
        rejected: Vec::new(),
    };
    for entry in entries {
        match decode_entry(entry) {
            Ok(payload) => decoded.payloads.push(payload),
            Err(bad) => decoded.rejected.push(bad),
        }
    }
    Ok(decoded)
}

/// An envelope whose fields are kept raw, so that any shape can be judged.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PayloadObject<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// Decodes one entry of the body's array.
pub fn decode_entry(entry: &RawValue) -> Result<Payload, BadEntry> {
    let bad = |kind: Option<&Kind>, reason, detail: String| BadEntry {
        kind: kind.cloned(),
        reason,
        detail,
    };
    let not_an_object = || {
        bad(
            None,
            Reason::NotAnObject,
            format!("entry {} is not an object", clip(entry.get())),
        )
    };
    // Serde would also read a struct from an array; an envelope is an object.
    if !entry.get().starts_with('{') {
        return Err(not_an_object());
    }
    let envelope: Envelope<'_> = serde_json::from_str(entry.get()).map_err(|_| not_an_object())?;
    let kind = envelope
        .kind
        .and_then(|raw| serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get()).ok())
        .map(|name| Kind::from_name(&name))
        .ok_or_else(missing_type)?;
    let value = envelope
        .payload
        .and_then(|raw| serde_json::from_str::<PayloadObject<'_>>(raw.get()).ok())
        .and_then(|payload| payload.value);
    finish(kind, value)
}

fn missing_type() -> BadEntry {
    BadEntry {
        kind: None,
        reason: Reason::MissingType,
        detail: "entry has no \"type\" string".into(),
    }
}

/// Decodes the raw value of an entry of type `kind`.
fn finish(kind: Kind, value: Option<&RawValue>) -> Result<Payload, BadEntry> {
    let Some(value) = value.filter(|raw| raw.get() != "null") else {
        let detail = format!("{kind} entry has no payload.value");
        return Err(BadEntry {
            kind: Some(kind),
            reason: Reason::MissingValue,
            detail,
        });
    };
    match decode_value(&kind, value) {
        Ok(value) => Ok(Payload { kind, value }),
        Err((reason, detail)) => {
            let detail = format!("{kind} value {}: {detail}", clip(value.get()));
            Err(BadEntry {
                kind: Some(kind),
                reason,
                detail,
            })
        }
    }
}

fn decode_value(kind: &Kind, raw: &RawValue) -> Result<Value, (Reason, String)> {
    let text = raw.get();
    let shape = |err: serde_json::Error| (Reason::WrongShape, err.to_string());
    match kind {
        Kind::LoadAvg => {
            let load: f64 = serde_json::from_str(text).map_err(shape)?;
            if !(load.is_finite() && load >= 0.0) {
                return Err((
                    Reason::OutOfRange,
                    "load must be a finite number >= 0".into(),
                ));
            }
            Ok(Value::LoadAvg(load))
        }
        Kind::CpuUsage => {
            let cpus: Vec<f64> = serde_json::from_str(text).map_err(shape)?;
            if cpus.is_empty() {
                return Err((Reason::OutOfRange, "no CPUs".into()));
            }
            if let Some(cpu) = cpus.iter().position(|u| !(0.0..=1.0).contains(u)) {
                return Err((Reason::OutOfRange, format!("CPU {cpu} is not within 0..=1")));
            }
            Ok(Value::CpuUsage(cpus))
        }
        Kind::LastKernelUpgrade => {
            let text: std::borrow::Cow<'_, str> = serde_json::from_str(text).map_err(shape)?;
            let at = OffsetDateTime::parse(&text, &Rfc3339).map_err(|err| {
                (
                    Reason::WrongShape,
                    format!("not an RFC 3339 timestamp: {err}"),
                )
            })?;
            Ok(Value::LastKernelUpgrade(Timestamp {
                seconds: at.unix_timestamp(),
                nanoseconds: at.nanosecond(),
            }))
        }
        Kind::Other(_) => Ok(Value::Json(text.into())),
    }
}

/// Shortens an entry's text for an error message.
fn clip(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn one(entry: &str) -> Result<Payload, BadEntry> {
        let body = format!("[{entry}]");
        let mut decoded = decode(body.as_bytes()).expect("a JSON array");
        match (decoded.payloads.pop(), decoded.rejected.pop()) {
            (Some(payload), None) => Ok(payload),
            (None, Some(bad)) => Err(bad),
            other => panic!("one entry decoded as {other:?}"),
        }
    }

    fn at(seconds: i64, nanoseconds: u32) -> Value {
        Value::LastKernelUpgrade(Timestamp {
            seconds,
            nanoseconds,
        })
    }

    #[test]
    fn good_entries_of_every_shape() {
        let cases = [
            (
                r#"{"type":"load_avg","payload":{"value":0.7217}}"#,
                Value::LoadAvg(0.7217),
            ),
            (
                r#"{"type":"load_avg","payload":{"value":0}}"#,
                Value::LoadAvg(0.0),
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":[0.39,0.85,0.55,0.7,0.29]}}"#,
                Value::CpuUsage(vec![0.39, 0.85, 0.55, 0.7, 0.29]),
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":[1]}}"#,
                Value::CpuUsage(vec![1.0]),
            ),
            (
                r#"{"type":"last_kernel_upgrade","payload":{"value":"2026-12-03T18:06:10.928851005Z"}}"#,
                at(1_796_321_170, 928_851_005),
            ),
            (
                r#"{"type":"last_kernel_upgrade","payload":{"value":"2026-12-03T20:06:10.5+02:00"}}"#,
                at(1_796_321_170, 500_000_000),
            ),
            (
                r#"{"payload":{"value":{"/":0.5}},"type":"disk_usage","extra":true}"#,
                Value::Json(r#"{"/":0.5}"#.into()),
            ),
        ];
        for (entry, value) in cases {
            let payload = one(entry).unwrap_or_else(|bad| panic!("{entry}: {bad:?}"));
            assert_eq!(payload.value, value, "{entry}");
        }
    }

    #[test]
    fn bad_entries_are_rejected_with_their_reason() {
        let cases = [
            ("42", None, Reason::NotAnObject),
            ("[1,2]", None, Reason::NotAnObject),
            (r#"{"payload":{"value":1}}"#, None, Reason::MissingType),
            (
                r#"{"type":7,"payload":{"value":1}}"#,
                None,
                Reason::MissingType,
            ),
            (
                r#"{"type":"load_avg"}"#,
                Some("load_avg"),
                Reason::MissingValue,
            ),
            (
                r#"{"type":"load_avg","payload":{}}"#,
                Some("load_avg"),
                Reason::MissingValue,
            ),
            (
                r#"{"type":"load_avg","payload":5}"#,
                Some("load_avg"),
                Reason::MissingValue,
            ),
            (
                r#"{"type":"load_avg","payload":{"value":null}}"#,
                Some("load_avg"),
                Reason::MissingValue,
            ),
            (
                r#"{"type":"load_avg","payload":{"value":"0.5"}}"#,
                Some("load_avg"),
                Reason::WrongShape,
            ),
            (
                r#"{"type":"load_avg","payload":{"value":-0.5}}"#,
                Some("load_avg"),
                Reason::OutOfRange,
            ),
            (
                r#"{"type":"load_avg","payload":{"value":1e999}}"#,
                Some("load_avg"),
                Reason::WrongShape,
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":[]}}"#,
                Some("cpu_usage"),
                Reason::OutOfRange,
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":[0.5,1.5]}}"#,
                Some("cpu_usage"),
                Reason::OutOfRange,
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":0.5}}"#,
                Some("cpu_usage"),
                Reason::WrongShape,
            ),
            (
                r#"{"type":"cpu_usage","payload":{"value":[0.5,"x"]}}"#,
                Some("cpu_usage"),
                Reason::WrongShape,
            ),
            (
                r#"{"type":"last_kernel_upgrade","payload":{"value":"yesterday"}}"#,
                Some("last_kernel_upgrade"),
                Reason::WrongShape,
            ),
            (
                r#"{"type":"last_kernel_upgrade","payload":{"value":1700000000}}"#,
                Some("last_kernel_upgrade"),
                Reason::WrongShape,
            ),
        ];
        for (entry, kind, reason) in cases {
            let bad = one(entry).expect_err(entry);
            assert_eq!(bad.reason, reason, "{entry}: {}", bad.detail);
            assert_eq!(bad.kind.as_ref().map(Kind::as_str), kind, "{entry}");
            assert!(!bad.detail.is_empty());
        }
    }

    #[test]
    fn whole_bodies_that_cannot_be_read() {
        let cut = br#"[{"type":"load_avg","payload":{"value":0.5}},{"type":"lo"#;
        assert_eq!(decode(cut), Err(DecodeError::Truncated { at: cut.len() }));
        assert_eq!(decode(b""), Err(DecodeError::Truncated { at: 0 }));
        for body in [
            &b"<html>oops</html>"[..],
            b"{\"type\":\"load_avg\"}",
            b"[1,2] trailing",
        ] {
            assert!(
                matches!(decode(body), Err(DecodeError::NotAnArray { .. })),
                "{body:?}"
            );
        }
        assert_eq!(decode(b" [] "), Ok(Decoded::default()));
    }

    #[test]
    fn instants_in_other_zones_are_normalised() {
        let utc =
            one(r#"{"type":"last_kernel_upgrade","payload":{"value":"2026-01-01T00:00:00Z"}}"#);
        let east = one(
            r#"{"type":"last_kernel_upgrade","payload":{"value":"2026-01-01T02:00:00+02:00"}}"#,
        );
        assert_eq!(utc.map(|p| p.value), east.map(|p| p.value));
    }

    /// An entry and whether it is well-formed.
    fn entry() -> impl Strategy<Value = (String, bool)> {
        prop_oneof![
            (0.0f64..100.0).prop_map(|v| (
                format!(r#"{{"type":"load_avg","payload":{{"value":{v}}}}}"#),
                true
            )),
            prop::collection::vec(0.0f64..=1.0, 1..8).prop_map(|v| {
                (
                    format!(r#"{{"type":"cpu_usage","payload":{{"value":{v:?}}}}}"#),
                    true,
                )
            }),
            (0i64..4_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| {
                let at = OffsetDateTime::from_unix_timestamp(s).expect("in range")
                    + time::Duration::nanoseconds(n.into());
                let at = at.format(&Rfc3339).expect("formattable");
                (
                    format!(r#"{{"type":"last_kernel_upgrade","payload":{{"value":"{at}"}}}}"#),
                    true,
                )
            }),
            "[a-z_]{1,12}".prop_map(|t| {
                let known = matches!(t.as_str(), "load_avg" | "cpu_usage" | "last_kernel_upgrade");
                (
                    format!(r#"{{"type":"{t}","payload":{{"value":{{"n":1}}}}}}"#),
                    !known,
                )
            }),
            (-100.0f64..-0.001).prop_map(|v| (
                format!(r#"{{"type":"load_avg","payload":{{"value":{v}}}}}"#),
                false
            )),
            Just((
                r#"{"type":"cpu_usage","payload":{"value":[]}}"#.to_owned(),
                false
            )),
            Just((
                r#"{"type":"load_avg","payload":{"value":"1"}}"#.to_owned(),
                false
            )),
            Just((r#"{"type":"load_avg"}"#.to_owned(), false)),
            Just((r#"{"payload":{"value":1}}"#.to_owned(), false)),
            Just((
                r#"{"type":"load_avg","payload":{"value":null}}"#.to_owned(),
                false
            )),
            Just((
                r#"{"type":"load_avg","payload":{"value":1e999}}"#.to_owned(),
                false
            )),
            Just((
                r#"{"payload":{"value":[0.5]},"type":"cpu_usage"}"#.to_owned(),
                true
            )),
            Just((
                r#"{"type":"load_avg","x":[1e999,{}],"payload":{"n":1,"value":2}}"#.to_owned(),
                true
            )),
            Just((
                r#"{"t\u0079pe":"lo\u0061d_avg","payload":{"value":2}}"#.to_owned(),
                true
            )),
        ]
    }

    /// An entry only the reference reading can judge.
    fn odd_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null"),
            Just("[]"),
            Just("1e999"),
            Just(r#"{"type":7,"payload":{"value":1}}"#),
            Just(r#"{"type":1e999,"payload":{"value":1}}"#),
            Just(r#"{"type":"load_avg","payload":5}"#),
            Just(r#"{"type":"load_avg","payload":[{"value":5}]}"#),
            Just(r#"{"payload":7,"type":"load_avg"}"#),
            Just(r#"{"type":"load_avg","type":"cpu_usage","payload":{"value":1}}"#),
            Just(r#"{"type":"load_avg","payload":{"value":1},"payload":{"value":2}}"#),
            Just(r#"{"type":"load_avg","payload":{"value":1,"value":2}}"#),
        ]
        .prop_map(str::to_owned)
    }

    fn join(entries: &[String]) -> String {
        format!("[{}]", entries.join(" ,\n"))
    }

    proptest! {
        #[test]
        fn exactly_the_good_entries_come_through(entries in prop::collection::vec(entry(), 0..40)) {
            let body = format!(
                "[{}]",
                entries.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>().join(",")
            );
            let decoded = decode(body.as_bytes()).expect("a JSON array");
            let good: Vec<_> = entries.iter().filter(|(_, ok)| *ok).map(|(e, _)| e).collect();
            prop_assert_eq!(decoded.len(), entries.len());
            prop_assert_eq!(decoded.payloads.len(), good.len());
            for (payload, text) in decoded.payloads.iter().zip(good) {
                let alone = decode(format!("[{text}]").as_bytes()).expect("a JSON array");
                prop_assert_eq!(&alone.payloads[0], payload);
            }
        }

        #[test]
        fn one_pass_judges_the_entries_the_api_sends(entries in prop::collection::vec(entry(), 0..40)) {
            let entries: Vec<String> = entries.into_iter().map(|(e, _)| e).collect();
            let body = join(&entries);
            let fast = one_pass(body.as_bytes());
            prop_assert!(fast.is_ok(), "{body}: {fast:?}");
            prop_assert_eq!(fast.ok(), decode_by_parts(body.as_bytes()).ok());
        }

        #[test]
        fn one_pass_agrees_with_the_reference(
            entries in prop::collection::vec(
                prop_oneof![3 => entry().prop_map(|(e, _)| e), 1 => odd_entry()],
                0..20,
            ),
            cut in prop::option::of(0.0f64..1.0),
        ) {
            let mut body = join(&entries).into_bytes();
            if let Some(cut) = cut {
                body.truncate(((body.len() - 1) as f64 * cut) as usize);
            }
            let reference = decode_by_parts(&body);
            prop_assert_eq!(&decode(&body), &reference);
            if let Ok(fast) = one_pass(&body) {
                prop_assert_eq!(Ok(fast), reference);
            }
        }

        #[test]
        fn a_cut_body_is_never_partly_accepted(
            entries in prop::collection::vec(entry(), 1..10),
            cut in 0.0f64..1.0,
        ) {
            let body = format!(
                "[{}]",
                entries.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>().join(",")
            );
            let at = ((body.len() - 1) as f64 * cut) as usize;
            prop_assert!(decode(&body.as_bytes()[..at]).is_err());
        }
    }
}
