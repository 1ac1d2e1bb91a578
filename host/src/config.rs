//! Configuration of `sluice run`: flags, `SLUICE_*` environment variables
//! and a TOML file (`--config FILE`), merged and validated.
//!
//! Every setting is looked for in this order, and the first place that has
//! it wins:
//!
//! 1. the flag (`--request-timeout 3s`);
//! 2. the environment variable, named after the flag (`SLUICE_REQUEST_TIMEOUT=3s`);
//! 3. the file, under the flag's name with `_` for `-`
//!    (`request_timeout = "3s"`); `--plugins DIR` is `plugin_dir`, because
//!    `[plugins.NAME]` tables hold per-plugin settings;
//! 4. the default.
//!
//! Clap reads the flag and the variable (`env = "SLUICE_..."`) and tells,
//! through [`clap::ArgMatches::value_source`], which of them gave a value;
//! [`Sources`] keeps that answer and [`Settings::resolve`] fills from the
//! file what neither gave. Some settings live only in the file: the
//! `[engine]` table (restart backoff, [`EngineConfig`]) and one
//! `[plugins.NAME]` table per plugin ([`PluginSettings`]).
//!
//! The file is read with `deny_unknown_fields` throughout, so a misspelt
//! key is an error, and every error names the file, the line and the key.
//! Relative paths in the file are relative to the file's directory. The
//! values of the tokens (`token`, `admin_token`) never appear in an error
//! or in [`Settings::describe`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::parser::ValueSource;
use reqwest::Url;
use serde::{Deserialize, Deserializer};

use crate::backoff::BackoffSettings;
use crate::cli::RunArgs;
use crate::demo::DemoType;
use crate::engine::EngineConfig;
use crate::ingest::{IngestConfig, Secret, Source, SourceConfig};
use crate::logs::LogFormat;
use crate::pipeline::{PipelineConfig, PluginSource};
use crate::plugin::{CompileCache, GrantedDir, Grants, Limits};

/// The most polls `polls_in_flight` may ask to have under way at once.
const MAX_IN_FLIGHT: usize = 16;

/// Where each command-line setting came from, as clap saw it: by argument
/// id (the field name of [`RunArgs`]).
#[derive(Clone, Debug, Default)]
pub struct Sources(BTreeMap<String, ValueSource>);

impl Sources {
    /// The sources of every argument of `matches`.
    pub fn of(matches: &clap::ArgMatches) -> Sources {
        let sources = matches
            .ids()
            .filter_map(|id| {
                let source = matches.value_source(id.as_str())?;
                Some((id.as_str().to_owned(), source))
            })
            .collect();
        Sources(sources)
    }

    /// Where `id` came from if a flag or a variable gave it.
    fn given(&self, id: &str) -> Option<Origin> {
        match self.0.get(id)? {
            ValueSource::CommandLine => Some(Origin::Flag),
            ValueSource::EnvVariable => Some(Origin::Env),
            _ => None,
        }
    }
}

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A flag on the command line.
    Flag,
    /// A `SLUICE_*` environment variable.
    Env,
    /// The configuration file.
    File,
    /// Nowhere: the default.
    Default,
}

/// Every setting of `sluice run`, merged from its layers.
#[derive(Debug)]
pub struct Settings {
    /// The flags, with what the file gave filled in.
    pub args: RunArgs,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    /// Supervision settings: the `[engine]` table.
    pub engine: EngineConfig,
    /// Per-plugin settings: the `[plugins.NAME]` tables, by plugin name.
    pub plugins: BTreeMap<String, PluginSettings>,
    origins: BTreeMap<&'static str, Origin>,
}

