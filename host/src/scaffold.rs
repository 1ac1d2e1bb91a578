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

/// A file of a skeleton: its path in the skeleton, its text, and whether
/// it is a script to run.
struct Template {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! templates {
    ($lang:literal: $($path:literal $(($exec:ident))?),* $(,)?) => {
        &[$(Template {
            path: $path,
            text: include_str!(concat!("../../plugins/examples/", $lang, "/disk_usage/", $path)),
            executable: templates!(@exec $($exec)?),
        }),*]
    };
    (@exec exec) => { true };
    (@exec) => { false };
}

const RUST: &[Template] = templates!("rust": "Cargo.toml", "src/lib.rs");
const PYTHON: &[Template] = templates!("python":
    "app.py", "build.sh" (exec), "requirements.txt", ".gitignore");
const JS: &[Template] = templates!("js":
    "disk_usage.js", "build.sh" (exec), "package.json", "package-lock.json", ".gitignore");
const C: &[Template] = templates!("c":
    "disk_usage.c", "aggregate.c", "aggregate.h", "json.c", "json.h", "build.sh" (exec),
    "test.c", "test.sh" (exec), "package.json", "package-lock.json");

/// The contract, written beside every skeleton so that it builds anywhere.
const WIT: &str = include_str!("../../wit/plugin.wit");
/// The toolchain of the Rust skeleton: the one this sluice is built with,
/// with the `wasm32-wasip2` target.
const RUST_TOOLCHAIN: &str = include_str!("../../rust-toolchain.toml");
/// The guest SDK of the source tree this sluice was built from.
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");

/// The name the examples have, which a skeleton replaces with its own.
const EXAMPLE: &str = "disk_usage";

/// Whether `name` can name a payload type and its handler: 1 to 64
/// lowercase ASCII letters, digits and `_`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        first_ok && rest_ok && name.len() <= 64,
        "{name:?} cannot name a payload type: use 1 to 64 lowercase ASCII letters, digits and \
         `_`, starting with a letter (`disk_usage`)"
    );
    Ok(())
}

/// `text` of the example, renamed after `name`.
fn rename(text: &str, name: &str) -> String {
    text.replace(EXAMPLE, name)
        .replace(&EXAMPLE.replace('_', "-"), &name.replace('_', "-"))
        .replace(&EXAMPLE.to_ascii_uppercase(), &name.to_ascii_uppercase())
}

/// Writes the skeleton of `args`; returns what to tell the author.
pub fn new(args: &NewArgs) -> anyhow::Result<String> {
    let name = args.name.as_str();
    check_name(name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        let empty = fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let templates = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
        Lang::C => C,
    };
    let mut files: Vec<(PathBuf, String, bool)> = templates
        .iter()
        .map(|t| {
            let path = PathBuf::from(rename(t.path, name));
            (path, rename(t.text, name), t.executable)
        })
        .collect();
    files.push(("wit/plugin.wit".into(), WIT.to_owned(), false));
    if args.lang == Lang::Rust {
        let sdk = match &args.sdk {
            Some(sdk) => sdk.clone(),
            None => PathBuf::from(SDK_DIR),
        };
        let sdk = fs::canonicalize(&sdk).with_context(|| {
            format!(
                "no guest SDK at {}: give the plugins/sdk directory of a sluice source tree \
                 with --sdk",
                sdk.display()
            )
        })?;
        anyhow::ensure!(
            sdk.join("Cargo.toml").is_file(),
            "{} holds no Cargo.toml: --sdk wants the plugins/sdk directory of a sluice source tree",
            sdk.display()
        );
        let sdk_path = toml_string(&sdk.display().to_string());
        for (path, text, _) in &mut files {
            if path.as_path() == Path::new("Cargo.toml") {
                *text = text.replace("path = \"../../../sdk\"", &format!("path = {sdk_path}"));
                text.push_str(
                    "\n# A workspace of its own, apart from any around it.\n[workspace]\n",
                );
            }
        }
        files.push((
            "rust-toolchain.toml".into(),
            RUST_TOOLCHAIN.to_owned(),
            false,
        ));
    }
    files.push(("README.md".into(), readme(name, args.lang), false));

    for (path, text, executable) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if *executable {
            make_executable(&path)?;
        }
    }
    let mut report = format!(
        "wrote a {} handler for the payload type `{name}` in {}:\n",
        args.lang.label(),
        dir.display()
    );
    for (path, _, _) in &files {
        report.push_str(&format!("  {}\n", path.display()));
    }
    report.push_str("\nnext (README.md says more):\n");
    for step in next_steps(name, args.lang, &dir) {
        report.push_str(&format!("  {step}\n"));
    }
    Ok(report)
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    // TOML basic strings escape as JSON strings do for these characters.
    serde_json::Value::from(text).to_string()
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Where the build of a skeleton puts the component.
fn component_path(name: &str, lang: Lang) -> String {
    match lang {
        // `check_name` allows no `-`, so the crate's file name is the name.
        Lang::Rust => format!("target/wasm32-wasip2/release/sluice_plugin_{name}.wasm"),
        _ => format!("out/{name}.wasm"),
    }
}

