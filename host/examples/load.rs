//! The load benchmark: the real pipeline, polling a fast local source,
//! with the bundled plugins in wasm and then compiled natively, side by
//! side.
//!
//! ```text
//! just bench-load                      # = cargo run --release -p sluice --example load
//! cargo run --release -p sluice --example load -- --entries 20000 --runs 5
//! cargo run --release -p sluice --example load -- --sweep     # how cost grows
//! cargo run --release -p sluice --example load -- --trap      # trap recovery p50/p99
//! cargo run --release -p sluice --example load -- --soak 60   # RSS, one plugin 100x slower
//! cargo run --release -p sluice --example load -- --smoke     # accounting check, no timing
//! ```
//!
//! Each measurement runs in a child process of its own (this program, with
//! `--child`), so that CPU time and peak RSS are those of one pipeline
//! alone. A child starts a source on a loopback port that answers every
//! poll with the same pre-built body, starts `sluice::pipeline::Pipeline`,
//! lets it warm up, then measures for `--seconds`:
//!
//! - payloads applied per second (from the ledger);
//! - CPU microseconds per payload: the process's user and system time
//!   (`/proc/self/stat`) less the source's threads' own
//!   (`/proc/self/task/TID/stat`), over the payloads applied;
//! - peak RSS over the window (`VmHWM` of `/proc/self/status`, after
//!   resetting it through `/proc/self/clear_refs`);
//! - receipt-to-applied latency, p50 and p99, from each handler's
//!   histogram (`Slot::latency`).
//!
//! Runs alternate the order of the two backends, and each run's wasm/native
//! ratios are taken from the pair measured back to back.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde::{Deserialize, Serialize};
use sluice::backoff::BackoffSettings;
use sluice::handler::latency::Histogram;
use sluice::ingest::{IngestConfig, SourceConfig};
use sluice::pipeline::{Pipeline, PipelineConfig, PluginSource};
use sluice::plugin::wit::{Applied, Batch, JsonBatch};
use sluice::plugin::{CompileCache, Limits, Plugin, Runtime, bundled};

#[path = "../benches/support/body.rs"]
mod body;
#[path = "../benches/support/native.rs"]
mod native;

/// The load benchmark of sluice (see BENCHMARKS.md).
#[derive(Debug, Clone, Parser)]
struct Args {
    /// Entries per response body.
    #[arg(long, default_value_t = 1_000)]
    entries: usize,
    /// CPUs per `cpu_usage` payload.
    #[arg(long, default_value_t = 5)]
    cpus: usize,
    /// Plugins loaded: the three bundled ones, plus idle ones up to this.
    #[arg(long, default_value_t = 3)]
    plugins: usize,
    /// Seconds measured per run, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of warm-up before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Runs of each backend; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measure the growth tables instead (entries, plugins, CPUs).
    #[arg(long)]
    sweep: bool,
    /// Measure trap recovery instead.
    #[arg(long)]
    trap: bool,
    /// Trap recoveries measured with `--trap`.
    #[arg(long, default_value_t = 2_000)]
    iterations: usize,
    /// Run for this many seconds with one plugin `--slow` times slower than
    /// the pipeline can go, sampling RSS every second.
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
    /// How much slower the slow plugin of `--soak` is.
    #[arg(long, default_value_t = 100.0)]
    slow: f64,
    /// Send a few thousand payloads through each backend and check that
    /// every one is applied; no timing.
    #[arg(long)]
    smoke: bool,
    /// Measure ingest alone instead: `Source::poll` (fetch and decode) in
    /// a loop, no pipeline; the ceiling of one serial poll loop.
    #[arg(long)]
    ingest_only: bool,
    /// Internal: run one measurement of this backend and print it as JSON.
    #[arg(long, value_name = "BACKEND", hide = true)]
    child: Option<Backend>,
}

/// What runs the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum Backend {
    /// The bundled wasm components, sandboxed.
    Wasm,
    /// The same handlers compiled into the host.
    Native,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Wasm => "wasm",
            Backend::Native => "native",
        }
    }
}