/// The settings of one plugin, from its `[plugins.NAME]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Replaces `--plugin-deadline` for this plugin.
    #[serde(default, deserialize_with = "duration_opt")]
    pub deadline: Option<Duration>,
    /// Replaces `--plugin-memory-mib` for this plugin.
    pub memory_mib: Option<usize>,
    /// Core instances the plugin may create (default 64; a Rust plugin
    /// makes 3, a componentize-py one some 35).
    pub instances: Option<usize>,
    /// Tables the plugin may create (default 64).
    pub tables: Option<usize>,
    /// Elements each of its tables may hold (default 100000).
    pub table_elements: Option<usize>,
    /// WASI capabilities granted to this plugin beyond the closed sandbox.
    #[serde(default)]
    pub wasi: WasiGrants,
}

/// WASI capabilities a plugin is granted (`[plugins.NAME.wasi]`), beyond
/// the closed sandbox of `docs/sandbox.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasiGrants {
    /// Environment variables the plugin sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the plugin may read, never write.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
}

impl WasiGrants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.dirs.is_empty()
    }

    /// The grants, as the plugin runtime takes them.
    pub fn grants(&self) -> Grants {
        Grants {
            env: self.env.clone(),
            dirs: self
                .dirs
                .iter()
                .map(|dir| GrantedDir {
                    host: dir.host.clone(),
                    guest: dir.guest.clone(),
                })
                .collect(),
        }
    }
}

/// A host directory granted read-only to a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The directory on the host; relative to the configuration file.
    pub host: PathBuf,
    /// The absolute path at which the plugin sees it.
    pub guest: String,
}

/// The configuration file, as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default, deserialize_with = "url_opt")]
    source: Option<Url>,
    demo_type: Option<Vec<DemoType>>,
    #[serde(default, deserialize_with = "secret_opt")]
    token: Option<Secret>,
    plugin_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "addr_opt")]
    admin: Option<SocketAddr>,
    #[serde(default, deserialize_with = "secret_opt")]
    admin_token: Option<Secret>,
    #[serde(default, deserialize_with = "duration_opt")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    retry_min: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    retry_max: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    poll_interval: Option<Duration>,
    polls_in_flight: Option<usize>,
    max_body_bytes: Option<u64>,
    ca_bundle: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration_opt")]
    plugin_deadline: Option<Duration>,
    plugin_memory_mib: Option<usize>,
    cache_dir: Option<PathBuf>,
    no_cache: Option<bool>,
    #[serde(default, deserialize_with = "duration_opt")]
    shutdown_grace: Option<Duration>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    engine: Option<EngineConfig>,
    #[serde(default)]
    plugins: BTreeMap<String, PluginSettings>,
}

/// The file key of a setting whose flag is `id` (its argument id).
fn file_key(id: &str) -> &str {
    match id {
        "plugins" => "plugin_dir",
        id => id,
    }
}

