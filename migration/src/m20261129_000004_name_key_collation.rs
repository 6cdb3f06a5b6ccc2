//! Every column that holds a case-folded secret name compares bytewise on PostgreSQL, as
//! `secrets.name_key` has since migration 3. Joins from a reference or a pin to its secret
//! then compare like with like, so they use `ux_secrets_org_name_key` for both columns
//! instead of scanning an organization's secrets for every row (the dependents of a page
//! of secrets are one join). Name keys are ASCII, so no comparison changes meaning.
//! SQLite compares bytewise already.
use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: [(&str, &str); 2] = [
    ("resource_references", "secret_name_key"),
    ("deployment_pins", "secret_name_key"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        collate(manager, "C").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        collate(manager, "default").await
    }
}

async fn collate(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for (table, column) in COLUMNS {
        db.execute_unprepared(&format!(
            r#"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar COLLATE "{collation}""#
        ))
        .await?;
    }
    Ok(())
}
