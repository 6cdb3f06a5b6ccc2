//! When the machine misbehaves (DESIGN.md §13): each fault injected into the real binary
//! — a disk that fills up, a hot secret that many writers update at once — and what a
//! client then sees and what stays on disk.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tokio::{io::AsyncWriteExt, net::TcpStream};

use serde_json::json;

use crate::helpers::{
    Api, CREATE_SECRET, PostgresCluster, SECRET_VALUE, Store, TestApp, UPDATE_SECRET, all_at_once,
    both_stores, data, outcome,
};

both_stores!(
    a_hot_secret_takes_every_writer_in_turn,
    sigterm_closes_unfinished_requests_after_the_grace_and_writes_pending_usage,
    sigkill_under_write_load_loses_nothing_acknowledged,
);

const ROLLBACK_SECRET: &str = "mutation($input: RollbackSecretInput!) {
    rollbackSecret(input: $input) { secret { currentVersion } } }";
const SECRETS_PAGE: &str = "query { secrets(first: 100) { totalCount nodes { name } } }";

/// 32 writers at once on one secret (at version 2), none with `expectedVersion`, some
/// rolling back to version 1: every one lands, as versions 3…34 without a gap or a
/// duplicate, and each version holds
/// the value its writer sent. Writers take turns on the secret; none is refused because
/// the others were writing. Across three replicas on PostgreSQL too (below).
async fn a_hot_secret_takes_every_writer_in_turn(store: Store) {
    let app = TestApp::spawn_with(store, &[("STRONGROOM_VERSION_RETENTION", "100")]).await;
    let servers = vec![app.api.clone()];
    hot_secret_race(&app, &servers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_secret_takes_every_writer_in_turn_across_replicas() {
    let env = [("STRONGROOM_VERSION_RETENTION", "100")];
    let app = TestApp::spawn_with(Store::Postgres, &env).await;
    let replicas = [app.start_replica(&env), app.start_replica(&env)];
    let servers: Vec<_> = std::iter::once(app.api.clone())
        .chain(replicas.iter().map(|r| r.api.clone()))
        .collect();
    hot_secret_race(&app, &servers).await;
}

async fn hot_secret_race(app: &TestApp, servers: &[Api]) {
    const WRITERS: usize = 32;
    app.create_secret("HOT", "hot-1").await;
    let second = json!({ "input": { "name": "HOT", "value": "hot-2" } });
    assert_eq!(outcome(&app.admin(UPDATE_SECRET, second).await), "OK");
    // Every fourth writer rolls back to version 1; the rest write a value of their own.
    let requests = (0..WRITERS)
        .map(|i| {
            let server = servers[i % servers.len()].clone();
            let token = app.admin_token.clone();
            if i % 4 == 3 {
                let input = json!({ "input": { "name": "HOT", "toVersion": 1 } });
                (server, token, ROLLBACK_SECRET, input)
            } else {
                let input =
                    json!({ "input": { "name": "HOT", "value": format!("hot-writer-{i}") } });
                (server, token, UPDATE_SECRET, input)
            }
        })
        .collect();
    let responses = all_at_once(requests).await;

    let mut written = BTreeMap::new();
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(outcome(response), "OK", "writer {i}: {response:#}");
        let payload = if i % 4 == 3 {
            &data(response)["rollbackSecret"]
        } else {
            &data(response)["updateSecret"]
        };
        let version = payload["secret"]["currentVersion"]
            .as_i64()
            .expect("a version");
        let value = if i % 4 == 3 {
            "hot-1".to_owned()
        } else {
            format!("hot-writer-{i}")
        };
        assert!(
            written.insert(version, value).is_none(),
            "version {version} answered twice"
        );
    }
    let versions: Vec<i64> = written.keys().copied().collect();
    assert_eq!(versions, (3..=WRITERS as i64 + 2).collect::<Vec<_>>());
    for (version, value) in &written {
        let read = app
            .admin(SECRET_VALUE, json!({ "name": "HOT", "version": version }))
            .await;
        assert_eq!(
            data(&read)["secretValue"]["value"].as_str(),
            Some(value.as_str()),
            "version {version}"
        );
    }
}

/// A small disk (a tmpfs this test mounts) under the SQLite database, with a ballast file
/// that fills most of it; removing the ballast is the operator freeing space.
struct SmallDisk {
    mount: PathBuf,
    ballast: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mib: u32) -> Self {
        let id = Command::new("id").arg("-u").output().expect("run `id -u`");
        assert_eq!(
            String::from_utf8_lossy(&id.stdout).trim(),
            "0",
            "the disk-full test mounts a tmpfs and must run as root (as CI does)"
        );
        let dir = tempfile::tempdir().expect("a directory to mount on");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a {size_mib} MiB tmpfs: {status}");
        let ballast = mount.join("ballast");
        Self {
            mount,
            ballast,
            _dir: dir,
        }
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// Fills the disk but for about `leave_kib`.
    fn fill(&self, leave_kib: u64) {
        let free = self.free_kib();
        let size = free.saturating_sub(leave_kib) * 1024;
        let file = std::fs::File::create(&self.ballast).expect("create the ballast");
        use std::io::Write;
        let mut writer = std::io::BufWriter::new(file);
        let chunk = vec![0x5Au8; 64 * 1024];
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).expect("write the ballast");
            left -= n;
        }
        writer.flush().expect("flush the ballast");
    }

    fn free_space(&self) {
        std::fs::remove_file(&self.ballast).expect("remove the ballast");
    }

    fn free_kib(&self) -> u64 {
        let output = Command::new("df")
            .args(["--output=avail", "-k"])
            .arg(&self.mount)
            .output()
            .expect("run df");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("df printed {text:?}"))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// SQLite on a disk that fills up while secrets are created and revealed: a write that
