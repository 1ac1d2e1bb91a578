//! Loading and calling handler plugins: sandboxed WebAssembly components
//! that implement the `sluice:plugin/plugin` world of `wit/plugin.wit`.
//!
//! - [`Runtime`] compiles components and [`Runtime::load`]s them as
//!   [`Plugin`]s, after checking them against the world and reading their
//!   metadata; [`LoadError`] says why one could not be loaded.
//! - [`Plugin::instantiate`] gives an [`Instance`], a sandbox with a store
//!   of its own, through which the host calls `apply` and `render`;
//!   [`CallError`] says how a call failed, and whether the instance died.
//! - [`Plugin::native`] makes a plugin of a handler compiled into the
//!   host, with the same [`Instance`] interface but no sandbox: for
//!   benchmarks that compare the sandbox's cost with native code.
//! - [`bundled`] lists the plugins embedded in the host.
//! - [`Runtime::with_cache`] keeps compiled components on disk, keyed by
//!   their bytes, the wasmtime version and the engine's settings, so that a
//!   restart does not compile unchanged plugins again; the [`cache`]
//!   module says where, and how big it grows.
//!
//! A handler is a pure function over its aggregate: the host owns the
//! aggregate's bytes and passes them in with every call, so a call that
//! fails changes nothing and a fresh instance carries on from the same
//! state.

mod bindings;
mod bundled;
pub mod cache;
mod error;
mod limits;
mod runtime;
mod sandbox;

#[cfg(test)]
mod tests;

pub use bundled::{BUNDLED_DIR, BundledPlugin, bundled};
pub use cache::{CacheStats, CompileCache};
pub use error::{CallError, LoadError};
pub use limits::Limits;
pub use runtime::{Instance, NativeApply, NativeRender, Plugin, Runtime, TICK};
pub use sandbox::{GrantedDir, Grants};

/// The types of the WIT contract, as the host sees them.
pub mod wit {
    pub use super::bindings::sluice::plugin::types::{
        Applied, Batch, CpuUsageBatch, Instant, JsonBatch, Metadata, Rejection,
    };
}
