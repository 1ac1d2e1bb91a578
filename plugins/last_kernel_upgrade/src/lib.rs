//! The `last_kernel_upgrade` handler: the most recent kernel upgrade.
//!
//! Renders as `{"latest": "RFC 3339 in UTC"|null, "count": n}`, where
//! `count` is the number of payloads applied and `latest` the latest instant
//! among them, written with a `Z` offset and the fraction of a second
//! trimmed of trailing zeros (`2024-03-01T12:00:00.5Z`).
//!
//! The host hands instants over already on the UTC time line, so instants
//! that arrived in different zones compare as instants. An instant is
//! refused when its nanoseconds are not below one second, or when it falls
//! outside the years 0000 to 9999 that RFC 3339 can write.

use std::fmt::{self, Write as _};

use sluice_plugin_sdk::codec::{Reader, Writer};
use sluice_plugin_sdk::{Aggregate, Batch, Rejection, StateError, json};

sluice_plugin_sdk::export_aggregate!(State);

/// Tag of this handler's state bytes.
const TAG: u8 = b'K';
/// Layout of the state: `count: u64`, then `seconds: i64, nanoseconds: u32`
/// of the latest instant when `count > 0`.
const VERSION: u8 = 1;

const NANOS_PER_SECOND: u32 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// `0000-01-01T00:00:00Z`, in seconds since the Unix epoch.
const MIN_SECONDS: i64 = -62_167_219_200;
/// `9999-12-31T23:59:59Z`, in seconds since the Unix epoch.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Why an instant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The nanoseconds are one second or more.
    Nanoseconds,
    /// The instant is before year 0000 or after year 9999.
    OutOfRange,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nanoseconds => "nanoseconds out of range",
            Self::OutOfRange => "instant out of range",
        })
    }
}

/// A valid instant on the UTC time line. Fields in this order make the
/// derived ordering chronological: `nanoseconds` always count forward from
/// `seconds`, before the epoch too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    seconds: i64,
    nanoseconds: u32,
}

impl Timestamp {
    /// The instant `nanoseconds` past `seconds` since the Unix epoch.
    pub fn new(seconds: i64, nanoseconds: u32) -> Result<Self, Invalid> {
        if nanoseconds >= NANOS_PER_SECOND {
            return Err(Invalid::Nanoseconds);
        }
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
            return Err(Invalid::OutOfRange);
        }
        Ok(Self {
            seconds,
            nanoseconds,
        })
    }

    /// Writes the instant in RFC 3339, in UTC with a `Z` offset.
    pub fn to_rfc3339(self) -> String {
        let days = self.seconds.div_euclid(SECONDS_PER_DAY);
        let second_of_day = self.seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_date(days);
        let (hour, minute, second) = (
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        );
        let mut out = String::with_capacity(30);
        write!(
            out,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
        )
        .expect("writing to a String cannot fail");
        if self.nanoseconds > 0 {
            let fraction = format!("{:09}", self.nanoseconds);
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }
}

/// The proleptic Gregorian date of the day `days` after 1970-01-01.
///
/// Counts in 400-year eras (146,097 days each) from 0000-03-01, so that the
/// leap day falls at the end of each counted year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    // Days from 0000-03-01 to 1970-01-01.
    let days = days + 719_468;
    let era = days.div_euclid(DAYS_PER_ERA);
    let day_of_era = days.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 is March, 11 is February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    // `day` is in 1..=31 and `month` in 1..=12 by construction.
    (year, month as u32, day as u32)
}

/// The aggregate: how many instants were applied and the latest of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    count: u64,
    /// Present exactly when `count > 0`.
    latest: Option<Timestamp>,
}

impl State {
    /// Number of instants applied.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latest instant applied, if any.
    pub fn latest(&self) -> Option<Timestamp> {
        self.latest
    }

    /// Applies one instant, or refuses it and changes nothing.
    pub fn apply(&mut self, seconds: i64, nanoseconds: u32) -> Result<(), Invalid> {
        let at = Timestamp::new(seconds, nanoseconds)?;
        self.latest = self.latest.max(Some(at));
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Writes the state for the host to keep.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(TAG, VERSION);
        writer.u64(self.count);
        if let Some(latest) = self.latest {
            writer.i64(latest.seconds).u32(latest.nanoseconds);
        }
        writer.finish()
    }

    /// Reads a state written by [`State::encode`]; empty bytes are the
    /// state of no instants.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let Some(mut reader) = Reader::open(bytes, TAG, VERSION)? else {
            return Ok(Self::default());
        };
        let count = reader.u64()?;
        let latest = if count == 0 {
            None
        } else {
            let (seconds, nanoseconds) = (reader.i64()?, reader.u32()?);
            let latest = Timestamp::new(seconds, nanoseconds)
                .map_err(|_| StateError::Invalid("latest instant out of range"))?;
            Some(latest)
        };
        reader.finish()?;
        Ok(Self { count, latest })
    }

    /// Renders the aggregate as a JSON object.
    pub fn render(&self) -> String {
        let mut out = String::from("{\"latest\":");
        match self.latest {
            // RFC 3339 text needs no escaping.
            Some(latest) => {
                out.push('"');
                out.push_str(&latest.to_rfc3339());
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"count\":");
        json::push_u64(&mut out, self.count);
        out.push('}');
        out
    }
}

