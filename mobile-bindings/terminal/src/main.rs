//! `vigil-phone`: a phone played from a shell. It signs in, follows, receives, acknowledges,
//! answers, presses SOS and chats through the same SDK the apps embed, reading one command a
//! line on stdin and printing what the client tells it, one line each (`--json`: one JSON
//! object each) — for field checks and demos.

mod commands;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A phone played from a shell: line commands on stdin, events on stdout (`help` lists the
/// commands).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The Vigil server: HTTPS, or HTTP to this machine.
    #[arg(long, env = "VIGIL_PHONE_SERVER")]
    server: String,
    /// The phone's storage, an SQLite file (created if missing): the session, the received
    /// messages and the outbox, kept across runs as on a phone.
    #[arg(long, env = "VIGIL_PHONE_STORE")]
    store: PathBuf,
    /// Print one JSON object a line (for scripts) instead of text.
    #[arg(long, env = "VIGIL_PHONE_JSON")]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The SDK's own warnings go to stderr, so that stdout stays one event a line.
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_PHONE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let client = match vigil_sdk::Client::open(&args.server, &args.store).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vigil-phone: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run::run(client, args.json).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-phone: stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