/// does not fit is refused with `STORAGE_FULL` and leaves nothing behind; every write
/// that was acknowledged is there — while the server runs, and after a restart — and every
/// acknowledged reveal is audited; metadata reads keep working; once space is back,
/// writes work again without a restart; `integrity_check` is clean.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_and_loses_nothing() {
    const VALUE_BYTES: usize = 24 * 1024;
    const ATTEMPTS: usize = 120;
    let disk = SmallDisk::mount(16);
    let mut app = TestApp::spawn_sqlite_in(disk.path(), &[] as &[(&str, &str)]).await;
    disk.fill(1024);

    let mut acknowledged = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut revealed: i64 = 0;
    let mut refusals_after_first = 0;
    for i in 0..ATTEMPTS {
        let name = format!("FILLER_{i:03}");
        let value = format!("{i:03}-{}", "v".repeat(VALUE_BYTES));
        let input = json!({ "input": { "name": name, "value": value } });
        let response = app.admin(CREATE_SECRET, input).await;
        match outcome(&response).as_str() {
            "OK" => {
                acknowledged.insert(name.clone());
                let read = app.admin(SECRET_VALUE, json!({ "name": name })).await;
                match outcome(&read).as_str() {
                    "OK" => {
                        assert_eq!(data(&read)["secretValue"]["value"], value.as_str());
                        revealed += 1;
                    }
                    // Fail closed: no value without its audit row.
                    "STORAGE_FULL" => assert!(read["data"]["secretValue"].is_null(), "{read:#}"),
                    other => panic!("a reveal answered {other}: {read:#}"),
                }
            }
            "STORAGE_FULL" => {
                let extensions = &response["errors"][0]["extensions"];
                assert_eq!(extensions["retryable"], true, "{response:#}");
                refused.insert(name);
                if refused.len() > 1 {
                    refusals_after_first += 1;
                }
            }
            other => panic!("a create answered {other}: {response:#}"),
        }
        if refused.len() >= 10 {
            break;
        }
    }
    println!(
        "disk full: {} creates acknowledged, {} refused, {} reveals acknowledged",
        acknowledged.len(),
        refused.len(),
        revealed
    );
    assert!(
        refused.len() >= 10,
        "the disk never filled: {} acknowledged",
        acknowledged.len()
    );
    assert!(refusals_after_first > 0);

    // Metadata reads keep working on a full disk, and show exactly what was acknowledged.
    let listed = listed_names(&app).await;
    assert_eq!(listed, acknowledged, "while the disk is full");

    // Space comes back: writes work again, without a restart.
    disk.free_space();
    let response = app
        .admin(
            CREATE_SECRET,
            json!({ "input": { "name": "AFTER_SPACE", "value": "back" } }),
        )
        .await;
    assert_eq!(outcome(&response), "OK", "{response:#}");
    acknowledged.insert("AFTER_SPACE".to_owned());
    assert_eq!(listed_names(&app).await, acknowledged, "once space is back");

    // Durable: after a restart every acknowledged secret is there with its value, every
    // acknowledged reveal has its audit row, and nothing refused left a trace.
    app.restart_with(&[] as &[(&str, &str)]).await;
    assert_eq!(listed_names(&app).await, acknowledged, "after a restart");
    for name in acknowledged.iter().filter(|n| n.starts_with("FILLER_")) {
        let value = app.reveal(name).await;
        assert!(value.starts_with(&name["FILLER_".len()..]), "{name}");
    }
    let reveal_rows = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'secret.reveal' AND outcome = 'ALLOWED'",
        )
        .await;
    // The reveals just made after the restart count too.
    let filler = acknowledged
        .iter()
        .filter(|n| n.starts_with("FILLER_"))
        .count() as i64;
    assert_eq!(reveal_rows, revealed + filler);
    for name in &refused {
        let versions = app
            .sql_query_one_i64(&format!(
                "SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                 WHERE s.name = '{name}'"
            ))
            .await;
        assert_eq!(versions, 0, "{name} was refused but left a version");
    }
    let integrity = app.sql_strings("PRAGMA integrity_check").await;
    assert_eq!(integrity, vec!["ok".to_owned()]);
}

