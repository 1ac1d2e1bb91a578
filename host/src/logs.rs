//! Logs: where they go, how they look, which are kept, and how a message
//! that would repeat on every batch is held back.
//!
//! Logs go to stderr, as human-readable lines by default or as one JSON
//! object per line ([`LogFormat::Json`]) for shipping. Which are kept is an
//! [`EnvFilter`] directive: `--log-level` (`info` by default, or any
//! directive such as `sluice=debug,info`), unless `RUST_LOG` is set, which
//! wins. Stdout is kept for the few lines an operator or a script waits for
//! (`sluice: ready`, `sluice: stopped: ...`).
//!
//! A failure that repeats at the pace of the pipeline is logged through a
//! [`RateLimit`]: at most one line per period, which says how many were
//! held back since the previous one.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, with its fields and spans.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// The filter `level` stands for: a level (`info`), or directives
/// (`sluice=debug,warn`). Unlike `RUST_LOG`, a bare word must be a level,
/// so that a misspelt one (`inof`) is an error rather than the name of a
/// module to log from.
pub fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    let invalid = || format!("{level:?} is not a log level or filter (try info or debug)");
    for directive in level.split(',').map(str::trim) {
        anyhow::ensure!(!directive.is_empty(), invalid());
        if !directive.contains(['=', '[']) {
            directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .with_context(invalid)?;
        }
    }
    EnvFilter::builder().parse(level).with_context(invalid)
}

/// Sends the logs of the whole process to stderr in `format`, filtered by
/// `RUST_LOG` when it is set and not empty, else by `level`. Fails on a
/// filter that does not parse, or when logging is already set up.
pub fn install(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .parse(&directives)
            .context("invalid RUST_LOG")?,
        _ => filter(level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

/// Lets a repeating log line through at most once per period.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use sluice::logs::RateLimit;
/// let mut limit = RateLimit::new(Duration::from_secs(10));
/// let start = Instant::now();
/// assert_eq!(limit.check(start), Some(0));
/// assert_eq!(limit.check(start + Duration::from_secs(1)), None);
/// // The next line that goes through says one was held back.
/// assert_eq!(limit.check(start + Duration::from_secs(10)), Some(1));
/// ```
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    /// When the next line may go through; `None` before the first.
    next: Option<Instant>,
    /// Lines held back since the last one that went through.
    suppressed: u64,
}

impl RateLimit {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            next: None,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`: if so, how many were held
    /// back since the previous one (to log with it); if not, `None`, and
    /// the line is counted as held back.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_becomes_one_line_per_period_with_a_count() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        let let_through: Vec<(u64, u64)> = (0..100u64)
            .filter_map(|i| {
                // One attempt every 500 ms for 50 s.
                let at = start + Duration::from_millis(500 * i);
                limit.check(at).map(|held| (i, held))
            })
            .collect();
        assert_eq!(
            let_through,
            [(0, 0), (20, 19), (40, 19), (60, 19), (80, 19)]
        );
    }

    #[test]
    fn levels_and_directives_parse_and_nonsense_does_not() {
        for good in ["info", "debug", "sluice=trace,warn", "off"] {
            assert!(filter(good).is_ok(), "{good}");
        }
        for bad in ["loud", "inof", "sluice=loud", ""] {
            assert!(filter(bad).is_err(), "{bad:?}");
        }
    }
}
