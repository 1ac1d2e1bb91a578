//! Who may use the admin server: anyone on loopback, or only clients that
//! send the admin token.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::Secret;

/// Routes that answer without the token: the liveness probe, and the status
/// page, which holds no data and sends the token with each of its requests.
const PUBLIC: [&str; 2] = ["/live", "/"];

/// Who may use the admin routes.
#[derive(Clone, Debug, Default)]
pub struct Access {
    token: Option<Secret>,
}

impl Access {
    /// No token: every route answers anyone who can connect, which is only
    /// safe on loopback.
    pub fn open() -> Access {
        Access::default()
    }

    /// Every route but `GET /live` and `GET /` requires
    /// `Authorization: Bearer TOKEN`. Fails on an empty token.
    pub fn with_token(token: Secret) -> anyhow::Result<Access> {
        anyhow::ensure!(
            !token.expose().trim().is_empty(),
            "--admin-token must not be empty"
        );
        Ok(Access { token: Some(token) })
    }

    /// An open access without a token, or one that requires `token`.
    pub fn from_token(token: Option<Secret>) -> anyhow::Result<Access> {
        token.map_or(Ok(Access::open()), Access::with_token)
    }

    /// Whether clients must send a token.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks that the server may listen on `addr`: an address other than
    /// loopback needs a token.
    pub fn check_bind(&self, addr: SocketAddr) -> anyhow::Result<()> {
        anyhow::ensure!(
            addr.ip().is_loopback() || self.requires_token(),
            "the admin address {addr} is not a loopback address: give --admin-token \
             (or SLUICE_ADMIN_TOKEN) so that clients must authenticate, or listen on \
             127.0.0.1"
        );
        Ok(())
    }

    /// Whether a request with `headers` may pass.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer);
        presented.is_some_and(|presented| same(presented.as_bytes(), token.expose().as_bytes()))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares in time that depends on the lengths alone, so that the answer
/// does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Answers 401 to a request without the token, unless its route is public.
pub(super) async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    if PUBLIC.contains(&request.uri().path()) || access.admits(request.headers()) {
        return next.run(request).await;
    }
    let error = "this admin server needs `Authorization: Bearer TOKEN` (its --admin-token)";
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": error })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = authorization.parse().expect("a valid header value");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn a_token_admits_only_the_bearer_of_that_token() {
        let access = Access::with_token(Secret::new("s3cret")).expect("a token");
        assert!(access.admits(&headers("Bearer s3cret")));
        assert!(access.admits(&headers("bearer  s3cret ")));
        for refused in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(
                !access.admits(&headers(refused)),
                "{refused:?} was admitted"
            );
        }
        assert!(!access.admits(&HeaderMap::new()));
        assert!(Access::open().admits(&HeaderMap::new()));
    }

    #[test]
    fn only_loopback_is_served_without_a_token() {
        let open = Access::open();
        for loopback in ["127.0.0.1:9480", "127.3.2.1:0", "[::1]:9480"] {
            let addr = loopback.parse().expect("an address");
            assert!(open.check_bind(addr).is_ok(), "{loopback} refused");
        }
        for other in ["0.0.0.0:9480", "[::]:9480", "192.0.2.7:9480"] {
            let addr = other.parse().expect("an address");
            let err = open
                .check_bind(addr)
                .expect_err("a non-loopback bind is refused");
            assert!(err.to_string().contains("--admin-token"), "{err}");
            let guarded = Access::with_token(Secret::new("t")).expect("a token");
            assert!(guarded.check_bind(addr).is_ok());
        }
    }

    #[test]
    fn an_empty_token_is_refused() {
        let err = Access::with_token(Secret::new(" ")).expect_err("an empty token");
        assert!(err.to_string().contains("--admin-token"), "{err}");
    }
}