impl Settings {
    /// Merges `args` (flags and variables, as `args.sources` tells) with
    /// the file `args.config` names, if any. Fails, naming the file and the
    /// key, when the file cannot be read or holds an unknown key or a value
    /// of the wrong kind; the values themselves are checked by
    /// [`Settings::pipeline_config`] and [`Settings::check`].
    pub fn resolve(args: RunArgs) -> anyhow::Result<Settings> {
        let (file, contents) = match &args.config {
            Some(path) => (Some(path.clone()), read_file(path)?),
            None => (None, FileConfig::default()),
        };
        let base = file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default();
        let mut merge = Merge {
            sources: args.sources.clone(),
            origins: BTreeMap::new(),
        };
        let mut args = args;
        let f = contents;
        let path = |p: Option<PathBuf>| p.map(|p| base.join(p));
        merge.layer(&mut args.source, "source", f.source.map(Some));
        merge.layer(&mut args.demo_type, "demo_type", f.demo_type);
        merge.layer(&mut args.token, "token", f.token.map(Some));
        merge.layer(&mut args.plugins, "plugins", path(f.plugin_dir).map(Some));
        merge.layer(&mut args.admin, "admin", f.admin);
        merge.layer(
            &mut args.admin_token,
            "admin_token",
            f.admin_token.map(Some),
        );
        merge.layer(
            &mut args.connect_timeout,
            "connect_timeout",
            f.connect_timeout,
        );
        merge.layer(
            &mut args.request_timeout,
            "request_timeout",
            f.request_timeout,
        );
        merge.layer(&mut args.retry_min, "retry_min", f.retry_min);
        merge.layer(&mut args.retry_max, "retry_max", f.retry_max);
        merge.layer(&mut args.poll_interval, "poll_interval", f.poll_interval);
        merge.layer(
            &mut args.polls_in_flight,
            "polls_in_flight",
            f.polls_in_flight,
        );
        merge.layer(&mut args.max_body_bytes, "max_body_bytes", f.max_body_bytes);
        merge.layer(
            &mut args.ca_bundle,
            "ca_bundle",
            path(f.ca_bundle).map(Some),
        );
        merge.layer(
            &mut args.plugin_deadline,
            "plugin_deadline",
            f.plugin_deadline,
        );
        let memory = f.plugin_memory_mib;
        merge.layer(&mut args.plugin_memory_mib, "plugin_memory_mib", memory);
        merge.layer(&mut args.shutdown_grace, "shutdown_grace", f.shutdown_grace);
        merge.layer(&mut args.log_format, "log_format", f.log_format);
        merge.layer(&mut args.log_level, "log_level", f.log_level);
        // The cache is one choice: a directory, or none. A flag or variable
        // that makes it wins over both keys of the file.
        let (cache_dir, no_cache) = (path(f.cache_dir), f.no_cache);
        if let Some(file) = &file
            && cache_dir.is_some()
            && no_cache == Some(true)
        {
            anyhow::bail!(
                "{}: cache_dir and no_cache = true cannot both be set",
                file.display()
            );
        }
        if merge.sources.given("cache_dir").is_some() || merge.sources.given("no_cache").is_some() {
            merge.layer(&mut args.cache_dir, "cache_dir", None);
            merge.layer(&mut args.no_cache, "no_cache", None);
        } else {
            merge.layer(&mut args.cache_dir, "cache_dir", cache_dir.map(Some));
            merge.layer(&mut args.no_cache, "no_cache", no_cache);
        }
        let mut plugins = f.plugins;
        for settings in plugins.values_mut() {
            for dir in &mut settings.wasi.dirs {
                dir.host = base.join(&dir.host);
            }
        }
        Ok(Settings {
            args,
            file,
            engine: f.engine.unwrap_or_default(),
            plugins,
            origins: merge.origins,
        })
    }

    /// Where the setting `id` came from.
    pub fn origin(&self, id: &str) -> Origin {
        self.origins.get(id).copied().unwrap_or(Origin::Default)
    }

    /// How an operator finds the setting `id` where it was given:
    /// `--retry-max`, `SLUICE_RETRY_MAX`, or `retry_max in sluice.toml`.
    pub fn key(&self, id: &str) -> String {
        match (self.origin(id), &self.file) {
            (Origin::Env, _) => format!("SLUICE_{}", id.to_ascii_uppercase()),
            (Origin::File, Some(file)) => format!("{} in {}", file_key(id), file.display()),
            _ => format!("--{}", id.replace('_', "-")),
        }
    }

