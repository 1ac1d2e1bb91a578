//! Errors of loading a plugin and of calling into an instance.

use std::time::Duration;

/// Why a plugin could not be loaded. Every message names the plugin's
/// source: its file, or `bundled:<name>`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component, or it did not compile.
    #[error("plugin {plugin}: not a valid WebAssembly component: {reason}")]
    Compile {
        /// The plugin's source.
        plugin: String,
        /// What the compiler said.
        reason: String,
    },
    /// The component imports something the host does not provide (the host
    /// provides WASI 0.2 and nothing else).
    #[error("plugin {plugin}: imports what the host does not provide: {reason}")]
    Imports {
        /// The plugin's source.
        plugin: String,
        /// The import that could not be satisfied.
        reason: String,
    },
    /// The component does not export the `sluice:plugin/handler` interface
    /// of the `plugin` world, or exports it with other types.
    #[error("plugin {plugin}: does not implement the sluice:plugin/plugin world: {reason}")]
    World {
        /// The plugin's source.
        plugin: String,
        /// The export that is missing or mistyped.
        reason: String,
    },
    /// Creating the first instance failed: a start function trapped, or the
    /// instance needs more than the limits allow. The message is the
    /// error's, which names the plugin by its source
    /// (`plugin x.wasm: instantiate ran out of memory (limit 65536 bytes)`).
    #[error("{error}")]
    Instantiate {
        /// The plugin's source.
        plugin: String,
        /// How instantiation failed.
        error: CallError,
    },
    /// The `metadata` call failed. The message is the error's, which names
    /// the plugin by its source (`plugin x.wasm: metadata trapped: ...`).
    #[error("{error}")]
    Metadata {
        /// The plugin's source.
        plugin: String,
        /// How the call failed.
        error: CallError,
    },
    /// The `metadata` call returned a description the host cannot use.
    #[error("plugin {plugin}: invalid metadata: {reason}")]
    InvalidMetadata {
        /// The plugin's source.
        plugin: String,
        /// What is wrong with it (`"empty name"`).
        reason: String,
    },
}

/// Why a call into a plugin instance failed. The messages of the fatal
/// kinds name the plugin (by its name, or by its source while it loads) and
/// the export called.
///
/// After [`CallError::Trap`], [`CallError::Deadline`] or
/// [`CallError::Memory`] the instance is dead
/// ([`CallError::is_fatal`]): discard it and instantiate a fresh one. The
/// aggregate is unharmed either way: the host keeps its bytes and only
/// replaces them when a call succeeds.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`).
    #[error("plugin {plugin}: {function} trapped: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The export called (`"apply"`).
        function: &'static str,
        /// What wasmtime reports (`wasm \`unreachable\` instruction
        /// executed`), on one line.
        message: String,
    },
    /// The call ran past [`Limits::call_deadline`](super::Limits) and was
    /// interrupted.
    #[error("plugin {plugin}: {function} ran past its deadline of {deadline:?}")]
    Deadline {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The deadline it ran past.
        deadline: Duration,
    },
    /// The guest was refused memory beyond
    /// [`Limits::memory_bytes`](super::Limits) and trapped.
    #[error("plugin {plugin}: {function} ran out of memory (limit {limit} bytes)")]
    Memory {
        /// The plugin's name.
        plugin: String,
        /// The export called.
        function: &'static str,
        /// The memory limit, in bytes.
        limit: usize,
    },
    /// The guest returned an error (for `apply` and `render`: it cannot read
    /// the state). The instance is still usable.
    #[error("plugin returned an error: {0}")]
    Guest(String),
    /// The guest returned something the host cannot use: `render` output
    /// that is not a JSON object, a rejection of a payload that is not in
    /// the batch. The instance is still usable.
    #[error("plugin returned bad output: {0}")]
    BadOutput(String),
    /// The sandbox of a new instance could not be set up: a directory
    /// granted to the plugin cannot be opened.
    #[error("plugin {plugin}: cannot set up its sandbox: {reason}")]
    Sandbox {
        /// The plugin's name.
        plugin: String,
        /// What went wrong, naming the directory.
        reason: String,
    },
}

impl CallError {
    /// Whether the instance is dead and must be replaced by a fresh one.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Trap { .. }
            | Self::Deadline { .. }
            | Self::Memory { .. }
            | Self::Sandbox { .. } => true,
            Self::Guest(_) | Self::BadOutput(_) => false,
        }
    }
}
