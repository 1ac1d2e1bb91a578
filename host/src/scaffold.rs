//! `sluice plugin`: tools for plugin authors and operators.
//!
//! - `sluice plugin new NAME --lang rust|python|js|c` writes a skeleton
//!   for a handler of the new payload type `NAME`: the `disk_usage`
//!   example of `plugins/examples/<lang>/disk_usage/` with its name
//!   replaced, embedded in the binary, plus the WIT contract, so that it
//!   builds outside this repository;
//! - `sluice plugin check FILE` loads a component the way `sluice run`
//!   does, type-checks it against `wit/plugin.wit`, renders its empty
//!   aggregate, and prints its name, version and types, or says why it
//!   cannot be loaded;
//! - `sluice plugin bundled DIR` writes the bundled components into `DIR`,
//!   for an operator who runs `--plugins DIR` with them beside their own.
//!
//! The guide is `docs/plugins.md`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::plugin::{Limits, LoadError, Runtime, bundled};

/// Flags of `sluice plugin`.
#[derive(Debug, Clone, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum PluginCommand {
    /// Write a ready-to-build skeleton of a handler for a new payload type.
    New(NewArgs),
    /// Load a component as `sluice run` would, and say whether it is a
    /// handler: its name, version and types, or why not. Exits with 1 when
    /// it is not.
    Check(CheckArgs),
    /// Write the bundled components into a directory, to run `--plugins DIR`
    /// with them beside your own.
    Bundled(BundledArgs),
}

/// Flags of `sluice plugin new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// The payload type, which also names the handler: lowercase ASCII
    /// letters, digits and `_`, starting with a letter (`disk_usage`).
    pub name: String,
    /// The language of the skeleton.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write it (default: `./NAME`). It must not exist, or be
    /// empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust only: the `sluice-plugin-sdk` crate to depend on by path
    /// (default: the SDK of the source tree this sluice was built from).
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// Flags of `sluice plugin check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The component to check (`*.wasm`).
    pub file: PathBuf,
}

/// Flags of `sluice plugin bundled`.
#[derive(Debug, Clone, Args)]
pub struct BundledArgs {
    /// The directory to write `<name>.wasm` files into; created if missing.
    pub dir: PathBuf,
}