async fn listed_names(app: &TestApp) -> BTreeSet<String> {
    let response = app.admin(SECRETS_PAGE, json!({})).await;
    data(&response)["secrets"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["name"].as_str().expect("a name").to_owned())
        .collect()
}

const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name version value } }";

/// SIGTERM while clients hold connections they never finish — one idle since it was
/// accepted, one stopped halfway through its headers, one whose body never comes — and
/// a fetch's usage still waiting for its hourly flush: the server waits out
/// `STRONGROOM_SHUTDOWN_GRACE_SECS` (2 s here), closes what is left, writes the pending
/// usage and exits 0. (Without the deadline the unfinished body holds it forever.)
async fn sigterm_closes_unfinished_requests_after_the_grace_and_writes_pending_usage(store: Store) {
    let env = [
        ("STRONGROOM_SHUTDOWN_GRACE_SECS", "2"),
        ("STRONGROOM_USAGE_FLUSH_SECONDS", "3600"),
    ];
    let mut app = TestApp::spawn_with(store, &env).await;
    app.create_secret("NIGHTLY_KEY", "nightly-8d21").await;
    let resource_id = app
        .deploy_pipeline("nightly", &[("NIGHTLY_KEY", "s3.key")])
        .await;
    let fetched = app
        .admin(RESOURCE_SECRETS, json!({ "id": resource_id }))
        .await;
    assert_eq!(
        data(&fetched)["resourceSecrets"][0]["value"],
        "nightly-8d21"
    );
    let usage = "SELECT COUNT(*) FROM secret_usage";
    assert_eq!(
        app.sql_query_one_i64(usage).await,
        0,
        "usage waits for its flush"
    );

    let address = app.api.base_url().trim_start_matches("http://").to_owned();
    let connect = || async {
        TcpStream::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("connect to {address}: {e}"))
    };
    let _idle = connect().await;
    let mut half_headers = connect().await;
    half_headers
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: strongroom\r\nContent-Type: appl")
        .await
        .expect("send half the headers");
    let mut half_body = connect().await;
    half_body
        .write_all(
            b"POST /graphql HTTP/1.1\r\nHost: strongroom\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\":",
        )
        .await
        .expect("send the headers and the start of a body");
    // An ordinary request after them: the server has taken all three connections.
    let answered = app.admin("{ __typename }", json!({})).await;
    assert_eq!(data(&answered)["__typename"], "Query");

    let status = app.terminate_and_restart(Duration::from_secs(20), &env);
    let logs = app.server_logs();
    assert!(
        status.is_some_and(|status| status.success()),
        "SIGTERM with unfinished requests: {status:?} (None: still running after 20 s)\n{logs}"
    );
    assert!(
        logs.contains("shutdown grace ran out"),
        "the log says the grace ran out:\n{logs}"
    );
    assert_eq!(
        app.sql_query_one_i64(usage).await,
        1,
        "the fetch's usage, written at shutdown"
    );
}

