//! The command `run` supervises: started with the pinned values in its environment (and
//! nowhere else: not argv, not a file, not a log), without the credentials `run` holds;
//! sent the signals `run` receives; stopped with SIGTERM, a grace period, then SIGKILL; its
//! exit status turned into `run`'s own as a shell would (killed by signal N: 128 + N).
use std::{
    ffi::OsString,
    io,
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};

use super::{Failure, environment::Variable, say};

/// Exit status when the command was found but could not be executed (as `env(1)` says).
pub const CANNOT_EXECUTE: u8 = 126;
/// Exit status when the command was not found (as `env(1)` and shells say).
pub const NOT_FOUND: u8 = 127;

pub struct Child {
    process: tokio::process::Child,
    pid: Option<Pid>,
}

/// Starts `command` with `variables` added to this process's environment, minus `hidden`.
pub fn start(
    command: &[OsString],
    variables: &[Variable],
    hidden: &[String],
) -> Result<Child, Failure> {
    let Some((program, arguments)) = command.split_first() else {
        return Err(Failure::new(
            "NO_COMMAND",
            "give the command to run after `--`",
        ));
    };
    let mut builder = tokio::process::Command::new(program);
    builder
        .args(arguments)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // If `run` itself goes away early, the command does not live on unsupervised.
        .kill_on_drop(true);
    for name in hidden {
        builder.env_remove(name);
    }
    builder.envs(
        variables
            .iter()
            .map(|v| (v.name.as_str(), v.value.expose_secret())),
    );
    let shown = program.to_string_lossy();
    let process = builder.spawn().map_err(|e| {
        let (code, exit) = match e.kind() {
            io::ErrorKind::NotFound => ("COMMAND_NOT_FOUND", NOT_FOUND),
            _ => ("COMMAND_FAILED", CANNOT_EXECUTE),
        };
        Failure::new(code, format!("cannot start {shown}: {e}")).exiting(exit)
    })?;
    let pid = process
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    Ok(Child { process, pid })
}

impl Child {
    /// Waits for the command to exit (cancel safe).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// Sends `signal` to the command; one that has already exited is not signalled.
    pub fn signal(&mut self, signal: Signal) {
        if matches!(self.process.try_wait(), Ok(None))
            && let Some(pid) = self.pid
            && let Err(e) = nix::sys::signal::kill(pid, signal)
        {
            say(&format!("could not send {signal} to the command: {e}"));
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; its exit status.
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.process.wait()).await {
            return status;
        }
        say(&format!(
            "the command did not stop within {}s of SIGTERM; sending SIGKILL",
            grace.as_secs()
        ));
        self.process.kill().await?;
        self.process.wait().await
    }
}

/// `run`'s exit status for the command's: its code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + (signal & 0x7f)).unwrap_or(u8::MAX),
        (None, None) => super::FAILED,
    }
}

/// The signals `run` passes on to the command: SIGINT, SIGTERM, SIGHUP and SIGQUIT. While
/// they are listened for, none of them ends `run` itself; the command decides.
pub struct Forwarded {
    listeners: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Forwarded {
    pub fn listen() -> Result<Self, Failure> {
        let kinds = [
            (Signal::SIGINT, SignalKind::interrupt()),
            (Signal::SIGTERM, SignalKind::terminate()),
            (Signal::SIGHUP, SignalKind::hangup()),
            (Signal::SIGQUIT, SignalKind::quit()),
        ];
        let mut listeners = Vec::with_capacity(kinds.len());
        for (nix_signal, kind) in kinds {
            let listener = signal(kind).map_err(|e| {
                Failure::new("SIGNALS", format!("cannot listen for {nix_signal}: {e}"))
            })?;
            listeners.push((nix_signal, listener));
        }
        Ok(Self { listeners })
    }

    /// The next signal received.
    pub async fn next(&mut self) -> Signal {
        let waits = self.listeners.iter_mut().map(|(signal, listener)| {
            let signal = *signal;
            Box::pin(async move {
                if listener.recv().await.is_none() {
                    // No more deliveries of this one (never seen on Unix): wait on the others.
                    std::future::pending::<()>().await;
                }
                signal
            })
        });
        futures_util::future::select_all(waits).await.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_as_a_shell_reads_them() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        // Killed by SIGKILL (9), by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
