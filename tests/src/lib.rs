//! A test server that speaks the metrics API of `shared/API.md`, with
//! faults to inject, and a reference computation of the aggregates that
//! the bundled plugins must arrive at.
//!
//! The server is written on plain TCP so that it can misbehave in ways a
//! web framework would not allow: close a connection without answering,
//! never answer, or send half a body.

pub mod examples;
pub mod expected;
pub mod fixtures;
pub mod host;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status 200 with these entries as a JSON array. Counted as delivered.
    Entries(Vec<serde_json::Value>),
    /// Status 200 with this body, sent as is. Not counted as delivered.
    Body(String),
    /// This status, an empty body, and these extra headers.
    Status(u16, Vec<(String, String)>),
    /// Close the connection without answering.
    Close,
    /// Never answer.
    Hang,
    /// Status 200 with this body sent `chunk` bytes at a time, one chunk
    /// every `every`: a slow-loris body.
    Trickle {
        /// The whole body.
        body: String,
        /// Bytes per write.
        chunk: usize,
        /// Time between writes.
        every: Duration,
    },
    /// Status 200 with this body in chunked encoding, with no length given.
    Chunked(String),
    /// Announce the length of `body`, send its first `sent` bytes, close.
    CutOff {
        /// The whole body.
        body: String,
        /// How many bytes of it to send.
        sent: usize,
    },
}

/// What happened at the server, for tests to wait on.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// Requests received.
    pub requests: u64,
    /// When the first few requests were received, in order (the first
    /// [`REQUEST_TIMES`]).
    pub request_times: Vec<std::time::SystemTime>,
    /// Requests answered with the scripted replies (the script's progress).
    pub scripted: u64,
    /// Entries sent in 200 responses of [`Reply::Entries`], in order.
    pub delivered: Vec<serde_json::Value>,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    idle: Mutex<Reply>,
    token: Mutex<Option<String>>,
    served: watch::Sender<Served>,
}

/// A running test API server on a loopback port.
#[derive(Clone)]
pub struct TestApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TestApi {
    /// Starts a server that answers with `script`, one reply per request,
    /// then with an empty array forever. With a `token`, a request without
    /// it gets 401 (scripted replies other than entries come first, as the
    /// reference server draws its faults before checking the token).
    pub async fn start(script: Vec<Reply>, token: Option<&str>) -> TestApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        TestApi::listen(listener, script, token)
    }

    /// Like [`TestApi::start`], on a given loopback address.
    pub async fn start_on(addr: SocketAddr, script: Vec<Reply>) -> TestApi {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the loopback address");
        TestApi::listen(listener, script, None)
    }

    /// Like [`TestApi::start`], over TLS with a fresh self-signed
    /// certificate for `localhost`; returns the certificate as PEM, to be
    /// trusted by the client.
    pub async fn start_tls(script: Vec<Reply>) -> (TestApi, String) {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let pem = key.cert.pem();
        let chain = vec![key.cert.der().clone()];
        let secret = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
            key.signing_key.serialize_der().into(),
        );
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, secret)
            .expect("a usable certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let api = TestApi {
            addr,
            shared: Arc::new(Shared::new(script, None)),
        };
        let accepting = Arc::clone(&api.shared);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), Arc::clone(&accepting));
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_connection(stream, shared).await;
                    }
                });
            }
        });
        (api, pem)
    }

    /// The URL of the metrics endpoint, by host name, over TLS.
    pub fn tls_url(&self) -> String {
        format!("https://localhost:{}/metrics", self.addr.port())
    }

    fn listen(listener: TcpListener, script: Vec<Reply>, token: Option<&str>) -> TestApi {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::new(script, token));
        let accepting = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, Arc::clone(&accepting)));
            }
        });
        TestApi { addr, shared }
    }

    /// The URL of the metrics endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Adds replies to the end of the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.shared.script).extend(replies);
    }

    /// Changes the token the server expects.
    pub fn set_token(&self, token: Option<&str>) {
        *lock(&self.shared.token) = token.map(str::to_owned);
    }

    /// Sets the reply given once the script is over.
    pub fn set_idle(&self, reply: Reply) {
        *lock(&self.shared.idle) = reply;
    }

    /// What was served so far.
    pub fn served(&self) -> Served {
        self.shared.served.borrow().clone()
    }

    /// Waits until `done` holds for what was served. `done` may not see
    /// every intermediate count (several requests can land between two
    /// looks), so test with `>=` rather than `==` where requests keep
    /// coming. Panics after [`PATIENCE`], with what was served by then.
    pub async fn wait_for(&self, done: impl FnMut(&Served) -> bool) -> Served {
        let mut served = self.shared.served.subscribe();
        match tokio::time::timeout(PATIENCE, served.wait_for(done)).await {
            Ok(seen) => seen.expect("the server outlives its handle").clone(),
            Err(_) => {
                let served = self.served();
                panic!(
                    "waited {PATIENCE:?} for the test API; so far {} requests, {} of them scripted",
                    served.requests, served.scripted
                )
            }
        }
    }
}

