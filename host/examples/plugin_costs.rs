//! What a handler plugin costs, by the language it was written in: the
//! `disk_usage` example plugins of `plugins/examples/`, side by side with
//! the Rust example's logic compiled natively into the host.
//!
//! ```text
//! just bench-langs          # builds the examples, then runs this
//! cargo run --release -p sluice --example plugin_costs -- \
//!     rust=target/wasm/wasm32-wasip2/release/sluice_plugin_disk_usage.wasm \
//!     python=target/examples/python/disk_usage.wasm ...
//! ```
//!
//! For each component it measures:
//!
//! - its size;
//! - compile time: `Runtime::load` with no cache (compile, type-check,
//!   first instance, `metadata`), the median of `--runs`;
//! - cached load time: the same from a warm compile cache, in a new
//!   runtime each time, as a restart of sluice does;
//! - instantiate time: a fresh instance from the loaded plugin, as trap
//!   recovery makes one, the median of 200;
//! - CPU per payload of `apply` on batches of 1 and of 100 payloads, the
//!   state carried from call to call, from the thread's own CPU time
//!   (`/proc/thread-self/schedstat`, in nanoseconds).
//!
//! Each figure is measured for each plugin in turn on this one thread, so
//! the ratios to native of one run are measured on the same machine state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sluice::plugin::wit::{Applied, Batch, JsonBatch, Metadata};
use sluice::plugin::{CompileCache, Instance, Limits, Plugin, Runtime};
use sluice_plugin_disk_usage::State;
use sluice_plugin_sdk::Aggregate as _;

/// How long each CPU-per-payload figure is measured for.
const MEASURE: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let mut components = Vec::new();
    let mut runs = 3;
    for arg in std::env::args().skip(1) {
        if let Some(n) = arg.strip_prefix("--runs=") {
            runs = n.parse().context("--runs=N")?;
            continue;
        }
        let (label, path) = arg
            .split_once('=')
            .with_context(|| format!("{arg:?}: expected LABEL=PATH or --runs=N"))?;
        components.push((label.to_owned(), PathBuf::from(path)));
    }
    anyhow::ensure!(
        !components.is_empty(),
        "usage: plugin_costs LABEL=COMPONENT.wasm ..."
    );

    println!(
        "| plugin | size | compile | cached load | instantiate | CPU/payload, batch 1 | CPU/payload, batch 100 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let native = native_plugin()?;
    let (native_1, native_100) = (cpu_per_payload(&native, 1)?, cpu_per_payload(&native, 100)?);
    let instantiate = median_time(200, || native.instantiate().map(drop))?;
    println!(
        "| native Rust (in the host) | - | - | - | {} | {} | {} |",
        micros(instantiate),
        nanos(native_1),
        nanos(native_100)
    );
    for (label, path) in components {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let source = path.display().to_string();
        let compile = median_time(runs, || {
            let runtime = Runtime::new(Limits::default())?;
            runtime.load(&source, &bytes)?;
            anyhow::Ok(())
        })?;
        let cache = tempfile::tempdir()?;
        let cached =
            || Runtime::with_cache(Limits::default(), CompileCache::Dir(cache.path().into()));
        cached()?.load(&source, &bytes)?;
        let cached_load = median_time(runs.max(5), || {
            cached()?.load(&source, &bytes)?;
            anyhow::Ok(())
        })?;
        let plugin = Runtime::new(Limits::default())?.load(&source, &bytes)?;
        let instantiate = median_time(200, || plugin.instantiate().map(drop))?;
        let (one, hundred) = (cpu_per_payload(&plugin, 1)?, cpu_per_payload(&plugin, 100)?);
        println!(
            "| {label} | {} KiB | {} | {} | {} | {} ({:.1}× native) | {} ({:.1}× native) |",
            bytes.len().div_ceil(1024),
            millis(compile),
            millis(cached_load),
            micros(instantiate),
            nanos(one),
            one / native_1,
            nanos(hundred),
            hundred / native_100,
        );
    }
    Ok(())
}

