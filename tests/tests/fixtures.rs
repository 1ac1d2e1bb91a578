//! The guest fixtures of `tests/fixtures/`, loaded by the plugin runtime on
//! their own: they must behave as the pipeline's sandbox tests expect
//! before those tests can mean anything.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::plugin::wit::{Batch, JsonBatch};
use sluice::plugin::{CallError, Limits, LoadError, Plugin, Runtime};
use sluice_tests::fixtures::{self, CHAOS, CHAOS_BROKEN, CHAOS_V2, PluginDir, WRONG_WORLD};

/// Limits short enough that the fixtures' misbehaviour ends soon.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(Limits {
            call_deadline: Duration::from_millis(200),
            memory_bytes: 32 << 20,
            ..Limits::default()
        })
        .expect("strict limits work")
    })
}

fn load(package: &str) -> Result<Plugin, LoadError> {
    runtime().load(&format!("fixture:{package}"), &fixtures::bytes(package))
}

/// The fixture `package`, loaded once for all tests.
fn plugin(package: &'static str) -> &'static Plugin {
    static PLUGINS: [OnceLock<Plugin>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = [CHAOS, CHAOS_V2, CHAOS_BROKEN]
        .iter()
        .position(|known| *known == package)
        .expect("a chaos fixture");
    PLUGINS[slot].get_or_init(|| load(package).expect("the fixture loads"))
}

fn chaos_batch(values: &[&str]) -> Batch {
    Batch::Json(JsonBatch {
        kind: "chaos".to_owned(),
        values: values.iter().map(|value| (*value).to_owned()).collect(),
    })
}

/// Applies `values` with a fresh instance of `package`, which must succeed.
fn apply(package: &'static str, state: &[u8], values: &[&str]) -> Vec<u8> {
    let mut instance = plugin(package).instantiate().expect("instantiates");
    let applied = instance
        .apply(state, &chaos_batch(values))
        .expect("the batch applies");
    assert_eq!(applied.rejected, [], "{values:?}");
    applied.state
}

fn render(package: &'static str, state: &[u8]) -> serde_json::Value {
    let mut instance = plugin(package).instantiate().expect("instantiates");
    instance.render(state).expect("renders")
}

#[test]
fn chaos_fixtures_describe_themselves() {
    for (package, version) in [
        (CHAOS, "0.1.0"),
        (CHAOS_V2, "0.2.0"),
        (CHAOS_BROKEN, "0.3.0"),
    ] {
        let plugin = plugin(package);
        assert_eq!(plugin.name(), "chaos", "{package}");
        assert_eq!(plugin.version(), version, "{package}");
        assert_eq!(plugin.types(), ["chaos"], "{package}");
    }
}

#[test]
fn chaos_sums_numbers_and_rejects_junk() {
    assert_eq!(render(CHAOS, &[]), json!({"sum": 0.0, "count": 0}));

    let mut instance = plugin(CHAOS).instantiate().expect("instantiates");
    let batch = chaos_batch(&[
        "1",
        "\"junk\"",
        "2.5",
        "true",
        r#"{"spin_ms": 1}"#,
        "-0.5",
        "null",
        "[1]",
    ]);
    let applied = instance.apply(&[], &batch).expect("the batch applies");
    let rejected: Vec<_> = applied
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    let junk = "not a chaos value";
    assert_eq!(
        rejected,
        [(1, junk), (3, junk), (4, junk), (6, junk), (7, junk)]
    );
    let rendered = instance.render(&applied.state).expect("renders");
    assert_eq!(rendered, json!({"sum": 3.0, "count": 3}));

    let state = apply(CHAOS, &applied.state, &["4"]);
    assert_eq!(render(CHAOS, &state), json!({"sum": 7.0, "count": 4}));
}

#[test]
fn chaos_refuses_other_types_whole() {
    let mut instance = plugin(CHAOS).instantiate().expect("instantiates");
    let applied = instance
        .apply(&[], &Batch::LoadAvg(vec![1.0, 2.0]))
        .expect("the batch applies");
    let reasons: Vec<_> = applied.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["unsupported type", "unsupported type"]);
    assert_eq!(
        instance.render(&applied.state).expect("renders"),
        json!({"sum": 0.0, "count": 0})
    );
}

/// The kind of a fatal call error, for tables of expected failures.
fn kind(err: &CallError) -> &'static str {
    match err {
        CallError::Trap { .. } => "trap",
        CallError::Deadline { .. } => "deadline",
        CallError::Memory { .. } => "memory",
        _ => "not fatal",
    }
}