    /// The pipeline settings these ask for, polling `source`. Fails with a
    /// message naming the setting (as [`Settings::key`] does) when one
    /// cannot work.
    pub fn pipeline_config(&self, source: Url) -> anyhow::Result<PipelineConfig> {
        let args = &self.args;
        let retry = BackoffSettings {
            min: args.retry_min,
            max: args.retry_max,
            factor: 2.0,
        };
        retry.validate().with_context(|| {
            let (min, max) = (self.key("retry_min"), self.key("retry_max"));
            format!("invalid {max} (with {min})")
        })?;
        anyhow::ensure!(
            args.poll_interval <= args.retry_max,
            "{} ({}) cannot be longer than {} ({}), the longest pause between two polls",
            self.key("poll_interval"),
            humantime::format_duration(args.poll_interval),
            self.key("retry_max"),
            humantime::format_duration(args.retry_max),
        );
        for id in [
            "connect_timeout",
            "request_timeout",
            "plugin_deadline",
            "shutdown_grace",
        ] {
            let zero = match id {
                "connect_timeout" => args.connect_timeout.is_zero(),
                "request_timeout" => args.request_timeout.is_zero(),
                "plugin_deadline" => args.plugin_deadline.is_zero(),
                _ => args.shutdown_grace.is_zero(),
            };
            anyhow::ensure!(!zero, "{} must be above zero", self.key(id));
        }
        anyhow::ensure!(
            (1..=MAX_IN_FLIGHT).contains(&args.polls_in_flight),
            "{} must be from 1 to {MAX_IN_FLIGHT}, not {}",
            self.key("polls_in_flight"),
            args.polls_in_flight,
        );
        for (id, zero) in [
            ("plugin_memory_mib", args.plugin_memory_mib == 0),
            ("max_body_bytes", args.max_body_bytes == 0),
        ] {
            anyhow::ensure!(!zero, "{} must be above zero", self.key(id));
        }
        anyhow::ensure!(
            args.source.is_none() || args.demo_type.is_empty(),
            "{} is for the built-in demo API, which does not run with {}",
            self.key("demo_type"),
            self.key("source"),
        );
        anyhow::ensure!(
            matches!(source.scheme(), "http" | "https"),
            "{} must be an http or https URL, not {:?}",
            self.key("source"),
            source.scheme()
        );
        if let Some(dir) = &args.plugins {
            anyhow::ensure!(
                dir.is_dir(),
                "{} {}: not a directory",
                self.key("plugins"),
                dir.display()
            );
        }
        crate::logs::filter(&args.log_level)
            .with_context(|| format!("invalid {}", self.key("log_level")))?;
        self.engine
            .validate()
            .map_err(|err| anyhow::anyhow!("{}: {}", self.in_file("[engine]"), err))?;
        let limits = self.limits();
        for (name, settings) in &self.plugins {
            self.check_plugin(name, settings)?;
        }

        let mut source_config = SourceConfig::new(source);
        source_config.token = args.token.clone();
        source_config.connect_timeout = args.connect_timeout;
        source_config.request_timeout = args.request_timeout;
        source_config.max_body_bytes = args.max_body_bytes;
        source_config.ca_bundle = args.ca_bundle.clone();
        if source_config.ca_bundle.is_some() {
            // Read now, so that a bad bundle is named by its setting.
            Source::new(&source_config)
                .with_context(|| format!("invalid {}", self.key("ca_bundle")))?;
        }
        let ingest = IngestConfig {
            source: source_config,
            retry,
            min_interval: args.poll_interval,
            in_flight: args.polls_in_flight,
        };
        let mut config = PipelineConfig::new(ingest);
        config.plugins = match &args.plugins {
            Some(dir) => PluginSource::Dir(dir.clone()),
            None => PluginSource::Bundled,
        };
        config.limits = limits;
        config.plugin_limits = self
            .plugins
            .iter()
            .map(|(name, settings)| (name.clone(), settings.limits(limits)))
            .collect();
        config.plugin_grants = self
            .plugins
            .iter()
            .filter(|(_, settings)| !settings.wasi.is_empty())
            .map(|(name, settings)| (name.clone(), settings.wasi.grants()))
            .collect();
        config.cache = match (&args.cache_dir, args.no_cache) {
            (_, true) => CompileCache::Off,
            (Some(dir), false) => CompileCache::Dir(dir.clone()),
            (None, false) => {
                CompileCache::default_dir().map_or(CompileCache::Off, CompileCache::Dir)
            }
        };
        config.engine = self.engine.clone();
        Ok(config)
    }

