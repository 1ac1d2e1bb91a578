//! The `sluice` binary: parses the command line and runs it; everything
//! else, logging included, is set up by [`sluice::cli`].

use std::process::ExitCode;

use sluice::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    Cli::from_env().execute().await
}
