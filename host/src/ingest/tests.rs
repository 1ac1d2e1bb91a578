//! The poll loop against a scripted source, in paused time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::engine::{Engine, EngineConfig, EngineHandle, Manifold};

/// A source that answers from a script and records when it was polled.
struct Scripted {
    replies: Mutex<VecDeque<Result<Decoded, PollError>>>,
    polls: mpsc::UnboundedSender<Instant>,
}

impl Poll for Scripted {
    async fn poll(&self) -> Result<Decoded, PollError> {
        let _ = self.polls.send(Instant::now());
        crate::lock(&self.replies)
            .pop_front()
            .unwrap_or_else(|| Ok(Decoded::default()))
    }

    fn describe(&self) -> String {
        "scripted".to_owned()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn one_load() -> Decoded {
    decode::decode(br#"[{"type":"load_avg","payload":{"value":1}}]"#).expect("a valid body")
}

/// Runs a poll loop over `source` under an engine of its own, retrying
/// after 100 ms, doubling up to 2 s.
fn start<S: Poll>(
    source: S,
    min_interval: Duration,
    in_flight: usize,
    queue: mpsc::Sender<Response>,
    ledger: Arc<Ledger>,
) -> (Arc<Ingest<S>>, EngineHandle) {
    let config = IngestConfig {
        source: SourceConfig::new("http://127.0.0.1:1/metrics".parse().expect("a URL")),
        retry: BackoffSettings {
            min: ms(100),
            max: ms(2_000),
            factor: 2.0,
        },
        min_interval,
        in_flight,
    };
    let ingest =
        Arc::new(Ingest::with_source(config, source, queue, ledger).expect("valid settings"));
    let running = Arc::clone(&ingest);
    let manifold = Manifold::new("ingest", &[], move |ctx| Arc::clone(&running).run(ctx));
    let engine = Engine::start(EngineConfig::default(), vec![manifold]).expect("the engine starts");
    (ingest, engine)
}

struct Rig {
    polls: mpsc::UnboundedReceiver<Instant>,
    responses: mpsc::Receiver<Response>,
    ingest: Arc<Ingest<Scripted>>,
    ledger: Arc<Ledger>,
    _engine: EngineHandle,
}

/// A poll loop over `script`, with polls one at a time unless `in_flight`
/// says otherwise.
fn rig(script: Vec<Result<Decoded, PollError>>, min_interval: Duration, queue: usize) -> Rig {
    rig_with(script, min_interval, queue, 1)
}

fn rig_with(
    script: Vec<Result<Decoded, PollError>>,
    min_interval: Duration,
    queue: usize,
    in_flight: usize,
) -> Rig {
    let (polls_tx, polls) = mpsc::unbounded_channel();
    let (queue_tx, responses) = mpsc::channel(queue);
    let ledger = Arc::new(Ledger::new());
    let source = Scripted {
        replies: Mutex::new(script.into()),
        polls: polls_tx,
    };
    let (ingest, engine) = start(
        source,
        min_interval,
        in_flight,
        queue_tx,
        Arc::clone(&ledger),
    );
    Rig {
        polls,
        responses,
        ingest,
        ledger,
        _engine: engine,
    }
}

impl Rig {
    async fn next_poll(&mut self) -> Instant {
        self.polls.recv().await.expect("ingest keeps polling")
    }

    /// The gaps between the next `n + 1` polls.
    async fn gaps(&mut self, n: usize) -> Vec<Duration> {
        let mut at = self.next_poll().await;
        let mut gaps = Vec::new();
        for _ in 0..n {
            let next = self.next_poll().await;
            gaps.push(next - at);
            at = next;
        }
        gaps
    }
}

fn server_error() -> Result<Decoded, PollError> {
    Err(PollError::ServerError(StatusCode::INTERNAL_SERVER_ERROR))
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_with_jitter_and_reset_on_success() {
    let mut script: Vec<_> = (0..6).map(|_| server_error()).collect();
    script.push(Ok(one_load()));
    script.push(server_error());
    let mut rig = rig(script, Duration::ZERO, 8);
    let gaps = rig.gaps(8).await;
    // Ceilings 100, 200, 400, 800, 1600, 2000 ms; never below the minimum.
    for (gap, ceiling) in gaps.iter().zip([100, 200, 400, 800, 1600, 2000]) {
        assert!(*gap >= ms(100) && *gap <= ms(ceiling), "{gaps:?}");
    }
    // The success is followed at once by the next poll; the failure after
    // it starts the backoff again from its minimum.
    assert_eq!(gaps[6], Duration::ZERO, "{gaps:?}");
    assert_eq!(gaps[7], ms(100), "{gaps:?}");
    let report = rig.ingest.report();
    assert_eq!(report["polls"]["server_error"], 7);
    assert!(
        report["polls"]["ok"].as_u64().is_some_and(|n| n >= 1),
        "{report}"
    );
    assert_eq!(rig.ledger.snapshot().of("load_avg").received, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_within_bounds() {
    let limited = |after: u64| {
        Err(PollError::RateLimited {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(after)),
        })
    };
    let zero = Err(PollError::RateLimited {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: Some(Duration::ZERO),
    });
    let mut rig = rig(vec![limited(1), limited(60), zero], Duration::ZERO, 8);
    let gaps = rig.gaps(3).await;
    // 1 s as asked; 60 s capped at the longest retry (2 s); 0 s raised to
    // the shortest (100 ms), so a server cannot make sluice spin.
    assert_eq!(gaps, [ms(1_000), ms(2_000), ms(100)]);
    assert_eq!(rig.ingest.report()["polls"]["rate_limited"], 3);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_retried_slowly_until_it_works() {
    let script = vec![
        Err(PollError::Unauthorized),
        Err(PollError::Unauthorized),
        Ok(one_load()),
    ];
    let mut rig = rig(script, Duration::ZERO, 8);
    let gaps = rig.gaps(3).await;
    assert_eq!(gaps[..2], [ms(2_000), ms(2_000)]);
    assert_eq!(gaps[2], Duration::ZERO);
    let report = rig.ingest.report();
    assert_eq!(report["polls"]["unauthorized"], 2);
    assert!(report["last_error"].is_null(), "recovered: {report}");
}

#[tokio::test(start_paused = true)]
async fn polls_are_paced_from_their_start_and_wait_for_room_without_catching_up() {
    let script = (0..4).map(|_| Ok(one_load())).collect();
    let mut rig = rig(script, ms(250), 2);
    let first = rig.next_poll().await;
    let second = rig.next_poll().await;
    assert_eq!(second - first, ms(250));
    // The queue is full: ten seconds pass with no poll.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        rig.polls.try_recv().is_err(),
        "polled with no room for the response"
    );
    // Room for one: one poll at once, then the normal pace; no burst.
    rig.responses.recv().await.expect("a response");
    let resumed = rig.next_poll().await;
    assert!(resumed - second >= Duration::from_secs(10));
    rig.responses.recv().await.expect("a response");
    let after = rig.next_poll().await;
    assert_eq!(after - resumed, ms(250));
    let report = rig.ingest.report();
    assert_eq!(report["queue"]["depth"], 2);
    let rate = report["polls_per_second"].as_f64().expect("a poll rate");
    assert!(
        rate > 0.0 && rate <= 4.0,
        "at most one poll per 250 ms: {report}"
    );
}

/// A log writer into a shared buffer.
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        crate::lock(&self.0).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_logged_once_per_spell_whatever_failures_come_between() {
    let logged = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&logged);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || Captured(Arc::clone(&writer)))
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test runtime has one thread, which runs ingest too.
    let _default = tracing::subscriber::set_default(subscriber);

    // As the reference server answers a bad token with faults injected:
    // 401 and 500 in turn, then the token is fixed, then it is wrong again.
    let mut script = Vec::new();
    for _ in 0..5 {
        script.push(Err(PollError::Unauthorized));
        script.push(server_error());
    }
    script.push(Ok(one_load()));
    script.push(Err(PollError::Unauthorized));
    let mut rig = rig(script, Duration::ZERO, 8);
    rig.gaps(12).await;

    let logged = String::from_utf8(crate::lock(&logged).clone()).expect("UTF-8 logs");
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    let failed = |level: &str, needle: &str| {
        lines
            .iter()
            .filter(|line| {
                line["level"] == level
                    && line["fields"]["message"] == "poll failed"
                    && line["fields"]["error"]
                        .as_str()
                        .is_some_and(|error| error.contains(needle))
            })
            .count()
    };
    // Once in the first spell of failures, once more after the success.
    assert_eq!(failed("ERROR", "token rejected"), 2, "{logged}");
    assert_eq!(failed("WARN", "server error"), 1, "{logged}");
    assert_eq!(rig.ingest.report()["polls"]["unauthorized"], 6);
}

/// A source whose polls each wait for the test to answer them.
struct Gated {
    polls: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<Result<Decoded, PollError>>>,
}

impl Poll for Gated {
    async fn poll(&self) -> Result<Decoded, PollError> {
        let (answer, reply) = tokio::sync::oneshot::channel();
        let _ = self.polls.send(answer);
        reply.await.unwrap_or_else(|_| Ok(Decoded::default()))
    }

    fn describe(&self) -> String {
        "gated".to_owned()
    }
}

type Answer = tokio::sync::oneshot::Sender<Result<Decoded, PollError>>;

struct GatedRig {
    polls: mpsc::UnboundedReceiver<Answer>,
    responses: mpsc::Receiver<Response>,
    ingest: Arc<Ingest<Gated>>,
    _engine: EngineHandle,
}

fn gated(in_flight: usize) -> GatedRig {
    let (polls_tx, polls) = mpsc::unbounded_channel();
    let (queue_tx, responses) = mpsc::channel(8);
    let source = Gated { polls: polls_tx };
    let ledger = Arc::new(Ledger::new());
    let (ingest, engine) = start(source, Duration::ZERO, in_flight, queue_tx, ledger);
    GatedRig {
        polls,
        responses,
        ingest,
        _engine: engine,
    }
}

impl GatedRig {
    async fn next_poll(&mut self) -> Answer {
        self.polls.recv().await.expect("ingest keeps polling")
    }

    /// Lets ten seconds pass, and asserts that no poll started meanwhile.
    async fn no_new_poll(&mut self, why: &str) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(self.polls.try_recv().is_err(), "a poll started {why}");
    }
}

/// `n` load_avg payloads of value `value`.
fn loads(n: usize, value: u32) -> Decoded {
    let entry = format!(r#"{{"type":"load_avg","payload":{{"value":{value}}}}}"#);
    let body = format!("[{}]", vec![entry; n].join(","));
    decode::decode(body.as_bytes()).expect("a valid body")
}

fn answer(poll: Answer, reply: Result<Decoded, PollError>) {
    // The poll is under way until answered, so its receiver is alive.
    let _ = poll.send(reply);
}

#[tokio::test(start_paused = true)]
async fn once_polls_succeed_two_are_under_way_and_answers_go_on_in_order() {
    let mut rig = gated(2);
    let first = rig.next_poll().await;
    rig.no_new_poll("beside the first poll of a run").await;
    answer(first, Ok(loads(1, 0)));
    let second = rig.next_poll().await;
    let third = rig.next_poll().await;
    rig.no_new_poll("with two under way").await;
    let report = rig.ingest.report();
    assert_eq!(report["polls_under_way"], 2, "{report}");
    assert_eq!(report["polls_in_flight"], 2, "{report}");

    // The third answers first, but its response waits for the second's.
    answer(third, Ok(loads(3, 3)));
    let response = rig.responses.recv().await.expect("a response");
    assert_eq!(response.decoded, loads(1, 0));
    rig.no_new_poll("while the oldest poll is under way").await;
    assert!(rig.responses.try_recv().is_err(), "handed on out of order");

    answer(second, Ok(loads(2, 2)));
    for expected in [loads(2, 2), loads(3, 3)] {
        let response = rig.responses.recv().await.expect("a response");
        assert_eq!(response.decoded, expected);
    }
    // Both done: two polls under way again.
    let _fourth = rig.next_poll().await;
    let _fifth = rig.next_poll().await;
    assert_eq!(rig.ingest.report()["polls"]["ok"], 3);
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_polls_go_one_at_a_time_until_one_succeeds() {
    let mut rig = gated(2);
    answer(rig.next_poll().await, Ok(loads(1, 0)));
    let second = rig.next_poll().await;
    let third = rig.next_poll().await;
    answer(second, Ok(loads(1, 1)));
    answer(third, server_error());
    let failed_at = Instant::now();

    // The backoff's first delay, then one poll alone.
    let alone = rig.next_poll().await;
    assert_eq!(Instant::now() - failed_at, ms(100));
    rig.no_new_poll("beside the poll after a failure").await;
    answer(alone, Ok(loads(1, 2)));
    let _again = rig.next_poll().await;
    let _and_again = rig.next_poll().await;

    let report = rig.ingest.report();
    assert_eq!(report["polls"]["ok"], 3);
    assert_eq!(report["polls"]["server_error"], 1);
}

#[tokio::test(start_paused = true)]
async fn polls_under_way_when_polling_stops_finish_and_are_handed_on() {
    let mut rig = gated(2);
    answer(rig.next_poll().await, Ok(loads(1, 0)));
    let second = rig.next_poll().await;
    let third = rig.next_poll().await;
    rig.ingest.stop_polling();
    let stopped = tokio::time::timeout(Duration::from_secs(10), rig.ingest.polls_stopped()).await;
    assert!(
        stopped.is_err(),
        "polls_stopped before the polls under way ended"
    );

    answer(third, Ok(loads(3, 3)));
    answer(second, Ok(loads(2, 2)));
    rig.ingest.polls_stopped().await;
    for expected in [loads(1, 0), loads(2, 2), loads(3, 3)] {
        let response = rig.responses.recv().await.expect("a response");
        assert_eq!(response.decoded, expected);
    }
    rig.no_new_poll("after polling stopped").await;
}
