//! One poll of the metrics API: the request, the response and its failures.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use reqwest::{StatusCode, Url, header};

use super::decode::{self, DecodeError, Decoded};

/// A secret that never shows in logs, reports or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How to reach the metrics API.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Full URL of the metrics endpoint.
    pub url: Url,
    /// Token sent as the Basic-auth user name.
    pub token: Option<Secret>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for a whole response, body included.
    pub request_timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Most redirects followed for one poll.
    pub max_redirects: usize,
    /// PEM file of certificate authorities to trust instead of the system's.
    pub ca_bundle: Option<PathBuf>,
}

impl SourceConfig {
    /// Settings for `url` with the defaults for everything else.
    pub fn new(url: Url) -> SourceConfig {
        SourceConfig {
            url,
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024 * 1024,
            max_redirects: 5,
            ca_bundle: None,
        }
    }
}

/// Why a poll brought nothing into the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Status 401: the token is wrong or missing.
    #[error("token rejected (status 401)")]
    Unauthorized,
    /// Status 429 or 503.
    #[error("server asks to slow down (status {status})")]
    RateLimited {
        /// The status received.
        status: StatusCode,
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Any other 5xx status.
    #[error("server error (status {0})")]
    ServerError(StatusCode),
    /// Any other status that is not 200.
    #[error("unexpected status {0}")]
    Status(StatusCode),
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request or the body took longer than the request timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed before a response or before the end of its body.
    #[error("connection closed early: {0}")]
    Closed(String),
    /// The body is larger than allowed.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// Too many redirects, or a redirect that cannot be followed.
    #[error("redirect not followed: {0}")]
    Redirect(String),
    /// The body is not a complete JSON array.
    #[error(transparent)]
    Body(#[from] DecodeError),
}

impl PollError {
    /// A stable label for counters and reports.
    pub fn label(&self) -> &'static str {
        match self {
            PollError::Unauthorized => "unauthorized",
            PollError::RateLimited { .. } => "rate_limited",
            PollError::ServerError(_) => "server_error",
            PollError::Status(_) => "bad_status",
            PollError::Connect(_) => "connect_failed",
            PollError::Timeout(_) => "timeout",
            PollError::Closed(_) => "closed_early",
            PollError::TooLarge { .. } => "too_large",
            PollError::Redirect(_) => "redirect",
            PollError::Body(DecodeError::Truncated { .. }) => "body_cut_off",
            PollError::Body(DecodeError::NotAnArray { .. }) => "body_not_json",
        }
    }
}

/// A client of the metrics API.
#[derive(Debug)]
pub struct Source {
    client: reqwest::Client,
    url: Url,
    token: Option<Secret>,
    request_timeout: Duration,
    max_body_bytes: u64,
}

impl Source {
    /// A client for `config`. Fails when the CA bundle cannot be read.
    pub fn new(config: &SourceConfig) -> anyhow::Result<Source> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(config.max_redirects))
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_bundle {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA bundle {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "{} holds no PEM certificate",
                path.display()
            );
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().context("cannot build the HTTP client")?;
        Ok(Source {
            client,
            url: config.url.clone(),
            token: config.token.clone(),
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The URL polled.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Polls once and decodes the body. Cancel-safe: nothing is kept.
    pub async fn poll(&self) -> Result<Decoded, PollError> {
        let body = self.fetch().await?;
        Ok(decode::decode(&body)?)
    }

    async fn fetch(&self) -> Result<Vec<u8>, PollError> {
        let mut request = self.client.get(self.url.clone());
        if let Some(token) = &self.token {
            request = request.basic_auth(token.expose(), Some(""));
        }
        let mut response = request.send().await.map_err(|err| self.classify(err))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(match status {
                StatusCode::UNAUTHORIZED => PollError::Unauthorized,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    PollError::RateLimited {
                        status,
                        retry_after: retry_after(&response),
                    }
                }
                s if s.is_server_error() => PollError::ServerError(s),
                s if s.is_redirection() => PollError::Redirect(format!("status {s}")),
                s => PollError::Status(s),
            });
        }
        let limit = self.max_body_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(PollError::TooLarge { limit });
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|err| self.classify(err))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(PollError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, err: reqwest::Error) -> PollError {
        if err.is_timeout() {
            PollError::Timeout(self.request_timeout)
        } else if err.is_redirect() {
            PollError::Redirect(error_chain(err))
        } else if err.is_connect() {
            PollError::Connect(error_chain(err))
        } else {
            PollError::Closed(error_chain(err))
        }
    }
}

/// The error and its causes on one line, without the URL (which may carry
/// credentials).
fn error_chain(err: reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        err.without_url().to_string()
    } else {
        text
    }
}

/// The delay a `Retry-After` header asks for, in seconds or as an HTTP date.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    parse_retry_after(value, SystemTime::now())
}

/// Parses a `Retry-After` value relative to `now`. A date in the past means
/// no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::parse_retry_after;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("a date");
        let cases = [
            ("120", Some(Duration::from_secs(120))),
            ("0", Some(Duration::ZERO)),
            (
                "Wed, 21 Oct 2015 07:28:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO)),
            ("soon", None),
            ("-5", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
        assert!(parse_retry_after("1", SystemTime::now()).is_some());
    }
}
