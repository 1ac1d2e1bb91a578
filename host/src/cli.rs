//! The command line: `sluice run` and its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use reqwest::Url;
use tokio_util::sync::CancellationToken;

use crate::backoff::BackoffSettings;
use crate::demo::DemoApi;
use crate::engine::ComponentState;
use crate::ingest::{IngestConfig, Secret, SourceConfig};
use crate::pipeline::{Pipeline, PipelineConfig, PluginSource};
use crate::plugin::{CompileCache, Limits};

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
    Run(RunArgs),
}

/// Flags of `sluice run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Full URL of the metrics endpoint. Without it, sluice polls a built-in
    /// demo API on a loopback port.
    #[arg(long, value_name = "URL")]
    pub source: Option<Url>,
    /// API token, sent as the Basic-auth user name.
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Directory of handler plugins (`*.wasm` components). Without it, the
    /// bundled handlers are used.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Address of the introspection server.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Longest wait for a connection to the API.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,
    /// Longest wait for a whole response, body included.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Shortest delay after a failed poll.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = duration)]
    pub retry_min: Duration,
    /// Longest delay after failed polls.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub retry_max: Duration,
    /// Shortest time between the starts of two polls (0 polls without pause).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub poll_interval: Duration,
    /// Largest response body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// PEM file of certificate authorities to trust for an https source.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Longest a plugin may run on one batch.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub plugin_deadline: Duration,
    /// Directory where compiled plugins are cached (default:
    /// $XDG_CACHE_HOME/sluice or ~/.cache/sluice).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the plugins at every start instead of caching them.
    #[arg(long)]
    pub no_cache: bool,
    /// Most linear memory a plugin may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err} (try 500ms, 5s or 1m)"))
}

impl RunArgs {
    /// The pipeline settings these flags ask for, with `source` as the URL.
    pub fn config(&self, source: Url) -> anyhow::Result<PipelineConfig> {
        let retry = BackoffSettings {
            min: self.retry_min,
            max: self.retry_max,
            factor: 2.0,
        };
        retry
            .validate()
            .context("invalid --retry-min/--retry-max")?;
        anyhow::ensure!(
            !self.connect_timeout.is_zero(),
            "--connect-timeout must be above zero"
        );
        anyhow::ensure!(
            !self.request_timeout.is_zero(),
            "--request-timeout must be above zero"
        );
        anyhow::ensure!(
            !self.plugin_deadline.is_zero(),
            "--plugin-deadline must be above zero"
        );
        anyhow::ensure!(
            self.plugin_memory_mib > 0,
            "--plugin-memory-mib must be above zero"
        );
        anyhow::ensure!(
            self.max_body_bytes > 0,
            "--max-body-bytes must be above zero"
        );
        anyhow::ensure!(
            matches!(source.scheme(), "http" | "https"),
            "--source must be an http or https URL, not {:?}",
            source.scheme()
        );
        if let Some(dir) = &self.plugins {
            anyhow::ensure!(dir.is_dir(), "--plugins {}: not a directory", dir.display());
        }
        let mut source_config = SourceConfig::new(source);
        source_config.token = self.token.clone().map(Secret::new);
        source_config.connect_timeout = self.connect_timeout;
        source_config.request_timeout = self.request_timeout;
        source_config.max_body_bytes = self.max_body_bytes;
        source_config.ca_bundle = self.ca_bundle.clone();
        let ingest = IngestConfig {
            source: source_config,
            retry,
            min_interval: self.poll_interval,
        };
        let mut config = PipelineConfig::new(ingest);
        config.plugins = match &self.plugins {
            Some(dir) => PluginSource::Dir(dir.clone()),
            None => PluginSource::Bundled,
        };
        config.limits = Limits {
            call_deadline: self.plugin_deadline,
            memory_bytes: self.plugin_memory_mib * 1024 * 1024,
            ..Limits::default()
        };
        config.cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => CompileCache::Off,
            (Some(dir), false) => CompileCache::Dir(dir.clone()),
            (None, false) => {
                CompileCache::default_dir().map_or(CompileCache::Off, CompileCache::Dir)
            }
        };
        Ok(config)
    }
}

impl Cli {
    /// Runs the command.
    pub async fn execute(self) -> ExitCode {
        let args = match self.command {
            Some(Command::Run(args)) => args,
            None => self.run,
        };
        match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("sluice: {err:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the pipeline until SIGINT or SIGTERM.
async fn run(args: RunArgs) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let source = match &args.source {
        Some(url) => url.clone(),
        None => {
            let demo = DemoApi::start(stop.child_token()).await?;
            println!(
                "sluice: no --source given: polling the built-in demo API at {}",
                demo.url
            );
            demo.url
        }
    };
    let config = args.config(source)?;
    let listener = crate::admin::bind(args.admin).await?;
    let admin_addr = listener.local_addr()?;
    let pipeline = Arc::new(Pipeline::start(config).await?);
    let admin = tokio::spawn(crate::admin::serve(
        listener,
        Arc::clone(&pipeline),
        stop.child_token(),
    ));
    println!("sluice: admin at http://{admin_addr} (try /components and /plugins)");

    let mut states = pipeline.engine().watch();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    tokio::select! {
        _ = states.wait_for(|reports| {
            reports.iter().all(|r| r.state == ComponentState::Running)
        }) => {
            println!("sluice: ready");
            signal.as_mut().await;
        }
        () = &mut signal => {}
    }
    println!("sluice: stopping");
    let report = pipeline.shutdown().await;
    stop.cancel();
    let _ = admin.await;
    let accounts = pipeline.ledger().snapshot().total();
    println!(
        "sluice: stopped: {} received, {} applied, {} rejected, {} in flight",
        accounts.received,
        accounts.applied,
        accounts.rejected_total(),
        accounts.in_flight()
    );
    anyhow::ensure!(
        report.clean,
        "components still running at the deadline: {:?}",
        report.still_running
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler can be installed at start");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
