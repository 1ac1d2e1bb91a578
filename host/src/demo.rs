//! A built-in stand-in for the metrics API, so that `sluice run` shows
//! something real with no server and no flags.
//!
//! It answers `GET /metrics` like the reference server described in
//! `shared/API.md`: a JSON array of 0 to 9 envelopes of the three known
//! types, five CPUs, timestamps with a zone offset, sent as `text/plain`.
//! With [`DemoType::DiskUsage`] (`--demo-type disk_usage`) it also sends
//! `disk_usage` payloads, the type of the example plugins of
//! `plugins/examples/`: an object of mount point to used fraction.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A payload type the demo API can send.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Deserialize,
)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DemoType {
    /// `load_avg`: a number, the system load.
    LoadAvg,
    /// `cpu_usage`: five fractions, one per CPU.
    CpuUsage,
    /// `last_kernel_upgrade`: an RFC 3339 instant in a random zone.
    LastKernelUpgrade,
    /// `disk_usage`: an object of mount point to used fraction, the type of
    /// the example plugins. No bundled plugin handles it.
    DiskUsage,
}

impl DemoType {
    /// The types the demo API sends by default: those of the bundled
    /// plugins.
    pub const DEFAULT: [DemoType; 3] = [
        DemoType::LoadAvg,
        DemoType::CpuUsage,
        DemoType::LastKernelUpgrade,
    ];

    /// The type's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            DemoType::LoadAvg => "load_avg",
            DemoType::CpuUsage => "cpu_usage",
            DemoType::LastKernelUpgrade => "last_kernel_upgrade",
            DemoType::DiskUsage => "disk_usage",
        }
    }
}

/// A running demo API.
#[derive(Debug)]
pub struct DemoApi {
    /// The URL of its metrics endpoint.
    pub url: reqwest::Url,
}

impl DemoApi {
    /// Starts the demo API on a free loopback port, sending the three known
    /// types and any of `extra`; it stops with `stop`.
    pub async fn start(stop: CancellationToken, extra: &[DemoType]) -> anyhow::Result<DemoApi> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let mut types = DemoType::DEFAULT.to_vec();
        types.extend_from_slice(extra);
        types.sort();
        types.dedup();
        let types: Arc<[DemoType]> = types.into();
        let app = Router::new().route("/metrics", get(move || metrics(Arc::clone(&types))));
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(err) = served.await {
                tracing::error!(error = %err, "demo API stopped");
            }
        });
        let url = format!("http://{addr}/metrics").parse()?;
        Ok(DemoApi { url })
    }
}

async fn metrics(types: Arc<[DemoType]>) -> Response {
    let count = fastrand::usize(0..=9);
    let body = serde_json::Value::Array((0..count).map(|_| envelope_of(&types)).collect());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// One random envelope of one of `types` (a `load_avg` one when empty).
pub fn envelope_of(types: &[DemoType]) -> serde_json::Value {
    let kind = fastrand::choice(types)
        .copied()
        .unwrap_or(DemoType::LoadAvg);
    let value = match kind {
        DemoType::LoadAvg => serde_json::json!(shortest(fastrand::f32() * 4.0)),
        DemoType::CpuUsage => (0..5).map(|_| shortest(fastrand::f32())).collect(),
        DemoType::LastKernelUpgrade => serde_json::json!(timestamp()),
        DemoType::DiskUsage => disk_usage(),
    };
    serde_json::json!({ "type": kind.name(), "payload": { "value": value } })
}

/// Used fractions of a random subset of a few mount points (`/` always).
fn disk_usage() -> serde_json::Value {
    let mut mounts = serde_json::Map::new();
    for mount in ["/", "/boot", "/home", "/var"] {
        if mount == "/" || fastrand::bool() {
            mounts.insert(mount.to_owned(), shortest(fastrand::f32()));
        }
    }
    serde_json::Value::Object(mounts)
}

/// An `f32` as the shortest decimal that reads back as it, like the
/// reference server prints.
fn shortest(x: f32) -> serde_json::Value {
    let text = x.to_string();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Now, minus up to a day, in a random whole-hour zone.
fn timestamp() -> String {
    let offset = UtcOffset::from_hms(fastrand::i8(-11..=12), 0, 0).unwrap_or(UtcOffset::UTC);
    let ago = time::Duration::nanoseconds(fastrand::i64(0..86_400_000_000_000));
    (OffsetDateTime::now_utc() - ago)
        .to_offset(offset)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_of_the_types_asked_for_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let entry = envelope_of(&[DemoType::LoadAvg, DemoType::DiskUsage]);
            let kind = entry["type"].as_str().expect("a type").to_owned();
            let value = &entry["payload"]["value"];
            match kind.as_str() {
                "load_avg" => assert!(value.as_f64().is_some_and(|v| v >= 0.0), "{entry}"),
                "disk_usage" => {
                    let mounts = value.as_object().expect("an object of mounts");
                    assert!(mounts.contains_key("/"), "{entry}");
                    for fraction in mounts.values() {
                        let fraction = fraction.as_f64().expect("a number");
                        assert!((0.0..=1.0).contains(&fraction), "{entry}");
                    }
                }
                _ => panic!("a type that was not asked for: {entry}"),
            }
            seen.insert(kind);
        }
        assert_eq!(seen.len(), 2, "both types are drawn: {seen:?}");
        let known = envelope_of(&DemoType::DEFAULT);
        assert!(
            ["load_avg", "cpu_usage", "last_kernel_upgrade"]
                .contains(&known["type"].as_str().expect("a type")),
            "{known}"
        );
    }
}
