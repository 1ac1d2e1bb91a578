//! sluice: a metrics pipeline run as supervised components, whose handlers
//! are sandboxed WebAssembly components.
//!
//! The host is a set of components under a supervision [`engine`]:
//! [`ingest`] polls the metrics API, [`dispatch`] routes payloads by type,
//! and one [`handler`] per [`plugin`] applies them to that plugin's
//! aggregate. [`pipeline`] assembles them, [`ledger`] accounts for every
//! payload, and [`admin`] answers for all of it over HTTP.

pub mod admin;
pub mod backoff;
pub mod batch;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod engine;
pub mod handler;
pub mod ingest;
pub mod ledger;
pub mod logs;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod scaffold;
pub mod status;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex` for a short, non-async section. A panic while it was held
/// left the data in a state that each user keeps consistent on its own, so
/// poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
