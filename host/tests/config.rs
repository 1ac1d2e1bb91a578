//! Configuration of `sluice run`: each setting from a flag, a `SLUICE_*`
//! variable, the file of `--config` or its default, in that order of
//! precedence; errors that name the key and the file; `--check-config`.

mod support;

use std::path::Path;
use std::process::Output;

use support::sluice;

/// Flags, environment variables, and what the outcome must show.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Runs `sluice run --check-config` with `args` and `env`.
async fn check(args: &[&str], env: &[(&str, &str)]) -> Output {
    sluice()
        .args(["run", "--check-config"])
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("sluice runs")
}

/// The `  key = value  # origin` line of `key` in a `--check-config` report.
fn setting(output: &Output, key: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("  {key} = ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        .to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A configuration file with `text`, in a fresh directory.
fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).expect("the file is written");
    let path = path.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

#[tokio::test]
async fn each_layer_wins_over_the_ones_below() {
    let (_dir, path) = file("request_timeout = \"4s\"\nretry_max = \"20s\"\n");
    let config = ["--config", path.as_str()];
    let flag = ["--config", path.as_str(), "--request-timeout", "2s"];
    let env = [("SLUICE_REQUEST_TIMEOUT", "3s")];
    let file_origin = format!("4s  # request_timeout in {path}");
    let cases: [Case<'_>; 4] = [
        (&[], &[], "10s  # default"),
        (&config, &[], &file_origin),
        (&config, &env, "3s  # SLUICE_REQUEST_TIMEOUT"),
        (&flag, &env, "2s  # --request-timeout"),
    ];
    for (args, env, expected) in cases {
        let output = check(args, env).await;
        assert!(
            output.status.success(),
            "{args:?} {env:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            setting(&output, "request_timeout"),
            expected,
            "{args:?} {env:?}"
        );
    }
    // A layer fills only what the layers above it left: the file's
    // retry_max stands beside the flag's request timeout.
    let output = check(&flag, &env).await;
    assert_eq!(
        setting(&output, "retry_max"),
        format!("20s  # retry_max in {path}")
    );
    // The file itself can come from the environment.
    let output = check(&[], &[("SLUICE_CONFIG", path.as_str())]).await;
    assert_eq!(setting(&output, "request_timeout"), file_origin);
}

#[tokio::test]
async fn paths_in_the_file_are_relative_to_it_and_the_token_is_not_shown() {
    let (dir, path) = file("plugin_dir = \"plugins\"\ntoken = \"file-token-123\"\n");
    std::fs::create_dir(dir.path().join("plugins")).expect("a plugin directory");
    let output = check(&["--config", &path], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let plugins = dir.path().join("plugins");
    assert_eq!(
        setting(&output, "plugin_dir"),
        format!("{}  # plugin_dir in {path}", plugins.display())
    );
    assert_eq!(
        setting(&output, "token"),
        format!("<redacted>  # token in {path}")
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("file-token-123"), "{stdout}");

    let from_env = check(&["--config", &path], &[("SLUICE_TOKEN", "env-token-456")]).await;
    assert_eq!(setting(&from_env, "token"), "<redacted>  # SLUICE_TOKEN");
}

#[tokio::test]
async fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
    let cases = [
        (
            "requst_timeout = \"1s\"\n",
            "unknown key `requst_timeout`",
            "line 1",
        ),
        (
            "[engine.backoff]\ninital = \"1s\"\n",
            "unknown key `engine.backoff.inital`",
            "line 2",
        ),
        (
            "[plugins.load_avg]\nmemory = 8\n",
            "unknown key `plugins.load_avg.memory`",
            "line 2",
        ),
        (
            "[plugins.x.wasi]\nnetwork = true\n",
            "unknown key `plugins.x.wasi.network`",
            "line 2",
        ),
    ];
    for (text, named, line) in cases {
        let (_dir, path) = file(text);
        let output = check(&["--config", &path], &[]).await;
        assert_eq!(output.status.code(), Some(1), "{text:?}");
        let stderr = stderr(&output);
        assert!(stderr.contains(&path), "{text:?}: {stderr}");
        assert!(stderr.contains(named), "{text:?}: {stderr}");
        assert!(stderr.contains(line), "{text:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_value_of_the_wrong_kind_is_an_error_naming_the_key() {
    let cases = [
        ("request_timeout = 5\n", "`request_timeout`"),
        ("request_timeout = \"soon\"\n", "`request_timeout`"),
        ("max_body_bytes = \"big\"\n", "`max_body_bytes`"),
        ("admin = 9480\n", "`admin`"),
        ("log_format = \"xml\"\n", "`log_format`"),
        (
            "[engine.backoff]\njitter = \"yes\"\n",
            "`engine.backoff.jitter`",
        ),
        (
            "[plugins.load_avg]\ndeadline = 2\n",
            "`plugins.load_avg.deadline`",
        ),
    ];
    for (text, named) in cases {
        let (_dir, path) = file(text);
        let output = check(&["--config", &path], &[]).await;
        assert_eq!(output.status.code(), Some(1), "{text:?}");
        let stderr = stderr(&output);
        assert!(stderr.contains(&path), "{text:?}: {stderr}");
        assert!(stderr.contains(named), "{text:?}: {stderr}");
    }
}

#[tokio::test]
async fn check_config_exits_zero_when_everything_is_valid_and_one_when_not() {
    let (_dir, path) = file(
        "retry_min = \"1s\"\n[engine.backoff]\ninitial = \"50ms\"\n\
         [plugins.load_avg]\ndeadline = \"250ms\"\nmemory_mib = 16\n",
    );
    let valid = check(&["--config", &path], &[]).await;
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    let stdout = String::from_utf8_lossy(&valid.stdout);
    assert!(stdout.starts_with("sluice: configuration OK"), "{stdout}");
    assert!(
        stdout.contains("[plugins.load_avg] deadline 250ms, memory_mib 16"),
        "{stdout}"
    );

    // Values that parse but cannot work, from each layer, named where given.
    let retry = format!("retry_min in {path}");
    let (_bad, bad_plugin) = file("[plugins.load_avg]\nmemory_mib = 0\n");
    let (_gone, gone) = file("plugin_dir = \"nowhere\"\n");
    let cases: [Case<'_>; 9] = [
        (&["--config", &path, "--retry-max", "500ms"], &[], &retry),
        (
            &["--config", &path],
            &[("SLUICE_RETRY_MAX", "500ms")],
            "SLUICE_RETRY_MAX",
        ),
        (&["--config", &bad_plugin], &[], "[plugins.load_avg]"),
        (&["--config", &gone], &[], "nowhere: not a directory"),
        (
            &["--plugins", "/nonexistent/plugins"],
            &[],
            "/nonexistent/plugins",
        ),
        (&["--log-level", "loud"], &[], "--log-level"),
        (
            &["--polls-in-flight", "0"],
            &[],
            "--polls-in-flight must be from 1 to 16, not 0",
        ),
        (
            &[],
            &[("SLUICE_POLLS_IN_FLIGHT", "17")],
            "SLUICE_POLLS_IN_FLIGHT must be from 1 to 16, not 17",
        ),
        (
            &[],
            &[("SLUICE_REQUEST_TIMEOUT", "soon")],
            "--request-timeout",
        ),
    ];
    for (args, env, named) in cases {
        let output = check(args, env).await;
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}");
        let stderr = stderr(&output);
        assert!(stderr.contains(named), "{args:?} {env:?}: {stderr}");
    }
    let missing = check(&["--config", "/nonexistent/sluice.toml"], &[]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("/nonexistent/sluice.toml"));
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sluice.example.toml");
    let example = example.to_str().expect("a UTF-8 path");
    let output = check(&["--config", example], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Every key it sets is read from it, not left to its default.
    for key in [
        "request_timeout",
        "retry_max",
        "shutdown_grace",
        "log_format",
    ] {
        assert!(
            setting(&output, key).contains("sluice.example.toml"),
            "{key}"
        );
    }
}

#[tokio::test]
async fn grants_are_shown_by_name_never_by_value() {
    let (dir, path) = file(
        "[plugins.load_avg.wasi]\nenv = { API_KEY = \"hunter2\" }\n\
         dirs = [{ host = \"data\", guest = \"/data\" }]\n",
    );
    std::fs::create_dir(dir.path().join("data")).expect("the granted directory");
    let output = check(&["--config", &path], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let data = dir.path().join("data");
    let line = format!("wasi grants: env API_KEY, read {} at /data", data.display());
    assert!(stdout.contains(&line), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}
