//! The API token never shows: not in logs at any level or format, not on
//! stdout, not in any admin route, not in `sluice status`.

mod support;

use std::process::Stdio;

use support::{Answer, FakeApi, Stdout, base64, collect, exit_code, signal, sluice};

/// A token that no log line or report could hold by chance.
const TOKEN: &str = "tok-7Hq2xZr9Lw4Pn8Vd";

/// Asserts that `text` holds the token neither as is nor as the
/// Basic-auth credentials sent with it.
fn assert_no_token(what: &str, text: &str) {
    let basic = base64(format!("{TOKEN}:").as_bytes());
    assert!(!text.contains(TOKEN), "{what} holds the token:\n{text}");
    assert!(
        !text.contains(&basic),
        "{what} holds the credentials:\n{text}"
    );
}

#[test]
fn base64_follows_the_standard_alphabet() {
    assert_eq!(base64(b"s3cret:"), "czNjcmV0Og==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}

#[tokio::test]
async fn a_rejected_token_appears_nowhere() {
    let api = FakeApi::start(Answer::Unauthorized).await;
    let mut child = sluice()
        .args(["run", "--admin", "127.0.0.1:0", "--log-format", "json"])
        .args(["--source", &api.url, "--token", TOKEN])
        .args(["--retry-min", "1ms", "--retry-max", "10ms"])
        .env("RUST_LOG", "trace")
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice starts");
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    let mut stdout = Stdout::of(&mut child);
    let admin = stdout.admin().await;
    stdout.line_starting("sluice: ready").await;
    // Several polls sent the token and had it refused.
    api.wait_requests(3).await;

    let mut seen = String::new();
    for route in ["/components", "/plugins", "/accounts", "/metrics", "/"] {
        let response = reqwest::get(format!("{admin}{route}"))
            .await
            .expect("admin answers");
        assert!(
            response.status().is_success(),
            "{route}: {}",
            response.status()
        );
        let body = response.text().await.expect("a body");
        assert_no_token(route, &body);
        seen.push_str(&body);
    }
    // The refusal itself is reported, without the token.
    assert!(seen.contains("token rejected (status 401)"), "{seen}");
    for json in [false, true] {
        let mut status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        status.args(["status", "--admin", &admin]);
        if json {
            status.arg("--json");
        }
        let output = status.output().expect("sluice status runs");
        assert!(output.status.success(), "{output:?}");
        assert_no_token("sluice status", &String::from_utf8_lossy(&output.stdout));
        assert_no_token("sluice status", &String::from_utf8_lossy(&output.stderr));
    }

    signal(&child, "TERM");
    let rest = stdout.rest().await;
    assert_eq!(exit_code(&mut child).await, Some(0));
    assert_no_token("stdout", &rest);
    let logs = stderr.await.expect("stderr was read");
    assert_no_token("the logs", &logs);
    // The logs are JSON, at trace level, and tell of the refusals.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "TRACE"),
        "no trace lines"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["error"] == "token rejected (status 401)"),
        "no refusal logged"
    );
}
