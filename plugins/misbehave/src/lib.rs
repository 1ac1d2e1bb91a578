//! A handler that misbehaves on request: a test fixture for the host's
//! sandbox, never bundled.
//!
//! It accepts the type `misbehave`. Called directly, a JSON batch's `kind`
//! says what to do (see [`Command`]); through the pipeline, where the kind
//! is always `misbehave`, the first payload does, as a JSON string
//! (`"sleep"`). Any other batch is refused with `"unsupported type"`. Its state is opaque bytes, and `render` misbehaves
//! according to them (see [`render`]).

use sluice_plugin_sdk::{Applied, Batch, Guest, JsonBatch, Metadata, Rejection};

sluice_plugin_sdk::export_guest!(Component);

/// The name of the handler and the one type it accepts.
pub const NAME: &str = "misbehave";

/// What an `apply` call is asked to do, by the `kind` of its JSON batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `"ok"`: accept every payload and leave the state as it is.
    Ok,
    /// `"set-state"`: make the state the concatenated payload texts.
    SetState,
    /// `"error"`: return an error, as a handler does on unreadable state.
    Error,
    /// `"panic"`: panic, which traps.
    Panic,
    /// `"loop"`: spin forever, until the host's deadline interrupts.
    Loop,
    /// `"sleep"`: sleep for five seconds, then as `Ok`.
    Sleep,
    /// `"alloc"`: allocate until the host refuses memory.
    Alloc,
    /// `"bad-index"`: reject a payload past the end of the batch.
    BadIndex,
    /// `"print"`: write a line to stdout and one to stderr, then as `Ok`.
    Print,
    /// `"flood"`: write 1 MiB to stdout, then as `Ok`.
    Flood,
    /// `"probe"`: try to reach what the sandbox should keep from it (the
    /// environment, the arguments, the file system, and a TCP connection to
    /// the loopback port given as the first payload), and make the state a
    /// line that tells what it found (see [`probe`]).
    Probe,
    /// `"grants"`: read the environment variable named by the first
    /// payload and the file at the path given by the second, try to write
    /// a file beside it, and make the state a line that tells what it found
    /// (see [`grants`]).
    Grants,
}

impl Command {
    /// The command named `kind`, if any.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "ok" => Self::Ok,
            "set-state" => Self::SetState,
            "error" => Self::Error,
            "panic" => Self::Panic,
            "loop" => Self::Loop,
            "sleep" => Self::Sleep,
            "alloc" => Self::Alloc,
            "bad-index" => Self::BadIndex,
            "print" => Self::Print,
            "flood" => Self::Flood,
            "probe" => Self::Probe,
            "grants" => Self::Grants,
            _ => return None,
        })
    }
}

/// The exported handler.
pub struct Component;

impl Guest for Component {
    fn metadata() -> Metadata {
        Metadata {
            name: NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            types: vec![NAME.to_owned()],
        }
    }

    fn apply(state: Vec<u8>, batch: Batch) -> Result<Applied, String> {
        let command = match &batch {
            Batch::Json(JsonBatch { kind, values }) if kind == NAME => values
                .first()
                .and_then(|value| Command::parse(value.trim().trim_matches('"'))),
            Batch::Json(JsonBatch { kind, .. }) => Command::parse(kind),
            _ => None,
        };
        let Some(command) = command else {
            return Ok(Applied {
                state,
                rejected: sluice_plugin_sdk::unsupported(&batch),
            });
        };
        apply(command, state, &batch)
    }

    fn render(state: Vec<u8>) -> Result<String, String> {
        render(&state)
    }
}

