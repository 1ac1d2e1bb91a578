//! The command line: `sluice run` and its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, Sources};
use crate::demo::{DemoApi, DemoType};
use crate::engine::ComponentState;
use crate::ingest::Secret;
use crate::logs::{self, LogFormat};
use crate::pipeline::Pipeline;

/// The default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9480";

/// sluice: a supervised metrics pipeline with sandboxed wasm handlers.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline (the default when no command is given).
    Run(Box<RunArgs>),
    /// Show a running host's components and plugins, read from its admin
    /// server.
    Status(crate::status::StatusArgs),
    /// Write, check or export handler plugins: `new`, `check`, `bundled`.
    Plugin(crate::scaffold::PluginArgs),
}

/// Flags of `sluice run`. Each can also be given as the environment
/// variable named after it (`--request-timeout` as `SLUICE_REQUEST_TIMEOUT`)
/// and in the file of `--config`; see [`crate::config`] for the precedence.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// TOML file of settings: any flag below, by its name with `_` for `-`
    /// (`--plugins` is `plugin_dir`), plus `[engine]` and `[plugins.NAME]`
    /// tables. Flags and SLUICE_* variables win over the file.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the flags, the environment and the file, print the settings
    /// and where each came from, and exit: 0 when valid, 1 when not.
    #[arg(long)]
    pub check_config: bool,
    /// Full URL of the metrics endpoint. Without it, sluice polls a built-in
    /// demo API on a loopback port.
    #[arg(long, env = "SLUICE_SOURCE", value_name = "URL")]
    pub source: Option<Url>,
    /// Another payload type for the built-in demo API to send, besides the
    /// three it always sends: `disk_usage`, the type of the example plugins
    /// (repeat the flag, or separate with commas). Only without --source.
    #[arg(
        long,
        env = "SLUICE_DEMO_TYPE",
        value_name = "TYPE",
        value_delimiter = ',',
        value_enum
    )]
    pub demo_type: Vec<DemoType>,
    /// API token, sent as the Basic-auth user name. Prefer the variable or
    /// the file: a flag shows in the process list.
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    pub token: Option<Secret>,
    /// Directory of handler plugins (`*.wasm` components). Without it, the
    /// bundled handlers are used.
    #[arg(long, env = "SLUICE_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Address of the introspection server.
    #[arg(long, env = "SLUICE_ADMIN", value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Token that admin clients must send as `Authorization: Bearer TOKEN`;
    /// required to listen on an address other than loopback.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    pub admin_token: Option<Secret>,
    /// Longest wait for a connection to the API.
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT", value_name = "DURATION", default_value = "5s",
        value_parser = duration)]
    pub connect_timeout: Duration,
    /// Longest wait for a whole response, body included.
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s",
        value_parser = duration)]
    pub request_timeout: Duration,
    /// Shortest delay after a failed poll.
    #[arg(long, env = "SLUICE_RETRY_MIN", value_name = "DURATION", default_value = "100ms",
        value_parser = duration)]
    pub retry_min: Duration,
    /// Longest delay after failed polls, and so the longest pause between
    /// two polls whatever the server says (alias: --max-poll-interval).
    #[arg(long, env = "SLUICE_RETRY_MAX", value_name = "DURATION", default_value = "30s",
        value_parser = duration, visible_alias = "max-poll-interval")]
    pub retry_max: Duration,
    /// Shortest time between the starts of two polls (0 polls without pause;
    /// alias: --min-poll-interval).
    #[arg(long, env = "SLUICE_POLL_INTERVAL", value_name = "DURATION", default_value = "0s",
        value_parser = duration, visible_alias = "min-poll-interval")]
    pub poll_interval: Duration,
    /// Most polls under way at once while polls succeed: the next body is
    /// fetched while the last is decoded. After a failure, one at a time
    /// until a poll succeeds; 1 never overlaps polls.
    #[arg(long, env = "SLUICE_POLLS_IN_FLIGHT", value_name = "N",
        default_value_t = crate::ingest::DEFAULT_IN_FLIGHT)]
    pub polls_in_flight: usize,
    /// Largest response body accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", value_name = "BYTES",
        default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// PEM file of certificate authorities to trust for an https source.
    #[arg(long, env = "SLUICE_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Longest a plugin may run on one batch.
    #[arg(long, env = "SLUICE_PLUGIN_DEADLINE", value_name = "DURATION", default_value = "1s",
        value_parser = duration)]
    pub plugin_deadline: Duration,
    /// Directory where compiled plugins are cached (default:
    /// $XDG_CACHE_HOME/sluice or ~/.cache/sluice).
    #[arg(
        long,
        env = "SLUICE_CACHE_DIR",
        value_name = "DIR",
        conflicts_with = "no_cache"
    )]
    pub cache_dir: Option<PathBuf>,
    /// Compile the plugins at every start instead of caching them.
    #[arg(long, env = "SLUICE_NO_CACHE")]
    pub no_cache: bool,
    /// Most linear memory a plugin may use, in MiB.
    #[arg(
        long,
        env = "SLUICE_PLUGIN_MEMORY_MIB",
        value_name = "MIB",
        default_value_t = 64
    )]
    pub plugin_memory_mib: usize,
    /// On SIGINT or SIGTERM, how long in-flight payloads may take to be
    /// applied once polling stopped. A second signal exits at once.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "5s",
        value_parser = duration)]
    pub shutdown_grace: Duration,
    /// How log lines look on stderr: text for people, json for shipping.
    #[arg(
        long,
        env = "SLUICE_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Which logs are kept: a level (error, warn, info, debug, trace) or
    /// directives (sluice=debug,info). RUST_LOG, when set, wins.
    #[arg(
        long,
        env = "SLUICE_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Where each value above came from (flag, variable or default).
    #[arg(skip)]
    pub sources: Sources,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (try 500ms, 5s or 1m)"))
}

