//! How the `sluice` binary stops: on SIGTERM or SIGINT it stops polling,
//! lets what is in flight finish within `--shutdown-grace`, prints the
//! counts and exits 0 unless something was lost (then 1, naming what); a
//! second signal exits at once with 130.

mod support;

use support::{Answer, FakeApi, PATIENCE, Stdout, exit_code, signal, sluice};

/// The numbers of `sluice: stopped: R received, A applied, X rejected, F in flight`.
fn counts(line: &str) -> [u64; 4] {
    let numbers: Vec<u64> = line
        .trim_start_matches("sluice: stopped: ")
        .split(", ")
        .map(|part| {
            let number = part.split_whitespace().next().expect("a number");
            number
                .parse()
                .unwrap_or_else(|_| panic!("a count in {line:?}"))
        })
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("four counts in {line:?}"))
}

#[tokio::test]
async fn sigterm_drains_the_pipeline_and_exits_zero_with_the_counts() {
    for sig in ["TERM", "INT"] {
        let mut child = sluice()
            .args(["run", "--admin", "127.0.0.1:0"])
            .spawn()
            .expect("sluice starts");
        let mut stdout = Stdout::of(&mut child);
        let admin = stdout.admin().await;
        stdout.line_starting("sluice: ready").await;
        let accounts = format!("{admin}/accounts?min_applied=50&wait=60s");
        let answered = reqwest::get(accounts).await.expect("admin answers");
        assert!(answered.status().is_success());

        signal(&child, sig);
        stdout.line_starting("sluice: stopping").await;
        let stopped = stdout.line_starting("sluice: stopped: ").await;
        let [received, applied, rejected, in_flight] = counts(&stopped);
        assert!(applied >= 50, "SIG{sig}: {stopped}");
        assert_eq!(in_flight, 0, "SIG{sig}: {stopped}");
        assert_eq!(received, applied + rejected, "SIG{sig}: {stopped}");
        assert_eq!(exit_code(&mut child).await, Some(0), "SIG{sig}");
    }
}

#[tokio::test]
async fn a_poll_that_never_ends_holds_the_stop_no_longer_than_the_grace() {
    let api = FakeApi::start(Answer::Hang).await;
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0"])
        .args(["--source", &api.url, "--request-timeout", "10m"])
        .args(["--shutdown-grace", "100ms"])
        .spawn()
        .expect("sluice starts");
    let mut stdout = Stdout::of(&mut child);
    stdout.line_starting("sluice: ready").await;
    api.wait_requests(1).await;

    signal(&child, "TERM");
    let stopped = stdout.line_starting("sluice: stopped: ").await;
    // The poll under way brought nothing in: nothing was lost.
    assert_eq!(counts(&stopped), [0, 0, 0, 0]);
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn a_second_signal_exits_at_once_with_130() {
    let api = FakeApi::start(Answer::Hang).await;
    // Without the second signal, this stop would wait ten minutes for the
    // poll under way.
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0"])
        .args(["--source", &api.url, "--request-timeout", "10m"])
        .args(["--shutdown-grace", "10m"])
        .spawn()
        .expect("sluice starts");
    let mut stdout = Stdout::of(&mut child);
    stdout.line_starting("sluice: ready").await;
    api.wait_requests(1).await;

    signal(&child, "TERM");
    stdout.line_starting("sluice: stopping").await;
    signal(&child, "INT");
    stdout.line_starting("sluice: second signal").await;
    let code = tokio::time::timeout(PATIENCE, exit_code(&mut child)).await;
    assert_eq!(code.expect("exits at once"), Some(130));
    assert!(!stdout.rest().await.contains("sluice: stopped"));
}

#[tokio::test]
async fn payloads_in_flight_at_the_deadline_are_named_and_exit_with_1() {
    // A handler that takes five seconds over its one payload.
    let plugins = tempfile::tempdir().expect("a plugin directory");
    let fixture = concat!(env!("SLUICE_FIXTURES_DIR"), "/sluice-plugin-misbehave.wasm");
    std::fs::copy(fixture, plugins.path().join("misbehave.wasm")).expect("copy the fixture");
    let api = FakeApi::start(Answer::Once(
        r#"[{"type":"misbehave","payload":{"value":"sleep"}}]"#,
    ))
    .await;
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0", "--no-cache"])
        .args(["--source", &api.url])
        .arg("--plugins")
        .arg(plugins.path())
        .args(["--plugin-deadline", "10s", "--shutdown-grace", "100ms"])
        .spawn()
        .expect("sluice starts");
    let mut stdout = Stdout::of(&mut child);
    stdout.line_starting("sluice: ready").await;
    // A second poll: the first response was received and handed on.
    api.wait_requests(2).await;

    signal(&child, "TERM");
    let stopped = stdout.line_starting("sluice: stopped: ").await;
    assert_eq!(counts(&stopped), [1, 0, 0, 1], "{stopped}");
    let lost = stdout.line_starting("sluice: lost").await;
    assert_eq!(lost, "sluice: lost at the deadline, in flight: misbehave 1");
    assert_eq!(exit_code(&mut child).await, Some(1));
}