/// The commands that take a skeleton in `dir` to a loaded plugin.
fn next_steps(name: &str, lang: Lang, dir: &Path) -> Vec<String> {
    let build = match lang {
        Lang::Rust => "cargo build --release --target wasm32-wasip2".to_owned(),
        _ => "./build.sh out".to_owned(),
    };
    let component = component_path(name, lang);
    vec![
        format!("cd {}", dir.display()),
        build,
        format!("sluice plugin check {component}"),
        "sluice plugin bundled plugins && cp ".to_owned() + &component + " plugins/",
        "sluice run --plugins plugins".to_owned(),
    ]
}

/// The skeleton's README: what it is and how to take it further.
fn readme(name: &str, lang: Lang) -> String {
    let tools = match lang {
        Lang::Rust => {
            "Rust 1.95 with the `wasm32-wasip2` target (`rust-toolchain.toml` asks rustup \
             for both) and the sluice guest SDK, by path (`Cargo.toml`)."
        }
        Lang::Python => {
            "Python 3 with `venv`; `build.sh` installs componentize-py, pinned in \
             `requirements.txt`, into `~/.cache/sluice/plugin-tools` on first use."
        }
        Lang::Js => {
            "Node.js 20 or later with npm; `build.sh` installs jco and componentize-js, \
             pinned in `package-lock.json`, into `~/.cache/sluice/plugin-tools` on first use."
        }
        Lang::C => {
            "clang and wasm-ld with a WASI sysroot (Debian: `apt-get install clang lld \
             wasi-libc libclang-rt-dev-wasm32`), cargo and npm; `build.sh` installs \
             wit-bindgen and jco, pinned, into `~/.cache/sluice/plugin-tools` on first use. \
             `test.sh` runs the native tests of the logic."
        }
    };
    let mut text = format!(
        "# {name}: a sluice handler plugin in {lang}\n\n\
         A handler for the payload type `{name}`, made by `sluice plugin new` from the\n\
         `disk_usage` example: it keeps the largest number seen for each key of an\n\
         object value (`{{\"/\": 0.71, \"/home\": 0.42}}`), and how many payloads it\n\
         applied. Change the logic to what `{name}` needs; the contract is\n\
         `wit/plugin.wit`, and the rules a handler lives under (state, traps, reload,\n\
         limits) are in sluice's `docs/plugins.md`.\n\n\
         Needs: {tools}\n\n\
         ```sh\n",
        lang = lang.label()
    );
    for step in next_steps(name, lang, Path::new(".")).into_iter().skip(1) {
        text.push_str(&step);
        text.push('\n');
    }
    text.push_str(&format!(
        "```\n\nThe API must send `{name}` payloads for the plugin to have work; the demo API\n\
         of `sluice run` sends the bundled types and, with `--demo-type disk_usage`,\n\
         the example's.\n"
    ));
    text
}

impl Lang {
    /// The language's name, for people.
    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_a_type_are_refused() {
        for good in ["disk_usage", "gpu", "t2_temp"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Disk",
            "2fast",
            "disk-usage",
            "disk usage",
            "é",
            &"a".repeat(65),
        ] {
            let err = check_name(bad).expect_err(bad).to_string();
            assert!(err.contains("cannot name a payload type"), "{bad}: {err}");
        }
    }

    #[test]
    fn renaming_replaces_every_spelling_of_the_example() {
        let text = "disk_usage DISK_USAGE_H sluice-plugin-disk-usage";
        assert_eq!(
            rename(text, "gpu_temp"),
            "gpu_temp GPU_TEMP_H sluice-plugin-gpu-temp"
        );
    }

    #[test]
    fn every_skeleton_is_renamed_whole_and_has_the_contract() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let target = dir.path().join("gpu_temp");
            let args = NewArgs {
                name: "gpu_temp".to_owned(),
                lang,
                dir: Some(target.clone()),
                sdk: None,
            };
            let report = new(&args).unwrap_or_else(|err| panic!("{lang:?}: {err:#}"));
            assert!(report.contains("sluice plugin check"), "{report}");
            assert_eq!(
                fs::read_to_string(target.join("wit/plugin.wit")).expect("the contract"),
                WIT
            );
            for entry in walk(&target) {
                let text = fs::read_to_string(&entry).unwrap_or_default();
                // The README says which example the skeleton comes from,
                // and the contract, copied as it is, uses it as an example.
                let as_is = entry.ends_with("README.md") || entry.ends_with("plugin.wit");
                assert!(
                    !text.contains(EXAMPLE) || as_is,
                    "{lang:?}: {} still names the example",
                    entry.display()
                );
            }
            // A second time, into the same directory, it refuses.
            let err = new(&args).expect_err("the directory is not empty");
            assert!(err.to_string().contains("not empty"), "{err}");
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).expect("a directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
