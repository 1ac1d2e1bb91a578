//! The example plugins of `plugins/examples/`: one `disk_usage` handler in
//! each supported language, and the stream and aggregate they are tested
//! with.
//!
//! The Rust example is built by this crate's build script, like the
//! fixtures. The others need their own toolchains (componentize-py, jco
//! and componentize-js, clang and wit-bindgen): `plugins/examples/build.sh
//! DIR` builds them into `DIR/<lang>/disk_usage.wasm`, installing the
//! pinned tools it lacks, and `.ci/run` runs it before the tests. The tests
//! look for them in `$SLUICE_EXAMPLES_DIR`, by default the workspace's
//! `target/examples`.
//!
//! Every example keeps the same aggregate (the largest used fraction per
//! mount point, and the count of payloads applied) in the same state
//! encoding, so [`expected`] holds for each of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::envelope;

/// The payload type of the examples.
pub const TYPE: &str = "disk_usage";

/// A language with an example plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// `plugins/examples/rust/disk_usage`, on the guest SDK.
    Rust,
    /// `plugins/examples/python/disk_usage`, built with componentize-py.
    Python,
    /// `plugins/examples/js/disk_usage`, built with jco and componentize-js.
    Js,
    /// `plugins/examples/c/disk_usage`, built with clang, wasi-libc and
    /// `wit-bindgen c`.
    C,
}

impl Lang {
    /// Every language, in the order of the guide.
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

    /// The language's directory under `plugins/examples/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    /// The built component.
    pub fn component(self) -> PathBuf {
        match self {
            Lang::Rust => crate::fixtures::path(crate::fixtures::DISK_USAGE_RUST),
            _ => built_dir().join(self.dir_name()).join("disk_usage.wasm"),
        }
    }

    /// The bytes of the built component.
    ///
    /// # Panics
    ///
    /// When it was not built, saying how to build it.
    pub fn bytes(self) -> Vec<u8> {
        let path = self.component();
        std::fs::read(&path).unwrap_or_else(|err| {
            panic!(
                "cannot read the {self:?} example at {}: {err}; build the examples with \
                 `plugins/examples/build.sh target/examples` (.ci/run does) or point \
                 SLUICE_EXAMPLES_DIR at where they were built",
                path.display()
            )
        })
    }
}

/// Where `plugins/examples/build.sh` put the examples.
fn built_dir() -> PathBuf {
    match std::env::var_os("SLUICE_EXAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("examples"),
    }
}

/// `n` `disk_usage` envelopes: mount points that come and go, fractions
/// that rise and fall (0 and 1 among them), and every tenth one a value
/// that each example must refuse, in turn: a fraction above 1, a string
/// for a number, an array, a negative fraction, one good mount beside a
/// bad one.
pub fn entries(n: usize) -> Vec<serde_json::Value> {
    let mounts = ["/", "/home", "/var", "/boot", "/mnt/data"];
    (0..n)
        .map(|i| {
            if i % 10 == 9 {
                let bad = match (i / 10) % 5 {
                    0 => serde_json::json!({ "/": 1.5 }),
                    1 => serde_json::json!({ "/": "full" }),
                    2 => serde_json::json!([0.5]),
                    3 => serde_json::json!({ "/var": -0.25 }),
                    _ => serde_json::json!({ "/tmp": 0.5, "/": null }),
                };
                return envelope(TYPE, bad);
            }
            let mut value = serde_json::Map::new();
            for (m, mount) in mounts.iter().enumerate() {
                if (i + m) % (m + 2) == 0 || m == 0 {
                    let fraction = ((i * 7 + m * 3) % 17) as f64 / 16.0;
                    value.insert((*mount).to_owned(), serde_json::json!(fraction));
                }
            }
            envelope(TYPE, serde_json::Value::Object(value))
        })
        .collect()
}

/// Whether `value` is a payload the examples apply: an object of numbers
/// within 0..=1.
pub fn valid(value: &serde_json::Value) -> bool {
    value.as_object().is_some_and(|mounts| {
        mounts
            .values()
            .all(|f| f.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)))
    })
}

/// The aggregate the examples must report for the `disk_usage` entries of
/// `entries`, as `/plugins` shows it: `{"max": {mount: fraction}, "count":
/// n}`. Entries of other types are ignored.
pub fn expected(entries: &[serde_json::Value]) -> serde_json::Value {
    let mut max: BTreeMap<String, f64> = BTreeMap::new();
    let mut count = 0_u64;
    for entry in entries.iter().filter(|e| e["type"] == TYPE) {
        let value = &entry["payload"]["value"];
        if !valid(value) {
            continue;
        }
        for (mount, fraction) in value.as_object().into_iter().flatten() {
            let fraction = fraction.as_f64().unwrap_or_default();
            let slot = max.entry(mount.clone()).or_insert(fraction);
            *slot = slot.max(fraction);
        }
        count += 1;
    }
    serde_json::json!({ "max": max, "count": count })
}

/// How many of `entries` are `disk_usage` payloads the examples refuse.
pub fn invalid_count(entries: &[serde_json::Value]) -> u64 {
    entries
        .iter()
        .filter(|e| e["type"] == TYPE && !valid(&e["payload"]["value"]))
        .count() as u64
}

/// Whether two renderings of the aggregate agree: the same mounts, the
/// same count, and fractions equal as numbers (`1` and `1.0` alike).
pub fn same_aggregate(reported: &serde_json::Value, expected: &serde_json::Value) -> bool {
    let numbers = |state: &serde_json::Value| -> Option<BTreeMap<String, f64>> {
        state["max"]
            .as_object()?
            .iter()
            .map(|(mount, f)| Some((mount.clone(), f.as_f64()?)))
            .collect()
    };
    reported["count"].as_u64() == expected["count"].as_u64()
        && numbers(reported).is_some()
        && numbers(reported) == numbers(expected)
}
