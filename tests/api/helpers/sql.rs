//! Direct SQL on a test app's database: what the tests check behind the API's back, and
//! what an attacker with database access could change.
use std::{path::PathBuf, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement,
};
use uuid::Uuid;

use super::TestApp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    pub secret_name: String,
    pub org_id: Uuid,
    pub secret_id: Uuid,
    pub version: i32,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    /// The version row's id, which its data key is bound to.
    pub row_id: Uuid,
    /// The sealed value (AES-256-GCM, tag appended).
    pub ciphertext: Vec<u8>,
}

impl StoredVersion {
    /// The encryption context its data key is bound to (DESIGN.md §4; the README's
    /// "Envelope encryption"): organization, secret and the version's own row.
    pub fn context(&self) -> [(&'static str, String); 3] {
        [
            ("strongroom:org", self.org_id.hyphenated().to_string()),
            ("strongroom:secret", self.secret_id.hyphenated().to_string()),
            (
                "strongroom:version-id",
                self.row_id.hyphenated().to_string(),
            ),
        ]
    }
}

impl TestApp {
    /// Runs a statement against the app's database; returns the rows affected.
    pub async fn sql(&self, sql: &str) -> u64 {
        let db = self.database().await;
        let result = db.execute_unprepared(sql).await;
        close(db).await;
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The first column of every row, as text.
    pub async fn sql_strings(&self, sql: &str) -> Vec<String> {
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), sql);
        let rows = db.query_all_raw(statement).await;
        close(db).await;
        let rows = rows.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                let text: Option<String> = row.try_get_by_index(0).expect("a text column");
                text.unwrap_or_default()
            })
            .collect()
    }

    /// The single integer a query like `SELECT COUNT(*) ...` returns.
    pub async fn sql_query_one_i64(&self, sql: &str) -> i64 {
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), sql);
        let row = db.query_one_raw(statement).await;
        close(db).await;
        let row = row.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let row = row.unwrap_or_else(|| panic!("{sql}: no row"));
        row.try_get_by_index(0).expect("an integer column")
    }

    /// Runs one statement with parameters written `$1`, `$2`... (on SQLite they become
    /// `?1`, `?2`...); returns the rows affected.
    pub async fn sql_with(&self, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
        let db = self.database().await;
        let backend = db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Sqlite => sql.replace('$', "?"),
            _ => sql.to_owned(),
        };
        let result = db
            .execute_raw(Statement::from_sql_and_values(backend, &sql, values))
            .await;
        close(db).await;
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// Every stored secret version with its wrapping facts, by secret name then version.
    pub async fn stored_versions(&self) -> Vec<StoredVersion> {
        const SQL: &str =
            "SELECT s.name, v.org_id, v.secret_id, v.version, v.key_id, v.wrapped_key, v.id,
                v.ciphertext
            FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
            ORDER BY s.name, v.version";
        let db = self.database().await;
        let statement = Statement::from_string(db.get_database_backend(), SQL);
        let rows = db.query_all_raw(statement).await;
        close(db).await;
        let rows = rows.unwrap_or_else(|e| panic!("{SQL}: {e}"));
        rows.iter()
            .map(|row| {
                let column = "a secret_versions column of the expected type";
                StoredVersion {
                    secret_name: row.try_get_by_index(0).expect(column),
                    org_id: row.try_get_by_index(1).expect(column),
                    secret_id: row.try_get_by_index(2).expect(column),
                    version: row.try_get_by_index(3).expect(column),
                    key_id: row.try_get_by_index(4).expect(column),
                    wrapped_key: row.try_get_by_index(5).expect(column),
                    row_id: row.try_get_by_index(6).expect(column),
                    ciphertext: row.try_get_by_index(7).expect(column),
                }
            })
            .collect()
    }

    /// Overwrites the wrapping facts of one stored version, as an attacker with database
    /// access could.
    pub async fn set_wrapped_key(&self, version: &StoredVersion, key_id: &str, wrapped_key: &[u8]) {
        let updated = self
            .sql_with(
                "UPDATE secret_versions SET key_id = $1, wrapped_key = $2
                 WHERE secret_id = $3 AND version = $4",
                vec![
                    key_id.into(),
                    wrapped_key.to_vec().into(),
                    version.secret_id.into(),
                    version.version.into(),
                ],
            )
            .await;
        assert_eq!(updated, 1, "update the wrapped key of {version:?}");
    }

    /// The SQLite database file and its `-wal` / `-shm` companions that exist.
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        let Some(path) = &self.sqlite_path else {
            return Vec::new();
        };
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
            .filter(|path| path.exists())
            .collect()
    }

    /// A one-connection pool on the app's database, for one statement.
    async fn database(&self) -> DatabaseConnection {
        let mut options = ConnectOptions::new(&self.database_url);
        options
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false);
        Database::connect(options)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database: {e}"))
    }
}

/// Closes a helper's pool, waiting a bounded time: sqlx's `Pool::close` waits for every
/// connection's return, which is spawned on release and has been seen to race the close
/// (sqlx issue 3217) on a loaded machine. Whatever is left is dropped with the pool.
async fn close(db: DatabaseConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(5), db.close()).await;
}