fn secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

impl Cli {
    /// Parses the command line and the `SLUICE_*` environment variables,
    /// noting where each setting of `run` came from. On a bad flag or
    /// variable, prints the error and exits with status 1 (`--help` and
    /// `--version` print and exit with 0).
    pub fn from_env() -> Cli {
        let exit = |err: clap::Error| -> ! {
            // Failing to print the error leaves nothing better to do.
            let _ = err.print();
            std::process::exit(i32::from(err.use_stderr()))
        };
        let matches = Cli::command()
            .try_get_matches()
            .unwrap_or_else(|err| exit(err));
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| exit(err));
        if let Some(Command::Run(args)) = &mut cli.command {
            if let Some(run) = matches.subcommand_matches("run") {
                args.sources = Sources::of(run);
            }
        } else if cli.command.is_none() {
            cli.run.sources = Sources::of(&matches);
        }
        cli
    }

    /// Runs the command.
    pub async fn execute(self) -> ExitCode {
        let args = match self.command {
            Some(Command::Run(args)) => *args,
            Some(Command::Status(args)) => return crate::status::execute(args).await,
            Some(Command::Plugin(args)) => return crate::scaffold::execute(args).await,
            None => self.run,
        };
        run_command(args).await
    }
}

/// `sluice run`: merges the settings, then checks them (`--check-config`)
/// or sets up logging and runs the pipeline.
async fn run_command(args: RunArgs) -> ExitCode {
    let settings = match Settings::resolve(args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sluice: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if settings.args.check_config {
        return match settings.check() {
            Ok(()) => {
                let file = settings
                    .file
                    .as_ref()
                    .map_or(String::new(), |file| format!(" (file {})", file.display()));
                println!("sluice: configuration OK{file}");
                print!("{}", settings.describe());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("sluice: invalid configuration: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let format = settings.args.log_format;
    if let Err(err) = logs::install(format, &settings.args.log_level) {
        eprintln!("sluice: {err:#}");
        return ExitCode::FAILURE;
    }
    match run(settings).await {
        Ok(code) => code,
        Err(err) => {
            match format {
                LogFormat::Json => tracing::error!(error = format!("{err:#}"), "cannot run"),
                LogFormat::Text => eprintln!("sluice: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs the pipeline until SIGINT or SIGTERM, then drains it: exits with
/// success unless payloads were still in flight or components did not
/// stop. A second signal exits at once with status 130.
async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    // Installed first, so that a signal during start-up is not lost.
    let mut signals = Signals::install()?;
    let args = &settings.args;
    let stop = CancellationToken::new();
    let source = match &args.source {
        Some(url) => url.clone(),
        None => {
            let demo = DemoApi::start(stop.child_token(), &args.demo_type).await?;
            println!(
                "sluice: no --source given: polling the built-in demo API at {}",
                demo.url
            );
            demo.url
        }
    };
    let config = settings.pipeline_config(source)?;
    let access = crate::admin::Access::from_token(args.admin_token.clone())?;
    let listener = crate::admin::bind(args.admin, &access).await?;
    let admin_addr = listener.local_addr()?;
    let pipeline = Arc::new(Pipeline::start(config).await?);
    let admin = tokio::spawn(crate::admin::serve(
        listener,
        Arc::clone(&pipeline),
        access,
        stop.child_token(),
    ));
    println!("sluice: admin at http://{admin_addr} (try /components and /plugins)");
    let loaded = pipeline.registry().slots();
    for name in settings
        .plugins
        .keys()
        .filter(|name| !loaded.contains_key(*name))
    {
        tracing::warn!(plugin = %name, "settings given for a plugin that is not loaded");
    }

    let mut states = pipeline.engine().watch();
    // The borrow that `wait_for` returns must end here: held, it would
    // stop the engine from publishing any later change.
    let ready = async {
        let _ = states
            .wait_for(|reports| reports.iter().all(|r| r.state == ComponentState::Running))
            .await;
    };
    tokio::select! {
        () = ready => {
            println!("sluice: ready");
            signals.recv().await;
        }
        () = signals.recv() => {}
    }
    let grace = args.shutdown_grace;
    let in_flight = pipeline.ledger().snapshot().total().in_flight();
    println!(
        "sluice: stopping: polling stopped, waiting up to {} for {in_flight} payloads in flight \
         (a second signal exits at once)",
        humantime::format_duration(grace)
    );
    tokio::spawn(async move {
        signals.recv().await;
        println!("sluice: second signal: exiting at once");
        std::process::exit(130);
    });
    let report = pipeline.drain(grace).await;
    stop.cancel();
    let _ = admin.await;
    println!(
        "sluice: stopped: {} received, {} applied, {} rejected, {} in flight",
        report.received,
        report.applied,
        report.rejected,
        report.in_flight()
    );
    if !report.pending.is_empty() {
        let pending: Vec<String> = report
            .pending
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        println!(
            "sluice: lost at the deadline, in flight: {}",
            pending.join(", ")
        );
    }
    if !report.still_running.is_empty() {
        println!(
            "sluice: components that did not stop in time: {}",
            report.still_running.join(", ")
        );
    }
    Ok(if report.lost() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on.
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves on the next SIGINT or SIGTERM. Cancel-safe.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
