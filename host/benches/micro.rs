//! Micro-benchmarks of sluice's hot path, one stage at a time:
//!
//! - `decode/N`: decoding a response body of N mixed entries
//!   (`sluice::ingest::decode::decode`);
//! - `batch/N`: sorting the N decoded payloads of a body into one batch per
//!   type, as dispatch does (`sluice::batch::BatchBuilder`; dispatch's own
//!   split also looks up routes and stashes, which is not measured here);
//! - `apply/PLUGIN/BACKEND/N`: one `Instance::apply` of a batch of N
//!   payloads on each bundled plugin, in wasm and compiled natively into
//!   the host, with the state carried from call to call;
//! - `trap_recovery/PLUGIN`: after a trap, a fresh instance made and
//!   serving its first batch (the trap itself is not timed).
//!
//! Run with `cargo bench -p sluice --bench micro` (`-- apply` for a part);
//! `BENCHMARKS.md` holds the figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use sluice::batch::BatchBuilder;
use sluice::ingest::decode::{Decoded, Kind, decode};
use sluice::plugin::wit::{Batch, CpuUsageBatch, Instant as WitInstant, JsonBatch};
use sluice::plugin::{Limits, Plugin, Runtime, bundled};

#[path = "support/body.rs"]
mod body;
#[path = "support/native.rs"]
mod native;

/// Body sizes, in entries.
const BODIES: [usize; 3] = [10, 1_000, 20_000];
/// Batch sizes, in payloads.
const BATCHES: [usize; 4] = [1, 10, 100, 1_000];
/// CPUs per `cpu_usage` payload.
const CPUS: usize = 5;

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for entries in BODIES {
        let body = body::body(entries, CPUS);
        group.throughput(Throughput::Elements(entries as u64));
        group.bench_function(entries.to_string(), |b| {
            b.iter(|| decode(black_box(&body)).expect("a valid body"));
        });
    }
    group.finish();
}

/// One batch per type, in order of first appearance, as dispatch builds
/// them.
fn split(decoded: Decoded) -> Vec<Batch> {
    let mut groups: Vec<(Kind, BatchBuilder)> = Vec::new();
    for payload in decoded.payloads {
        let index = match groups.iter().position(|(kind, _)| *kind == payload.kind) {
            Some(index) => index,
            None => {
                groups.push((payload.kind.clone(), BatchBuilder::new(&payload.kind)));
                groups.len() - 1
            }
        };
        groups[index]
            .1
            .push(payload.value)
            .expect("a decoded value matches its kind");
    }
    groups.into_iter().map(|(_, b)| b.finish()).collect()
}

fn batching(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    for entries in BODIES {
        let decoded = decode(&body::body(entries, CPUS)).expect("a valid body");
        group.throughput(Throughput::Elements(entries as u64));
        group.bench_function(entries.to_string(), |b| {
            b.iter_batched(|| decoded.clone(), split, BatchSize::LargeInput);
        });
    }
    group.finish();
}

/// A batch of `n` valid payloads for the plugin `name`.
fn batch_for(name: &str, n: usize) -> Batch {
    match name {
        "load_avg" => Batch::LoadAvg((0..n).map(|i| (i % 400) as f64 / 100.0).collect()),
        "cpu_usage" => Batch::CpuUsage(CpuUsageBatch {
            lengths: vec![CPUS as u32; n],
            values: (0..n * CPUS).map(|i| (i % 100) as f64 / 100.0).collect(),
        }),
        "last_kernel_upgrade" => Batch::LastKernelUpgrade(
            (0..n)
                .map(|i| WitInstant {
                    seconds: 1_700_000_000 + i as i64,
                    nanoseconds: (i * 7_919) as u32 % 1_000_000_000,
                })
                .collect(),
        ),
        other => panic!("no batch for {other}"),
    }
}

fn runtime() -> Runtime {
    Runtime::new(Limits::default()).expect("a wasm runtime")
}

fn applying(c: &mut Criterion) {
    let runtime = runtime();
    let natives = native::bundled();
    for (wasm, native) in bundled().iter().zip(&natives) {
        let source = format!("bundled:{}", wasm.name);
        let wasm_plugin = runtime.load(&source, wasm.bytes).expect("a bundled plugin");
        let mut group = c.benchmark_group(format!("apply/{}", wasm.name));
        for n in BATCHES {
            let batch = batch_for(wasm.name, n);
            group.throughput(Throughput::Elements(n as u64));
            for (backend, plugin) in [("wasm", &wasm_plugin), ("native", native)] {
                let mut instance = plugin.instantiate().expect("an instance");
                let mut state = Vec::new();
                group.bench_function(format!("{backend}/{n}"), |b| {
                    b.iter(|| {
                        let applied = instance.apply(&state, &batch).expect("applied");
                        state = applied.state;
                    });
                });
            }
        }
        group.finish();
    }
}

/// A JSON batch that asks the misbehave fixture for `command`.
fn misbehave_batch(command: &str) -> Batch {
    Batch::Json(JsonBatch {
        kind: command.to_owned(),
        values: vec!["1".to_owned()],
    })
}

/// Time to make a fresh instance of `plugin` and apply `batch` on it, after
/// an instance that trapped on `trap` (not timed).
fn recover(plugin: &Plugin, trap: &Batch, batch: &Batch, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut dead = plugin.instantiate().expect("an instance");
        let err = dead.apply(&[], trap).expect_err("a trap");
        assert!(err.is_fatal(), "{err}");
        drop(dead);
        let start = Instant::now();
        let mut fresh = plugin.instantiate().expect("an instance");
        black_box(fresh.apply(&[], batch).expect("applied"));
        total += start.elapsed();
    }
    total
}

fn trap_recovery(c: &mut Criterion) {
    let runtime = runtime();
    let path = concat!(env!("SLUICE_FIXTURES_DIR"), "/sluice-plugin-misbehave.wasm");
    let bytes = std::fs::read(path).expect("the misbehave fixture is built");
    let misbehave = runtime.load("misbehave", &bytes).expect("misbehave loads");
    let mut group = c.benchmark_group("trap_recovery");
    let (panic, ok) = (misbehave_batch("panic"), misbehave_batch("ok"));
    group.bench_function("misbehave", |b| {
        b.iter_custom(|iters| recover(&misbehave, &panic, &ok, iters));
    });
    // A bundled plugin cannot be made to trap; its fresh instance and first
    // batch (100 payloads) is what recovery costs in production.
    let load_avg = &bundled()[0];
    let load_avg = runtime
        .load("bundled:load_avg", load_avg.bytes)
        .expect("a bundled plugin");
    let batch = batch_for("load_avg", 100);
    group.bench_function("load_avg", |b| {
        b.iter(|| {
            let mut fresh = load_avg.instantiate().expect("an instance");
            black_box(fresh.apply(&[], &batch).expect("applied"))
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn main() {
    let mut c = config().configure_from_args();
    decoding(&mut c);
    batching(&mut c);
    applying(&mut c);
    trap_recovery(&mut c);
    c.final_summary();
}
