//! The introspection server: what every component and plugin says of
//! itself, over HTTP.
//!
//! The server stands outside the engine it reports on, so it keeps
//! answering while components restart.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /live` | 200 while the process serves |
//! | `GET /ready` | 200 once every component runs, else 503 |
//! | `GET /components` | the engine report, one object per component |
//! | `GET /plugins` | one object per plugin, with its aggregate |
//! | `GET /accounts` | payloads received, applied, rejected, in flight |
//! | `GET /accounts?min_applied=N&wait=5s` | the same, once `N` payloads are applied or the wait is over |
//! | `POST /components/{name}/restart` | restarts a component as if it failed |

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Pipeline;

/// The admin routes over `pipeline`.
pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/components", get(components))
        .route("/components/{name}/restart", post(restart))
        .route("/plugins", get(plugins))
        .route("/accounts", get(accounts))
        .with_state(pipeline)
}

/// Serves the admin routes on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(pipeline))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Binds the admin address, with a message naming it when that fails.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on the admin address {addr}: {err}"))
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
