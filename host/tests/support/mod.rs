//! What the tests of the `sluice` binary share: starting it, reading its
//! output, signalling it, and a tiny metrics API that answers as told.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;

/// A bound on every wait, never a wait itself.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The binary, with stdout piped, no stdin and no inherited `SLUICE_*` or
/// `RUST_LOG` variables.
pub fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SLUICE_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The stdout of a running `sluice`, line by line.
pub struct Stdout(Lines<BufReader<ChildStdout>>);

impl Stdout {
    /// Takes the stdout of `child`.
    pub fn of(child: &mut Child) -> Stdout {
        let stdout = child.stdout.take().expect("stdout is piped");
        Stdout(BufReader::new(stdout).lines())
    }

    /// Reads lines until one starts with `prefix`, and returns it.
    pub async fn line_starting(&mut self, prefix: &str) -> String {
        let read = async {
            while let Some(line) = self.0.next_line().await.expect("stdout is readable") {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("sluice exited before printing {prefix:?}");
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .unwrap_or_else(|_| panic!("no line {prefix:?} in time"))
    }

    /// Reads the admin server's base URL from `sluice: admin at URL ...`.
    pub async fn admin(&mut self) -> String {
        let line = self.line_starting("sluice: admin at ").await;
        line.trim_start_matches("sluice: admin at ")
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned()
    }

    /// Reads everything left, until the process closes stdout.
    pub async fn rest(mut self) -> String {
        let mut rest = String::new();
        while let Some(line) = self.0.next_line().await.expect("stdout is readable") {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    }
}

/// Sends `signal` (`"TERM"`, `"INT"`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the child runs").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status();
    assert!(status.expect("kill runs").success());
}

/// Waits for `child` to exit and returns its exit code.
pub async fn exit_code(child: &mut Child) -> Option<i32> {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("sluice exits in time")
        .expect("an exit status")
        .code()
}

/// Reads all of `stream` in the background (so that a chatty process never
/// blocks on a full pipe) and returns it as text when joined.
pub fn collect<R>(mut stream: R) -> tokio::task::JoinHandle<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// How a [`FakeApi`] answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 401 with an empty body, to every request.
    Unauthorized,
    /// Reads the request and never answers.
    Hang,
    /// 200 with this body to the first request, `[]` to the others.
    Once(&'static str),
}

/// A metrics API on a loopback port that answers every request the same
/// way, and counts the requests it read.
pub struct FakeApi {
    /// The URL of its metrics endpoint.
    pub url: String,
    requests: watch::Receiver<u64>,
}

impl FakeApi {
    /// Starts answering with `answer`.
    pub async fn start(answer: Answer) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr: SocketAddr = listener.local_addr().expect("an address");
        let (count, requests) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        // The request head, up to its blank line.
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match stream.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line.trim_end().is_empty() => break,
                                Ok(_) => {}
                            }
                        }
                        let mut nth = 0;
                        count.send_modify(|n| {
                            *n += 1;
                            nth = *n;
                        });
                        match answer {
                            Answer::Once(body) => {
                                let body = if nth == 1 { body } else { "[]" };
                                let reply = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                    body.len()
                                );
                                if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Answer::Unauthorized => {
                                let reply =
                                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
                                if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Answer::Hang => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        FakeApi {
            url: format!("http://{addr}/metrics"),
            requests,
        }
    }

    /// Waits until at least `n` requests were read.
    pub async fn wait_requests(&self, n: u64) {
        let mut requests = self.requests.clone();
        tokio::time::timeout(PATIENCE, requests.wait_for(|&seen| seen >= n))
            .await
            .expect("the requests come in time")
            .expect("the server runs");
    }
}

/// Standard base64 of `bytes`, to look for a token in its Basic-auth form.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