#[test]
fn chaos_misbehaviour_is_fatal_and_a_fresh_instance_carries_on() {
    let state = apply(CHAOS, &[], &["1"]);
    let cases = [
        ("\"panic\"", "trap"),
        ("\"loop\"", "deadline"),
        ("\"grow\"", "memory"),
    ];
    for (payload, expected) in cases {
        let mut instance = plugin(CHAOS).instantiate().expect("instantiates");
        // The number before the misbehaviour is applied, then lost with
        // the call.
        let err = instance
            .apply(&state, &chaos_batch(&["2", payload]))
            .expect_err(payload);
        assert!(err.is_fatal(), "{payload}: {err}");
        assert_eq!(kind(&err), expected, "{payload}: {err}");

        let carried_on = apply(CHAOS, &state, &["4"]);
        assert_eq!(
            render(CHAOS, &carried_on),
            json!({"sum": 5.0, "count": 2}),
            "{payload}"
        );
    }
}

#[test]
fn chaos_spin_takes_at_least_its_milliseconds() {
    let start = Instant::now();
    let state = apply(CHAOS, &[], &[r#"{"spin_ms": 20, "value": 1.5}"#, "1"]);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(render(CHAOS, &state), json!({"sum": 2.5, "count": 2}));
}

#[test]
fn chaos_rejects_foreign_or_corrupt_state_without_trapping() {
    let good = apply(CHAOS, &[], &["1"]);
    let states: [&[u8]; 3] = [
        &[b'L', 1, 0, 0, 0, 0, 0, 0, 0, 0],
        &good[..good.len() - 1],
        &[good.as_slice(), &[0]].concat(),
    ];
    let mut instance = plugin(CHAOS).instantiate().expect("instantiates");
    for state in states {
        let err = instance
            .apply(state, &chaos_batch(&["1"]))
            .expect_err("unreadable state");
        assert!(matches!(err, CallError::Guest(_)), "{err}");
        let err = instance.render(state).expect_err("unreadable state");
        assert!(matches!(err, CallError::Guest(_)), "{err}");
    }
}

#[test]
fn chaos_v2_carries_on_from_chaos_state() {
    let state = apply(CHAOS, &[], &["1", "2"]);
    assert_eq!(render(CHAOS_V2, &state), json!({"sum": 3.0, "count": 2}));
    let state = apply(CHAOS_V2, &state, &["3"]);
    assert_eq!(render(CHAOS, &state), json!({"sum": 6.0, "count": 3}));
}

#[test]
fn chaos_broken_traps_on_apply_but_renders() {
    let state = apply(CHAOS, &[], &["1.5"]);
    assert_eq!(
        render(CHAOS_BROKEN, &state),
        json!({"sum": 1.5, "count": 1})
    );
    for values in [&["2"][..], &[]] {
        let mut instance = plugin(CHAOS_BROKEN).instantiate().expect("instantiates");
        let err = instance
            .apply(&state, &chaos_batch(values))
            .expect_err("every apply traps");
        assert!(matches!(err, CallError::Trap { .. }), "{err}");
    }
}

#[test]
fn wrong_world_fails_the_type_check() {
    let err = load(WRONG_WORLD).expect_err("not a plugin");
    assert!(matches!(err, LoadError::World { .. }), "{err}");
}

#[test]
fn not_wasm_fails_to_compile() {
    let err = runtime()
        .load("fixture:not-wasm", fixtures::not_wasm())
        .expect_err("not wasm");
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
}

#[test]
fn plugin_dir_holds_whole_files_and_goes_away_when_dropped() {
    let dir = PluginDir::new().with_bundled();
    let root = dir.path().to_owned();
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .expect("the directory lists")
            .map(|entry| {
                let entry = entry.expect("an entry");
                entry.file_name().into_string().expect("a UTF-8 name")
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(),
        [
            "sluice-plugin-cpu-usage.wasm",
            "sluice-plugin-last-kernel-upgrade.wasm",
            "sluice-plugin-load-avg.wasm",
        ]
    );

    dir.add(CHAOS, "chaos.wasm");
    dir.write("junk.wasm", fixtures::not_wasm());
    dir.remove("sluice-plugin-load-avg.wasm");
    assert_eq!(
        names(),
        [
            "chaos.wasm",
            "junk.wasm",
            "sluice-plugin-cpu-usage.wasm",
            "sluice-plugin-last-kernel-upgrade.wasm",
        ]
    );
    let copied = std::fs::read(dir.path().join("chaos.wasm")).expect("the copy reads");
    assert_eq!(copied, fixtures::bytes(CHAOS));
    assert!(fixtures::path(CHAOS).is_file());

    drop(dir);
    assert!(!root.exists());
}
