//! `sluice status` and the admin flags of `sluice run`, as the binary.

mod support;

use std::process::Stdio;

use support::{PATIENCE, Stdout, exit_code, sluice};
use tokio::io::AsyncReadExt as _;

/// Runs `sluice ARGS` to its end; returns its exit code, stdout and stderr.
async fn output(args: &[&str]) -> (Option<i32>, String, String) {
    let run = sluice().args(args).stderr(Stdio::piped()).output();
    let output = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("sluice ends in time")
        .expect("sluice starts");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (
        output.status.code(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn status_fails_and_names_the_address_when_no_host_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address").to_string();
    drop(listener);

    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["status", "--admin", &addr];
        args.extend(extra);
        let (code, stdout, stderr) = output(&args).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let expected = format!("sluice status: no sluice host answers at http://{addr}");
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert!(stderr.contains("--admin"), "{stderr}");
    }
}

#[tokio::test]
async fn run_refuses_a_public_admin_address_without_a_token() {
    let (code, _, stderr) = output(&["run", "--admin", "0.0.0.0:0", "--no-cache"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--admin-token"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
}

#[tokio::test]
async fn status_reads_a_running_host_as_text_json_and_a_live_view() {
    let mut host = sluice()
        .args(["run", "--admin", "127.0.0.1:0", "--no-cache"])
        .env("SLUICE_ADMIN_TOKEN", "cli-t0ken")
        .spawn()
        .expect("sluice runs");
    let mut stdout = Stdout::of(&mut host);
    let admin = stdout.admin().await;
    stdout.line_starting("sluice: ready").await;
    let addr = admin.trim_start_matches("http://").to_owned();

    let (code, _, stderr) = output(&["status", "--admin", &addr]).await;
    assert_eq!(code, Some(1), "a token is needed");
    assert!(stderr.contains("--admin-token"), "{stderr}");

    let token = ["--admin-token", "cli-t0ken"];
    let (code, text, stderr) = output(&[&["status", "--admin", &addr][..], &token].concat()).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        text.starts_with(&format!("sluice at {admin}: 5 of 5 components running")),
        "{text}"
    );
    for name in [
        "ingest",
        "dispatch",
        "handler:load_avg",
        "load_avg",
        "cpu_usage",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "no {name} row in\n{text}"
        );
    }

    let args = [&["status", "--json", "--admin", &addr][..], &token].concat();
    let (code, json, stderr) = output(&args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON on stdout");
    assert_eq!(
        json["components"].as_array().map(Vec::len),
        Some(5),
        "{json}"
    );
    assert_eq!(json["plugins"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(
        !json.to_string().contains("cli-t0ken"),
        "the token shows in the status"
    );

    // The live view clears the screen before each refresh.
    let mut watch = sluice()
        .args(["status", "--watch", "--interval", "50ms", "--admin", &addr])
        .env("SLUICE_ADMIN_TOKEN", "cli-t0ken")
        .spawn()
        .expect("sluice status runs");
    let mut screen = watch.stdout.take().expect("stdout is piped");
    let frames = async {
        let (mut seen, mut chunk) = (String::new(), [0u8; 4096]);
        while seen.matches("\x1b[2J\x1b[H").count() < 3 {
            let n = screen.read(&mut chunk).await.expect("stdout is readable");
            assert!(n > 0, "the live view ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        seen
    };
    let seen = tokio::time::timeout(PATIENCE, frames)
        .await
        .expect("three refreshes in time");
    let last = seen.rsplit("\x1b[2J\x1b[H").next().unwrap_or_default();
    assert!(last.contains("handler:load_avg"), "{last}");
    support::signal(&watch, "INT");
    assert_eq!(exit_code(&mut watch).await, Some(0));

    support::signal(&host, "TERM");
    let rest = tokio::time::timeout(PATIENCE, stdout.rest()).await;
    assert!(rest.is_ok(), "sluice closes its stdout in time");
    assert_eq!(exit_code(&mut host).await, Some(0));
}
