//! The bundled handlers compiled natively into the host, for benchmarks
//! that compare the sandbox with native code.
//!
//! Each adapter does what the plugin's `apply` export does (decode the
//! state, apply each payload in order, collect refusals, encode the state),
//! with the plugin crate's own `State` logic, but walks the host's
//! `wit::Batch` directly. The host's and the guest SDK's batch types come
//! from the same WIT but are distinct Rust types; converting one into the
//! other would copy the batch, so the adapters avoid it: the native run
//! pays no copy, and the wasm run pays the component model's lowering.
//!
//! Shared by `benches/micro.rs` and `examples/load.rs` with `#[path]`.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use sluice::plugin::Plugin;
use sluice::plugin::wit::{Applied, Batch, Metadata, Rejection};
use sluice_plugin_cpu_usage as cpu_usage;
use sluice_plugin_last_kernel_upgrade as last_kernel_upgrade;
use sluice_plugin_load_avg as load_avg;

/// A refusal of payload `index`, as the SDK makes it.
fn rejection(index: usize, reason: impl ToString) -> Rejection {
    Rejection {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        reason: reason.to_string(),
    }
}

/// Every payload of a batch of another type, refused.
fn unsupported(batch: &Batch) -> Vec<Rejection> {
    (0..sluice::batch::len(batch))
        .map(|index| rejection(index, "unsupported type"))
        .collect()
}

/// `load_avg`'s `apply`, natively.
pub fn load_avg_apply(state: &[u8], batch: &Batch) -> Result<Applied, String> {
    let mut aggregate = load_avg::State::decode(state).map_err(|err| err.to_string())?;
    let rejected = match batch {
        Batch::LoadAvg(loads) => loads
            .iter()
            .enumerate()
            .filter_map(|(i, &load)| aggregate.apply(load).err().map(|e| rejection(i, e)))
            .collect(),
        other => unsupported(other),
    };
    Ok(Applied {
        state: aggregate.encode(),
        rejected,
    })
}

/// `load_avg`'s `render`, natively.
pub fn load_avg_render(state: &[u8]) -> Result<String, String> {
    let aggregate = load_avg::State::decode(state).map_err(|err| err.to_string())?;
    Ok(aggregate.render())
}

/// `cpu_usage`'s `apply`, natively.
pub fn cpu_usage_apply(state: &[u8], batch: &Batch) -> Result<Applied, String> {
    let mut aggregate = cpu_usage::State::decode(state).map_err(|err| err.to_string())?;
    let rejected = match batch {
        Batch::CpuUsage(cpu) => {
            let mut rejected = Vec::new();
            let mut rest = cpu.values.as_slice();
            for (index, &len) in cpu.lengths.iter().enumerate() {
                let Some((usage, after)) = rest.split_at_checked(len as usize) else {
                    rejected = (0..cpu.lengths.len())
                        .map(|i| rejection(i, cpu_usage::MALFORMED_BATCH))
                        .collect();
                    break;
                };
                rest = after;
                if let Err(err) = aggregate.apply(usage) {
                    rejected.push(rejection(index, err));
                }
            }
            rejected
        }
        other => unsupported(other),
    };
    Ok(Applied {
        state: aggregate.encode(),
        rejected,
    })
}

/// `cpu_usage`'s `render`, natively.
pub fn cpu_usage_render(state: &[u8]) -> Result<String, String> {
    let aggregate = cpu_usage::State::decode(state).map_err(|err| err.to_string())?;
    Ok(aggregate.render())
}

/// `last_kernel_upgrade`'s `apply`, natively.
pub fn last_kernel_upgrade_apply(state: &[u8], batch: &Batch) -> Result<Applied, String> {
    let mut aggregate = last_kernel_upgrade::State::decode(state).map_err(|err| err.to_string())?;
    let rejected = match batch {
        Batch::LastKernelUpgrade(instants) => instants
            .iter()
            .enumerate()
            .filter_map(|(i, at)| {
                let applied = aggregate.apply(at.seconds, at.nanoseconds);
                applied.err().map(|e| rejection(i, e))
            })
            .collect(),
        other => unsupported(other),
    };
    Ok(Applied {
        state: aggregate.encode(),
        rejected,
    })
}

/// `last_kernel_upgrade`'s `render`, natively.
pub fn last_kernel_upgrade_render(state: &[u8]) -> Result<String, String> {
    let aggregate = last_kernel_upgrade::State::decode(state).map_err(|err| err.to_string())?;
    Ok(aggregate.render())
}

/// An idle handler: accepts every payload of its type and keeps no state.
pub fn idle_apply(_state: &[u8], _batch: &Batch) -> Result<Applied, String> {
    Ok(Applied {
        state: Vec::new(),
        rejected: Vec::new(),
    })
}

/// The idle handler's `render`.
pub fn idle_render(_state: &[u8]) -> Result<String, String> {
    Ok("{}".to_owned())
}

/// The metadata of a handler named like its one type.
pub fn metadata(name: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        version: "0.1.0".to_owned(),
        types: vec![name.to_owned()],
    }
}

/// The three bundled handlers, compiled natively, in the order of
/// `sluice::plugin::bundled()`.
pub fn bundled() -> Vec<Plugin> {
    [
        (
            "load_avg",
            load_avg_apply as sluice::plugin::NativeApply,
            load_avg_render as sluice::plugin::NativeRender,
        ),
        ("cpu_usage", cpu_usage_apply, cpu_usage_render),
        (
            "last_kernel_upgrade",
            last_kernel_upgrade_apply,
            last_kernel_upgrade_render,
        ),
    ]
    .into_iter()
    .map(|(name, apply, render)| {
        Plugin::native(metadata(name), apply, render).expect("valid metadata")
    })
    .collect()
}

/// `n` idle native handlers, of the types `idle_0` to `idle_{n-1}`.
pub fn idle(n: usize) -> Vec<Plugin> {
    (0..n)
        .map(|i| {
            Plugin::native(metadata(&format!("idle_{i}")), idle_apply, idle_render)
                .expect("valid metadata")
        })
        .collect()
}
