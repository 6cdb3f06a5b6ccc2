//! The loop of `strongroom run`: fetch, start the command, then wait for whichever comes
//! first — the command exiting (`run` exits with its status), a signal (passed on), or,
//! with `--watch`, news of the resource. A new deployment that becomes current is fetched
//! once changes have been quiet for `--debounce` seconds, and the command is restarted with
//! its values. Anything else — a secret changed but not redeployed, a reference broken, a
//! fetch refused (a disabled secret) — is reported and the running command left alone:
//! it keeps the values it has, which is what it would have had without `--watch`.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::Client;
use tokio::{sync::mpsc, time::Instant};

use super::{
    Failure, RunArgs,
    child::{self, Child, Forwarded},
    credentials::Credentials,
    environment, fetch,
    fetch::Deployment,
    say,
    watch::{Change, Heard},
};

pub struct Supervisor {
    pub args: RunArgs,
    pub http: Client,
    pub credentials: Arc<Credentials>,
    pub signals: Forwarded,
    /// Variables holding credentials, kept from the command.
    pub hidden: Vec<String>,
}

/// The command as it runs now, and the deployment whose values it has.
struct Running {
    child: Child,
    deployment: Deployment,
}

impl Supervisor {
    /// Runs the command (again and again under `--watch`); the status to exit with.
    /// `events` is the watch, `watching` whether its first subscription is up already.
    pub async fn run(
        mut self,
        events: Option<(mpsc::Receiver<Heard>, bool)>,
    ) -> Result<u8, Failure> {
        let mut running = self.start().await?;
        let (mut events, watching) = match events {
            Some((events, watching)) => (Some(events), watching),
            None => (None, false),
        };
        if watching {
            self.announce(&running.deployment, false);
        }
        // When to fetch again, if a change asked for it.
        let mut fetch_at: Option<Instant> = None;
        loop {
            let heard = async {
                match events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let due = async {
                match fetch_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = running.child.wait() => {
                    return status.map(child::exit_code).map_err(|e| {
                        Failure::new("WAIT", format!("lost track of the command: {e}"))
                    });
                }
                signal = self.signals.next() => running.child.signal(signal),
                heard = heard => match heard {
                    Some(Heard::Subscribed) => {
                        self.announce(&running.deployment, false);
                        fetch_at = Some(Instant::now());
                    }
                    Some(Heard::Resubscribed) => {
                        self.announce(&running.deployment, true);
                        fetch_at = Some(Instant::now());
                    }
                    // Already reported by the watch, and said before the first fetch.
                    Some(Heard::Unavailable) => {}
                    Some(Heard::Change(change)) => {
                        if self.asks_for_fetch(&change, &running.deployment) {
                            fetch_at = Some(Instant::now() + self.debounce());
                        }
                    }
                    None => events = None,
                },
                () = due => {
                    fetch_at = None;
                    self.refresh(&mut running).await?;
                }
            }
        }
    }

    fn debounce(&self) -> Duration {
        Duration::from_secs(self.args.debounce)
    }

    fn announce(&self, deployment: &Deployment, again: bool) {
        let again = if again { " again" } else { "" };
        say(&format!(
            "watching resource {} for new deployments{again} (running deployment {})",
            self.args.resource, deployment.id
        ));
    }

    /// Fetches the values and starts the command with them.
    async fn start(&mut self) -> Result<Running, Failure> {
        let fetch = pinned(&self.http, &self.args, &self.credentials);
        let pins = unless_signalled(&mut self.signals, fetch).await?;
        let variables = environment::variables(&pins.secrets, &self.args.env)?;
        let child = child::start(&self.args.command, &variables, &self.hidden)?;
        Ok(Running {
            child,
            deployment: pins.deployment,
        })
    }

    /// Whether `change` calls for a fetch (a deployment newer than the running one became
    /// current); anything else worth knowing is reported.
    fn asks_for_fetch(&self, change: &Change, running: &Deployment) -> bool {
        let dependent = &change.dependent;
        let what = format!("{} ({})", change.secret_name, dependent.field);
        match dependent.state.as_str() {
            "UP_TO_DATE" => dependent
                .deployed_at
                .is_some_and(|at| newer(at, running.deployed_at)),
            "STALE" => {
                let pinned = dependent
                    .deployed_version
                    .map_or_else(String::new, |v| format!(" (version {v})"));
                say(&format!(
                    "{what} has a newer version than the deployment pins{pinned}; the command \
                     keeps its values until the resource is redeployed"
                ));
                false
            }
            "BROKEN" => {
                say(&format!(
                    "{what} is BROKEN (its secret was deleted or is missing); the command keeps \
                     running with the values it has"
                ));
                false
            }
            state => {
                let was = change.previous_state.as_deref().unwrap_or("new");
                say(&format!(
                    "{what} is now {state} (was {was}); the command keeps running"
                ));
                false
            }
        }
    }

    /// Fetches again; restarts the command if the resource's current deployment changed.
    /// A refused fetch, or values that cannot be placed, leave the command running.
    async fn refresh(&mut self, running: &mut Running) -> Result<(), Failure> {
        let pins = match pinned(&self.http, &self.args, &self.credentials).await {
            Ok(pins) if pins.deployment.id == running.deployment.id => return Ok(()),
            Ok(pins) => pins,
            Err(failure) => {
                say(&format!(
                    "{failure}; the command keeps running with the values of deployment {}",
                    running.deployment.id
                ));
                return Ok(());
            }
        };
        let variables = match environment::variables(&pins.secrets, &self.args.env) {
            Ok(variables) => variables,
            Err(failure) => {
                say(&format!(
                    "deployment {} cannot be run: {failure}; the command keeps running with \
                     the values of deployment {}",
                    pins.deployment.id, running.deployment.id
                ));
                return Ok(());
            }
        };
        say(&format!(
            "deployment {} is current; restarting the command",
            pins.deployment.id
        ));
        let grace = Duration::from_secs(self.args.grace);
        if let Err(e) = running.child.stop(grace).await {
            return Err(Failure::new(
                "STOP",
                format!("could not stop the command: {e}"),
            ));
        }
        running.child = child::start(&self.args.command, &variables, &self.hidden)?;
        running.deployment = pins.deployment;
        Ok(())
    }
}

/// The pins of the resource's current deployment, with a token as fresh as needed.
async fn pinned(
    http: &Client,
    args: &RunArgs,
    credentials: &Credentials,
) -> Result<fetch::Pins, Failure> {
    let token = credentials.token().await?;
    fetch::pins(http, &args.server, &args.resource, &token).await
}

/// `work`, unless a signal comes first: then nothing more is started, and `run` exits as
/// the command would have, killed by it (128 + N).
pub async fn unless_signalled<T>(
    signals: &mut Forwarded,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::select! {
        done = work => done,
        signal = signals.next() => {
            let exit = u8::try_from(128 + signal as i32).unwrap_or(super::FAILED);
            Err(Failure::new(
                "INTERRUPTED",
                format!("{signal} arrived before the command started; nothing was started"),
            )
            .exiting(exit))
        }
    }
}

/// Whether `event`'s deployment time is later than `running`'s. The database may keep
/// fewer digits than the event carries, so the same instant read back is not "later".
fn newer(event: DateTime<Utc>, running: DateTime<Utc>) -> bool {
    event - running >= chrono::TimeDelta::milliseconds(1)
}
