//! Response bodies for benchmarks: JSON arrays of valid entries of the
//! three bundled types, in turn (`load_avg`, `cpu_usage`,
//! `last_kernel_upgrade`), with values that vary from entry to entry.
//!
//! Shared by `benches/micro.rs` and `examples/load.rs` with `#[path]`.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::fmt::Write as _;

/// A body of `entries` entries whose `cpu_usage` values list `cpus` CPUs.
pub fn body(entries: usize, cpus: usize) -> Vec<u8> {
    let mut out = String::with_capacity(entries * (60 + cpus * 6));
    out.push('[');
    for i in 0..entries {
        if i > 0 {
            out.push(',');
        }
        entry(&mut out, i, cpus);
    }
    out.push(']');
    out.into_bytes()
}

/// Writes entry `i`.
fn entry(out: &mut String, i: usize, cpus: usize) {
    // Writing to a String cannot fail.
    let _ = match i % 3 {
        0 => write!(
            out,
            r#"{{"type":"load_avg","payload":{{"value":{}}}}}"#,
            (i % 400) as f64 / 100.0
        ),
        1 => {
            out.push_str(r#"{"type":"cpu_usage","payload":{"value":["#);
            for cpu in 0..cpus {
                if cpu > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", ((i + cpu * 7) % 100) as f64 / 100.0);
            }
            out.push_str("]}}");
            Ok(())
        }
        _ => write!(
            out,
            r#"{{"type":"last_kernel_upgrade","payload":{{"value":"2026-{:02}-{:02}T{:02}:06:10.{:06}Z"}}}}"#,
            1 + i % 12,
            1 + i % 28,
            i % 24,
            i % 1_000_000
        ),
    };
}

/// How many entries of each bundled type a body of `entries` holds, in
/// the order `load_avg`, `cpu_usage`, `last_kernel_upgrade`.
pub fn counts(entries: usize) -> [usize; 3] {
    [entries.div_ceil(3), (entries + 1) / 3, entries / 3]
}
