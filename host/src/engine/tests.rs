//! Behaviour of the engine as a whole. Time-based tests run on paused tokio time, where
//! timers fire as soon as every task is idle; tests wait on the report watch, on channels
//! fed by the test components, or on signals, never on a sleep.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::ComponentState::{BackingOff, Running, Starting, Stopped};
use super::*;

/// Something a test component did.
#[derive(Debug, Clone)]
struct Event {
    name: String,
    what: &'static str,
    run: u64,
    at: Instant,
}

type Log = mpsc::UnboundedSender<Event>;
type Events = mpsc::UnboundedReceiver<Event>;

fn record(log: &Log, ctx: &Context, what: &'static str) {
    let event = Event {
        name: ctx.name().to_owned(),
        what,
        run: ctx.run(),
        at: Instant::now(),
    };
    // The receiver may be gone while the runtime shuts down after the test.
    let _ = log.send(event);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Backoff without jitter: 100ms, 200ms, ... up to 1s; grace 5s.
fn config() -> EngineConfig {
    EngineConfig {
        backoff: BackoffConfig {
            initial: ms(100),
            max: secs(1),
            multiplier: 2.0,
            jitter: false,
            reset_after: secs(10),
        },
        shutdown_grace: secs(5),
    }
}

/// A well-behaved component: records "start", runs until cancelled, records "stop".
fn idle(name: &str, inputs: &[&str], log: &Log) -> Manifold {
    let log = log.clone();
    Manifold::new(name, inputs, move |ctx| {
        let log = log.clone();
        async move {
            record(&log, &ctx, "start");
            ctx.cancelled().await;
            record(&log, &ctx, "stop");
            Ok(())
        }
    })
}

/// Like [`idle`], but its first `failures` runs fail right away with `error`.
fn failing(name: &str, failures: u64, error: &'static str, log: &Log) -> Manifold {
    let log = log.clone();
    Manifold::new(name, &[], move |ctx| {
        let log = log.clone();
        async move {
            record(&log, &ctx, "start");
            if ctx.run() <= failures {
                return Err(anyhow!(error).context("cannot reach upstream"));
            }
            ctx.cancelled().await;
            Ok(())
        }
    })
}

async fn next_event(events: &mut Events) -> Event {
    let event = timeout(secs(3600), events.recv()).await;
    event
        .expect("timed out waiting for an event")
        .expect("event log closed")
}

/// The next `count` events of kind `what`, skipping others.
async fn next_of(events: &mut Events, what: &str, count: usize) -> Vec<Event> {
    let mut found = Vec::new();
    while found.len() < count {
        let event = next_event(events).await;
        if event.what == what {
            found.push(event);
        }
    }
    found
}

/// The next `count` events.
async fn take(events: &mut Events, count: usize) -> Vec<Event> {
    let mut taken = Vec::new();
    while taken.len() < count {
        taken.push(next_event(events).await);
    }
    taken
}

/// The events recorded so far.
fn drain(events: &mut Events) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

/// Position of the event of `name` doing `what` in run `run`.
fn position(events: &[Event], name: &str, what: &str, run: u64) -> usize {
    let found = events
        .iter()
        .position(|e| e.name == name && e.what == what && e.run == run);
    found.unwrap_or_else(|| panic!("no {what} of {name} run {run} in {events:#?}"))
}

/// Waits (in virtual time, at most an hour) until the reports satisfy `pred`.
async fn wait_until(
    handle: &EngineHandle,
    what: &str,
    pred: impl FnMut(&[ComponentReport]) -> bool,
) -> Vec<ComponentReport> {
    wait_within(handle.watch(), secs(3600), what, pred).await
}

async fn wait_within(
    mut reports: watch::Receiver<Vec<ComponentReport>>,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&[ComponentReport]) -> bool,
) -> Vec<ComponentReport> {
    let found = timeout(limit, reports.wait_for(|r| pred(r)))
        .await
        .map(|r| r.map(|v| v.clone()));
    let found = found.ok().and_then(Result::ok);
    found.unwrap_or_else(|| panic!("gave up waiting until {what}: {:#?}", reports.borrow()))
}

