//! What an instance's store holds: a closed WASI context, the resource
//! limiter and the guest's captured output.
//!
//! The WASI context gives the guest nothing of the host: no preopened
//! directories, no environment variables, no arguments, no stdin, no network
//! (TCP, UDP and name lookups refused, every socket address denied), except
//! what the operator [`Grants`] the plugin: environment variables, and host
//! directories to read but never write. Clocks and randomness stay
//! available; they reveal nothing worth hiding. Its stdout and stderr go to
//! bounded in-memory buffers that the runtime logs after each call.
//!
//! The epoch deadline interrupts wasm code, not the host code that a guest
//! calls into, and the one WASI call that can block for long here is a
//! sleep (a subscription to the monotonic clock, then a poll). So
//! [`add_to_linker`] refuses a subscription longer than the call deadline
//! at once, as if the deadline had passed: the call could not end in time.
//! Shorter sleeps return to wasm, where the deadline interrupts them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host as MonotonicClock;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::{Limiter, Limits};

/// Bytes of stdout, and of stderr, kept per call; the rest is counted and
/// dropped.
pub(super) const CAPTURE_BYTES: usize = 4096;

/// The instance of WASI's monotonic clock in the linker, as
/// `wasmtime_wasi` names it. Must follow the WASI version of `wasmtime_wasi`:
/// the test of a sleeping guest fails when it does not.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Adds WASI 0.2 (sync) to `linker`, with clock subscriptions that would
/// outlast the call deadline refused.
pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, Sandbox>, (nanos,): (u64,)| {
            let sandbox = store.data_mut();
            if nanos > sandbox.max_sleep_nanos {
                return Err(Trap::Interrupt.into());
            }
            Ok((sandbox.clocks().subscribe_duration(nanos)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, Sandbox>, (when,): (u64,)| {
            let sandbox = store.data_mut();
            let latest = sandbox
                .clocks()
                .now()?
                .saturating_add(sandbox.max_sleep_nanos);
            if when > latest {
                return Err(Trap::Interrupt.into());
            }
            let pollable: Resource<DynPollable> = sandbox.clocks().subscribe_instant(when)?;
            Ok((pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What an operator grants a plugin of the host, beyond the closed sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables the plugin sees, by name.
    pub env: BTreeMap<String, String>,
    /// Host directories the plugin may read, never write.
    pub dirs: Vec<GrantedDir>,
}

/// A host directory a plugin may read, never write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedDir {
    /// The directory on the host.
    pub host: PathBuf,
    /// The absolute path at which the plugin sees it.
    pub guest: String,
}

impl Grants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.dirs.is_empty()
    }
}

/// The data of one instance's store.
pub(super) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The longest a clock subscription may wait: the call deadline.
    max_sleep_nanos: u64,
    pub(super) limiter: Limiter,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
}

impl Sandbox {
    /// The store data of an instance held to `limits`, with `grants`.
    /// Fails, naming the directory, when a granted directory cannot be
    /// opened.
    pub(super) fn new(limits: &Limits, grants: &Grants) -> Result<Self, String> {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        for (name, value) in &grants.env {
            wasi.env(name, value);
        }
        for dir in &grants.dirs {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|err| {
                    format!(
                        "cannot open the directory granted at {}: {}: {err}",
                        dir.guest,
                        dir.host.display()
                    )
                })?;
        }
        let wasi = wasi.build();
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            max_sleep_nanos: u64::try_from(limits.call_deadline.as_nanos()).unwrap_or(u64::MAX),
            limiter: Limiter::new(limits),
            stdout,
            stderr,
        })
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A guest output stream kept in memory, up to [`CAPTURE_BYTES`] between
/// two [`Capture::take`]s. Writes never fail: a guest whose output is too
/// long loses its tail, not its instance.
#[derive(Debug, Clone, Default)]
pub(super) struct Capture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: usize,
}

impl Capture {
    /// The output since the last call, as text, and how many bytes past
    /// [`CAPTURE_BYTES`] were dropped; `None` when there was none.
    pub(super) fn take(&self) -> Option<(String, usize)> {
        let mut captured = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if captured.kept.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&captured.kept)
            .trim_end()
            .to_owned();
        let dropped = captured.dropped;
        *captured = Captured::default();
        Some((text, dropped))
    }

    fn keep(&self, bytes: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = CAPTURE_BYTES.saturating_sub(captured.kept.len());
        let (kept, dropped) = bytes.split_at(room.min(bytes.len()));
        captured.kept.extend_from_slice(kept);
        captured.dropped = captured.dropped.saturating_add(dropped.len());
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_a_bounded_prefix() {
        let capture = Capture::default();
        assert_eq!(capture.take(), None);
        capture.keep(b"hello\n");
        assert_eq!(capture.take(), Some(("hello".to_owned(), 0)));
        assert_eq!(capture.take(), None, "taking empties the capture");

        capture.keep(&[b'a'; CAPTURE_BYTES - 1]);
        capture.keep(b"bcd");
        let (text, dropped) = capture.take().expect("output");
        assert_eq!(text.len(), CAPTURE_BYTES);
        assert!(text.ends_with("ab"));
        assert_eq!(dropped, 2);
    }
}
