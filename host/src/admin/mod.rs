//! The introspection server: what every component and plugin says of
//! itself, over HTTP.
//!
//! The server stands outside the engine it reports on, so it keeps
//! answering while components restart.
//!
//! It binds to loopback unless given a token ([`Access`]): on any other
//! address, clients must send `Authorization: Bearer TOKEN`. With a token,
//! every route but `GET /live` and the page at `GET /` (which holds no data
//! and asks for the token itself) answers 401 without it.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the status page: components, their inputs, plugins, live |
//! | `GET /metrics` | Prometheus exposition (see [`crate::metrics`]) |
//! | `GET /live` | 200 while the process serves |
//! | `GET /ready` | 200 once every component runs, else 503 |
//! | `GET /components` | the engine report, one object per component |
//! | `GET /plugins` | one object per plugin, with its aggregate |
//! | `GET /accounts` | payloads received, applied, rejected, in flight |
//! | `GET /accounts?min_applied=N&wait=5s` | the same, once `N` payloads are applied or the wait is over |
//! | `POST /components/{name}/restart` | restarts a component as if it failed |

mod access;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use self::access::Access;
use crate::metrics::{Format, Scrape};
use crate::pipeline::Pipeline;

/// The status page, self-contained: no file, script or font from elsewhere.
const STATUS_PAGE: &str = include_str!("status.html");

/// What the status page may load: nothing but itself and this server's
/// JSON routes.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'";

/// The admin routes over `pipeline`, guarded by `access`.
pub fn router(pipeline: Arc<Pipeline>, access: Access) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/components", get(components))
        .route("/components/{name}/restart", post(restart))
        .route("/plugins", get(plugins))
        .route("/accounts", get(accounts))
        .layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(pipeline)
}

/// Serves the admin routes on `listener`, guarded by `access`, until `stop`
/// is cancelled.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    access: Access,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(pipeline, access))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Binds the admin address, with a message naming it when that fails.
/// Refuses an address other than loopback unless `access` asks for a token.
pub async fn bind(addr: SocketAddr, access: &Access) -> anyhow::Result<TcpListener> {
    access.check_bind(addr)?;
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on the admin address {addr}: {err}"))
}

async fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, STATUS_PAGE).into_response()
}

async fn metrics(State(pipeline): State<Arc<Pipeline>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match Scrape::take(&pipeline).await.encode(format) {
        Ok(exposition) => {
            let content_type = HeaderValue::from_static(format.content_type());
            ([(header::CONTENT_TYPE, content_type)], exposition).into_response()
        }
        Err(err) => {
            let error = format!("cannot encode the metrics: {err}");
            (StatusCode::INTERNAL_SERVER_ERROR, error).into_response()
        }
    }
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(pipeline): State<Arc<Pipeline>>) -> Response {
    let ready = pipeline.engine().ready().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

async fn components(State(pipeline): State<Arc<Pipeline>>) -> Response {
    Json(pipeline.engine().report().await).into_response()
}

async fn restart(State(pipeline): State<Arc<Pipeline>>, Path(name): Path<String>) -> Response {
    match pipeline.engine().restart(&name).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({ "restarting": name }))).into_response(),
        Err(err) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

async fn plugins(State(pipeline): State<Arc<Pipeline>>) -> Json<Vec<serde_json::Value>> {
    Json(pipeline.plugins_report().await)
}

/// Parameters of `GET /accounts`.
#[derive(Debug, serde::Deserialize)]
struct AccountsQuery {
    /// Answer once at least this many payloads are applied...
    min_applied: Option<u64>,
    /// ...or once this long has passed (`5s`, `250ms`; at most a minute).
    wait: Option<String>,
}

/// The longest a client may ask `GET /accounts` to wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

async fn accounts(
    State(pipeline): State<Arc<Pipeline>>,
    Query(query): Query<AccountsQuery>,
) -> Response {
    let wait = match query
        .wait
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
    {
        Ok(wait) => wait.unwrap_or(Duration::ZERO).min(MAX_WAIT),
        Err(err) => {
            let error = format!("invalid wait: {err}");
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
    };
    if let Some(min) = query.min_applied {
        let mut accounts = pipeline.ledger().subscribe();
        let reached = accounts.wait_for(|a| a.total().applied >= min);
        // Answer with whatever is there when the wait is over.
        let _ = tokio::time::timeout(wait, reached).await;
    }
    Json(pipeline.ledger().snapshot().to_json()).into_response()
}