fn get<'a>(reports: &'a [ComponentReport], name: &str) -> &'a ComponentReport {
    let found = reports.iter().find(|r| r.name == name);
    found.unwrap_or_else(|| panic!("no report for {name}"))
}

fn all_running(reports: &[ComponentReport]) -> bool {
    reports.iter().all(|r| r.state == Running)
}

fn names(reports: &[ComponentReport]) -> Vec<&str> {
    reports.iter().map(|r| r.name.as_str()).collect()
}

/// Milliseconds between consecutive events.
fn gaps(events: &[Event]) -> Vec<u64> {
    events
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis() as u64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn starts_in_dependency_order_whatever_the_declaration_order() {
    let (log, mut events) = mpsc::unbounded_channel();
    let manifolds = vec![
        idle("c", &["b"], &log),
        idle("a", &[], &log),
        idle("b", &["a"], &log),
    ];
    let handle = Engine::start(config(), manifolds).unwrap();

    let starts = next_of(&mut events, "start", 3).await;
    let order: Vec<(&str, u64)> = starts.iter().map(|e| (e.name.as_str(), e.run)).collect();
    assert_eq!(order, [("a", 1), ("b", 1), ("c", 1)]);

    let reports = handle.report().await;
    assert_eq!(
        names(&reports),
        ["c", "a", "b"],
        "reports keep declaration order"
    );
    assert!(all_running(&reports));
    assert_eq!(get(&reports, "c").inputs, ["b"]);
    assert!(
        reports
            .iter()
            .all(|r| r.starts == 1 && r.restarts == 0 && r.bounces == 0)
    );
    assert!(handle.ready().await);
}

#[tokio::test]
async fn start_rejects_invalid_graphs_naming_the_problem() {
    let (log, _events) = mpsc::unbounded_channel();
    let start = |manifolds| Engine::start(config(), manifolds).unwrap_err();

    let err = start(vec![idle("a", &[], &log), idle("a", &[], &log)]);
    assert_eq!(err, EngineError::DuplicateName("a".into()));

    let err = start(vec![idle("a", &["ghost"], &log)]);
    assert_eq!(err.to_string(), "component `a` has unknown input `ghost`");

    let cycle = vec![
        idle("a", &["c"], &log),
        idle("b", &["a"], &log),
        idle("c", &["b"], &log),
    ];
    assert_eq!(
        start(cycle).to_string(),
        "dependency cycle: a -> c -> b -> a"
    );
}

#[tokio::test]
async fn start_rejects_each_bad_setting() {
    type Edit = fn(&mut EngineConfig);
    let edits: [(Edit, &str); 6] = [
        (|c| c.backoff.initial = Duration::ZERO, "backoff.initial"),
        (|c| c.backoff.max = ms(10), "backoff.max"),
        (|c| c.backoff.multiplier = 0.9, "backoff.multiplier"),
        (|c| c.backoff.multiplier = f64::NAN, "backoff.multiplier"),
        (
            |c| c.backoff.reset_after = Duration::ZERO,
            "backoff.reset_after",
        ),
        (|c| c.shutdown_grace = Duration::ZERO, "shutdown_grace"),
    ];
    for (edit, field) in edits {
        let mut config = config();
        edit(&mut config);
        let err = Engine::start(config, Vec::new()).unwrap_err();
        assert!(
            matches!(&err, EngineError::Config(e) if e.field == field),
            "{err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let err = Engine::start(config(), Vec::new()).unwrap_err();
    assert_eq!(err, EngineError::NoRuntime);
}

#[tokio::test(start_paused = true)]
async fn failing_component_restarts_after_exponential_backoff() {
    let (log, mut events) = mpsc::unbounded_channel();
    let handle = Engine::start(config(), vec![failing("flaky", 6, "refused", &log)]).unwrap();

    let reports = wait_until(&handle, "flaky backs off", |r| r[0].state == BackingOff).await;
    let flaky = get(&reports, "flaky");
    assert_eq!(
        flaky.last_error.as_deref(),
        Some("cannot reach upstream: refused")
    );
    assert_eq!(
        (flaky.restarts, flaky.backoff_ms, flaky.uptime_ms),
        (1, Some(100), None)
    );

    let starts = next_of(&mut events, "start", 7).await;
    assert_eq!(
        gaps(&starts),
        [100, 200, 400, 800, 1000, 1000],
        "doubling, capped at max"
    );

    let reports = wait_until(&handle, "flaky runs", all_running).await;
    let flaky = get(&reports, "flaky");
    assert_eq!((flaky.starts, flaky.restarts, flaky.bounces), (7, 6, 0));
    assert_eq!(
        flaky.last_error.as_deref(),
        Some("cannot reach upstream: refused")
    );
    assert_eq!((flaky.backoff_ms, flaky.uptime_ms), (None, Some(0)));
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_between_half_and_full_delay() {
    let (log, mut events) = mpsc::unbounded_channel();
    let mut config = config();
    config.backoff.jitter = true;
    let _handle = Engine::start(config, vec![failing("flaky", 10, "refused", &log)]).unwrap();

    let gaps = gaps(&next_of(&mut events, "start", 11).await);
    let bases: Vec<u64> = (0..10).map(|n| (100u64 << n).min(1000)).collect();
    for (gap, base) in gaps.iter().zip(&bases) {
        assert!(
            (base.div_ceil(2)..=*base).contains(gap),
            "gap {gap}ms for base {base}ms"
        );
    }
    assert!(
        gaps.iter().all(|&gap| gap <= 1000),
        "never above max: {gaps:?}"
    );
    assert_ne!(gaps, bases, "jitter must vary the delays");
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_healthy_run_of_reset_after() {
    let (log, mut events) = mpsc::unbounded_channel();
    let manifold = Manifold::new("flaky", &[], move |ctx| {
        let log = log.clone();
        async move {
            record(&log, &ctx, "start");
            // Runs 4 and 5 work for a while (simulated by a sleep) before failing.
            match ctx.run() {
                1..=3 | 6 => return Err(anyhow!("refused")),
                4 => tokio::time::sleep(secs(9)).await,
                5 => tokio::time::sleep(secs(10)).await,
                _ => {
                    ctx.cancelled().await;
                    return Ok(());
                }
            }
            Err(anyhow!("refused after working for a while"))
        }
    });
    let handle = Engine::start(config(), vec![manifold]).unwrap();

    let gaps = gaps(&next_of(&mut events, "start", 7).await);
    // A 9s run is shorter than reset_after: 400 -> 800. A 10s run resets: back to 100.
    assert_eq!(gaps, [100, 200, 400, 9_000 + 800, 10_000 + 100, 200]);
    let reports = wait_until(&handle, "flaky runs", all_running).await;
    assert_eq!(reports[0].restarts, 6);
}

#[tokio::test(start_paused = true)]
async fn panicking_component_is_restarted_and_reported() {
    let panics_in_run = Manifold::new("run", &[], |ctx| async move {
        if ctx.run() == 1 {
            panic!("kaboom");
        }
        ctx.cancelled().await;
        Ok(())
    });
    let panics_with_string = Manifold::new("string", &[], |ctx| async move {
        if ctx.run() == 1 {
            panic!("bad value {}", 7);
        }
        ctx.cancelled().await;
        Ok(())
    });
    let start: StartFn = Arc::new(|ctx: Context| -> BoxFuture<'static, anyhow::Result<()>> {
        assert!(ctx.run() > 1, "start function refuses run {}", ctx.run());
        Box::pin(async move {
            ctx.cancelled().await;
            Ok(())
        })
    });
    let panics_in_start = Manifold {
        name: "start_fn".into(),
        inputs: vec![],
        start,
        report: None,
    };
    let manifolds = vec![panics_in_run, panics_with_string, panics_in_start];
    let handle = Engine::start(config(), manifolds).unwrap();

    let reports = wait_until(&handle, "all recover", |r| {
        all_running(r) && r.iter().all(|r| r.starts == 2)
    })
    .await;
    let errors: Vec<_> = reports
        .iter()
        .map(|r| (r.restarts, r.last_error.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, Some("panicked: kaboom")),
            (1, Some("panicked: bad value 7")),
            (1, Some("panicked: start function refuses run 1")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn returning_ok_without_being_asked_is_a_failure() {
    let quitter = Manifold::new("quitter", &[], |ctx| async move {
        if ctx.run() > 1 {
            ctx.cancelled().await;
        }
        Ok(())
    });
    let handle = Engine::start(config(), vec![quitter]).unwrap();
    let reports = wait_until(&handle, "second run", |r| r[0].starts == 2).await;
    assert_eq!(reports[0].restarts, 1);
    assert_eq!(
        reports[0].last_error.as_deref(),
        Some("exited without being asked to stop")
    );
}

#[tokio::test(start_paused = true)]
async fn failure_bounces_transitive_dependents_and_nothing_else() {
    let (log, mut events) = mpsc::unbounded_channel();
    let trigger = CancellationToken::new();
    let a = {
        let (log, trigger) = (log.clone(), trigger.clone());
        Manifold::new("a", &[], move |ctx| {
            let (log, trigger) = (log.clone(), trigger.clone());
            async move {
                record(&log, &ctx, "start");
                if ctx.run() == 1 {
                    trigger.cancelled().await;
                    return Err(anyhow!("lost connection"));
                }
                ctx.cancelled().await;
                Ok(())
            }
        })
    };
    let manifolds = vec![
        a,
        idle("b", &["a"], &log),
        idle("c", &["b"], &log),
        idle("x", &[], &log),
    ];
    let handle = Engine::start(config(), manifolds).unwrap();
    wait_until(&handle, "all run", all_running).await;

    trigger.cancel();
    let reports = wait_until(&handle, "a backs off", |r| get(r, "a").state == BackingOff).await;
    let states: Vec<_> = reports.iter().map(|r| (r.state, r.bounces)).collect();
    assert_eq!(
        states,
        [(BackingOff, 0), (Starting, 1), (Starting, 1), (Running, 0)]
    );
    assert_eq!(
        get(&reports, "a").last_error.as_deref(),
        Some("lost connection")
    );
    assert_eq!(
        get(&reports, "b").last_error,
        None,
        "a bounce is not an error"
    );

    let reports = wait_until(&handle, "all run again", |r| {
        all_running(r) && get(r, "c").starts == 2
    })
    .await;
    let counters: Vec<_> = reports
        .iter()
        .map(|r| (r.starts, r.restarts, r.bounces))
        .collect();
    assert_eq!(counters, [(2, 1, 0), (2, 0, 1), (2, 0, 1), (1, 0, 0)]);

    // 4 first starts, b and c stop, then a, b and c start again; nothing from x.
    let events = take(&mut events, 9).await;
    let a2 = position(&events, "a", "start", 2);
    let (b_stop, b2) = (
        position(&events, "b", "stop", 1),
        position(&events, "b", "start", 2),
    );
    let (c_stop, c2) = (
        position(&events, "c", "stop", 1),
        position(&events, "c", "start", 2),
    );
    assert!(
        b_stop < a2 && c_stop < a2,
        "dependents stop before a comes back: {events:#?}"
    );
    assert!(
        a2 < b2 && b2 < c2,
        "dependents restart after their inputs: {events:#?}"
    );
    let x: Vec<_> = events
        .iter()
        .filter(|e| e.name == "x")
        .map(|e| (e.what, e.run))
        .collect();
    assert_eq!(x, [("start", 1)], "x is untouched");
}

/// Holds a run's exit up: its drop reports itself, then blocks (off the async workers)
/// until the test releases it.
struct SlowExit {
    exiting: mpsc::UnboundedSender<u64>,
    release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    run: u64,
}

impl Drop for SlowExit {
    fn drop(&mut self) {
        let _ = self.exiting.send(self.run);
        tokio::task::block_in_place(|| {
            let _ = self.release.lock().unwrap().recv();
        });
    }
}

/// A component whose first run blocks its thread while exiting, until released.
fn slow_exit(name: &str, inputs: &[&str]) -> (Manifold, Exits, std::sync::mpsc::Sender<()>) {
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let release = Arc::new(Mutex::new(release_rx));
    let (exiting, exits) = mpsc::unbounded_channel();
    let manifold = Manifold::new(name, inputs, move |ctx| {
        let guard = (ctx.run() == 1).then(|| SlowExit {
            exiting: exiting.clone(),
            release: release.clone(),
            run: ctx.run(),
        });
        async move {
            let _guard = guard;
            ctx.cancelled().await;
            Ok(())
        }
    });
    (manifold, exits, release_tx)
}

/// The run numbers of exiting [`SlowExit`] runs.
type Exits = mpsc::UnboundedReceiver<u64>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_is_not_restarted_before_its_previous_run_has_exited() {
    let (log, _events) = mpsc::unbounded_channel();
    let (b, mut exits, release) = slow_exit("b", &["a"]);
    let mut config = config();
    config.backoff.initial = ms(1);
    config.shutdown_grace = secs(30);
    let handle = Engine::start(config, vec![idle("a", &[], &log), b]).unwrap();
    let limit = secs(10);
    wait_within(handle.watch(), limit, "all run", all_running).await;

    handle.restart("a").await.unwrap();
    assert_eq!(
        timeout(limit, exits.recv()).await.unwrap(),
        Some(1),
        "b's run 1 is exiting"
    );
    wait_within(handle.watch(), limit, "a is back", |r| {
        get(r, "a").state == Running && get(r, "a").starts == 2
    })
    .await;
    let b = handle.report().await.remove(1);
    assert_eq!(
        (b.state, b.starts),
        (Starting, 1),
        "b waits for its previous run to exit"
    );

    release.send(()).unwrap();
    let reports = wait_within(handle.watch(), limit, "b is back", |r| {
        get(r, "b").starts == 2
    })
    .await;
    assert!(all_running(&reports));
    assert!(handle.shutdown().await.clean);
}

#[tokio::test(start_paused = true)]
async fn restart_request_fails_the_component_and_bounces_dependents() {
    let (log, mut events) = mpsc::unbounded_channel();
    let manifolds = vec![idle("a", &[], &log), idle("b", &["a"], &log)];
    let handle = Engine::start(config(), manifolds).unwrap();
    wait_until(&handle, "all run", all_running).await;

    handle.restart("a").await.unwrap();
    let reports = handle.report().await;
    let (a, b) = (get(&reports, "a"), get(&reports, "b"));
    assert_eq!(
        (a.state, a.restarts, a.backoff_ms),
        (BackingOff, 1, Some(100))
    );
    assert_eq!(a.last_error.as_deref(), Some("restarted by request"));
    assert_eq!((b.state, b.bounces, b.restarts), (Starting, 1, 0));

    let not_running = EngineError::NotRunning {
        name: "a".into(),
        state: BackingOff,
    };
    assert_eq!(handle.restart("a").await, Err(not_running));
    assert_eq!(
        handle.restart("nope").await,
        Err(EngineError::UnknownComponent("nope".into()))
    );

    let reports = wait_until(&handle, "all run again", |r| {
        all_running(r) && get(r, "b").starts == 2
    })
    .await;
    assert_eq!(get(&reports, "a").starts, 2);
    let events = take(&mut events, 6).await;
    assert!(position(&events, "a", "stop", 1) < position(&events, "a", "start", 2));
}

#[tokio::test(start_paused = true)]
async fn token_ignoring_dependent_is_dropped_after_the_grace_then_restarted() {
    let (log, mut events) = mpsc::unbounded_channel();
    let stubborn = {
        let log = log.clone();
        Manifold::new("stubborn", &["a"], move |ctx| {
            let log = log.clone();
            async move {
                record(&log, &ctx, "start");
                std::future::pending::<()>().await;
                Ok(())
            }
        })
    };
    let handle = Engine::start(config(), vec![idle("a", &[], &log), stubborn]).unwrap();
    wait_until(&handle, "all run", all_running).await;
    let restarted_at = Instant::now();
    handle.restart("a").await.unwrap();

    let restart = next_of(&mut events, "start", 4).await.pop().unwrap();
    assert_eq!((restart.name.as_str(), restart.run), ("stubborn", 2));
    assert_eq!(
        restart.at - restarted_at,
        secs(5),
        "dropped after shutdown_grace"
    );
}

#[tokio::test(start_paused = true)]
async fn added_component_waits_for_its_inputs_and_removed_one_is_forgotten() {
    let (log, mut events) = mpsc::unbounded_channel();
    let handle = Engine::start(config(), vec![failing("a", 1, "refused", &log)]).unwrap();
    wait_until(&handle, "a backs off", |r| r[0].state == BackingOff).await;

    handle.add(idle("b", &["a"], &log)).await.unwrap();
    let b = handle.report().await.remove(1);
    assert_eq!(
        (b.state, b.starts),
        (Starting, 0),
        "b waits while a backs off"
    );
    let reports = wait_until(&handle, "both run", all_running).await;
    assert_eq!(names(&reports), ["a", "b"]);
    assert_eq!((reports[0].starts, reports[1].starts), (2, 1));

    let errors = [
        handle.add(idle("a", &[], &log)).await,
        handle.add(idle("c", &["ghost"], &log)).await,
        handle.add(idle("d", &["d"], &log)).await,
        handle.remove("a").await,
        handle.remove("ghost").await,
    ];
    let errors: Vec<String> = errors
        .into_iter()
        .map(|e| e.unwrap_err().to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "duplicate component name `a`",
            "component `c` has unknown input `ghost`",
            "dependency cycle: d -> d",
            "cannot remove `a`: it is an input of b",
            "unknown component `ghost`",
        ]
    );

    handle.remove("b").await.unwrap();
    let events = drain(&mut events);
    position(&events, "b", "stop", 1); // remove waits for the run to exit
    assert_eq!(names(&handle.report().await), ["a"]);
    assert!(handle.ready().await);
    handle.remove("a").await.unwrap();
    assert!(handle.report().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn report_carries_component_counters_and_ready_tracks_running() {
    let (log, _events) = mpsc::unbounded_channel();
    let processed = Arc::new(AtomicU64::new(0));
    let counter = processed.clone();
    let a = idle("a", &[], &log)
        .with_report(move || json!({ "processed": counter.load(Ordering::Relaxed) }));
    let faulty = idle("faulty", &[], &log).with_report(|| panic!("report bug"));
    let handle = Engine::start(config(), vec![a, idle("b", &["a"], &log), faulty]).unwrap();
    wait_until(&handle, "all run", all_running).await;
    assert!(handle.ready().await);

    processed.store(42, Ordering::Relaxed);
    let reports = handle.report().await;
    assert_eq!(reports[0].report, json!({ "processed": 42 }), "read fresh");
    assert_eq!(reports[1].report, json!({}));
    assert_eq!(
        reports[2].report,
        json!({ "error": "report panicked: report bug" })
    );
    let a = serde_json::to_value(&reports[0]).unwrap();
    assert_eq!(
        (&a["name"], &a["state"], &a["inputs"]),
        (&json!("a"), &json!("running"), &json!([]))
    );
    assert!(a["uptime_ms"].is_u64() && a["backoff_ms"].is_null() && a["last_error"].is_null());

    handle.restart("a").await.unwrap();
    assert!(!handle.ready().await);
    let a = serde_json::to_value(&handle.report().await[0]).unwrap();
    assert_eq!(
        (&a["state"], &a["backoff_ms"]),
        (&json!("backing_off"), &json!(100))
    );
    wait_until(&handle, "all run again", all_running).await;
    assert!(handle.ready().await);

    handle.shutdown().await;
    assert!(!handle.ready().await);
}

/// A component that, once cancelled, cleans up for a second before returning.
fn slow_to_stop(name: &str, inputs: &[&str], log: &Log) -> Manifold {
    let log = log.clone();
    Manifold::new(name, inputs, move |ctx| {
        let log = log.clone();
        async move {
            ctx.cancelled().await;
            tokio::time::sleep(secs(1)).await; // simulated flush
            record(&log, &ctx, "stop");
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_dependents_first_and_lets_runs_clean_up() {
    let (log, mut events) = mpsc::unbounded_channel();
    let manifolds = vec![
        slow_to_stop("a", &[], &log),
        slow_to_stop("b", &["a"], &log),
        slow_to_stop("c", &["b"], &log),
        slow_to_stop("x", &[], &log),
    ];
    let handle = Engine::start(config(), manifolds).unwrap();
    wait_until(&handle, "all run", all_running).await;

    let began = Instant::now();
    let report = handle.shutdown().await;
    assert_eq!(
        report,
        ShutdownReport {
            clean: true,
            still_running: vec![]
        }
    );
    assert_eq!(
        began.elapsed(),
        secs(3),
        "c, then b, then a, one second each"
    );

    let stops: Vec<(String, Duration)> = drain(&mut events)
        .into_iter()
        .map(|e| (e.name, e.at - began))
        .collect();
    let expected = [("x", 1), ("c", 1), ("b", 2), ("a", 3)].map(|(n, s)| (n.to_owned(), secs(s)));
    let mut sorted = stops.clone();
    sorted.sort_by_key(|(name, at)| (*at, name != "x"));
    assert_eq!(sorted, expected);

    let reports = handle.report().await;
    assert!(reports.iter().all(|r| r.state == Stopped), "{reports:#?}");
    assert_eq!(handle.shutdown().await, report, "shutdown is idempotent");
    assert_eq!(
        handle.add(idle("y", &[], &log)).await,
        Err(EngineError::ShuttingDown)
    );
    assert_eq!(handle.restart("a").await, Err(EngineError::ShuttingDown));
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_a_run_that_ignores_cancellation_after_the_grace() {
    let (log, mut events) = mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let stubborn = Manifold::new("stubborn", &[], move |_ctx| {
        let guard = SignalOnDrop(dropped_tx.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let handle = Engine::start(config(), vec![idle("a", &[], &log), stubborn]).unwrap();
    wait_until(&handle, "all run", all_running).await;

    let began = Instant::now();
    let report = handle.shutdown().await;
    assert_eq!(began.elapsed(), secs(5), "bounded by shutdown_grace");
    assert_eq!(
        report,
        ShutdownReport {
            clean: false,
            still_running: vec!["stubborn".into()]
        }
    );
    timeout(secs(1), dropped.recv())
        .await
        .expect("the stubborn run was dropped");
    position(&drain(&mut events), "a", "stop", 1);
    assert!(handle.report().await.iter().all(|r| r.state == Stopped));
}

/// Sends on its channel when dropped.
struct SignalOnDrop(mpsc::UnboundedSender<()>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_run_that_blocks_its_thread() {
    let (log, mut events) = mpsc::unbounded_channel();
    let (stuck, mut exits, release) = slow_exit("stuck", &["a"]);
    let mut config = config();
    config.shutdown_grace = ms(200);
    let manifolds = vec![idle("a", &[], &log), stuck, idle("x", &[], &log)];
    let handle = Engine::start(config, manifolds).unwrap();
    wait_within(handle.watch(), secs(10), "all run", all_running).await;

    let began = std::time::Instant::now();
    let report = timeout(secs(10), handle.shutdown())
        .await
        .expect("shutdown is bounded");
    let took = began.elapsed();
    assert!(took >= ms(200) && took < secs(5), "took {took:?}");
    // `a` never got its turn: it was waiting for `stuck` to exit.
    let still_running = vec!["a".to_owned(), "stuck".to_owned()];
    assert_eq!(
        report,
        ShutdownReport {
            clean: false,
            still_running
        }
    );
    assert_eq!(exits.recv().await, Some(1));
    position(&drain(&mut events), "x", "stop", 1);
    assert!(handle.report().await.iter().all(|r| r.state == Stopped));
    release.send(()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_shuts_the_engine_down() {
    let (log, mut events) = mpsc::unbounded_channel();
    let manifolds = vec![idle("a", &[], &log), idle("b", &["a"], &log)];
    let handle = Engine::start(config(), manifolds).unwrap();
    let reports = handle.watch();
    let clone = handle.clone();
    drop(handle);
    assert!(clone.ready().await, "a clone keeps the engine going");
    drop(clone);

    let stopped = |r: &[ComponentReport]| r.iter().all(|r| r.state == Stopped);
    wait_within(reports, secs(3600), "all stopped", stopped).await;
    let stops = next_of(&mut events, "stop", 2).await;
    let order: Vec<&str> = stops.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(order, ["b", "a"]);
}
