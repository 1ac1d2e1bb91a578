//! Tests of the plugin runtime against the bundled plugins and the
//! misbehaving fixture (`plugins/misbehave`), built by the build script.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant as Clock};

use serde_json::json;

use super::wit::{Batch, CpuUsageBatch, Instant, JsonBatch};
use super::*;

const MISBEHAVE: &[u8] = include_bytes!(concat!(
    env!("SLUICE_FIXTURES_DIR"),
    "/sluice-plugin-misbehave.wasm"
));

/// Limits of the runtime that runs the fixture: short, so that tests that
/// hit them end soon.
const STRICT: Limits = Limits {
    call_deadline: Duration::from_millis(200),
    memory_bytes: 32 << 20,
    instances: 4,
    tables: 4,
    table_elements: 100_000,
};

/// The bundled plugins, loaded once for all tests, by name.
fn bundled_plugins() -> &'static HashMap<&'static str, Plugin> {
    static PLUGINS: OnceLock<HashMap<&'static str, Plugin>> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let runtime = Runtime::new(Limits::default()).expect("default limits work");
        bundled()
            .iter()
            .map(|bundled| {
                let source = format!("bundled:{}", bundled.name);
                let plugin = runtime
                    .load(&source, bundled.bytes)
                    .expect("bundled plugin loads");
                (bundled.name, plugin)
            })
            .collect()
    })
}

fn instance(name: &str) -> Instance {
    bundled_plugins()[name]
        .instantiate()
        .expect("bundled plugin instantiates")
}

/// The fixture, loaded once in a runtime with [`STRICT`] limits.
fn misbehave() -> Instance {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let runtime = Runtime::new(STRICT).expect("strict limits work");
            runtime
                .load("fixture:misbehave", MISBEHAVE)
                .expect("fixture loads")
        })
        .instantiate()
        .expect("fixture instantiates")
}

fn command(kind: &str, values: &[&str]) -> Batch {
    Batch::Json(JsonBatch {
        kind: kind.to_owned(),
        values: values.iter().map(|value| (*value).to_owned()).collect(),
    })
}

fn cpu_batch(payloads: &[&[f64]]) -> Batch {
    Batch::CpuUsage(CpuUsageBatch {
        lengths: payloads
            .iter()
            .map(|payload| payload.len() as u32)
            .collect(),
        values: payloads.concat(),
    })
}

/// Applies each batch in turn to `state` and returns the new state and the
/// refusals of every batch as (index, reason).
fn apply_all(
    instance: &mut Instance,
    mut state: Vec<u8>,
    batches: &[Batch],
) -> (Vec<u8>, Vec<Vec<(u32, String)>>) {
    let mut rejected = Vec::new();
    for batch in batches {
        let applied = instance.apply(&state, batch).expect("apply succeeds");
        state = applied.state;
        rejected.push(
            applied
                .rejected
                .into_iter()
                .map(|r| (r.index, r.reason))
                .collect(),
        );
    }
    (state, rejected)
}

#[test]
fn bundled_plugins_load_with_their_metadata() {
    let names: Vec<_> = bundled().iter().map(|bundled| bundled.name).collect();
    assert_eq!(names, ["load_avg", "cpu_usage", "last_kernel_upgrade"]);
    for name in names {
        let plugin = &bundled_plugins()[name];
        assert_eq!(plugin.name(), name);
        assert_eq!(plugin.version(), "0.1.0");
        assert_eq!(plugin.types(), [name]);
        assert_eq!(plugin.source(), format!("bundled:{name}"));
    }
}

#[test]
fn bundled_dir_holds_the_bundled_components() {
    let mut files: Vec<_> = std::fs::read_dir(BUNDLED_DIR)
        .expect("the bundled directory exists")
        .map(|entry| entry.expect("readable entry").file_name())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "sluice-plugin-cpu-usage.wasm",
            "sluice-plugin-last-kernel-upgrade.wasm",
            "sluice-plugin-load-avg.wasm"
        ]
    );
}

#[test]
fn empty_state_renders_the_aggregate_of_nothing() {
    let cases = [
        ("load_avg", json!({"min": null, "max": null, "count": 0})),
        ("cpu_usage", json!({"average": [], "count": 0})),
        ("last_kernel_upgrade", json!({"latest": null, "count": 0})),
    ];
    for (name, expected) in cases {
        assert_eq!(
            instance(name).render(&[]).expect("render"),
            expected,
            "{name}"
        );
    }
}