    /// Validates everything without starting anything, as
    /// [`Settings::pipeline_config`] does (a placeholder URL stands in for
    /// the demo API when no source is given).
    pub fn check(&self) -> anyhow::Result<()> {
        let source = match &self.args.source {
            Some(url) => url.clone(),
            None => Url::parse("http://127.0.0.1/metrics").context("the placeholder URL")?,
        };
        self.pipeline_config(source)?;
        Ok(())
    }

    /// The limits every plugin gets unless its table says otherwise.
    pub fn limits(&self) -> Limits {
        Limits {
            call_deadline: self.args.plugin_deadline,
            memory_bytes: self.args.plugin_memory_mib.saturating_mul(1024 * 1024),
            ..Limits::default()
        }
    }

    /// `what in FILE`, or just `what` without a file.
    fn in_file(&self, what: &str) -> String {
        match &self.file {
            Some(file) => format!("{what} in {}", file.display()),
            None => what.to_owned(),
        }
    }

    fn check_plugin(&self, name: &str, settings: &PluginSettings) -> anyhow::Result<()> {
        let table = self.in_file(&format!("[plugins.{name}]"));
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        anyhow::ensure!(
            !name.is_empty() && name.len() <= 64 && name.chars().all(name_char),
            "{table}: a plugin name is 1 to 64 ASCII letters, digits, '_', '-' or '.'"
        );
        anyhow::ensure!(
            settings.deadline.is_none_or(|d| !d.is_zero()),
            "{table}: deadline must be above zero"
        );
        for (key, value) in [
            ("memory_mib", settings.memory_mib),
            ("instances", settings.instances),
            ("tables", settings.tables),
            ("table_elements", settings.table_elements),
        ] {
            anyhow::ensure!(
                value.is_none_or(|n| n > 0),
                "{table}: {key} must be above zero"
            );
        }
        for (key, value) in &settings.wasi.env {
            anyhow::ensure!(
                !key.is_empty() && !key.contains(['=', '\0']) && !value.contains('\0'),
                "{table}: wasi.env: {key:?} is not a valid variable"
            );
        }
        let mut guests = Vec::new();
        for dir in &settings.wasi.dirs {
            anyhow::ensure!(
                dir.host.is_dir(),
                "{table}: wasi.dirs: host {}: not a directory",
                dir.host.display()
            );
            anyhow::ensure!(
                dir.guest.starts_with('/') && !dir.guest.contains('\0'),
                "{table}: wasi.dirs: guest {:?} must be an absolute path",
                dir.guest
            );
            anyhow::ensure!(
                !guests.contains(&&dir.guest),
                "{table}: wasi.dirs: guest {:?} is granted twice",
                dir.guest
            );
            guests.push(&dir.guest);
        }
        Ok(())
    }