impl Shared {
    fn new(script: Vec<Reply>, token: Option<&str>) -> Shared {
        Shared {
            script: Mutex::new(script.into()),
            idle: Mutex::new(Reply::Entries(Vec::new())),
            token: Mutex::new(token.map(str::to_owned)),
            served: watch::Sender::new(Served::default()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the requests of one connection.
async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    loop {
        let Some(authorization) = read_request(&mut stream).await else {
            return;
        };
        let scripted = lock(&shared.script).pop_front();
        let mut is_scripted = scripted.is_some();
        let mut reply = scripted.unwrap_or_else(|| lock(&shared.idle).clone());
        let authorized = match &*lock(&shared.token) {
            None => true,
            Some(token) => authorization.as_deref() == Some(basic(token).as_str()),
        };
        if !authorized && matches!(reply, Reply::Entries(_) | Reply::Body(_)) {
            // Faults come before the token check; a body only after it. The
            // body is kept for a request that brings the right token.
            if is_scripted {
                lock(&shared.script).push_front(reply);
                is_scripted = false;
            }
            reply = Reply::Status(401, Vec::new());
        }
        shared.served.send_modify(|served| {
            served.requests += 1;
            if served.request_times.len() < REQUEST_TIMES {
                served.request_times.push(std::time::SystemTime::now());
            }
            served.scripted += u64::from(is_scripted);
            if let Reply::Entries(entries) = &reply {
                served.delivered.extend(entries.iter().cloned());
            }
        });
        let keep_open = match reply {
            Reply::Entries(entries) => {
                let body = serde_json::Value::Array(entries).to_string();
                respond(&mut stream, 200, &[], &body).await
            }
            Reply::Body(body) => respond(&mut stream, 200, &[], &body).await,
            Reply::Status(status, headers) => respond(&mut stream, status, &headers, "").await,
            Reply::Close => false,
            Reply::Hang => {
                std::future::pending::<()>().await;
                false
            }
            Reply::Trickle { body, chunk, every } => {
                let head = head(200, &[], body.len());
                if stream.get_mut().write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for part in body.as_bytes().chunks(chunk.max(1)) {
                    tokio::time::sleep(every).await;
                    if stream.get_mut().write_all(part).await.is_err() {
                        return;
                    }
                }
                true
            }
            Reply::Chunked(body) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                let mut message = head.as_bytes().to_vec();
                for part in body.as_bytes().chunks(64 * 1024) {
                    message.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    message.extend_from_slice(part);
                    message.extend_from_slice(b"\r\n");
                }
                message.extend_from_slice(b"0\r\n\r\n");
                stream.get_mut().write_all(&message).await.is_ok()
            }
            Reply::CutOff { body, sent } => {
                let head = head(200, &[], body.len());
                let part = &body.as_bytes()[..sent.min(body.len())];
                let _ = stream.get_mut().write_all(head.as_bytes()).await;
                let _ = stream.get_mut().write_all(part).await;
                false
            }
        };
        if !keep_open {
            return;
        }
    }
}

/// The `Authorization` header a client with `token` sends.
pub fn basic(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{token}:"))
    )
}

/// Reads a request head; returns its `Authorization` header, or `None` when
/// the connection is closed.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<Option<String>> {
    let mut authorization = None;
    let mut length = 0usize;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let text = line.trim_end();
        if text.is_empty() && !first {
            break;
        }
        first = false;
        if let Some((name, value)) = text.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(authorization)
}

fn head(status: u16, headers: &[(String, String)], length: usize) -> String {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {length}\r\n",
        reason(status)
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> bool {
    let mut message = head(status, headers, body.len()).into_bytes();
    message.extend_from_slice(body.as_bytes());
    stream.get_mut().write_all(&message).await.is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 | 302 | 307 => "Found",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Envelopes with known values of the three types, varied enough to
/// exercise every aggregate: zero loads, CPU counts that change, instants
/// in several zones.
pub fn known_entries(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| match i % 3 {
            0 => envelope("load_avg", serde_json::json!((i % 17) as f64 * 0.25)),
            1 => {
                let cpus = 1 + i % 6;
                let value: Vec<f64> = (0..cpus).map(|c| ((i + c) % 10) as f64 / 10.0).collect();
                envelope("cpu_usage", serde_json::json!(value))
            }
            _ => {
                let zone = ["Z", "+02:00", "-05:30"][(i / 3) % 3];
                let (day, hour, frac) = (1 + i % 28, i % 24, i % 100);
                let at = format!("2026-12-{day:02}T{hour:02}:06:10.9288{frac:02}{zone}");
                envelope("last_kernel_upgrade", serde_json::json!(at))
            }
        })
        .collect()
}

/// One envelope.
pub fn envelope(kind: &str, value: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "type": kind, "payload": { "value": value } })
}

/// Splits entries into replies of at most `per_reply` entries.
pub fn replies(entries: &[serde_json::Value], per_reply: usize) -> Vec<Reply> {
    entries
        .chunks(per_reply.max(1))
        .map(|chunk| Reply::Entries(chunk.to_vec()))
        .collect()
}

/// How many request times [`Served::request_times`] keeps.
pub const REQUEST_TIMES: usize = 64;

/// A delay that tests use only as a bound on waiting, never as a wait.
pub const PATIENCE: Duration = Duration::from_secs(60);
