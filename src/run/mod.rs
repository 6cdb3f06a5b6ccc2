//! `strongroom run`: the same binary as a client (DESIGN §11), like `doppler run` or
//! `infisical run`. It fetches a resource's pinned values, starts a command with them in its
//! environment, passes signals on, and exits with the command's status; with `--watch` it
//! restarts the command when a new deployment of the resource becomes current.
//!
//! - [`args`]: the flags; [`credentials`]: the token (given, or exchanged from a JWT);
//! - [`fetch`]: `GET /v1/resources/{id}/secrets`; [`environment`]: values → variables;
//! - [`child`]: the command and its signals; [`watch`]: the `dependentEvents` feed;
//! - [`supervise`]: the loop that ties them together.
//!
//! Values and tokens are held in `secrecy`/`zeroize` types and handed only to the
//! command's environment: never to argv, a file, or a log. `run` installs no log
//! subscriber at all (libraries' traces of requests are no place for a token); what it
//! has to say goes to stderr as `strongroom run: …` lines.
mod args;
mod child;
mod credentials;
mod environment;
mod fetch;
mod supervise;
mod watch;

use std::{fmt, process::ExitCode, sync::Arc, time::Duration};

pub use args::RunArgs;
use supervise::unless_signalled;

/// `run`'s exit status when it fails itself — a fetch refused, a bad flag value found late,
/// a restart that could not be made — as `env(1)`, `nice(1)` and `timeout(1)` use it,
/// apart from the command's own statuses as far as a number can be.
pub const FAILED: u8 = 125;

/// Something `run` could not do: a stable code (the server's `error.code` when the server
/// refused), a message for the user, and the status to exit with.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub exit: u8,
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            exit: FAILED,
        }
    }

    fn exiting(self, exit: u8) -> Self {
        Self { exit, ..self }
    }

    fn unreachable(url: &reqwest::Url, error: reqwest::Error) -> Self {
        // Without the URL reqwest would repeat: it is given once, below. The causes say
        // what happened ("error sending request" alone does not).
        let error = error.without_url();
        let mut text = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            text = format!("{text}: {inner}");
            cause = inner.source();
        }
        Self::new("UNREACHABLE", format!("{url}: {text}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// One line on stderr, `strongroom run: …`.
fn say(what: &str) {
    eprintln!("strongroom run: {what}");
}

/// Runs the command of `args`; returns the status to exit with.
pub async fn run(args: RunArgs) -> ExitCode {
    match start(args).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            say(&failure.to_string());
            ExitCode::from(failure.exit)
        }
    }
}

async fn start(args: RunArgs) -> Result<u8, Failure> {
    // Two crypto providers are built into rustls here; `wss://` needs one chosen. Failing
    // means one was chosen already, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Listening from the start: a signal before the command runs ends `run` with nothing
    // started (see `unless_signalled`), one after it is the command's.
    let mut signals = child::Forwarded::listen()?;
    let http = fetch::client()?;
    let exchange = credentials::Credentials::from_args(&args, http.clone());
    let credentials = Arc::new(unless_signalled(&mut signals, exchange).await?);
    let mut events = None;
    if args.watch {
        let mut heard = watch::spawn(&args.server, args.resource.clone(), credentials.clone())?;
        // Subscribed before the first fetch, so that no deployment falls between them. A
        // server that cannot be watched yet is retried in the background: the command
        // starts anyway, and the values are fetched again once the watch is up.
        let first = async { Ok(tokio::time::timeout(Duration::from_secs(15), heard.recv()).await) };
        let first = unless_signalled(&mut signals, first).await?;
        let watching = matches!(first, Ok(Some(watch::Heard::Subscribed)));
        if !watching {
            say("not watching yet; fetching now, and again once the watch is up");
        }
        events = Some((heard, watching));
    }
    let supervisor = supervise::Supervisor {
        hidden: credentials::Credentials::variables(&args),
        args,
        http,
        credentials,
        signals,
    };
    supervisor.run(events).await
}
