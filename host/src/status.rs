//! `sluice status`: what a running host says of its components and plugins,
//! read from its admin server and shown as a table, in the manner of Juju's
//! engine report, or as JSON for scripts.
//!
//! ```text
//! COMPONENT          STATE    INPUTS    STARTS  UPTIME  LAST ERROR
//! ingest             running  -              1  4m02s   -
//! dispatch           running  ingest         2  1m10s   restarted by request
//! ```

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::cli::DEFAULT_ADMIN;
use crate::engine::{ComponentReport, ComponentState};
use crate::ingest::Secret;

/// ANSI: clear the screen and move to its top left corner.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// The longest a summary of an aggregate grows in the table.
const SUMMARY_WIDTH: usize = 60;

/// Flags of `sluice status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Address of the host's admin server: HOST:PORT, or a URL.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// The admin server's token (its --admin-token), sent as a bearer token.
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    pub admin_token: Option<Secret>,
    /// Print JSON instead of tables (one document per refresh with --watch).
    #[arg(long)]
    pub json: bool,
    /// Keep the view on screen, refreshed every --interval, until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Time between refreshes with --watch.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub interval: Duration,
}

fn secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be above zero".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(format!("{err} (try 500ms, 1s or 5s)")),
    }
}

/// Why a host's status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing answered at the address.
    #[error("no sluice host answers at {url}: {reason}")]
    Unreachable {
        /// The admin server's URL.
        url: String,
        /// What went wrong, from the innermost cause.
        reason: String,
    },
    /// The host wants a token that was not given, or not this one.
    #[error("the host at {url} refused the admin token (401): give its --admin-token")]
    Unauthorized {
        /// The admin server's URL.
        url: String,
    },
    /// Something answered, but not as a sluice admin server does.
    #[error("{url} answered, but not like a sluice admin server: {detail}")]
    Unexpected {
        /// The URL that answered.
        url: String,
        /// What was wrong with the answer.
        detail: String,
    },
}

/// A client of one host's admin server.
#[derive(Debug, Clone)]
pub struct StatusClient {
    base: Url,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl StatusClient {
    /// A client of the admin server at `admin` (`HOST:PORT` or a URL).
    pub fn new(admin: &str, token: Option<Secret>) -> anyhow::Result<StatusClient> {
        let text = if admin.contains("://") {
            admin.to_owned()
        } else {
            format!("http://{admin}")
        };
        let base = Url::parse(&text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                anyhow::anyhow!("--admin {admin:?} is neither HOST:PORT nor an http(s) URL")
            })?;
        let mut base = base;
        if !base.path().ends_with('/') {
            // So that routes join under the path instead of replacing its end.
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("sluice-status/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StatusClient { base, token, http })
    }

    /// The admin server's base URL, as shown to people.
    pub fn url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// Reads the host's components, plugins and accounts. Cancel-safe.
    pub async fn fetch(&self) -> Result<Status, StatusError> {
        let (components, plugins, accounts) = tokio::try_join!(
            self.get("components"),
            self.get("plugins"),
            self.get("accounts")
        )?;
        let components = serde_json::from_value(components).map_err(|err| {
            let detail = format!("its components are not an engine report: {err}");
            self.unexpected("components", detail)
        })?;
        let Value::Array(plugins) = plugins else {
            return Err(self.unexpected("plugins", "its plugins are not a list".to_owned()));
        };
        Ok(Status {
            admin: self.url(),
            components,
            plugins,
            accounts,
        })
    }

    async fn get(&self, route: &str) -> Result<Value, StatusError> {
        let url = self
            .base
            .join(route)
            .map_err(|err| self.unexpected(route, err.to_string()))?;
        let mut request = self.http.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|err| StatusError::Unreachable {
                url: self.url(),
                reason: innermost(&err),
            })?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(StatusError::Unauthorized { url: self.url() }),
            status => return Err(self.unexpected(route, format!("status {status}"))),
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| StatusError::Unreachable {
                url: self.url(),
                reason: innermost(&err),
            })?;
        serde_json::from_slice(&body)
            .map_err(|err| self.unexpected(route, format!("not JSON: {err}")))
    }

    fn unexpected(&self, route: &str, detail: String) -> StatusError {
        StatusError::Unexpected {
            url: format!("{}/{route}", self.url()),
            detail,
        }
    }
}

