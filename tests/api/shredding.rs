//! Shredding destroys bytes (DESIGN §13): after a purge, no copy of a purged version's
//! ciphertext or wrapped data key is left in SQLite's files (the database and its WAL),
//! PostgreSQL's versions table has been vacuumed, and the purged secret's data keys are
//! gone from the data key cache at once.
use std::{collections::HashSet, time::Duration};

use serde_json::json;

use crate::helpers::{DELETE_SECRET, Store, TestApp, UPDATE_SECRET, both_stores, data};

both_stores!(a_purge_leaves_no_bytes_and_no_cached_key);

const PURGE: &str = "mutation($name: String!) {
    purgeSecret(input: { name: $name }) { purgedSecretId } }";
const FORGOTTEN: &str = "strongroom_data_keys_forgotten_total";
const SHREDDED: &str = "SHREDDED";
const KEPT: &str = "KEPT";
/// The length of the pieces of stored bytes looked for in SQLite's files.
const PIECE: usize = 32;

async fn a_purge_leaves_no_bytes_and_no_cached_key(store: Store) {
    // Keys stay cached far longer than the test runs: only the purge can drop them.
    let settings = [("STRONGROOM_KEY_CACHE_MAX_AGE_SECS", "3600")];
    let app = TestApp::spawn_with(store, &settings).await;
    // A short value, and one long enough for SQLite's overflow pages and PostgreSQL's
    // TOAST table, where deleted bytes hide elsewhere than in the row's own page.
    let long_value = "overflow-".repeat(700);
    app.create_secret(SHREDDED, "shredded-one").await;
    for value in [long_value.as_str(), "shredded-three"] {
        let input = json!({ "input": { "name": SHREDDED, "value": value } });
        data(&app.admin(UPDATE_SECRET, input).await);
    }
    let kept_value = "kept-".repeat(1400);
    app.create_secret(KEPT, &kept_value).await;
    assert_eq!(app.reveal(SHREDDED).await, "shredded-three");

    let stored = app.stored_versions().await;
    let (shredded, kept): (Vec<_>, Vec<_>) =
        stored.into_iter().partition(|v| v.secret_name == SHREDDED);
    assert_eq!(shredded.len(), 3, "three versions stored");
    assert_eq!(kept.len(), 1);
    let forgotten_before = app.counter(FORGOTTEN).await;

    let input = json!({ "input": { "name": SHREDDED, "recoveryWindowDays": 30 } });
    data(&app.admin(DELETE_SECRET, input).await);
    let purged = app.admin(PURGE, json!({ "name": SHREDDED })).await;
    assert!(data(&purged)["purgeSecret"]["purgedSecretId"].is_string());

    // Each of its three versions' keys was cached (primed when written); the purge's
    // event drops them, and no other secret's.
    let mut forgotten = forgotten_before;
    for _ in 0..100 {
        forgotten = app.counter(FORGOTTEN).await;
        if forgotten >= forgotten_before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        forgotten - forgotten_before,
        3,
        "the purged secret's three cached data keys are dropped"
    );
    assert_eq!(app.reveal(KEPT).await, kept_value);

    match store {
        Store::Sqlite => {
            let contents: Vec<_> = app
                .sqlite_files()
                .into_iter()
                .map(|path| {
                    let bytes = std::fs::read(&path).expect("read a SQLite file");
                    (path.display().to_string(), bytes)
                })
                .collect();
            assert!(!contents.is_empty(), "no SQLite files found");
            // A long value spans several overflow pages, so it is looked for piece by
            // piece: the files that hold any 32-byte piece of `needle` (random bytes: no
            // piece turns up by chance).
            let windows: Vec<(&str, HashSet<&[u8]>)> = contents
                .iter()
                .map(|(path, bytes)| (path.as_str(), bytes.windows(PIECE).collect()))
                .collect();
            let found = |needle: &[u8]| {
                windows
                    .iter()
                    .filter(|(_, pieces)| needle.chunks_exact(PIECE).any(|p| pieces.contains(p)))
                    .map(|(path, _)| *path)
                    .collect::<Vec<_>>()
            };
            // The search finds what is there: the kept secret's bytes are.
            assert!(
                !found(&kept[0].ciphertext).is_empty(),
                "kept ciphertext found"
            );
            assert!(!found(&kept[0].wrapped_key).is_empty(), "kept key found");
            for version in &shredded {
                let what = format!("{SHREDDED} v{}", version.version);
                let files = found(&version.ciphertext);
                assert!(
                    files.is_empty(),
                    "{what}'s ciphertext is still in {files:?}"
                );
                let files = found(&version.wrapped_key);
                assert!(
                    files.is_empty(),
                    "{what}'s wrapped key is still in {files:?}"
                );
            }
        }
        Store::Postgres => {
            // A manual VACUUM (autovacuum records `last_autovacuum`) left no dead row.
            let vacuumed = "SELECT COUNT(*) FROM pg_stat_user_tables
                WHERE relname = 'secret_versions' AND last_vacuum IS NOT NULL
                AND n_dead_tup = 0";
            let mut done = 0;
            for _ in 0..100 {
                done = app.sql_query_one_i64(vacuumed).await;
                if done == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(done, 1, "the versions table was vacuumed after the purge");
        }
    }
}
