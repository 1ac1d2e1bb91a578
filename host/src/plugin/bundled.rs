//! The handler plugins embedded in the host.
//!
//! The build script builds them from `plugins/` as components; they are
//! loaded like any plugin file, under the source `bundled:<name>`.

/// A handler plugin embedded in the host.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// The handler's name (`"load_avg"`); the plugin reports it again in
    /// its metadata.
    pub name: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

/// The directory the build script put the bundled components in, one
/// `<package>.wasm` each; for tests that copy them into a plugin directory.
pub const BUNDLED_DIR: &str = env!("SLUICE_BUNDLED_DIR");

macro_rules! bundled {
    ($name:literal, $package:literal) => {
        BundledPlugin {
            name: $name,
            bytes: include_bytes!(concat!(env!("SLUICE_BUNDLED_DIR"), "/", $package, ".wasm")),
        }
    };
}

static BUNDLED: [BundledPlugin; 3] = [
    bundled!("load_avg", "sluice-plugin-load-avg"),
    bundled!("cpu_usage", "sluice-plugin-cpu-usage"),
    bundled!("last_kernel_upgrade", "sluice-plugin-last-kernel-upgrade"),
];

/// The bundled plugins, in a fixed order.
pub fn bundled() -> &'static [BundledPlugin] {
    &BUNDLED
}