/// PostgreSQL stopped under a running server (a private cluster, stopped with `pg_ctl
/// stop -m fast`, which ends every session) and started again: while it is down, reads
/// and writes are refused with `DATABASE_UNAVAILABLE` (marked retryable) within the
/// request timeout, nothing half-written, and `/readyz` says the database is unavailable;
/// once it is back the same server answers again, without a restart, and the write
/// refused during the outage is not there.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_outage_is_refused_with_a_code_and_survived_without_a_restart() {
    let cluster = PostgresCluster::start();
    let app = TestApp::spawn_on(&cluster, &[] as &[(&str, &str)]).await;
    app.create_secret("BEFORE", "before-41c9").await;

    cluster.stop();
    let (status, ready) = app.readyz().await;
    assert_eq!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{ready:#}"
    );
    assert_eq!(ready["database"], "unavailable", "{ready:#}");
    let token = Some(app.admin_token.as_str());
    let read = json!({ "query": SECRET_VALUE, "variables": { "name": "BEFORE" } });
    let write = json!({ "query": CREATE_SECRET,
        "variables": { "input": { "name": "DURING", "value": "during-77e0" } } });
    for (what, body) in [("a read", read), ("a write", write)] {
        let (status, refused) = app.api.post_raw(token, body).await;
        assert_eq!(
            status,
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {refused:#}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "DATABASE_UNAVAILABLE",
            "{what}: {refused:#}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["retryable"], true,
            "{what}: {refused:#}"
        );
        assert!(refused["data"].is_null(), "{what}: {refused:#}");
        assert!(
            !refused.to_string().contains("during-77e0"),
            "{what} echoes no value: {refused:#}"
        );
    }

    cluster.resume();
    let started = std::time::Instant::now();
    let back = loop {
        let read = app.admin(SECRET_VALUE, json!({ "name": "BEFORE" })).await;
        if outcome(&read) == "OK" {
            break read;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still refused a minute after PostgreSQL came back: {read:#}\n{}",
            app.server_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("back {:?} after PostgreSQL started", started.elapsed());
    assert_eq!(data(&back)["secretValue"]["value"], "before-41c9");
    let (status, ready) = app.readyz().await;
    assert_eq!(status, reqwest::StatusCode::OK, "{ready:#}");
    let during = app.admin(SECRET_VALUE, json!({ "name": "DURING" })).await;
    assert_eq!(
        outcome(&during),
        "NOT_FOUND",
        "the refused write: {during:#}"
    );
}

/// What one writer saw acknowledged before the server died.
#[derive(Default)]
struct Acknowledged {
    /// Its secret's versions, with the value each was acknowledged with.
    versions: BTreeMap<i64, String>,
    /// Reveals answered with a value.
    reveals: i64,
}

/// One request that may fail (the server is about to be killed): the `data` of a
/// successful answer, `None` for anything else.
async fn try_admin(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    query: &str,
    variables: serde_json::Value,
) -> Option<serde_json::Value> {
    let response = client
        .post(format!("{base_url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    if body.get("errors").is_some() {
        return None;
    }
    body.get("data").cloned()
}

/// SIGKILL in the middle of a write load — 8 writers each creating a secret, then
/// updating it (no `expectedVersion`) and revealing it in a loop — then a restart on the
/// same store: every acknowledged version is there with the value it was acknowledged
/// with, each secret's versions run 1…current without a gap, every acknowledged reveal has
/// its audit row, and SQLite's `integrity_check` is clean. (Writes in flight at the kill
/// were never acknowledged: they may or may not be there, but never half.)
async fn sigkill_under_write_load_loses_nothing_acknowledged(store: Store) {
    const WRITERS: usize = 8;
    let env = [("STRONGROOM_VERSION_RETENTION", "100000")];
    let mut app = TestApp::spawn_with(store, &env).await;
    let base_url = app.api.base_url().to_owned();
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (base_url, token) = (base_url.clone(), app.admin_token.clone());
        let total = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let name = format!("CRASH_{w}");
            let mut seen = Acknowledged::default();
            let value = format!("{name}-v1");
            let input = json!({ "input": { "name": name, "value": value } });
            if try_admin(&client, &base_url, &token, CREATE_SECRET, input)
                .await
                .is_none()
            {
                return (name, seen);
            }
            seen.versions.insert(1, value);
            for i in 2.. {
                let value = format!("{name}-v{i}-{}", "x".repeat(i % 64));
                let input = json!({ "input": { "name": name, "value": value } });
                let Some(updated) =
                    try_admin(&client, &base_url, &token, UPDATE_SECRET, input).await
                else {
                    break;
                };
                let version = updated["updateSecret"]["secret"]["currentVersion"]
                    .as_i64()
                    .expect("a version");
                seen.versions.insert(version, value);
                *total.lock().expect("count") += 1;
                let read = json!({ "name": name });
                match try_admin(&client, &base_url, &token, SECRET_VALUE, read).await {
                    Some(read) if read["secretValue"]["value"].is_string() => seen.reveals += 1,
                    _ => break,
                }
            }
            (name, seen)
        }));
    }
    // Kill once the load is well under way (a count, not a time).
    while *acknowledged.lock().expect("count") < 150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.signal_server("KILL");
    let mut seen = Vec::new();
    for writer in writers {
        seen.push(writer.await.expect("a writer"));
    }
    app.restart_with(&env).await;

    let mut versions_acknowledged = 0;
    let mut reveals_acknowledged = 0;
    for (name, seen) in &seen {
        let Some((&last, _)) = seen.versions.last_key_value() else {
            continue;
        };
        let row = app
            .sql_strings(&format!(
                "SELECT CAST(s.current_version AS TEXT) || ' ' || CAST(COUNT(v.id) AS TEXT) || ' ' \
                 || CAST(MIN(v.version) AS TEXT) || ' ' || CAST(MAX(v.version) AS TEXT) \
                 FROM secrets s JOIN secret_versions v ON v.secret_id = s.id \
                 WHERE s.name = '{name}' GROUP BY s.current_version"
            ))
            .await;
        let numbers: Vec<i64> = row[0]
            .split(' ')
            .map(|n| n.parse().expect("a number"))
            .collect();
        let (current, count, min, max) = (numbers[0], numbers[1], numbers[2], numbers[3]);
        assert!(
            current >= last,
            "{name}: version {last} was acknowledged, {current} is current"
        );
        assert_eq!(
            (min, max, count),
            (1, current, current),
            "{name}: versions with a gap"
        );
        for (version, value) in &seen.versions {
            let read = app
                .admin(SECRET_VALUE, json!({ "name": name, "version": version }))
                .await;
            assert_eq!(
                data(&read)["secretValue"]["value"],
                value.as_str(),
                "{name} v{version}"
            );
        }
        versions_acknowledged += seen.versions.len();
        reveals_acknowledged += seen.reveals;
    }
    let reveals_read_back = versions_acknowledged as i64;
    let audited = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'secret.reveal' AND outcome = 'ALLOWED'",
        )
        .await;
    // The reveals made just now to check the versions are audited too.
    assert!(
        audited >= reveals_acknowledged + reveals_read_back,
        "{audited} reveal rows for {reveals_acknowledged} acknowledged before the kill \
         and {reveals_read_back} after"
    );
    println!(
        "SIGKILL under load: {versions_acknowledged} versions and {reveals_acknowledged} reveals \
         acknowledged by {WRITERS} writers, none lost"
    );
    if store == Store::Sqlite {
        assert_eq!(
            app.sql_strings("PRAGMA integrity_check").await,
            vec!["ok".to_owned()]
        );
    }
}
