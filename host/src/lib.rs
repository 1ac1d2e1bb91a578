//! sluice: a metrics pipeline run as supervised components, whose handlers
//! are sandboxed WebAssembly components.

pub mod plugin;
