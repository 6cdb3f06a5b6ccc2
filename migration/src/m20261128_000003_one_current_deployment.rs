//! The database enforces what the domain promises: at most one current (not `SUPERSEDED`)
//! deployment per resource, by a partial unique index; and secret names sort the same on
//! PostgreSQL as on SQLite (byte order), whatever the cluster's default collation.
use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Races before this migration could leave several current deployments: keep the
        // newest (ids are UUIDv7, so the largest id is the latest) and supersede the rest.
        db.execute_unprepared(
            "UPDATE deployments SET state = 'SUPERSEDED'
             WHERE state <> 'SUPERSEDED' AND EXISTS (
                 SELECT 1 FROM deployments newer
                 WHERE newer.resource_id = deployments.resource_id
                   AND newer.state <> 'SUPERSEDED' AND newer.id > deployments.id)",
        )
        .await?;
        // Partial indexes read the same on both stores.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX ux_deployments_current ON deployments (resource_id)
             WHERE state <> 'SUPERSEDED'",
        )
        .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            // Keyset pagination of secrets compares and orders by `name_key`; SQLite does
            // it bytewise, so PostgreSQL must too.
            db.execute_unprepared(
                r#"ALTER TABLE secrets ALTER COLUMN name_key TYPE varchar COLLATE "C""#,
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX ux_deployments_current")
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                r#"ALTER TABLE secrets ALTER COLUMN name_key TYPE varchar COLLATE "default""#,
            )
            .await?;
        }
        Ok(())
    }
}