/// Carries out `command` on `state` and `batch`.
pub fn apply(command: Command, state: Vec<u8>, batch: &Batch) -> Result<Applied, String> {
    let applied = |state| {
        Ok(Applied {
            state,
            rejected: Vec::new(),
        })
    };
    match command {
        Command::Ok => applied(state),
        Command::SetState => {
            let Batch::Json(JsonBatch { values, .. }) = batch else {
                return applied(state);
            };
            applied(values.concat().into_bytes())
        }
        Command::Error => Err("asked to fail".to_owned()),
        Command::Panic => panic!("asked to panic"),
        Command::Loop => loop {
            std::hint::black_box(());
        },
        Command::Sleep => {
            std::thread::sleep(std::time::Duration::from_secs(5));
            applied(state)
        }
        Command::Alloc => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Command::BadIndex => {
            let past_end = u32::try_from(sluice_plugin_sdk::batch_len(batch)).unwrap_or(u32::MAX);
            Ok(Applied {
                state,
                rejected: vec![Rejection {
                    index: past_end,
                    reason: "out of range".to_owned(),
                }],
            })
        }
        Command::Print => {
            println!("a line to stdout");
            eprintln!("a line to stderr");
            applied(state)
        }
        Command::Flood => {
            let line = "x".repeat(1023);
            for _ in 0..1024 {
                println!("{line}");
            }
            applied(state)
        }
        Command::Probe => {
            let port = match batch {
                Batch::Json(JsonBatch { values, .. }) => {
                    values.first().and_then(|v| v.parse().ok())
                }
                _ => None,
            };
            applied(probe(port.unwrap_or(1)).into_bytes())
        }
        Command::Grants => match batch {
            Batch::Json(JsonBatch { values, .. }) if values.len() == 2 => {
                applied(grants(&values[0], &values[1]).into_bytes())
            }
            _ => Err("grants takes a variable name and a file path".to_owned()),
        },
    }
}

/// What the guest can reach of the host, as one line:
/// `env=N args=N root=R file=R connect=R`, where `N` counts the variables
/// or arguments it sees and each `R` is `ok` or the kind of error it got
/// listing `/`, reading `/etc/hosts`, and connecting to `127.0.0.1:port`.
pub fn probe(port: u16) -> String {
    fn outcome<T>(result: std::io::Result<T>) -> String {
        match result {
            Ok(_) => "ok".to_owned(),
            Err(err) => format!("{:?}", err.kind()),
        }
    }
    format!(
        "env={} args={} root={} file={} connect={}",
        std::env::vars_os().count(),
        std::env::args_os().count(),
        outcome(std::fs::read_dir("/")),
        outcome(std::fs::read("/etc/hosts")),
        outcome(std::net::TcpStream::connect(("127.0.0.1", port))),
    )
}

/// What the guest was granted, as one line: `var=V file=F write=W`, where
/// `V` is the variable's value or `unset`, `F` the file's text or the kind
/// of error reading it, and `W` `ok` or the kind of error creating a file
/// in the same directory.
pub fn grants(var: &str, path: &str) -> String {
    let var = std::env::var(var).unwrap_or_else(|_| "unset".to_owned());
    let file = std::fs::read_to_string(path).unwrap_or_else(|err| format!("{:?}", err.kind()));
    let beside = std::path::Path::new(path).with_file_name("written-by-plugin");
    let write = match std::fs::write(beside, b"x") {
        Ok(()) => "ok".to_owned(),
        Err(err) => format!("{:?}", err.kind()),
    };
    format!("var={var} file={file} write={write}")
}

/// Renders `state`: `{"bytes": n}`, except for these states, which
/// misbehave: `bad-json` renders text that is not JSON, `not-object` a JSON
/// array, `error` returns an error, `panic` panics and `loop` spins forever.
pub fn render(state: &[u8]) -> Result<String, String> {
    match state {
        b"bad-json" => Ok("{not json".to_owned()),
        b"not-object" => Ok("[1, 2]".to_owned()),
        b"error" => Err("asked to fail".to_owned()),
        b"panic" => panic!("asked to panic"),
        b"loop" => loop {
            std::hint::black_box(());
        },
        _ => Ok(format!("{{\"bytes\":{}}}", state.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_by_kind() {
        assert_eq!(Command::parse("set-state"), Some(Command::SetState));
        assert_eq!(Command::parse("load_avg"), None);
    }

    #[test]
    fn well_behaved_paths() {
        let batch = Batch::Json(JsonBatch {
            kind: "set-state".into(),
            values: vec!["bad-".into(), "json".into()],
        });
        let applied = apply(Command::SetState, Vec::new(), &batch).expect("set-state");
        assert_eq!(applied.state, b"bad-json");
        assert_eq!(render(b"abc"), Ok(r#"{"bytes":3}"#.to_owned()));
        assert_eq!(render(b"bad-json"), Ok("{not json".to_owned()));
        let applied = apply(Command::BadIndex, Vec::new(), &batch).expect("bad-index");
        assert_eq!(applied.rejected[0].index, 2);
    }
}
