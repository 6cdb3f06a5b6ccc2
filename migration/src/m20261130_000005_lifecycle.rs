//! A secret's whole life (DESIGN §8): disabled and deleted states with a recovery window,
//! rotation periods, and who last fetched what.
//!
//! - `secrets.state`: `ACTIVE`, `DISABLED` or `DELETED` (pending purge, `purge_at`). A
//!   deleted secret keeps its row, so its name stays reserved by `ux_secrets_org_name_key`.
//! - `secrets.value_changed_at`: when the current value was set; with a
//!   `rotation_period_days`, `rotation_due_at` is that plus the period (stored, so that
//!   "which are due" is one indexed comparison on every store); `rotation_notified_at` is
//!   the due date whose `ROTATION_DUE` event was sent, so each due date is announced once.
//! - `secret_usage`: per resource and referenced secret name, the last fetch (coalesced:
//!   written at most once per flush interval, never per fetch).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            string(Secrets::State).default("ACTIVE").to_owned(),
            timestamp_with_time_zone_null(Secrets::DisabledAt),
            text_null(Secrets::DisabledReason),
            timestamp_with_time_zone_null(Secrets::DeletedAt),
            timestamp_with_time_zone_null(Secrets::PurgeAt),
            integer_null(Secrets::RotationPeriodDays),
            timestamp_with_time_zone_null(Secrets::ValueChangedAt),
            timestamp_with_time_zone_null(Secrets::RotationDueAt),
            timestamp_with_time_zone_null(Secrets::RotationNotifiedAt),
            timestamp_with_time_zone_null(Secrets::LastAccessedAt),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Secrets::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // The current value was set when the secret was last updated, at the latest.
        manager
            .get_connection()
            .execute_unprepared("UPDATE secrets SET value_changed_at = updated_at")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_secrets_state_purge_at")
                    .table(Secrets::Table)
                    .col(Secrets::State)
                    .col(Secrets::PurgeAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("ix_secrets_rotation_due_at")
                    .table(Secrets::Table)
                    .col(Secrets::RotationDueAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SecretUsage::Table)
                    .col(pk_uuid(SecretUsage::Id))
                    .col(uuid(SecretUsage::OrgId))
                    .col(uuid(SecretUsage::ResourceId))
                    .col(string(SecretUsage::SecretNameKey))
                    .col(timestamp_with_time_zone(SecretUsage::LastFetchedAt))
                    .col(integer_null(SecretUsage::LastFetchedVersion))
                    .col(string(SecretUsage::LastFetchOutcome))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SecretUsage::Table, SecretUsage::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_secret_usage_resource_secret")
                    .table(SecretUsage::Table)
                    .col(SecretUsage::ResourceId)
                    .col(SecretUsage::SecretNameKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_secret_usage_org_secret")
                    .table(SecretUsage::Table)
                    .col(SecretUsage::OrgId)
                    .col(SecretUsage::SecretNameKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SecretUsage::Table).to_owned())
            .await?;
        for index in ["ix_secrets_state_purge_at", "ix_secrets_rotation_due_at"] {
            manager
                .drop_index(Index::drop().name(index).table(Secrets::Table).to_owned())
                .await?;
        }
        for column in [
            Secrets::State,
            Secrets::DisabledAt,
            Secrets::DisabledReason,
            Secrets::DeletedAt,
            Secrets::PurgeAt,
            Secrets::RotationPeriodDays,
            Secrets::ValueChangedAt,
            Secrets::RotationDueAt,
            Secrets::RotationNotifiedAt,
            Secrets::LastAccessedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Secrets::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    State,
    DisabledAt,
    DisabledReason,
    DeletedAt,
    PurgeAt,
    RotationPeriodDays,
    ValueChangedAt,
    RotationDueAt,
    RotationNotifiedAt,
    LastAccessedAt,
}

#[derive(DeriveIden)]
enum SecretUsage {
    Table,
    Id,
    OrgId,
    ResourceId,
    SecretNameKey,
    LastFetchedAt,
    LastFetchedVersion,
    LastFetchOutcome,
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    Id,
}
