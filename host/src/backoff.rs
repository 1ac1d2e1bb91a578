//! Retry delays: exponential growth between two bounds, with full jitter.
//!
//! The ceiling of the n-th consecutive delay is `min * factor^(n-1)`, capped
//! at `max` (the sequence comes from `backon`). The delay itself is drawn
//! uniformly between `min` and that ceiling ("full jitter"), so that many
//! clients failing together do not retry together, and no delay is ever
//! shorter than `min` or longer than `max`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Settings of a [`Backoff`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffSettings {
    /// The shortest delay, and the first ceiling.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
    /// How much the ceiling grows after each failure.
    pub factor: f32,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

/// Settings that cannot make a sensible backoff.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackoffError {
    /// `min` is zero.
    #[error("the minimum delay must be above zero")]
    ZeroMin,
    /// `max` is below `min`.
    #[error("the maximum delay ({max:?}) is below the minimum ({min:?})")]
    MaxBelowMin {
        /// The minimum given.
        min: Duration,
        /// The maximum given.
        max: Duration,
    },
    /// `factor` is below one, or not a number.
    #[error("the growth factor must be a number >= 1, not {0}")]
    Factor(f32),
}

impl BackoffSettings {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.min.is_zero() {
            return Err(BackoffError::ZeroMin);
        }
        if self.max < self.min {
            return Err(BackoffError::MaxBelowMin {
                min: self.min,
                max: self.max,
            });
        }
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(BackoffError::Factor(self.factor));
        }
        Ok(())
    }
}

/// The delays between consecutive failed attempts.
#[derive(Debug)]
pub struct Backoff {
    settings: BackoffSettings,
    ceilings: ExponentialBackoff,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff with validated settings.
    pub fn new(settings: BackoffSettings) -> Result<Backoff, BackoffError> {
        settings.validate()?;
        Ok(Backoff {
            settings,
            ceilings: Self::ceilings(&settings),
            failures: 0,
            rng: fastrand::Rng::new(),
        })
    }

    fn ceilings(settings: &BackoffSettings) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(settings.min)
            .with_max_delay(settings.max)
            .with_factor(settings.factor)
            .without_max_times()
            .build()
    }

    /// The delay before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self
            .ceilings
            .next()
            .unwrap_or(self.settings.max)
            .min(self.settings.max);
        let spread = ceiling.saturating_sub(self.settings.min);
        self.settings.min + spread.mul_f64(self.rng.f64())
    }

    /// The longest delay, for failures that call for patience.
    pub fn max(&self) -> Duration {
        self.settings.max
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.ceilings = Self::ceilings(&self.settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_stay_under_a_growing_ceiling_and_within_bounds() {
        let settings = BackoffSettings {
            min: ms(100),
            max: ms(1000),
            factor: 2.0,
        };
        for _ in 0..200 {
            let mut backoff = Backoff::new(settings).expect("valid settings");
            for ceiling in [100, 200, 400, 800, 1000, 1000] {
                let delay = backoff.next_delay();
                assert!(
                    delay >= ms(100) && delay <= ms(ceiling),
                    "{delay:?} > {ceiling}ms"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let settings = BackoffSettings {
            min: ms(10),
            max: ms(10_000),
            factor: 2.0,
        };
        let mut backoff = Backoff::new(settings).expect("valid settings");
        let delays: Vec<_> = (0..12).map(|_| backoff.next_delay()).collect();
        let late = &delays[8..];
        assert!(late.iter().any(|d| *d != late[0]), "no jitter in {late:?}");
    }

    #[test]
    fn reset_starts_from_the_minimum_again() {
        let settings = BackoffSettings {
            min: ms(50),
            max: ms(50_000),
            factor: 4.0,
        };
        let mut backoff = Backoff::new(settings).expect("valid settings");
        for _ in 0..6 {
            backoff.next_delay();
        }
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next_delay(), ms(50));
    }

    #[test]
    fn bad_settings_are_named() {
        let ok = BackoffSettings::default();
        let cases = [
            (
                BackoffSettings {
                    min: Duration::ZERO,
                    ..ok
                },
                BackoffError::ZeroMin,
            ),
            (
                BackoffSettings {
                    min: ms(10),
                    max: ms(5),
                    ..ok
                },
                BackoffError::MaxBelowMin {
                    min: ms(10),
                    max: ms(5),
                },
            ),
            (
                BackoffSettings { factor: 0.5, ..ok },
                BackoffError::Factor(0.5),
            ),
        ];
        for (settings, expected) in cases {
            assert_eq!(settings.validate(), Err(expected));
        }
        assert!(
            BackoffSettings {
                factor: f32::NAN,
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