/// Runs `sluice plugin ...`; errors are printed to stderr and exit with 1.
pub async fn execute(args: PluginArgs) -> ExitCode {
    let result = match args.command {
        PluginCommand::New(args) => new(&args).map(|report| print!("{report}")),
        PluginCommand::Check(args) => {
            // Loading compiles and calls into the guest, which blocks.
            let checked = tokio::task::spawn_blocking(move || check(&args.file)).await;
            match checked {
                Ok(Ok(report)) => {
                    print!("{report}");
                    Ok(())
                }
                Ok(Err(err)) => Err(anyhow::Error::new(err)),
                Err(err) => Err(anyhow::Error::new(err).context("the check panicked")),
            }
        }
        PluginCommand::Bundled(args) => write_bundled(&args.dir).map(|written| {
            for path in written {
                println!("{}", path.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `sluice plugin check` found in a component that loads.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The file checked.
    pub file: PathBuf,
    /// The handler's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The payload types it accepts.
    pub types: Vec<String>,
    /// The rendering of its empty aggregate.
    pub empty_state: serde_json::Value,
    /// Size of the component, in bytes.
    pub size: usize,
    /// Time to compile and load it (no cache).
    pub load_time: Duration,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: a sluice handler plugin", self.file.display())?;
        writeln!(f, "  name:        {}", self.name)?;
        writeln!(f, "  version:     {}", self.version)?;
        writeln!(f, "  types:       {}", self.types.join(", "))?;
        writeln!(f, "  empty state: {}", self.empty_state)?;
        writeln!(
            f,
            "  size:        {} KiB, compiled and loaded in {} ms",
            self.size.div_ceil(1024),
            self.load_time.as_millis()
        )
    }
}

/// Why `sluice plugin check` refused a file.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read.
    #[error("cannot read {file}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{file} is a core WebAssembly module, not a component: make a component of it \
         (`wasm-tools component new`, see docs/plugins.md)"
    )]
    CoreModule {
        /// The file.
        file: PathBuf,
    },
    /// The file is no WebAssembly at all.
    #[error("{file} is not a WebAssembly component (it does not start with `\\0asm`)")]
    NotWasm {
        /// The file.
        file: PathBuf,
    },
    /// The host refused to load it: it does not compile, imports what the
    /// host does not give, implements another world or misses an export,
    /// or its metadata cannot be used.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// It loaded, but could not render its empty aggregate.
    #[error("{file} loads, but rendering its empty aggregate failed: {reason}")]
    Render {
        /// The file.
        file: PathBuf,
        /// How the call failed.
        reason: String,
    },
    /// The runtime could not be set up.
    #[error("cannot set up the plugin runtime: {0:#}")]
    Runtime(anyhow::Error),
}

/// Loads `file` as `sluice run` would (default limits, no cache) and
/// renders its empty aggregate.
pub fn check(file: &Path) -> Result<CheckReport, CheckError> {
    let bytes = fs::read(file).map_err(|source| CheckError::Read {
        file: file.to_owned(),
        source,
    })?;
    // The preamble: `\0asm`, then a version and a layer, 1 for a core
    // module's and 0x0d then 1 for a component's.
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            return Err(CheckError::CoreModule {
                file: file.to_owned(),
            });
        }
        Some([0, b'a', b's', b'm', ..]) => {}
        _ => {
            return Err(CheckError::NotWasm {
                file: file.to_owned(),
            });
        }
    }
    let runtime = Runtime::new(Limits::default()).map_err(CheckError::Runtime)?;
    let started = Instant::now();
    let plugin = runtime.load(&file.display().to_string(), &bytes)?;
    let load_time = started.elapsed();
    let render_error = |reason: String| CheckError::Render {
        file: file.to_owned(),
        reason,
    };
    let mut instance = plugin
        .instantiate()
        .map_err(|err| render_error(err.to_string()))?;
    let empty_state = instance
        .render(&[])
        .map_err(|err| render_error(err.to_string()))?;
    Ok(CheckReport {
        file: file.to_owned(),
        name: plugin.name().to_owned(),
        version: plugin.version().to_owned(),
        types: plugin.types().to_vec(),
        empty_state,
        size: bytes.len(),
        load_time,
    })
}

/// Writes each bundled component to `<dir>/<name>.wasm`, creating `dir`
/// if need be, and returns the paths written.
pub fn write_bundled(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    bundled()
        .iter()
        .map(|plugin| {
            let path = dir.join(format!("{}.wasm", plugin.name));
            write_whole(&path, plugin.bytes)?;
            Ok(path)
        })
        .collect()
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: a
/// host watching the directory sees the file whole or not at all.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .context("a file name")?;
    let partial = path.with_file_name(format!(".{file_name}.partial"));
    fs::write(&partial, bytes).with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The languages `sluice plugin new` writes skeletons in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A Rust crate on `sluice-plugin-sdk`, built with cargo.
    Rust,
    /// A Python module, built with componentize-py.
    Python,
    /// A JavaScript module, built with jco and componentize-js.
    Js,
    /// A C file, built with clang, wasi-libc, wit-bindgen and wasm-tools.
    C,
}

/// Writes the skeleton of `args`; returns what to tell the author.
pub fn new(args: &NewArgs) -> anyhow::Result<String> {
    // TODO(#7): write the skeletons once the examples they are made from
    // are in the tree.
    anyhow::bail!(
        "`sluice plugin new {} --lang {:?}` cannot write skeletons yet; start from the \
         bundled Rust handlers in plugins/ and docs/sandbox.md",
        args.name,
        args.lang
    )
}
