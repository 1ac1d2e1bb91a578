//! The `sluice` binary as an operator runs it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const PATIENCE: Duration = Duration::from_secs(60);

fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Reads stdout lines until one starts with `prefix`.
async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("stdout is readable") {
            if line.starts_with(prefix) {
                return line;
            }
        }
        panic!("sluice exited before printing {prefix:?}");
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the line comes in time")
}

fn terminate(child: &Child) {
    let pid = child.id().expect("the child runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(status.expect("kill runs").success());
}

#[tokio::test]
async fn run_with_no_flags_polls_the_demo_api_and_the_aggregates_grow() {
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0"])
        .spawn()
        .expect("sluice starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let admin = line_starting(&mut lines, "sluice: admin at ").await;
    let admin = admin
        .trim_start_matches("sluice: admin at ")
        .split_whitespace()
        .next()
        .expect("an address")
        .to_owned();
    line_starting(&mut lines, "sluice: ready").await;

    let get = |path: String| async move {
        reqwest::get(path)
            .await
            .expect("admin answers")
            .json::<serde_json::Value>()
            .await
    };
    let first = get(format!("{admin}/accounts?min_applied=300&wait=60s"))
        .await
        .expect("JSON");
    let applied = first["total"]["applied"].as_u64().expect("a count");
    assert!(applied >= 300, "{first}");
    let plugins = get(format!("{admin}/plugins")).await.expect("JSON");
    let plugins = plugins.as_array().expect("an array");
    assert_eq!(plugins.len(), 3);
    for plugin in plugins {
        assert!(
            plugin["state"]["count"].as_u64().is_some_and(|n| n > 0),
            "{plugin}"
        );
    }
    let later = get(format!(
        "{admin}/accounts?min_applied={}&wait=60s",
        applied + 100
    ))
    .await
    .expect("JSON");
    assert!(
        later["total"]["applied"]
            .as_u64()
            .is_some_and(|n| n >= applied + 100),
        "{later}"
    );

    terminate(&child);
    line_starting(&mut lines, "sluice: stopped").await;
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits in time");
    assert!(status.expect("an exit status").success());
}

#[tokio::test]
async fn a_bad_flag_is_named_in_the_error() {
    let cases = [
        (
            vec!["run", "--request-timeout", "soon"],
            "--request-timeout",
        ),
        (
            vec!["run", "--retry-min", "5s", "--retry-max", "1s"],
            "--retry-max",
        ),
        (
            vec!["run", "--source", "ftp://example.invalid/metrics"],
            "--source",
        ),
        (vec!["run", "--admin", "not-an-address"], "--admin"),
        (
            vec!["run", "--plugins", "/nonexistent/plugins"],
            "/nonexistent/plugins",
        ),
        (
            vec!["run", "--poll-interval", "1m", "--retry-max", "30s"],
            "--poll-interval",
        ),
        (
            vec!["run", "--ca-bundle", "/nonexistent/ca.pem"],
            "--ca-bundle",
        ),
        (vec!["run", "--max-body-bytes", "0"], "--max-body-bytes"),
        (
            vec!["run", "--plugin-memory-mib", "lots"],
            "--plugin-memory-mib",
        ),
    ];
    for (args, named) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("sluice runs");
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