    /// Every setting with its value and where it came from, one per line,
    /// for `--check-config`. The token shows as `<redacted>`.
    pub fn describe(&self) -> String {
        let a = &self.args;
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let opt = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let redacted = |secret: &Option<Secret>| secret.as_ref().map(|_| "<redacted>".to_owned());
        let source = a.source.as_ref().map(Url::to_string);
        let demo_type: Vec<&str> = a.demo_type.iter().map(|t| t.name()).collect();
        let rows: [(&str, Option<String>); 21] = [
            (
                "source",
                source.or_else(|| Some("(built-in demo API)".to_owned())),
            ),
            (
                "demo_type",
                (!demo_type.is_empty()).then(|| demo_type.join(",")),
            ),
            ("token", redacted(&a.token)),
            ("plugins", opt(&a.plugins)),
            ("admin", Some(a.admin.to_string())),
            ("admin_token", redacted(&a.admin_token)),
            ("connect_timeout", Some(d(a.connect_timeout))),
            ("request_timeout", Some(d(a.request_timeout))),
            ("retry_min", Some(d(a.retry_min))),
            ("retry_max", Some(d(a.retry_max))),
            ("poll_interval", Some(d(a.poll_interval))),
            ("polls_in_flight", Some(a.polls_in_flight.to_string())),
            ("max_body_bytes", Some(a.max_body_bytes.to_string())),
            ("ca_bundle", opt(&a.ca_bundle)),
            ("plugin_deadline", Some(d(a.plugin_deadline))),
            ("plugin_memory_mib", Some(a.plugin_memory_mib.to_string())),
            ("cache_dir", opt(&a.cache_dir)),
            ("no_cache", Some(a.no_cache.to_string())),
            ("shutdown_grace", Some(d(a.shutdown_grace))),
            ("log_format", Some(a.log_format.to_string())),
            ("log_level", Some(a.log_level.clone())),
        ];
        let mut text = String::new();
        for (id, value) in rows {
            let value = value.unwrap_or_else(|| "(none)".to_owned());
            let from = match self.origin(id) {
                Origin::Default => "default".to_owned(),
                _ => self.key(id),
            };
            text.push_str(&format!("  {} = {value}  # {from}\n", file_key(id)));
        }
        let backoff = &self.engine.backoff;
        text.push_str(&format!(
            "  [engine] backoff: initial {}, max {}, multiplier {}, jitter {}, reset_after {}; \
             shutdown_grace {}\n",
            d(backoff.initial),
            d(backoff.max),
            backoff.multiplier,
            backoff.jitter,
            d(backoff.reset_after),
            d(self.engine.shutdown_grace),
        ));
        let limits = self.limits();
        for (name, settings) in &self.plugins {
            let own = settings.limits(limits);
            text.push_str(&format!(
                "  [plugins.{name}] deadline {}, memory_mib {}, wasi grants: {}\n",
                d(own.call_deadline),
                own.memory_bytes / (1024 * 1024),
                describe_grants(&settings.wasi),
            ));
        }
        text
    }
}

/// A plugin's grants on one line: the names of its variables (not their
/// values, which may be secrets) and its directories.
fn describe_grants(wasi: &WasiGrants) -> String {
    if wasi.is_empty() {
        return "none".to_owned();
    }
    let mut parts = Vec::new();
    if !wasi.env.is_empty() {
        let names: Vec<&str> = wasi.env.keys().map(String::as_str).collect();
        parts.push(format!("env {}", names.join(" ")));
    }
    for dir in &wasi.dirs {
        parts.push(format!("read {} at {}", dir.host.display(), dir.guest));
    }
    parts.join(", ")
}

impl PluginSettings {
    /// `defaults` with this plugin's own limits where it has them.
    pub fn limits(&self, defaults: Limits) -> Limits {
        Limits {
            call_deadline: self.deadline.unwrap_or(defaults.call_deadline),
            memory_bytes: self
                .memory_mib
                .map_or(defaults.memory_bytes, |m| m.saturating_mul(1024 * 1024)),
            instances: self.instances.unwrap_or(defaults.instances),
            tables: self.tables.unwrap_or(defaults.tables),
            table_elements: self.table_elements.unwrap_or(defaults.table_elements),
        }
    }
}

/// Fills settings from the file where the command line gave none, and
/// records where each came from.
struct Merge {
    sources: Sources,
    origins: BTreeMap<&'static str, Origin>,
}

impl Merge {
    fn layer<T>(&mut self, slot: &mut T, id: &'static str, from_file: Option<T>) {
        let origin = match (self.sources.given(id), from_file) {
            (Some(origin), _) => origin,
            (None, Some(value)) => {
                *slot = value;
                Origin::File
            }
            (None, None) => Origin::Default,
        };
        self.origins.insert(id, origin);
    }
}

/// Reads and parses the configuration file at `path`.
fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).map_err(|err| file_error(path, &text, err))
}