#[test]
fn load_avg_keeps_the_range() {
    let mut instance = instance("load_avg");
    let batches = [
        Batch::LoadAvg(vec![1.5, 0.25]),
        Batch::LoadAvg(vec![f64::NAN, 3.0, -1.0, 0.0, f64::INFINITY]),
    ];
    let (state, rejected) = apply_all(&mut instance, Vec::new(), &batches);
    assert_eq!(rejected[0], []);
    assert_eq!(
        rejected[1],
        [
            (0, "not a finite number".to_owned()),
            (2, "negative load".to_owned()),
            (4, "not a finite number".to_owned()),
        ]
    );
    assert_eq!(
        instance.render(&state).expect("render"),
        json!({"min": 0.0, "max": 3.0, "count": 4})
    );
}

#[test]
fn cpu_usage_averages_each_cpu() {
    let mut instance = instance("cpu_usage");
    let batches = [
        cpu_batch(&[&[10.0, 20.0], &[30.0]]),
        cpu_batch(&[&[], &[20.0, 40.0, 90.0], &[f64::NAN]]),
    ];
    let (state, rejected) = apply_all(&mut instance, Vec::new(), &batches);
    assert_eq!(rejected[0], []);
    assert_eq!(
        rejected[1],
        [
            (0, "no cpu values".to_owned()),
            (2, "not a finite number".to_owned())
        ]
    );
    assert_eq!(
        instance.render(&state).expect("render"),
        json!({"average": [20.0, 30.0, 90.0], "count": 3})
    );
}

#[test]
fn last_kernel_upgrade_keeps_the_latest_instant() {
    let mut instance = instance("last_kernel_upgrade");
    let at = |seconds, nanoseconds| Instant {
        seconds,
        nanoseconds,
    };
    let batches = [
        // 2024-03-01T12:00:00Z, then 2024-03-01T12:00:00.5Z.
        Batch::LastKernelUpgrade(vec![at(1_709_294_400, 0), at(1_709_294_400, 500_000_000)]),
        Batch::LastKernelUpgrade(vec![at(0, 1_000_000_000), at(1_600_000_000, 0)]),
    ];
    let (state, rejected) = apply_all(&mut instance, Vec::new(), &batches);
    assert_eq!(rejected[1], [(0, "nanoseconds out of range".to_owned())]);
    assert_eq!(
        instance.render(&state).expect("render"),
        json!({"latest": "2024-03-01T12:00:00.5Z", "count": 3})
    );
}

#[test]
fn batches_of_other_types_are_rejected_payload_by_payload() {
    let batches = [
        ("load_avg", cpu_batch(&[&[1.0], &[2.0]])),
        ("cpu_usage", command("disk_usage", &["{}", "{}"])),
        ("last_kernel_upgrade", Batch::LoadAvg(vec![1.0, 2.0])),
    ];
    for (name, batch) in batches {
        let mut instance = instance(name);
        let before = instance.render(&[]).expect("render");
        let applied = instance.apply(&[], &batch).expect("apply");
        let rejected: Vec<_> = applied
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [(0, "unsupported type"), (1, "unsupported type")],
            "{name}"
        );
        assert_eq!(
            instance.render(&applied.state).expect("render"),
            before,
            "{name}"
        );
    }
}

#[test]
fn state_carries_over_to_a_fresh_instance() {
    let batches = [
        cpu_batch(&[&[10.0, 20.0, 30.0]]),
        cpu_batch(&[&[5.0], &[1.0, 2.0]]),
        cpu_batch(&[&[7.0, 7.0, 7.0, 7.0]]),
    ];
    let (one_instance, _) = apply_all(&mut instance("cpu_usage"), Vec::new(), &batches);
    let mut state = Vec::new();
    for batch in &batches {
        state = instance("cpu_usage")
            .apply(&state, batch)
            .expect("apply")
            .state;
    }
    assert_eq!(state, one_instance);
    assert_eq!(
        instance("cpu_usage").render(&state).expect("render"),
        instance("cpu_usage").render(&one_instance).expect("render"),
    );
}

#[test]
fn state_of_another_plugin_is_a_guest_error() {
    let (state, _) = apply_all(
        &mut instance("load_avg"),
        Vec::new(),
        &[Batch::LoadAvg(vec![1.0])],
    );
    let mut instance = instance("cpu_usage");
    let err = instance.render(&state).expect_err("foreign state");
    assert!(
        matches!(&err, CallError::Guest(reason) if reason.contains("another handler")),
        "{err}"
    );
    assert!(!err.is_fatal());
    instance.render(&[]).expect("the instance is still usable");
}

