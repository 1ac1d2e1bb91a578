//! Errors returned by [`Engine::start`](super::Engine::start) and
//! [`EngineHandle`](super::EngineHandle).

use super::{ComponentState, ConfigError};

/// Why the engine refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A manifold has an empty name.
    #[error("component name must not be empty")]
    EmptyName,
    /// Two manifolds share a name.
    #[error("duplicate component name `{0}`")]
    DuplicateName(String),
    /// An input names no declared component.
    #[error("component `{component}` has unknown input `{input}`")]
    UnknownInput {
        /// The component that declares the input.
        component: String,
        /// The input that names no component.
        input: String,
    },
    /// A manifold lists the same input twice.
    #[error("component `{component}` lists input `{input}` more than once")]
    DuplicateInput {
        /// The component that declares the input.
        component: String,
        /// The repeated input.
        input: String,
    },
    /// The inputs form a cycle; each component in the list depends on the next one and
    /// the last one is the first one again.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// No component has this name.
    #[error("unknown component `{0}`")]
    UnknownComponent(String),
    /// The request needs the component to be running.
    #[error("component `{name}` is not running (it is {state})")]
    NotRunning {
        /// The component.
        name: String,
        /// Its state when the request arrived.
        state: ComponentState,
    },
    /// The component cannot be removed while other components depend on it.
    #[error("cannot remove `{name}`: it is an input of {}", .dependents.join(", "))]
    HasDependents {
        /// The component to remove.
        name: String,
        /// The components that list it as an input.
        dependents: Vec<String>,
    },
    /// The engine is shutting down or has shut down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The engine task is gone (it can only end after shutdown or by panicking).
    #[error("the engine task has stopped")]
    Closed,
    /// [`Engine::start`](super::Engine::start) was called outside a tokio runtime.
    #[error("the engine must be started inside a tokio runtime")]
    NoRuntime,
}
