//! A page in the system's headless Chromium, driven one step at a time by
//! `tests/node/console.js`: each step is a JSON line on the script's stdin, answered by a
//! JSON line on its stdout, so a test can check the server over the API between what a
//! person does in the browser.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Stdio},
    thread,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Output, chromium, node_script, wait_with_timeout};

/// How long one step may take before the test gives up (not a measurement: a busy 2-core
/// machine starts Chromium slowly, and a step may wait for the page up to a minute).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Page {
    process: Child,
    stdin: ChildStdin,
    answers: mpsc::UnboundedReceiver<String>,
    stderr: Output,
}

impl Page {
    /// Starts Chromium on a fresh profile, ready to go to pages of `base` (an origin).
    pub async fn launch(base: &str) -> Self {
        // Installing the browser, the first time, may take a while.
        let chromium = tokio::task::spawn_blocking(chromium)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let mut command = node_script("console.js");
        command
            .arg(base)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = command.spawn().expect("run node tests/node/console.js");
        let stdin = process.stdin.take().expect("piped stdin");
        let stdout = process.stdout.take().expect("piped stdout");
        let mut stderr = Output::default();
        stderr.capture(process.stderr.take().expect("piped stderr"));
        let (sender, answers) = mpsc::unbounded_channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            process,
            stdin,
            answers,
            stderr,
        }
    }

    /// Runs one step; its result, or `Err` with the script's message.
    pub async fn try_step(&mut self, step: Value) -> Result<Value, String> {
        let line = format!("{step}\n");
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("write to console.js: {e}\n{}", self.stderr.text()))?;
        let answer = tokio::time::timeout(STEP_TIMEOUT, self.answers.recv()).await;
        let line = match answer {
            Ok(Some(line)) => line,
            Ok(None) => return Err(format!("console.js exited:\n{}", self.stderr.text())),
            Err(_) => return Err(format!("no answer within {STEP_TIMEOUT:?}")),
        };
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| format!("console.js answered {line:?}: {e}"))?;
        if answer["ok"] == true {
            Ok(answer["result"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_owned())
        }
    }

    /// Runs one step, panicking with what failed.
    #[track_caller]
    pub fn step(&mut self, step: Value) -> impl Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let what = step.to_string();
            match self.try_step(step).await {
                Ok(result) => result,
                Err(error) => panic!("step {what} (at {caller}) failed:\n{error}"),
            }
        }
    }

    pub async fn goto(&mut self, path: &str) {
        self.step(json!({ "step": "goto", "path": path })).await;
    }

    pub async fn click(&mut self, name: &str) {
        self.step(json!({ "step": "click", "name": name, "exact": true }))
            .await;
    }

    pub async fn click_in(&mut self, scope: Value, name: &str) {
        self.step(json!({ "step": "click", "name": name, "scope": scope }))
            .await;
    }

    pub async fn fill(&mut self, scope: Value, label: &str, value: &str) {
        self.step(json!({ "step": "fill", "label": label, "value": value, "scope": scope }))
            .await;
    }

    /// Waits until `scope` shows `text`; panics with what it shows if it never does.
    #[track_caller]
    pub fn expect_text<'a>(
        &'a mut self,
        scope: Value,
        text: &'a str,
    ) -> impl Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let seen = self
                .step(json!({ "step": "waitText", "text": text, "scope": scope }))
                .await;
            assert!(
                seen["found"] == true,
                "{text:?} never showed in {scope} (at {caller}); it shows:\n{}",
                seen["text"]
            );
            seen["text"].as_str().unwrap_or_default().to_owned()
        }
    }

    /// Waits up to `limit` for `scope` to show `text`: whether it did.
    pub async fn shows_within(&mut self, scope: Value, text: &str, limit: Duration) -> bool {
        let millis = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let seen = self
            .step(json!({ "step": "waitText", "text": text, "scope": scope, "timeoutMs": millis }))
            .await;
        seen["found"] == true
    }

    /// Waits until `scope` no longer shows `text` (or is gone).
    pub async fn expect_gone(&mut self, scope: Value, text: &str) {
        let seen = self
            .step(json!({ "step": "waitText", "text": text, "gone": true, "scope": scope }))
            .await;
        assert!(seen["found"] == true, "{text:?} stayed in {scope}: {seen}");
    }

    /// Waits until the dialog titled `title` is gone.
    pub async fn expect_closed(&mut self, title: &str) {
        self.expect_gone(dialog(title), "").await;
    }

    pub async fn enabled(&mut self, scope: Value, name: &str) -> bool {
        let enabled = self
            .step(json!({ "step": "enabled", "name": name, "exact": true, "scope": scope }))
            .await;
        enabled == true
    }

    /// Asserts axe-core finds no serious or critical violation on the page as it is now.
    #[track_caller]
    pub fn assert_accessible<'a>(&'a mut self, what: &'a str) -> impl Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let violations = self.step(json!({ "step": "axe" })).await;
            assert_eq!(
                violations,
                json!([]),
                "axe-core on {what} (at {caller}): {violations:#}"
            );
        }
    }

    /// Writes a PNG of the whole page to `$CONSOLE_SCREENSHOTS/NAME.png`, when that names a
    /// directory (the README's pictures are made so; other runs write nothing).
    pub async fn screenshot(&mut self, name: &str) {
        if let Ok(dir) = std::env::var("CONSOLE_SCREENSHOTS") {
            let path = format!("{dir}/{name}.png");
            self.step(json!({ "step": "screenshot", "path": path }))
                .await;
        }
    }

    /// The names in the first cells of the `Secrets` table.
    pub async fn rows(&mut self) -> Vec<String> {
        let rows = self.step(json!({ "step": "rows" })).await;
        let rows = rows.as_array().expect("rows");
        rows.iter()
            .map(|row| row.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Closes the browser; answers which files of its profile held any of `kept`
    /// (`(what, text)`), and the script's stderr.
    pub async fn finish(mut self, kept: &[(&str, &str)]) -> Value {
        let kept: Vec<[&str; 2]> = kept.iter().map(|(what, text)| [*what, *text]).collect();
        let result = self.step(json!({ "step": "finish", "kept": kept })).await;
        let status = tokio::task::spawn_blocking(move || {
            let status = wait_with_timeout(&mut self.process, STEP_TIMEOUT);
            if status.is_none() {
                let _ = self.process.kill();
            }
            status
        })
        .await
        .expect("wait for console.js");
        assert!(
            status.is_some_and(|s| s.success()),
            "console.js: {status:?}"
        );
        result
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // A test that panicked mid-way: no browser left behind.
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// The dialog titled `title`.
pub fn dialog(title: &str) -> Value {
    json!({ "dialog": title })
}

/// The `Secrets` table's row of secret `name`.
pub fn row(name: &str) -> Value {
    json!({ "row": name })
}

/// The region (a section) named `name`.
pub fn region(name: &str) -> Value {
    json!({ "region": name })
}

/// The whole page.
pub fn whole_page() -> Value {
    Value::Null
}