#[test]
fn a_file_that_is_not_wasm_is_a_load_error_naming_its_source() {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let cases: [(&[u8], &str); 3] = [
        (
            b"#!/bin/sh\necho hello\n",
            "not a valid WebAssembly component",
        ),
        (&[], "not a valid WebAssembly component"),
        // A core module: wasm, but not a component.
        (b"\0asm\x01\0\0\0", "not a valid WebAssembly component"),
    ];
    for (bytes, expected) in cases {
        let err = runtime
            .load("/plugins/hello.wasm", bytes)
            .expect_err("not a component");
        assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("/plugins/hello.wasm"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn an_empty_component_does_not_implement_the_world() {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    // The preamble of a component with no sections.
    let empty = b"\0asm\x0d\0\x01\0";
    let err = runtime
        .load("/plugins/empty.wasm", empty)
        .expect_err("no exports");
    assert!(matches!(err, LoadError::World { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("/plugins/empty.wasm"), "{message}");
    assert!(message.contains("sluice:plugin/handler"), "{message}");
}

#[test]
fn a_guest_error_leaves_the_instance_usable() {
    let mut instance = misbehave();
    let err = instance
        .apply(b"kept", &command("error", &[]))
        .expect_err("asked to fail");
    assert!(
        matches!(&err, CallError::Guest(reason) if reason == "asked to fail"),
        "{err:?}"
    );
    assert!(!err.is_fatal());
    let applied = instance
        .apply(b"kept", &command("ok", &["1"]))
        .expect("still usable");
    assert_eq!(applied.state, b"kept");
}

#[test]
fn a_panic_is_a_fatal_trap_and_a_fresh_instance_carries_on() {
    let mut instance = misbehave();
    let err = instance
        .apply(b"kept", &command("panic", &[]))
        .expect_err("asked to panic");
    assert!(
        matches!(
            &err,
            CallError::Trap {
                function: "apply",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_fatal());
    assert!(err.to_string().contains("misbehave"), "{err}");
    let again = instance
        .apply(b"kept", &command("ok", &[]))
        .expect_err("the instance is dead");
    assert!(again.is_fatal(), "{again:?}");

    let mut fresh = misbehave();
    let applied = fresh
        .apply(b"kept", &command("ok", &[]))
        .expect("a fresh instance works");
    assert_eq!(applied.state, b"kept");
}

#[test]
fn an_endless_loop_is_interrupted_at_the_deadline() {
    let mut instance = misbehave();
    let started = Clock::now();
    let err = instance
        .apply(&[], &command("loop", &[]))
        .expect_err("interrupted");
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, CallError::Deadline { function: "apply", deadline, .. }
            if *deadline == STRICT.call_deadline),
        "{err:?}"
    );
    assert!(err.is_fatal());
    assert!(elapsed >= STRICT.call_deadline, "{elapsed:?}");
    assert!(elapsed < STRICT.call_deadline * 10, "{elapsed:?}");

    let err = misbehave().render(b"loop").expect_err("interrupted");
    assert!(
        matches!(
            err,
            CallError::Deadline {
                function: "render",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_sleep_past_the_deadline_is_interrupted() {
    let mut instance = misbehave();
    let started = Clock::now();
    let err = instance
        .apply(&[], &command("sleep", &[]))
        .expect_err("interrupted");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                function: "apply",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(elapsed < STRICT.call_deadline * 10, "{elapsed:?}");
}

#[test]
fn the_sandbox_gives_no_environment_files_or_network() {
    // A listener the guest is asked to connect to: it must see no one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    // The host's own environment is not empty, so a guest that
    // inherited it would count more than zero variables.
    assert!(std::env::vars_os().count() > 0);

    let applied = misbehave()
        .apply(&[], &command("probe", &[&port]))
        .expect("the probe returns");
    let found = String::from_utf8(applied.state).expect("a UTF-8 report");
    let fields: HashMap<&str, &str> = found
        .split(' ')
        .filter_map(|field| field.split_once('='))
        .collect();
    assert_eq!(fields["env"], "0", "{found}");
    assert_eq!(fields["args"], "0", "{found}");
    for resource in ["root", "file", "connect"] {
        assert_ne!(fields[resource], "ok", "{resource} reached: {found}");
    }
    assert!(
        listener.accept().is_err(),
        "the guest connected to the host: {found}"
    );
}

#[test]
fn a_memory_hog_is_stopped_at_the_limit() {
    let mut instance = misbehave();
    let err = instance
        .apply(&[], &command("alloc", &[]))
        .expect_err("out of memory");
    assert!(
        matches!(&err, CallError::Memory { function: "apply", limit, .. }
            if *limit == STRICT.memory_bytes),
        "{err:?}"
    );
    assert!(err.is_fatal());
}

#[test]
fn bad_output_is_reported_and_not_fatal() {
    let mut instance = misbehave();
    let err = instance
        .apply(&[], &command("bad-index", &["a", "b"]))
        .expect_err("bad index");
    assert!(
        matches!(&err, CallError::BadOutput(reason) if reason.contains("payload 2")),
        "{err:?}"
    );
    assert!(!err.is_fatal());

    for state in [&b"bad-json"[..], b"not-object"] {
        let err = instance.render(state).expect_err("bad render");
        assert!(matches!(err, CallError::BadOutput(_)), "{err:?}");
        assert!(!err.is_fatal());
    }
    assert_eq!(
        instance.render(b"abc").expect("still usable"),
        json!({"bytes": 3})
    );
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn guest_output_is_logged_and_bounded() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut instance = misbehave();
        instance
            .apply(&[], &command("print", &[]))
            .expect("printing is allowed");
        // Far more than is kept: the tail is dropped, the call succeeds.
        instance
            .apply(&[], &command("flood", &[]))
            .expect("flooding is allowed");
    });
    let logs = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    let lines: Vec<_> = logs.lines().collect();
    let stdout = lines
        .iter()
        .find(|l| l.contains("a line to stdout"))
        .expect("stdout logged");
    assert!(
        stdout.contains("DEBUG") && stdout.contains("plugin=misbehave"),
        "{stdout}"
    );
    let stderr = lines
        .iter()
        .find(|l| l.contains("a line to stderr"))
        .expect("stderr logged");
    assert!(stderr.contains("WARN"), "{stderr}");
    let flood = lines
        .iter()
        .find(|l| l.contains("xxxx"))
        .expect("flood logged");
    assert!(
        flood.contains(&format!("dropped={}", (1 << 20) - sandbox::CAPTURE_BYTES)),
        "{flood}"
    );
}

#[test]
fn instances_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Instance>();
    assert_send::<Plugin>();
    assert_send::<Runtime>();

    let mut instance = instance("load_avg");
    let state = std::thread::spawn(move || {
        instance
            .apply(&[], &Batch::LoadAvg(vec![1.0]))
            .expect("apply")
            .state
    })
    .join()
    .expect("no panic");
    assert!(!state.is_empty());
}

#[test]
fn limits_that_cannot_work_are_refused() {
    let zero_deadline = Limits {
        call_deadline: Duration::ZERO,
        ..Limits::default()
    };
    assert!(Runtime::new(zero_deadline).is_err());
    let zero_memory = Limits {
        memory_bytes: 0,
        ..Limits::default()
    };
    assert!(Runtime::new(zero_memory).is_err());
}

#[test]
fn too_little_memory_fails_instantiation() {
    let runtime = Runtime::new(Limits {
        memory_bytes: 64 << 10,
        ..Limits::default()
    })
    .expect("runtime");
    let err = runtime
        .load("bundled:load_avg", bundled()[0].bytes)
        .expect_err("too little memory");
    assert!(matches!(err, LoadError::Instantiate { .. }), "{err:?}");
    assert!(err.to_string().contains("bundled:load_avg"), "{err}");
}

#[test]
fn too_few_instances_or_tables_fail_instantiation_naming_the_limit() {
    // The bundled handlers create three core instances and two tables.
    let cases = [
        (
            Limits {
                instances: 2,
                ..Limits::default()
            },
            "instance",
        ),
        (
            Limits {
                tables: 1,
                ..Limits::default()
            },
            "table",
        ),
    ];
    for (limits, what) in cases {
        let runtime = Runtime::new(limits).expect("runtime");
        let err = runtime
            .load("bundled:load_avg", bundled()[0].bytes)
            .expect_err("too few");
        assert!(matches!(err, LoadError::Instantiate { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("bundled:load_avg"), "{message}");
        assert!(message.contains(what), "{what}: {message}");
    }
    // With as many as it needs, it loads.
    let runtime = Runtime::new(Limits {
        instances: 3,
        tables: 2,
        ..Limits::default()
    })
    .expect("runtime");
    runtime
        .load("bundled:load_avg", bundled()[0].bytes)
        .expect("loads within its limits");
}

#[test]
fn a_plugin_with_limits_of_its_own_is_held_to_them_and_the_others_are_not() {
    let own = Limits {
        call_deadline: Duration::from_millis(50),
        memory_bytes: 16 << 20,
        ..STRICT
    };
    let runtime = Runtime::new(STRICT)
        .and_then(|runtime| runtime.with_plugin_limits([("misbehave".to_owned(), own)].into()))
        .expect("valid limits");
    assert_eq!(runtime.limits_of("misbehave"), &own);
    assert_eq!(runtime.limits_of("load_avg"), &STRICT);

    let plugin = runtime
        .load("fixture:misbehave", MISBEHAVE)
        .expect("fixture loads");
    assert_eq!(plugin.limits(), Some(&own));
    let mut instance = plugin.instantiate().expect("fixture instantiates");
    let err = instance
        .apply(&[], &command("loop", &[]))
        .expect_err("interrupted");
    assert!(
        matches!(&err, CallError::Deadline { deadline, .. } if *deadline == own.call_deadline),
        "{err:?}"
    );
    let err = plugin
        .instantiate()
        .expect("fixture instantiates")
        .apply(&[], &command("alloc", &[]))
        .expect_err("refused memory");
    assert!(
        matches!(&err, CallError::Memory { limit, .. } if *limit == own.memory_bytes),
        "{err:?}"
    );

    let other = runtime
        .load("bundled:load_avg", bundled()[0].bytes)
        .expect("bundled plugin loads");
    assert_eq!(other.limits(), Some(&STRICT));
}

#[test]
fn a_plugin_is_loaded_under_its_own_limits_whatever_the_defaults() {
    // Too few instances for any plugin by default; enough for load_avg.
    let tight = Limits {
        instances: 2,
        ..Limits::default()
    };
    let roomy = Limits {
        instances: 3,
        ..Limits::default()
    };
    let runtime = Runtime::new(tight)
        .and_then(|runtime| runtime.with_plugin_limits([("load_avg".to_owned(), roomy)].into()))
        .expect("valid limits");
    let plugin = runtime
        .load("bundled:load_avg", bundled()[0].bytes)
        .expect("its own limits let it load");
    assert_eq!(plugin.limits(), Some(&roomy));
    plugin.instantiate().expect("and instantiate");
    // Another plugin, held to the defaults, is refused, although the first
    // instance of every load is made under the widest limits.
    let err = runtime
        .load("bundled:cpu_usage", bundled()[1].bytes)
        .expect_err("the defaults are too tight");
    let message = err.to_string();
    assert!(message.contains("bundled:cpu_usage"), "{message}");
    assert!(message.contains("instance"), "{message}");
    // And limits of its own that are tighter than the defaults hold.
    let runtime = Runtime::new(roomy)
        .and_then(|runtime| runtime.with_plugin_limits([("load_avg".to_owned(), tight)].into()))
        .expect("valid limits");
    let err = runtime
        .load("bundled:load_avg", bundled()[0].bytes)
        .expect_err("its own limits are too tight");
    assert!(err.to_string().contains("instance"), "{err}");
}

#[test]
fn limits_of_a_plugin_that_cannot_work_are_refused_naming_it() {
    let zero = Limits {
        call_deadline: Duration::ZERO,
        ..STRICT
    };
    let err = Runtime::new(STRICT)
        .and_then(|runtime| runtime.with_plugin_limits([("chaos".to_owned(), zero)].into()))
        .expect_err("a zero deadline is refused");
    assert!(format!("{err:#}").contains("plugin chaos"), "{err:#}");
}

/// A native handler that counts payloads in one byte of state, refuses
/// negative loads, and panics on NaN.
fn counting_apply(state: &[u8], batch: &Batch) -> Result<wit::Applied, String> {
    let Batch::LoadAvg(loads) = batch else {
        return Err("only load_avg".to_owned());
    };
    let mut count = match state {
        [] => 0u8,
        [count] => *count,
        _ => return Err("unreadable state".to_owned()),
    };
    let mut rejected = Vec::new();
    for (index, load) in loads.iter().enumerate() {
        assert!(!load.is_nan(), "NaN load");
        if *load < 0.0 {
            rejected.push(wit::Rejection {
                index: index as u32,
                reason: "negative".to_owned(),
            });
        } else {
            count += 1;
        }
    }
    Ok(wit::Applied {
        state: vec![count],
        rejected,
    })
}

fn counting_render(state: &[u8]) -> Result<String, String> {
    Ok(format!(
        "{{\"count\":{}}}",
        state.first().copied().unwrap_or(0)
    ))
}

fn counting_metadata(name: &str) -> wit::Metadata {
    wit::Metadata {
        name: name.to_owned(),
        version: "1.0.0".to_owned(),
        types: vec!["load_avg".to_owned()],
    }
}

#[test]
fn a_native_plugin_is_called_through_the_same_instance_interface() {
    let plugin = Plugin::native(
        counting_metadata("counting"),
        counting_apply,
        counting_render,
    )
    .expect("valid metadata");
    assert_eq!(plugin.name(), "counting");
    assert_eq!(plugin.source(), "native:counting");
    assert_eq!(plugin.types(), ["load_avg"]);
    assert_eq!(plugin, plugin.clone());
    let other = Plugin::native(
        counting_metadata("counting"),
        counting_apply,
        counting_render,
    )
    .expect("valid metadata");
    assert_ne!(plugin, other, "two loads are two plugins");

    let mut instance = plugin.instantiate().expect("a native instance");
    let applied = instance
        .apply(&[], &Batch::LoadAvg(vec![1.0, -1.0, 2.0]))
        .expect("applied");
    assert_eq!(applied.state, vec![2]);
    assert_eq!(applied.rejected.len(), 1);
    assert_eq!(
        instance.render(&applied.state).expect("rendered"),
        json!({"count": 2})
    );

    let refused = instance.apply(&[1, 2], &Batch::LoadAvg(vec![1.0]));
    assert!(matches!(refused, Err(CallError::Guest(ref e)) if e == "unreadable state"));
    let panicked = instance
        .apply(&[], &Batch::LoadAvg(vec![f64::NAN]))
        .expect_err("a panic");
    assert!(panicked.is_fatal(), "{panicked}");
    assert!(panicked.to_string().contains("NaN load"), "{panicked}");
}

#[test]
fn a_native_plugin_with_unusable_metadata_is_refused() {
    let err = Plugin::native(
        counting_metadata("no spaces"),
        counting_apply,
        counting_render,
    )
    .expect_err("invalid name");
    assert!(
        matches!(err, LoadError::InvalidMetadata { ref plugin, .. } if plugin == "native:no spaces"),
        "{err}"
    );
}

#[test]
fn a_plugin_sees_what_it_is_granted_and_can_write_none_of_it() {
    let data = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(data.path().join("note.txt"), "hello").expect("write the note");
    let grants = Grants {
        env: [("TZ".to_owned(), "UTC".to_owned())].into(),
        dirs: vec![GrantedDir {
            host: data.path().to_owned(),
            guest: "/data".to_owned(),
        }],
    };
    let runtime = Runtime::new(STRICT)
        .and_then(|runtime| {
            runtime.with_plugin_settings([("misbehave".to_owned(), (STRICT, grants))].into())
        })
        .expect("valid settings");
    let plugin = runtime
        .load("fixture:misbehave", MISBEHAVE)
        .expect("fixture loads");
    let ask = command("grants", &["TZ", "/data/note.txt"]);
    let found = |instance: &mut Instance| {
        let applied = instance.apply(&[], &ask).expect("the probe returns");
        String::from_utf8(applied.state).expect("a UTF-8 report")
    };

    let granted = found(&mut plugin.instantiate().expect("fixture instantiates"));
    assert!(
        granted.starts_with("var=UTC file=hello write="),
        "{granted}"
    );
    assert!(
        !granted.ends_with("write=ok"),
        "wrote to a read-only grant: {granted}"
    );
    assert!(!data.path().join("written-by-plugin").exists());

    // The same plugin loaded without grants sees neither.
    let closed = found(&mut misbehave());
    assert!(closed.starts_with("var=unset file="), "{closed}");
    assert!(!closed.contains("hello"), "{closed}");

    // A granted directory that is gone fails the next instance, naming it.
    let path = data.path().display().to_string();
    drop(data);
    let Err(err) = plugin.instantiate() else {
        panic!("an instance without its granted directory");
    };
    assert!(matches!(err, CallError::Sandbox { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("/data") && message.contains(&path),
        "{message}"
    );
    assert!(err.is_fatal());
}