/// One measurement window of one pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measurement {
    backend: Backend,
    entries: usize,
    cpus: usize,
    plugins: usize,
    seconds: f64,
    applied: u64,
    rejected: u64,
    payloads_per_s: f64,
    cpu_us_per_payload: f64,
    /// CPU cores busy with the pipeline (its CPU time over wall time).
    cores: f64,
    /// The source's own CPU, excluded from `cpu_us_per_payload`.
    source_cpu_us_per_payload: f64,
    peak_rss_mib: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(backend) = args.child {
        let measurement = runtime()?.block_on(measure(&args, backend))?;
        println!("{}", serde_json::to_string(&measurement)?);
        // The source's threads block on their sockets: end them with us.
        std::process::exit(0);
    }
    if args.smoke {
        return runtime()?.block_on(smoke(3, 1_000));
    }
    if args.ingest_only {
        return runtime()?.block_on(ingest_only(&args));
    }
    if args.trap {
        return trap_recovery(args.iterations);
    }
    if let Some(seconds) = args.soak {
        return soak(&args, seconds);
    }
    print_machine();
    if args.sweep {
        return sweep(&args);
    }
    let rows = compare(&args)?;
    println!();
    print_table(&rows);
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")
}

/// Measures `args.runs` pairs of child runs, alternating which backend
/// goes first, and prints each.
fn compare(args: &Args) -> anyhow::Result<Vec<Row>> {
    let mut pairs = Vec::new();
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [Backend::Wasm, Backend::Native]
        } else {
            [Backend::Native, Backend::Wasm]
        };
        let mut pair = BTreeMap::new();
        for backend in order {
            let m = child(args, backend)?;
            println!(
                "run {run} {:6} entries {:5} cpus {:3} plugins {:2}: {:>10.0} payloads/s, \
                 {:.3} µs CPU/payload ({:.2} cores), peak RSS {:.1} MiB, \
                 latency p50 {} µs p99 {} µs",
                m.backend.name(),
                m.entries,
                m.cpus,
                m.plugins,
                m.payloads_per_s,
                m.cpu_us_per_payload,
                m.cores,
                m.peak_rss_mib,
                fmt_opt(m.p50_us),
                fmt_opt(m.p99_us),
            );
            pair.insert(backend.name(), m);
        }
        pairs.push((pair["wasm"].clone(), pair["native"].clone()));
    }
    Ok(vec![Row::of(args, &pairs)])
}

/// Medians of the runs of one configuration.
struct Row {
    entries: usize,
    cpus: usize,
    plugins: usize,
    wasm: Summary,
    native: Summary,
    /// Median over runs of wasm/native CPU per payload.
    cpu_ratio: f64,
    /// Median over runs of native/wasm payloads per second.
    speed_ratio: f64,
}