/// The innermost cause of an error: for a refused connection, "Connection
/// refused (os error 111)" rather than "error sending request".
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What a host said of itself at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The admin server it was read from.
    pub admin: String,
    /// The engine report: one entry per component.
    pub components: Vec<ComponentReport>,
    /// One entry per plugin, as `GET /plugins` gives them.
    pub plugins: Vec<Value>,
    /// The payload accounts, as `GET /accounts` gives them.
    pub accounts: Value,
}

impl Status {
    /// The status as one JSON document.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The status as tables of components and plugins, for people.
    pub fn to_text(&self) -> String {
        let running = self
            .components
            .iter()
            .filter(|c| c.state == ComponentState::Running)
            .count();
        let total = &self.accounts["total"];
        let count = |key: &str| total[key].as_u64().unwrap_or(0);
        let rejected: u64 = total["rejected"]
            .as_object()
            .map(|reasons| reasons.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let mut text = format!(
            "sluice at {}: {running} of {} components running; payloads: {} received, \
             {} applied, {rejected} rejected, {} in flight\n\n",
            self.admin,
            self.components.len(),
            count("received"),
            count("applied"),
            count("in_flight"),
        );
        text.push_str(&self.components_table());
        text.push('\n');
        text.push_str(&self.plugins_table());
        text
    }

    fn components_table(&self) -> String {
        let rows = self.components.iter().map(|c| {
            let state = match (c.state, c.backoff_ms) {
                (ComponentState::BackingOff, Some(ms)) => {
                    format!("backing_off (retry in {})", human(ms))
                }
                (state, _) => state.to_string(),
            };
            let inputs = if c.inputs.is_empty() {
                "-".to_owned()
            } else {
                c.inputs.join(",")
            };
            vec![
                c.name.clone(),
                state,
                inputs,
                c.starts.to_string(),
                c.uptime_ms.map_or_else(|| "-".to_owned(), human),
                c.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        });
        let header = [
            "COMPONENT",
            "STATE",
            "INPUTS",
            "STARTS",
            "UPTIME",
            "LAST ERROR",
        ];
        table(&header, rows.collect())
    }

    fn plugins_table(&self) -> String {
        let rows = self.plugins.iter().map(|p| {
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let number = |v: &Value| v.as_u64().unwrap_or(0).to_string();
            if let Some(error) = p["load_error"].as_str() {
                let name = format!("({})", p["source"].as_str().unwrap_or("?"));
                let state = format!("not loaded: {error}");
                return vec![name, "-".into(), "-".into(), "-".into(), "-".into(), state];
            }
            let types: Vec<&str> = p["types"]
                .as_array()
                .map(|ts| ts.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let handler = &p["handler"];
            let state = match p["state_error"].as_str() {
                Some(error) => format!("cannot render: {error}"),
                None => summarize(&p["state"]),
            };
            vec![
                text(&p["name"]),
                text(&p["version"]),
                types.join(","),
                number(&handler["traps"]),
                number(&handler["rejected"]["quarantined"]),
                state,
            ]
        });
        let header = [
            "PLUGIN",
            "VERSION",
            "TYPES",
            "TRAPS",
            "QUARANTINED",
            "STATE",
        ];
        table(&header, rows.collect())
    }
}

/// Lays out `rows` under `header` in columns two spaces apart; the last
/// column is not padded.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A duration in milliseconds, the way people read it: `850ms`, `12s`,
/// `3m05s`, `2h07m`, `3d04h`.
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The key facts of an aggregate on one line: `count=600 max=4 min=0`.
pub fn summarize(state: &Value) -> String {
    let text = match state {
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| format!("{key}={}", compact(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => compact(other),
    };
    if text.chars().count() > SUMMARY_WIDTH {
        let cut: String = text.chars().take(SUMMARY_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A value in few characters: numbers to four significant digits, lists
/// and objects of at most four items.
fn compact(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::Number(n) if n.is_f64() => significant(n.as_f64().unwrap_or(0.0), 4),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", first_four(items.iter().map(compact))),
        Value::Object(fields) => {
            let fields = fields
                .iter()
                .map(|(key, value)| format!("{key}={}", compact(value)));
            format!("{{{}}}", first_four(fields))
        }
        other => other.to_string(),
    }
}

/// The first four of `items`, joined with commas, and `+N` for the rest.
fn first_four(items: impl ExactSizeIterator<Item = String>) -> String {
    let rest = items.len().saturating_sub(4);
    let mut shown: Vec<String> = items.take(4).collect();
    if rest > 0 {
        shown.push(format!("+{rest}"));
    }
    shown.join(",")
}

/// `x` with `digits` significant digits, without trailing zeros, never in
/// exponent form (`0.0004`, `3.142`, `1234`).
fn significant(x: f64, digits: i32) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 17) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Runs `sluice status`.
pub async fn execute(args: StatusArgs) -> ExitCode {
    let client = match StatusClient::new(&args.admin, args.admin_token.clone()) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("sluice status: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.watch {
        watch(&client, &args).await;
        return ExitCode::SUCCESS;
    }
    match client.fetch().await {
        Ok(status) => {
            print!("{}", render(&status, args.json));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sluice status: {err}");
            if matches!(err, StatusError::Unreachable { .. }) {
                eprintln!(
                    "sluice status: is `sluice run` running with --admin {}? \
                     Give its address with --admin.",
                    args.admin
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn render(status: &Status, json: bool) -> String {
    if json {
        format!("{:#}\n", status.to_json())
    } else {
        status.to_text()
    }
}

/// Shows the status every `--interval` until Ctrl-C; a host that stops
/// answering is shown as such and polled on.
async fn watch(client: &StatusClient, args: &StatusArgs) {
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = &mut interrupt => return,
            _ = ticks.tick() => {}
        }
        let fetched = tokio::select! {
            _ = &mut interrupt => return,
            fetched = client.fetch() => fetched,
        };
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        if args.json {
            // One document per line, for a pipe.
            let line = match fetched {
                Ok(status) => status.to_json().to_string(),
                Err(err) => serde_json::json!({ "error": err.to_string() }).to_string(),
            };
            println!("{line}");
            continue;
        }
        let body = match fetched {
            Ok(status) => status.to_text(),
            Err(err) => format!("{err}\n"),
        };
        let every = humantime::format_duration(args.interval);
        print!("{CLEAR}{body}\n{now}: refreshed every {every}; Ctrl-C to stop\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (12_400, "12s"),
            (185_000, "3m05s"),
            (7_620_000, "2h07m"),
            (273_600_000, "3d04h"),
        ];
        for (ms, text) in cases {
            assert_eq!(human(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn aggregates_are_summed_up_on_one_short_line() {
        let cases = [
            (
                serde_json::json!({"count": 3, "max": 4.25, "min": 0.0}),
                "count=3 max=4.25 min=0",
            ),
            (
                serde_json::json!({"average": [0.1, 0.33333, 0.5, 0.7, 0.9, 1.0], "count": 2}),
                "average=[0.1,0.3333,0.5,0.7,+2] count=2",
            ),
            (
                serde_json::json!({"count": 9, "max": 3.99998, "min": 0.000412}),
                "count=9 max=4 min=0.000412",
            ),
            (
                serde_json::json!({"count": 4, "max": {"/": 0.5, "/a": 0.25, "/b": 1.0, "/c": 0.0, "/d": 0.125}}),
                "count=4 max={/=0.5,/a=0.25,/b=1,/c=0,+1}",
            ),
            (
                serde_json::json!({"latest": null, "count": 0}),
                "count=0 latest=-",
            ),
            (serde_json::json!("text"), "text"),
        ];
        for (state, summary) in cases {
            assert_eq!(summarize(&state), summary);
        }
        let long = serde_json::json!({ "key": "x".repeat(100) });
        assert_eq!(summarize(&long).chars().count(), SUMMARY_WIDTH);
    }

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let rows = vec![
            vec!["ingest".to_owned(), "running".to_owned(), "-".to_owned()],
            vec![
                "handler:load_avg".to_owned(),
                "backing_off".to_owned(),
                "boom".to_owned(),
            ],
        ];
        let text = table(&["NAME", "STATE", "ERROR"], rows);
        let expected = "\
NAME              STATE        ERROR
ingest            running      -
handler:load_avg  backing_off  boom
";
        assert_eq!(text, expected);
    }

    #[test]
    fn admin_addresses_are_host_port_or_urls() {
        let client = StatusClient::new("127.0.0.1:9480", None).expect("an address");
        assert_eq!(client.url(), "http://127.0.0.1:9480");
        let client = StatusClient::new("https://ops.example/sluice/", None).expect("a URL");
        assert_eq!(client.url(), "https://ops.example/sluice");
        let err = StatusClient::new("ftp://x", None).expect_err("not http");
        assert!(err.to_string().contains("--admin"), "{err}");
    }
}
