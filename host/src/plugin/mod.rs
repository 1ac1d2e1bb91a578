//! Loading and calling handler plugins.