/// The median time of `runs` calls of `f`.
fn median_time<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> anyhow::Result<Duration>
where
    anyhow::Error: From<E>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[(times.len() - 1) / 2])
}

/// A batch of `n` valid `disk_usage` payloads over a fixed set of mounts,
/// so that the state stays the same size from call to call.
fn batch(n: usize, offset: usize) -> Batch {
    let values = (0..n)
        .map(|i| {
            let f = |k: usize| ((i + offset) * 7 + k * 3) % 17;
            format!(
                r#"{{"/":{},"/home":{},"/var":{}}}"#,
                f(0) as f64 / 16.0,
                f(1) as f64 / 16.0,
                f(2) as f64 / 16.0
            )
        })
        .collect();
    Batch::Json(JsonBatch {
        kind: "disk_usage".to_owned(),
        values,
    })
}

/// Nanoseconds of CPU this thread has used.
fn thread_cpu() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("cannot read /proc/thread-self/schedstat")?;
    let first = text
        .split_whitespace()
        .next()
        .context("an empty schedstat")?;
    first.parse().context("a schedstat that is not a number")
}

/// CPU nanoseconds per payload of `apply` on batches of `size`, the state
/// carried from call to call, over about [`MEASURE`].
fn cpu_per_payload(plugin: &Plugin, size: usize) -> anyhow::Result<f64> {
    let mut instance = plugin.instantiate()?;
    let batches: Vec<Batch> = (0..16).map(|k| batch(size, k * size)).collect();
    let mut state = Vec::new();
    let call = |instance: &mut Instance, state: &mut Vec<u8>, k: usize| -> anyhow::Result<()> {
        let Applied {
            state: next,
            rejected,
        } = instance.apply(state, &batches[k % batches.len()])?;
        anyhow::ensure!(rejected.is_empty(), "valid payloads refused: {rejected:?}");
        *state = next;
        Ok(())
    };
    // Warm up: the first calls fill the state and the guest's caches.
    for k in 0..50 {
        call(&mut instance, &mut state, k)?;
    }
    let (started, cpu0) = (Instant::now(), thread_cpu()?);
    let mut payloads = 0_u64;
    let mut k = 0;
    while started.elapsed() < MEASURE {
        call(&mut instance, &mut state, k)?;
        payloads += size as u64;
        k += 1;
    }
    Ok((thread_cpu()? - cpu0) as f64 / payloads as f64)
}

/// The Rust example's logic compiled into the host, behind the same
/// `Instance` interface as a component.
fn native_plugin() -> anyhow::Result<Plugin> {
    fn apply(state: &[u8], batch: &Batch) -> Result<Applied, String> {
        let mut aggregate = State::decode(state).map_err(|err| err.to_string())?;
        let rejected = match batch {
            Batch::Json(batch) => batch
                .values
                .iter()
                .enumerate()
                .filter_map(|(index, value)| {
                    let reason = aggregate.apply(value).err()?;
                    Some(sluice::plugin::wit::Rejection {
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                        reason,
                    })
                })
                .collect(),
            _ => return Err("not a disk_usage batch".to_owned()),
        };
        Ok(Applied {
            state: aggregate.encode(),
            rejected,
        })
    }
    fn render(state: &[u8]) -> Result<String, String> {
        Ok(State::decode(state)
            .map_err(|err| err.to_string())?
            .render())
    }
    let metadata = Metadata {
        name: "disk_usage".to_owned(),
        version: "0.1.0".to_owned(),
        types: vec!["disk_usage".to_owned()],
    };
    Ok(Plugin::native(metadata, apply, render)?)
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

fn nanos(nanos: f64) -> String {
    if nanos >= 10_000.0 {
        format!("{:.1} µs", nanos / 1e3)
    } else {
        format!("{nanos:.0} ns")
    }
}
