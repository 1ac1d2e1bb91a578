//! A built-in stand-in for the metrics API, so that `sluice run` shows
//! something real with no server and no flags.
//!
//! It answers `GET /metrics` like the reference server described in
//! `shared/API.md`: a JSON array of 0 to 9 envelopes of the three known
//! types, five CPUs, timestamps with a zone offset, sent as `text/plain`.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running demo API.
#[derive(Debug)]
pub struct DemoApi {
    /// The URL of its metrics endpoint.
    pub url: reqwest::Url,
}

impl DemoApi {
    /// Starts the demo API on a free loopback port; it stops with `stop`.
    pub async fn start(stop: CancellationToken) -> anyhow::Result<DemoApi> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().route("/metrics", get(metrics));
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

async fn metrics() -> Response {
    let body = serde_json::Value::Array((0..fastrand::usize(0..=9)).map(|_| envelope()).collect());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// One random envelope of a known type.
pub fn envelope() -> serde_json::Value {
    let (kind, value) = match fastrand::u8(0..3) {
        0 => (
            "load_avg",
            serde_json::json!(shortest(fastrand::f32() * 4.0)),
        ),
        1 => (
            "cpu_usage",
            (0..5).map(|_| shortest(fastrand::f32())).collect(),
        ),
        _ => ("last_kernel_upgrade", serde_json::json!(timestamp())),
    };
    serde_json::json!({ "type": kind, "payload": { "value": value } })
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