impl Aggregate for State {
    const NAME: &'static str = "last_kernel_upgrade";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        Self::decode(bytes)
    }

    fn encode(&self) -> Vec<u8> {
        self.encode()
    }

    fn apply_batch(&mut self, batch: &Batch) -> Vec<Rejection> {
        match batch {
            Batch::LastKernelUpgrade(instants) => {
                sluice_plugin_sdk::apply_each(instants, |at| self.apply(at.seconds, at.nanoseconds))
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
    use sluice_plugin_sdk::{Instant, JsonBatch, UNSUPPORTED_TYPE};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::*;

    /// The instant of an RFC 3339 text in any zone, as the host would hand
    /// it over: on the UTC time line.
    fn instant(text: &str) -> Instant {
        let at = OffsetDateTime::parse(text, &Rfc3339).expect("valid RFC 3339");
        Instant {
            seconds: at.unix_timestamp(),
            nanoseconds: at.nanosecond(),
        }
    }

    fn state_of(texts: &[&str]) -> State {
        let mut state = State::default();
        let rejected = state.apply_batch(&Batch::LastKernelUpgrade(
            texts.iter().map(|text| instant(text)).collect(),
        ));
        assert!(rejected.is_empty(), "{rejected:?}");
        state
    }

    #[test]
    fn empty_renders_null() {
        assert_eq!(State::default().render(), r#"{"latest":null,"count":0}"#);
    }

    #[test]
    fn single_instant() {
        let state = state_of(&["2024-03-01T12:00:00Z"]);
        assert_eq!(
            state.render(),
            r#"{"latest":"2024-03-01T12:00:00Z","count":1}"#
        );
    }

    #[test]
    fn latest_wins_whatever_the_order() {
        let state = state_of(&[
            "2023-01-01T00:00:00Z",
            "2024-06-30T23:59:59Z",
            "2024-01-15T08:00:00Z",
        ]);
        assert_eq!(
            state.render(),
            r#"{"latest":"2024-06-30T23:59:59Z","count":3}"#
        );
    }

    #[test]
    fn zones_compare_as_instants() {
        // 01:00+02:00 is 23:00Z the day before: earlier than 23:30Z.
        let state = state_of(&["2024-01-01T01:00:00+02:00", "2023-12-31T23:30:00Z"]);
        assert_eq!(
            state.render(),
            r#"{"latest":"2023-12-31T23:30:00Z","count":2}"#
        );
        let state = state_of(&["2023-12-31T23:30:00Z", "2023-12-31T19:00:00-05:00"]);
        assert_eq!(
            state.render(),
            r#"{"latest":"2024-01-01T00:00:00Z","count":2}"#
        );
    }

    #[test]
    fn nanoseconds_break_ties_and_are_trimmed() {
        let state = state_of(&[
            "2024-05-05T05:05:05.000000001Z",
            "2024-05-05T05:05:05.000000002Z",
            "2024-05-05T05:05:05Z",
        ]);
        assert_eq!(
            state.latest(),
            Timestamp::new(instant("2024-05-05T05:05:05Z").seconds, 2).ok()
        );
        assert_eq!(
            state.render(),
            r#"{"latest":"2024-05-05T05:05:05.000000002Z","count":3}"#
        );
        let state = state_of(&["2024-05-05T05:05:05.120Z", "2024-05-05T05:05:05.12Z"]);
        assert_eq!(
            state.render(),
            r#"{"latest":"2024-05-05T05:05:05.12Z","count":2}"#
        );
    }

    #[test]
    fn exactly_the_epoch_and_before_it() {
        let state = state_of(&["1970-01-01T00:00:00Z"]);
        assert_eq!(
            state.render(),
            r#"{"latest":"1970-01-01T00:00:00Z","count":1}"#
        );
        // Half a second before the epoch: seconds -1, nanoseconds 5e8.
        let mut state = State::default();
        state.apply(-1, 500_000_000).expect("valid instant");
        state.apply(-1, 0).expect("valid instant");
        assert_eq!(
            state.render(),
            r#"{"latest":"1969-12-31T23:59:59.5Z","count":2}"#
        );
    }

    #[test]
    fn invalid_instants_are_refused_and_change_nothing() {
        let cases = [
            (0, NANOS_PER_SECOND, Invalid::Nanoseconds),
            (0, u32::MAX, Invalid::Nanoseconds),
            (MIN_SECONDS - 1, 0, Invalid::OutOfRange),
            (MAX_SECONDS + 1, 0, Invalid::OutOfRange),
            (i64::MIN, 0, Invalid::OutOfRange),
            (i64::MAX, 999_999_999, Invalid::OutOfRange),
        ];
        let before = state_of(&["2020-02-02T02:02:02Z"]);
        for (seconds, nanoseconds, expected) in cases {
            let mut state = before;
            assert_eq!(
                state.apply(seconds, nanoseconds),
                Err(expected),
                "{seconds}"
            );
            assert_eq!(state, before);
        }
        let mut state = State::default();
        state.apply(MIN_SECONDS, 0).expect("year 0000");
        state.apply(MAX_SECONDS, 999_999_999).expect("year 9999");
        assert_eq!(
            state.render(),
            r#"{"latest":"9999-12-31T23:59:59.999999999Z","count":2}"#
        );
    }

    #[test]
    fn batch_rejections_name_positions_and_reasons() {
        let mut state = State::default();
        let batch = Batch::LastKernelUpgrade(vec![
            Instant {
                seconds: 10,
                nanoseconds: 0,
            },
            Instant {
                seconds: 20,
                nanoseconds: NANOS_PER_SECOND,
            },
            Instant {
                seconds: i64::MAX,
                nanoseconds: 0,
            },
        ]);
        let rejected = state.apply_batch(&batch);
        let rejected: Vec<_> = rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [(1, "nanoseconds out of range"), (2, "instant out of range")]
        );
        assert_eq!(state.count(), 1);
    }

    #[test]
    fn other_types_are_refused_payload_by_payload() {
        let mut state = State::default();
        let batch = Batch::Json(JsonBatch {
            kind: "json".into(),
            values: vec!["null".into(); 2],
        });
        let rejected = state.apply_batch(&batch);
        assert_eq!(rejected.len(), 2);
        assert!(rejected.iter().all(|r| r.reason == UNSUPPORTED_TYPE));
        assert_eq!(state, State::default());
    }

    #[test]
    fn rfc3339_matches_a_reference_implementation() {
        // Every five weeks or so across the whole range, at odd times of day, plus
        // the edges of leap years and centuries.
        let step = 37 * SECONDS_PER_DAY + 3_661;
        let seconds = (MIN_SECONDS..=MAX_SECONDS).step_by(step as usize).chain([
            MIN_SECONDS,
            MAX_SECONDS,
            -1,
            0,
            951_782_400,    // 2000-02-29
            4_107_542_400,  // 2100-03-01
            -2_203_891_200, // 1900-02-28
        ]);
        for seconds in seconds {
            let nanoseconds = (seconds.rem_euclid(7) * 123_456_789 % 1_000_000_000) as u32;
            let ours = Timestamp::new(seconds, nanoseconds)
                .expect("in range")
                .to_rfc3339();
            let reference = OffsetDateTime::from_unix_timestamp(seconds)
                .expect("in range")
                .replace_nanosecond(nanoseconds)
                .expect("valid nanoseconds");
            assert_eq!(
                OffsetDateTime::parse(&ours, &Rfc3339),
                Ok(reference),
                "{seconds}.{nanoseconds} rendered as {ours}"
            );
            let expected = reference.format(&Rfc3339).expect("formattable");
            assert_eq!(ours, expected.replace("+00:00", "Z"), "{seconds}");
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut before_epoch = State::default();
        before_epoch.apply(-5, 1).expect("valid instant");
        let states = [
            State::default(),
            state_of(&["2024-03-01T12:00:00.25Z"]),
            before_epoch,
        ];
        for state in states {
            assert_eq!(State::decode(&state.encode()), Ok(state));
        }
        assert_eq!(State::decode(&[]), Ok(State::default()));
    }

    #[test]
    fn corrupt_or_foreign_state_is_an_error() {
        let good = state_of(&["2024-03-01T12:00:00Z"]).encode();
        let mut bad_nanos = Writer::new(TAG, VERSION);
        bad_nanos.u64(1).i64(0).u32(NANOS_PER_SECOND);
        let cases: Vec<(Vec<u8>, StateError)> = vec![
            (good[..good.len() - 1].to_vec(), StateError::Truncated),
            ([good.as_slice(), &[0]].concat(), StateError::Trailing),
            (
                vec![b'L', 1],
                StateError::Foreign {
                    expected: TAG,
                    found: b'L',
                },
            ),
            (
                vec![TAG, 7, 0],
                StateError::Version {
                    expected: VERSION,
                    found: 7,
                },
            ),
            (
                bad_nanos.finish(),
                StateError::Invalid("latest instant out of range"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(State::decode(&bytes), Err(expected), "{bytes:?}");
        }
    }

    #[test]
    fn exports_describe_the_handler() {
        let metadata = sluice_plugin_sdk::metadata::<State>();
        assert_eq!(metadata.name, "last_kernel_upgrade");
        assert_eq!(metadata.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(metadata.types, ["last_kernel_upgrade"]);
    }
}
