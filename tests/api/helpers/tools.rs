//! Tools the tests drive that a fresh machine lacks, installed on first use under the target
//! directory: moto's KMS emulator (a Python virtualenv) and the Node packages in
//! `tests/node/` (the GraphQL-over-HTTP audit, a browser driver), pinned by their lock file.
//! The browser itself is Debian's `chromium` (no browser download works here), installed
//! with `apt-get` when it is missing and the tests run as root, as in CI.
//!
//! Concurrent test processes (nextest) serialize an install on a file lock, and a tool is
//! built in a staging directory and renamed into place, so a half-finished install is
//! never used. Delete a tool's directory under `target/tmp/` to reinstall it.
use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Instant,
};

use sha2::Digest;

use super::clean_command;

const MOTO_REQUIREMENT: &str = "moto[server]==5.*";

/// The virtualenv's python, with moto installed. Tried once per process: after a failed
/// install every test fails with the same message instead of installing again.
pub fn moto_python() -> PathBuf {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let venv = VENV.get_or_init(|| {
        installed("moto-venv", MOTO_REQUIREMENT, |staging| {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(staging),
                "python3 -m venv",
            )?;
            run(
                Command::new(staging.join("bin").join("python"))
                    .args(["-m", "pip", "install", "--disable-pip-version-check"])
                    .arg(MOTO_REQUIREMENT),
                &format!("pip install '{MOTO_REQUIREMENT}'"),
            )
        })
    });
    // Launched as `python -m moto.server`: the console script's shebang names the staging
    // directory the virtualenv was built in.
    match venv {
        Ok(venv) => venv.join("bin").join("python"),
        Err(message) => panic!("{message}\nmoto is needed for the AWS KMS tests"),
    }
}

/// `node tests/node/<script> <args>`, with the packages of `tests/node/package-lock.json`
/// installed and on `NODE_PATH` (the scripts are CommonJS, which honours it).
pub fn node_script(script: &str) -> Command {
    static MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("node");
    let modules = MODULES.get_or_init(|| {
        let lock = fs::read(sources.join("package-lock.json"))
            .map_err(io("read", &sources.join("package-lock.json")))?;
        // Named by the lock file's digest: a changed lock installs afresh.
        let digest = hex::encode(&sha2::Sha256::digest(&lock)[..8]);
        let name = format!("node-tools-{digest}");
        let dir = installed(&name, "tests/node (npm ci)", |staging| {
            fs::create_dir_all(staging).map_err(io("create", staging))?;
            for file in ["package.json", "package-lock.json"] {
                fs::copy(sources.join(file), staging.join(file))
                    .map_err(io("copy", &sources.join(file)))?;
            }
            run(
                Command::new("npm")
                    .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                    .current_dir(staging),
                "npm ci (tests/node)",
            )
        })?;
        Ok(dir.join("node_modules"))
    });
    let modules = match modules {
        Ok(modules) => modules,
        Err(message) => panic!("{message}\nnode and npm are needed for the tests/node tools"),
    };
    let mut command = clean_command("node");
    command
        .arg(sources.join(script))
        .env("NODE_PATH", modules)
        .env("NO_COLOR", "1");
    command
}

/// Where Chromium's executable is (`CHROMIUM`, else Debian's `/usr/bin/chromium`),
/// installing Debian's package first when it is missing and the tests run as root. Any
/// other machine stops here with the one command to run.
pub fn chromium() -> PathBuf {
    static CHROMIUM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let chromium = CHROMIUM.get_or_init(|| {
        if let Some(path) = std::env::var_os("CHROMIUM") {
            let path = PathBuf::from(path);
            return if path.exists() {
                Ok(path)
            } else {
                Err(format!(
                    "CHROMIUM names {}, which does not exist",
                    path.display()
                ))
            };
        }
        let path = PathBuf::from("/usr/bin/chromium");
        if path.exists() {
            return Ok(path);
        }
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(root).map_err(io("create", root))?;
        let lock_path = root.join("chromium.lock");
        let lock = File::create(&lock_path).map_err(io("create", &lock_path))?;
        lock.lock().map_err(io("lock", &lock_path))?;
        if path.exists() {
            return Ok(path); // another test process installed it meanwhile
        }
        let uid = Command::new("id").arg("-u").output();
        if !uid.is_ok_and(|out| out.stdout.trim_ascii() == b"0") {
            return Err("Chromium is not installed and the tests are not running as root".into());
        }
        let started = Instant::now();
        let apt = |args: &[&str]| {
            run(
                Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                &format!("apt-get {}", args.join(" ")),
            )
        };
        apt(&["update"])?;
        apt(&["install", "-y", "--no-install-recommends", "chromium"])?;
        eprintln!("installed Debian's chromium in {:.0?}", started.elapsed());
        Ok(path)
    });
    match chromium {
        Ok(path) => path.clone(),
        Err(message) => panic!(
            "{message}.\nThe browser tests drive Debian's Chromium; install it with\n    \
             sudo apt-get update && sudo apt-get install -y chromium\n\
             (or set CHROMIUM to a Chromium executable)"
        ),
    }
}

/// Installs a tool into `<target>/tmp/<name>` with `build` (given a staging directory)
/// unless it is there; returns its directory.
fn installed(
    name: &str,
    what: &str,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(name);
    if dir.exists() {
        return Ok(dir);
    }
    fs::create_dir_all(root).map_err(io("create", root))?;
    let lock_path = root.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).map_err(io("create", &lock_path))?;
    // An advisory lock: released when the file closes, also if its holder dies.
    lock.lock().map_err(io("lock", &lock_path))?;
    if dir.exists() {
        return Ok(dir); // another process installed it meanwhile
    }
    let started = Instant::now();
    remove_stale_staging(root, name)?;
    let staging = root.join(format!("{name}.tmp-{}", std::process::id()));
    let built =
        build(&staging).and_then(|()| fs::rename(&staging, &dir).map_err(io("publish", &dir)));
    if built.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    built?;
    eprintln!(
        "installed {what} into {} in {:.0?}",
        dir.display(),
        started.elapsed()
    );
    Ok(dir)
}

/// Describes a failed file operation on `path`.
fn io<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> String + 'a {
    move |e| format!("{what} {}: {e}", path.display())
}

/// Removes staging directories left by an install that died (only the lock holder builds
/// one).
fn remove_stale_staging(root: &Path, name: &str) -> Result<(), String> {
    let entries = fs::read_dir(root).map_err(io("list", root))?;
    let prefix = format!("{name}.tmp-");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Runs an install step; its whole output is the error if it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}).\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Starts a Node service (`node_script(..)` with its settings) whose first line on stdout
/// is JSON saying it is ready (its port, its keys); returns the process and that line.
pub fn start_node_service(
    mut command: Command,
    what: &str,
) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run node {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = lines.send(line);
    });
    let line = read
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not start"));
    let started =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what} printed {line:?}: {e}"));
    (child, started)
}