struct Summary {
    payloads_per_s: f64,
    cpu_us_per_payload: f64,
    peak_rss_mib: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Summary {
    fn of(runs: &[&Measurement]) -> Summary {
        let med = |f: &dyn Fn(&Measurement) -> f64| median(runs.iter().map(|m| f(m)).collect());
        Summary {
            payloads_per_s: med(&|m| m.payloads_per_s),
            cpu_us_per_payload: med(&|m| m.cpu_us_per_payload),
            peak_rss_mib: med(&|m| m.peak_rss_mib),
            p50_us: med(&|m| m.p50_us.map_or(f64::NAN, |v| v as f64)),
            p99_us: med(&|m| m.p99_us.map_or(f64::NAN, |v| v as f64)),
        }
    }
}

impl Row {
    fn of(args: &Args, pairs: &[(Measurement, Measurement)]) -> Row {
        let wasm: Vec<_> = pairs.iter().map(|(w, _)| w).collect();
        let native: Vec<_> = pairs.iter().map(|(_, n)| n).collect();
        Row {
            entries: args.entries,
            cpus: args.cpus,
            plugins: args.plugins,
            wasm: Summary::of(&wasm),
            native: Summary::of(&native),
            cpu_ratio: median(
                pairs
                    .iter()
                    .map(|(w, n)| w.cpu_us_per_payload / n.cpu_us_per_payload)
                    .collect(),
            ),
            speed_ratio: median(
                pairs
                    .iter()
                    .map(|(w, n)| n.payloads_per_s / w.payloads_per_s)
                    .collect(),
            ),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn fmt_opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn print_table(rows: &[Row]) {
    println!(
        "| entries | CPUs | plugins | wasm payloads/s | native payloads/s | wasm µs CPU/payload \
         | native µs CPU/payload | CPU ratio wasm/native | wasm peak RSS MiB \
         | native peak RSS MiB | wasm latency p50/p99 µs | native latency p50/p99 µs |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.2} | {:.1} | {:.1} \
             | {:.0} / {:.0} | {:.0} / {:.0} |",
            r.entries,
            r.cpus,
            r.plugins,
            r.wasm.payloads_per_s,
            r.native.payloads_per_s,
            r.wasm.cpu_us_per_payload,
            r.native.cpu_us_per_payload,
            r.cpu_ratio,
            r.wasm.peak_rss_mib,
            r.native.peak_rss_mib,
            r.wasm.p50_us,
            r.wasm.p99_us,
            r.native.p50_us,
            r.native.p99_us,
        );
    }
    if let [row] = rows {
        println!(
            "\nmedians of the runs: wasm {:.0} payloads/s, native {:.0} payloads/s; \
             CPU per payload wasm/native {:.2}; native/wasm speed {:.2}",
            row.wasm.payloads_per_s, row.native.payloads_per_s, row.cpu_ratio, row.speed_ratio
        );
    }
}

/// The growth tables: one configuration changed at a time from the
/// default (1,000 entries, 5 CPUs, 3 plugins).
fn sweep(args: &Args) -> anyhow::Result<()> {
    let mut configs = Vec::new();
    for entries in [10, 100, 1_000, 5_000, 20_000] {
        configs.push(("entries per response", entries, 5, 3));
    }
    for plugins in [10, 30] {
        configs.push(("plugins loaded", 1_000, 5, plugins));
    }
    for cpus in [64, 256] {
        configs.push(("CPU-array length", 1_000, cpus, 3));
    }
    let mut rows = Vec::new();
    for (what, entries, cpus, plugins) in configs {
        println!("\n## {what}: entries {entries}, CPUs {cpus}, plugins {plugins}");
        let args = Args {
            entries,
            cpus,
            plugins,
            ..args.clone()
        };
        rows.extend(compare(&args)?);
    }
    println!();
    print_table(&rows);
    Ok(())
}

/// Runs one measurement in a child process.
fn child(args: &Args, backend: Backend) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let output = Command::new(exe)
        .args(["--child", backend.name()])
        .args(["--entries", &args.entries.to_string()])
        .args(["--cpus", &args.cpus.to_string()])
        .args(["--plugins", &args.plugins.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .output()
        .context("cannot run a measurement")?;
    anyhow::ensure!(
        output.status.success(),
        "the {} measurement failed: {}",
        backend.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("unreadable measurement {line}"))
}

/// Prints what the figures were measured on.
fn print_machine() {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']))
        .unwrap_or("unknown");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores, {model}; load average {}",
        read("/proc/loadavg").trim()
    );
}

/// The plugins of a pipeline with `backend` handlers and `total` plugins
/// in all: the bundled three, then idle native ones with types of their
/// own that no payload has.
fn plugins(backend: Backend, total: usize) -> anyhow::Result<PluginSource> {
    let idle = native::idle(total.saturating_sub(3));
    Ok(match backend {
        Backend::Wasm if idle.is_empty() => PluginSource::Bundled,
        Backend::Wasm => {
            let runtime = Runtime::new(Limits::default())?;
            let mut loaded = Vec::new();
            for plugin in bundled() {
                let source = format!("bundled:{}", plugin.name);
                loaded.push(runtime.load(&source, plugin.bytes)?);
            }
            loaded.extend(idle);
            PluginSource::Loaded(loaded)
        }
        Backend::Native => {
            let mut loaded = native::bundled();
            loaded.extend(idle);
            PluginSource::Loaded(loaded)
        }
    })
}

/// A pipeline polling `source` with `plugins`, caching compiled plugins in
/// sluice's default cache directory.
async fn start(source: SocketAddr, plugins: PluginSource) -> anyhow::Result<Pipeline> {
    let cache = CompileCache::default_dir().map_or(CompileCache::Off, CompileCache::Dir);
    start_with_cache(source, plugins, cache).await
}

/// A pipeline polling `source` with `plugins`.
async fn start_with_cache(
    source: SocketAddr,
    plugins: PluginSource,
    cache: CompileCache,
) -> anyhow::Result<Pipeline> {
    let url = format!("http://{source}/metrics").parse()?;
    let mut config = PipelineConfig::new(IngestConfig {
        source: SourceConfig::new(url),
        retry: BackoffSettings {
            min: Duration::from_millis(1),
            max: Duration::from_millis(20),
            factor: 2.0,
        },
        min_interval: Duration::ZERO,
        in_flight: sluice::ingest::DEFAULT_IN_FLIGHT,
    });
    config.plugins = plugins;
    config.cache = cache;
    Pipeline::start(config).await
}

/// Every handler's latency histogram, merged.
fn latency(pipeline: &Pipeline) -> Histogram {
    let mut all = Histogram::default();
    for slot in pipeline.registry().slots().values() {
        all.merge(&slot.latency());
    }
    all
}

/// What is read at each end of a measurement window.
struct Mark {
    at: Instant,
    applied: u64,
    rejected: u64,
    cpu: Duration,
    source_cpu: Duration,
    latency: Histogram,
}

impl Mark {
    fn take(pipeline: &Pipeline, source: &Source) -> anyhow::Result<Mark> {
        let total = pipeline.ledger().snapshot().total();
        Ok(Mark {
            at: Instant::now(),
            applied: total.applied,
            rejected: total.rejected_total(),
            cpu: cpu_time("/proc/self/stat")?,
            source_cpu: source.cpu_time(),
            latency: latency(pipeline),
        })
    }
}

/// One measurement: a pipeline of `backend` at full load.
async fn measure(args: &Args, backend: Backend) -> anyhow::Result<Measurement> {
    let source = Source::start(body::body(args.entries, args.cpus), None)?;
    let pipeline = start(source.addr, plugins(backend, args.plugins)?).await?;
    let mut accounts = pipeline.ledger().subscribe();
    accounts.wait_for(|a| a.total().applied > 0).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let start = Mark::take(&pipeline, &source)?;
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let end = Mark::take(&pipeline, &source)?;
    let peak_rss_mib = status_kib("VmHWM")? as f64 / 1024.0;
    anyhow::ensure!(
        peak_reset,
        "cannot reset the peak RSS through /proc/self/clear_refs"
    );

    let seconds = (end.at - start.at).as_secs_f64();
    let applied = end.applied - start.applied;
    anyhow::ensure!(applied > 0, "nothing was applied in {seconds} s");
    let source_cpu = end.source_cpu.saturating_sub(start.source_cpu);
    let cpu = (end.cpu - start.cpu).saturating_sub(source_cpu);
    let latency = end.latency.since(&start.latency);
    let micros = |q| latency.quantile(q).map(|d| d.as_micros() as u64);
    let measurement = Measurement {
        backend,
        entries: args.entries,
        cpus: args.cpus,
        plugins: args.plugins,
        seconds,
        applied,
        rejected: end.rejected - start.rejected,
        payloads_per_s: applied as f64 / seconds,
        cpu_us_per_payload: cpu.as_secs_f64() * 1e6 / applied as f64,
        cores: cpu.as_secs_f64() / seconds,
        source_cpu_us_per_payload: source_cpu.as_secs_f64() * 1e6 / applied as f64,
        peak_rss_mib,
        p50_us: micros(0.5),
        p99_us: micros(0.99),
    };
    let _ = pipeline.shutdown().await;
    Ok(measurement)
}

/// Polls and decodes in a loop, as ingest does, with nothing downstream.
async fn ingest_only(args: &Args) -> anyhow::Result<()> {
    print_machine();
    let source = Source::start(body::body(args.entries, args.cpus), None)?;
    let url = format!("http://{}/metrics", source.addr).parse()?;
    let client = sluice::ingest::Source::new(&SourceConfig::new(url))?;
    let run = |seconds: f64| {
        let client = &client;
        async move {
            let (start, mut polls, mut entries) = (Instant::now(), 0u64, 0u64);
            while start.elapsed().as_secs_f64() < seconds {
                entries += client.poll().await?.len() as u64;
                polls += 1;
            }
            anyhow::Ok((start.elapsed(), polls, entries))
        }
    };
    run(args.warmup).await?;
    let (cpu0, src0) = (cpu_time("/proc/self/stat")?, source.cpu_time());
    let (took, polls, entries) = run(args.seconds).await?;
    let cpu = (cpu_time("/proc/self/stat")? - cpu0).saturating_sub(source.cpu_time() - src0);
    // Decoding alone, on the same body, for the share of fetching.
    let body = body::body(args.entries, args.cpus);
    let start = Instant::now();
    for _ in 0..polls.min(200) {
        std::hint::black_box(sluice::ingest::decode::decode(&body)?);
    }
    let fetch = took.saturating_sub(start.elapsed() * (polls as u32) / polls.min(200) as u32);
    println!(
        "ingest only, {} entries per body: {:.0} polls/s, {:.0} entries/s, \
         {:.3} µs CPU/entry ({:.2} cores); decoding alone {:.3} µs/entry; \
         fetching ~{:.0} µs per poll",
        args.entries,
        polls as f64 / took.as_secs_f64(),
        entries as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / entries as f64,
        cpu.as_secs_f64() / took.as_secs_f64(),
        start.elapsed().as_secs_f64() * 1e6 / (polls.min(200) * args.entries as u64) as f64,
        fetch.as_secs_f64() * 1e6 / polls as f64,
    );
    Ok(())
}

/// Sends `bodies` bodies of `entries` entries through each backend and
/// checks that every payload sent was applied, once.
async fn smoke(bodies: u64, entries: usize) -> anyhow::Result<()> {
    for backend in [Backend::Wasm, Backend::Native] {
        let source = Source::start(body::body(entries, 5), Some(bodies))?;
        // No cache: the smoke run leaves nothing behind.
        let pipeline =
            start_with_cache(source.addr, plugins(backend, 3)?, CompileCache::Off).await?;
        let sent = bodies * entries as u64;
        let mut accounts = pipeline.ledger().subscribe();
        let settled = accounts.wait_for(|a| {
            let total = a.total();
            total.received >= sent && total.in_flight() == 0
        });
        // A bound on waiting, not a timing: the test fails only on a hang.
        tokio::time::timeout(Duration::from_secs(120), settled)
            .await
            .context("the payloads sent were not all accounted for in time")??;
        let accounts = pipeline.ledger().snapshot();
        let total = accounts.total();
        let served = source.served.load(Ordering::SeqCst);
        let applied_by_handlers: u64 = latency(&pipeline).count();
        println!(
            "smoke {}: sent {sent}, served {served}, received {}, applied {}, rejected {}",
            backend.name(),
            total.received,
            total.applied,
            total.rejected_total()
        );
        anyhow::ensure!(served == sent, "the source served {served}, not {sent}");
        anyhow::ensure!(total.received == sent, "received {}", total.received);
        anyhow::ensure!(total.applied == sent, "applied {}", total.applied);
        anyhow::ensure!(total.rejected_total() == 0, "rejected {total:?}");
        let expected = body::counts(entries);
        for (kind, per_body) in ["load_avg", "cpu_usage", "last_kernel_upgrade"]
            .into_iter()
            .zip(expected)
        {
            let counts = accounts.of(kind);
            let want = per_body as u64 * bodies;
            anyhow::ensure!(
                counts.applied == want,
                "{kind}: applied {counts:?}, not {want}"
            );
        }
        anyhow::ensure!(
            applied_by_handlers == sent,
            "the latency histograms counted {applied_by_handlers} payloads, not {sent}"
        );
        let report = pipeline.shutdown().await;
        anyhow::ensure!(report.clean, "unclean shutdown: {:?}", report.still_running);
    }
    Ok(())
}

/// Trap recovery: after an instance traps, the time to make a fresh one
/// and have it serve its first batch.
fn trap_recovery(iterations: usize) -> anyhow::Result<()> {
    let runtime = Runtime::new(Limits::default())?;
    let path = concat!(env!("SLUICE_FIXTURES_DIR"), "/sluice-plugin-misbehave.wasm");
    let misbehave = runtime.load("misbehave", &std::fs::read(path)?)?;
    let json = |kind: &str| {
        Batch::Json(JsonBatch {
            kind: kind.to_owned(),
            values: vec!["1".to_owned()],
        })
    };
    let (panic, ok) = (json("panic"), json("ok"));
    let bundled = &bundled()[0];
    let load_avg = runtime.load("bundled:load_avg", bundled.bytes)?;
    let loads = Batch::LoadAvg((0..100).map(|i| i as f64 / 10.0).collect());
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..iterations {
        for (name, plugin, batch) in [
            ("misbehave", &misbehave, &ok),
            ("load_avg", &load_avg, &loads),
        ] {
            let mut dead = plugin.instantiate()?;
            // load_avg cannot trap on request: its "trap" is an instance
            // dropped as if it had.
            if name == "misbehave" {
                let err = dead.apply(&[], &panic).expect_err("a trap");
                anyhow::ensure!(err.is_fatal(), "not a trap: {err}");
            }
            drop(dead);
            let start = Instant::now();
            let mut fresh = plugin.instantiate()?;
            let applied: Applied = fresh.apply(&[], batch)?;
            let took = start.elapsed();
            std::hint::black_box(applied);
            times.entry(name).or_default().push(took);
        }
    }
    print_machine();
    for (name, mut times) in times {
        times.sort();
        let q =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "trap recovery {name} ({} times): p50 {:?}, p99 {:?}, max {:?}",
            times.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    Ok(())
}

/// Runs with the `last_kernel_upgrade` handler `args.slow` times slower
/// than the pipeline goes unhindered, and samples RSS every second.
fn soak(args: &Args, seconds: u64) -> anyhow::Result<()> {
    print_machine();
    let calibration = child(
        &Args {
            seconds: 3.0,
            ..args.clone()
        },
        Backend::Wasm,
    )?;
    // Each body holds a third of its entries for the slow handler.
    let rate = calibration.payloads_per_s / 3.0 / args.slow;
    let per_payload = Duration::from_secs_f64(1.0 / rate);
    println!(
        "calibration: {:.0} payloads/s unhindered; last_kernel_upgrade slowed to {rate:.0} \
         payloads/s ({per_payload:?} each)",
        calibration.payloads_per_s
    );
    SLOW_PER_PAYLOAD_NANOS.store(per_payload.as_nanos() as u64, Ordering::SeqCst);
    runtime()?.block_on(async {
        let source = Source::start(body::body(args.entries, args.cpus), None)?;
        let runtime = Runtime::new(Limits::default())?;
        let mut loaded = Vec::new();
        for plugin in &bundled()[..2] {
            let source = format!("bundled:{}", plugin.name);
            loaded.push(runtime.load(&source, plugin.bytes)?);
        }
        loaded.push(Plugin::native(
            native::metadata("last_kernel_upgrade"),
            slow_apply,
            native::last_kernel_upgrade_render,
        )?);
        let pipeline = start(source.addr, PluginSource::Loaded(loaded)).await?;
        let started = Instant::now();
        let mut samples = Vec::new();
        for second in 1..=seconds {
            tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
            let rss = status_kib("VmRSS")? as f64 / 1024.0;
            let applied = pipeline.ledger().snapshot().total().applied;
            samples.push((second, rss, applied));
            if second % 10 == 0 || second == seconds {
                println!("t={second:>4} s  RSS {rss:6.1} MiB  applied {applied}");
            }
        }
        let _ = pipeline.shutdown().await;
        let rss: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let tail = &rss[rss.len() / 10..];
        let max = tail.iter().copied().fold(f64::MIN, f64::max);
        let min = tail.iter().copied().fold(f64::MAX, f64::min);
        let applied = samples.last().map_or(0, |s| s.2);
        println!(
            "soak {seconds} s: {:.0} payloads/s; RSS after the first tenth between {min:.1} \
             and {max:.1} MiB (first {:.1}, last {:.1}); slope {:.3} MiB/min; peak {:.1} MiB",
            applied as f64 / seconds as f64,
            rss[0],
            rss[rss.len() - 1],
            slope(&samples) * 60.0,
            status_kib("VmHWM")? as f64 / 1024.0,
        );
        Ok(())
    })
}

/// Least-squares slope of RSS against time, in MiB per second.
fn slope(samples: &[(u64, f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let cov: f64 = samples
        .iter()
        .map(|s| (s.0 as f64 - mean_t) * (s.1 - mean_r))
        .sum();
    let var: f64 = samples.iter().map(|s| (s.0 as f64 - mean_t).powi(2)).sum();
    if var > 0.0 { cov / var } else { 0.0 }
}

/// How long the slow handler of `--soak` takes per payload.
static SLOW_PER_PAYLOAD_NANOS: AtomicU64 = AtomicU64::new(0);

/// `last_kernel_upgrade`, natively, slowed down by sleeping.
fn slow_apply(state: &[u8], batch: &Batch) -> Result<Applied, String> {
    let per_payload = SLOW_PER_PAYLOAD_NANOS.load(Ordering::Relaxed);
    let nanos = per_payload.saturating_mul(sluice::batch::len(batch) as u64);
    std::thread::sleep(Duration::from_nanos(nanos));
    native::last_kernel_upgrade_apply(state, batch)
}

/// A source on a loopback port that answers every `GET` with the same
/// body, on plain blocking threads of its own whose CPU time it can tell.
struct Source {
    addr: SocketAddr,
    /// Thread ids of the source's threads.
    threads: Arc<Mutex<Vec<u32>>>,
    /// Entries served in full bodies.
    served: Arc<AtomicU64>,
}

impl Source {
    /// Serves `body` forever, or `limit` times and then empty arrays.
    fn start(body: Vec<u8>, limit: Option<u64>) -> anyhow::Result<Source> {
        let entries = sluice::ingest::decode::decode(&body)?.len() as u64;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let full: Arc<[u8]> = response(&body).into();
        let empty: Arc<[u8]> = response(b"[]").into();
        let threads = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicU64::new(0));
        let left = Arc::new(AtomicU64::new(limit.unwrap_or(u64::MAX)));
        let (tids, count) = (Arc::clone(&threads), Arc::clone(&served));
        std::thread::Builder::new()
            .name("load-source".to_owned())
            .spawn(move || {
                register(&tids);
                for stream in listener.incoming().flatten() {
                    let (full, empty) = (Arc::clone(&full), Arc::clone(&empty));
                    let (tids, count, left) =
                        (Arc::clone(&tids), Arc::clone(&count), Arc::clone(&left));
                    let _ = std::thread::Builder::new()
                        .name("load-source-conn".to_owned())
                        .spawn(move || {
                            register(&tids);
                            let take = || {
                                left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                            };
                            let _ = serve(stream, || {
                                if take() {
                                    count.fetch_add(entries, Ordering::SeqCst);
                                    Arc::clone(&full)
                                } else {
                                    Arc::clone(&empty)
                                }
                            });
                        });
                }
            })?;
        Ok(Source {
            addr,
            threads,
            served,
        })
    }

    /// CPU time of the source's live threads.
    fn cpu_time(&self) -> Duration {
        let tids = self.threads.lock().map(|t| t.clone()).unwrap_or_default();
        tids.iter()
            .filter_map(|tid| cpu_time(&format!("/proc/self/task/{tid}/stat")).ok())
            .sum()
    }
}

/// Records the calling thread's id.
fn register(tids: &Mutex<Vec<u32>>) {
    // The first field of a thread's stat is its id.
    let tid = std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok());
    if let (Some(tid), Ok(mut tids)) = (tid, tids.lock()) {
        tids.push(tid);
    }
}

/// An HTTP/1.1 response carrying `body`.
fn response(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Answers each request of a connection with `next()`.
fn serve(stream: TcpStream, mut next: impl FnMut() -> Arc<[u8]>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // A request head ends with an empty line; a GET has no body.
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        writer.write_all(&next())?;
    }
}

/// User plus system time of the process or thread whose `stat` file is at
/// `path`, in clock ticks of 10 ms (Linux's `USER_HZ` on every
/// architecture sluice runs on).
fn cpu_time(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no command name")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()?)
    };
    let ticks = tick(14 - 3)? + tick(15 - 3)?;
    Ok(Duration::from_millis(ticks * 10))
}

/// A `kB` line of `/proc/self/status` (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load benchmark's smoke mode: a few thousand payloads through the
    /// pipeline with each backend, every one of them applied. Checks the
    /// benchmark's accounting, not its speed.
    #[test]
    fn smoke_mode_applies_every_payload_sent() {
        runtime()
            .expect("tokio")
            .block_on(smoke(3, 1_000))
            .expect("the smoke run balances");
    }

    #[test]
    fn stat_and_status_are_readable() {
        assert!(cpu_time("/proc/self/stat").is_ok());
        assert!(status_kib("VmRSS").expect("VmRSS") > 0);
        let threads = Mutex::new(Vec::new());
        register(&threads);
        let tid = threads.lock().expect("not poisoned")[0];
        assert!(cpu_time(&format!("/proc/self/task/{tid}/stat")).is_ok());
    }

    #[test]
    fn medians_and_slopes() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let samples: Vec<_> = (0..10).map(|t| (t, 5.0 + t as f64 * 0.5, 0)).collect();
        assert!((slope(&samples) - 0.5).abs() < 1e-9);
    }
}