/// A TOML error as `FILE: line L, column C: KEY: message`, without the
/// excerpt of the file that toml shows (it may hold the token).
fn file_error(path: &Path, text: &str, mut err: toml::de::Error) -> anyhow::Error {
    let at = err.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    // Without its input, the error shows its message and the key it is
    // about ("in `engine.backoff`") instead of the excerpt.
    err.set_input(None);
    let shown = err.to_string();
    let mut lines = shown.lines();
    let message = lines.next().unwrap_or_default().to_owned();
    let mut key = lines
        .find_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .map(str::to_owned);
    let message = match message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        Some((field, rest)) => {
            let full = key
                .take()
                .map_or(field.to_owned(), |k| format!("{k}.{field}"));
            format!("unknown key `{full}`{rest}")
        }
        None => message,
    };
    let key = key.map(|key| format!("`{key}`: ")).unwrap_or_default();
    anyhow::anyhow!(
        "{}: {}{key}{message}",
        path.display(),
        at.unwrap_or_default()
    )
}

fn duration_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de).map_err(|_| {
        serde::de::Error::custom("expected a duration in a string, such as \"500ms\" or \"5s\"")
    })?;
    humantime::parse_duration(&text).map(Some).map_err(|err| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {err} (try 500ms, 5s or 1m)"
        ))
    })
}

fn url_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Url>, D::Error> {
    let text = String::deserialize(de)?;
    Url::parse(&text)
        .map(Some)
        .map_err(|err| serde::de::Error::custom(format!("invalid URL {text:?}: {err}")))
}

fn addr_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(de).map_err(|_| {
        serde::de::Error::custom("expected an address in a string, such as \"127.0.0.1:9480\"")
    })?;
    text.parse().map(Some).map_err(|err| {
        serde::de::Error::custom(format!(
            "invalid address {text:?}: {err} (try 127.0.0.1:9480)"
        ))
    })
}

/// Reads the token without ever quoting it, even when it is not a string.
fn secret_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Secret>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Secret;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
            Ok(Secret::new(value))
        }
    }
    de.deserialize_any(Text)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("a token must be a string"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|err| file_error(Path::new("s.toml"), text, err).to_string())
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let cases = [
            (
                "retry_max = \"5s\"\nrequst_timeout = \"1s\"\n",
                "line 2, column 1",
            ),
            ("request_timeout = 5\n", "`request_timeout`"),
            ("request_timeout = \"soon\"\n", "`request_timeout`"),
            (
                "[engine.backoff]\ninital = \"1s\"\n",
                "`engine.backoff.inital`",
            ),
            (
                "[plugins.load_avg]\ndeadline = \"1s\"\nmemory = 3\n",
                "plugins.load_avg.memory",
            ),
            ("[plugins.x.wasi]\nnet = true\n", "plugins.x.wasi.net"),
            ("admin = \"here\"\n", "`admin`"),
            ("source = \"::\"\n", "`source`"),
        ];
        for (text, named) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("s.toml: line "), "{err}");
            assert!(err.contains(named), "{text:?}: {err}");
        }
        let unknown = parse("requst_timeout = \"1s\"\n").unwrap_err();
        assert!(
            unknown.contains("unknown key `requst_timeout`"),
            "{unknown}"
        );
    }

    #[test]
    fn the_token_is_never_quoted_in_an_error() {
        for text in [
            "token = 123456789\n",
            "token = [\"123456789\"]\n",
            "token = \"123456789\nsource = 1\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(!err.contains("123456789"), "{err}");
        }
    }

    #[test]
    fn plugin_tables_read_limits_and_grants() {
        let text = r#"
            [plugins.load_avg]
            deadline = "250ms"
            memory_mib = 8
            [plugins.load_avg.wasi]
            env = { TZ = "UTC" }
            dirs = [{ host = "data", guest = "/data" }]
        "#;
        let config = parse(text).unwrap();
        let load_avg = &config.plugins["load_avg"];
        assert_eq!(load_avg.deadline, Some(Duration::from_millis(250)));
        let limits = load_avg.limits(Limits::default());
        assert_eq!(limits.memory_bytes, 8 << 20);
        assert_eq!(limits.call_deadline, Duration::from_millis(250));
        assert_eq!(load_avg.wasi.env["TZ"], "UTC");
        assert_eq!(load_avg.wasi.dirs[0].guest, "/data");
    }
}
