//! Engine settings: restart backoff and shutdown grace, with validation.
//!
//! # Backoff
//!
//! The delay is computed here, with `fastrand` for the jitter, rather than with `backon`:
//! `backon`'s jitter adds up to one extra delay on top of the base, so its delays can exceed
//! the configured maximum. After `n` consecutive failures (`n >= 1`):
//!
//! * `base(n) = min(initial * multiplier^(n-1), max)`, truncated to whole milliseconds;
//! * without jitter the delay is `base(n)`;
//! * with jitter it is drawn uniformly from `[ceil(base(n) / 2), base(n)]` whole
//!   milliseconds ("equal jitter"), so it never exceeds `max` and never falls below half
//!   of the base.
//!
//! Whole milliseconds match tokio's timer resolution, which is why `initial` must be at
//! least 1 ms.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A setting that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine config: `{field}` {problem}")]
pub struct ConfigError {
    /// The offending field, e.g. `backoff.initial`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(field: &'static str, problem: String) -> Self {
        Self { field, problem }
    }
}

/// How long to wait before restarting a failed component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay after the first failure; at least 1 ms.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Upper bound of every delay, jitter included; not less than `initial`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth of the delay per consecutive failure; finite and at least 1.
    pub multiplier: f64,
    /// Whether to randomise each delay within `[base / 2, base]`.
    pub jitter: bool,
    /// A run that lasted at least this long before failing resets the failure count, so
    /// the next delay is `initial` again; non-zero.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl BackoffConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.initial < Duration::from_millis(1) {
            let got = humantime::format_duration(self.initial);
            return Err(ConfigError::new(
                "backoff.initial",
                format!("must be at least 1ms (got {got})"),
            ));
        }
        if self.max < self.initial {
            let (max, initial) = (self.max.as_millis(), self.initial.as_millis());
            return Err(ConfigError::new(
                "backoff.max",
                format!("must not be less than backoff.initial (got {max}ms < {initial}ms)"),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::new(
                "backoff.multiplier",
                format!("must be a finite number >= 1 (got {})", self.multiplier),
            ));
        }
        if self.reset_after.is_zero() {
            return Err(ConfigError::new(
                "backoff.reset_after",
                "must be greater than zero".to_owned(),
            ));
        }
        Ok(())
    }

    /// The delay before the next start after `failures` consecutive failures (counting
    /// the one that just happened, so at least 1). See the module documentation.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let base = self.base_delay_ms(failures);
        let ms = if self.jitter {
            fastrand::u64(base.div_ceil(2)..=base)
        } else {
            base
        };
        Duration::from_millis(ms)
    }

    /// `min(initial * multiplier^(failures-1), max)` in whole milliseconds, at least 1.
    fn base_delay_ms(&self, failures: u32) -> u64 {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let initial_ms = self.initial.as_secs_f64() * 1000.0;
        // `max` truncated to whole milliseconds so that the delay never exceeds it.
        let max_ms = self.max.as_millis() as f64;
        // `powi` overflows to infinity, which `min` turns into `max_ms`.
        let ms = (initial_ms * self.multiplier.powi(exponent)).min(max_ms);
        // The float-to-int cast saturates; `validate` guarantees `max_ms >= 1`.
        (ms.floor() as u64).max(1)
    }
}

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Restart backoff of failed components.
    pub backoff: BackoffConfig,
    /// How long a cancelled run may take to exit before it is dropped, and the bound on
    /// the whole of [`EngineHandle::shutdown`](super::EngineHandle::shutdown); non-zero.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl EngineConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backoff.validate()?;
        if self.shutdown_grace.is_zero() {
            return Err(ConfigError::new(
                "shutdown_grace",
                "must be greater than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Durations as humantime strings ("250ms", "1m 30s") in configuration files.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(&humantime::format_duration(*value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn exact() -> BackoffConfig {
        BackoffConfig {
            initial: ms(100),
            max: ms(1000),
            jitter: false,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_sensible() {
        let config = EngineConfig::default();
        config.validate().unwrap();
        assert_eq!(config.backoff.initial, ms(100));
        assert_eq!(config.backoff.max, Duration::from_secs(30));
        assert!(config.backoff.jitter);
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
    }

    #[test]
    fn each_bad_setting_is_rejected_by_name() {
        type Edit = fn(&mut EngineConfig);
        let cases: [(Edit, &str); 8] = [
            (|c| c.backoff.initial = Duration::ZERO, "backoff.initial"),
            (
                |c| c.backoff.initial = Duration::from_micros(500),
                "backoff.initial",
            ),
            (|c| c.backoff.max = ms(50), "backoff.max"),
            (|c| c.backoff.multiplier = 0.5, "backoff.multiplier"),
            (|c| c.backoff.multiplier = f64::NAN, "backoff.multiplier"),
            (
                |c| c.backoff.multiplier = f64::INFINITY,
                "backoff.multiplier",
            ),
            (
                |c| c.backoff.reset_after = Duration::ZERO,
                "backoff.reset_after",
            ),
            (|c| c.shutdown_grace = Duration::ZERO, "shutdown_grace"),
        ];
        for (edit, field) in cases {
            let mut config = EngineConfig::default();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn delay_grows_exponentially_up_to_max() {
        let config = exact();
        let delays: Vec<u64> = (1..=7)
            .map(|n| config.delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
        // No overflow on absurd failure counts.
        assert_eq!(config.delay(u32::MAX), ms(1000));
        let flat = BackoffConfig {
            multiplier: 1.0,
            ..exact()
        };
        assert_eq!(flat.delay(50), ms(100));
    }

    #[test]
    fn max_below_a_millisecond_boundary_is_never_exceeded() {
        let config = BackoffConfig {
            initial: Duration::from_micros(1500),
            max: Duration::from_micros(2500),
            jitter: true,
            ..BackoffConfig::default()
        };
        for n in 1..20 {
            assert!(config.delay(n) <= config.max);
        }
    }

    #[test]
    fn jittered_delay_stays_within_documented_range() {
        let config = BackoffConfig {
            jitter: true,
            ..exact()
        };
        for n in 1..=6 {
            let base = (100u64 << (n - 1)).min(1000);
            let samples: Vec<u64> = (0..500)
                .map(|_| config.delay(n).as_millis() as u64)
                .collect();
            for &delay in &samples {
                assert!(
                    (base.div_ceil(2)..=base).contains(&delay),
                    "{delay} for base {base}"
                );
            }
            let spread = samples.iter().max().unwrap() - samples.iter().min().unwrap();
            assert!(spread > 0, "jitter must vary the delay");
        }
    }

    #[test]
    fn config_reads_humantime_durations_and_defaults_missing_fields() {
        let json = r#"{"backoff": {"initial": "250ms", "jitter": false}, "shutdown_grace": "2s"}"#;
        let config: EngineConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.backoff.initial, ms(250));
        assert!(!config.backoff.jitter);
        assert_eq!(config.backoff.max, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(2));
        let round_trip: EngineConfig =
            serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(round_trip, config);
        assert!(serde_json::from_str::<EngineConfig>(r#"{"grace": "1s"}"#).is_err());
    }
}
