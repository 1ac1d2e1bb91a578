//! sluice (being assembled).

pub mod backoff;
pub mod engine;
pub mod ingest;
pub mod ledger;
pub mod plugin;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
