//! How much of the machine one plugin instance may use.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Limits of each plugin instance's sandbox.
///
/// The defaults fit the bundled handlers with a wide margin: each is a
/// component of about 100 KB holding one linear memory (about 1 MiB once
/// running), three core instances and two tables, and a call on a batch of
/// a few thousand payloads takes well under a millisecond. They also fit
/// the example plugins of the other toolchains: a componentize-py
/// component makes some 35 core instances and tables (CPython and its
/// extension modules), a componentize-js or C one at most four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call (`metadata`, `apply`, `render`) may run before it
    /// is interrupted. Enforced by epoch interruption, so a call may
    /// overrun it by one tick of the runtime's clock (a few milliseconds).
    pub call_deadline: Duration,
    /// Total bytes of linear memory an instance may hold, across all its
    /// memories. A memory that would grow past it is refused the growth.
    pub memory_bytes: usize,
    /// Core instances an instance may create. A component made by Rust's
    /// `wasm32-wasip2` target creates three: the program and the two shims
    /// that tie its imports together.
    pub instances: usize,
    /// Tables an instance may create (the bundled handlers create two).
    pub tables: usize,
    /// Elements each table may hold.
    pub table_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            instances: 64,
            tables: 64,
            table_elements: 100_000,
        }
    }
}

impl Limits {
    /// Each limit the larger of `self`'s and `other`'s.
    pub fn widest(&self, other: &Limits) -> Limits {
        Limits {
            call_deadline: self.call_deadline.max(other.call_deadline),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            instances: self.instances.max(other.instances),
            tables: self.tables.max(other.tables),
            table_elements: self.table_elements.max(other.table_elements),
        }
    }

    /// The `StoreLimits` these limits give one instance.
    fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .instances(self.instances)
            .tables(self.tables)
            .table_elements(self.table_elements)
            .build()
    }
}

/// The resource limiter of one instance's store.
///
/// Wraps the `StoreLimits` of [`Limits`], which bound each memory, and adds
/// two things: the bound on the memory of all memories together, and a
/// record of a refused growth, so that a call that then traps (as a Rust
/// guest does when its allocator fails) is reported as out of memory rather
/// than as a plain trap.
#[derive(Debug)]
pub(super) struct Limiter {
    limits: StoreLimits,
    memory_bytes: usize,
    /// Bytes of linear memory granted so far; memories are never freed
    /// while the store lives.
    memory_used: usize,
    /// Whether a memory growth was refused since the last [`Self::reset`].
    memory_refused: bool,
}

impl Limiter {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            limits: limits.store_limits(),
            memory_bytes: limits.memory_bytes,
            memory_used: 0,
            memory_refused: false,
        }
    }

    /// Forgets refused growths, before a call.
    pub(super) fn reset(&mut self) {
        self.memory_refused = false;
    }

    /// Whether a memory growth was refused since the last reset.
    pub(super) fn memory_refused(&self) -> bool {
        self.memory_refused
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_used.saturating_add(growth);
        let allowed =
            total <= self.memory_bytes && self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_used = total;
        } else {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bounded_across_memories() {
        let limits = Limits {
            memory_bytes: 100,
            ..Limits::default()
        };
        let mut limiter = Limiter::new(&limits);
        assert!(limiter.memory_growing(0, 60, None).expect("no error"));
        assert!(!limiter.memory_refused());
        // A second memory may not take more than what is left.
        assert!(!limiter.memory_growing(0, 50, None).expect("no error"));
        assert!(limiter.memory_refused());
        assert!(limiter.memory_growing(0, 40, None).expect("no error"));
        limiter.reset();
        assert!(!limiter.memory_refused());
        assert!(!limiter.memory_growing(60, 61, None).expect("no error"));
        assert!(limiter.memory_refused());
    }
}
