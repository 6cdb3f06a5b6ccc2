//! The events outbox (DESIGN §7, §11, §13 "Events cannot be forged"): every change writes
//! the events it announces here, in its own transaction, so an event exists if and only if
//! its change committed.
//!
//! - `id`: a sequence (PostgreSQL `bigserial`; SQLite `INTEGER PRIMARY KEY AUTOINCREMENT`,
//!   so an id is never handed out twice, even after the newest rows are pruned). On
//!   PostgreSQL a `NOTIFY` carries only these ids; every replica reads the rows back.
//!   Ids are taken at insert, not at commit: id order is commit order only among changes
//!   that serialize (the writers of one secret); readers must not assume more.
//! - `kind`: the event's type (`secret.updated`, `dependent.stale`…), for consumers that
//!   filter without parsing; `payload`: the notice as JSON text (ids, names, states,
//!   versions — never a value), byte for byte as written.
//! - `occurred_at`: when the change happened (the notice's time); `created_at`: when the
//!   row was written (on PostgreSQL the database's clock at the insert), which retention
//!   and the replay after a lost listening connection go by (`ix_event_outbox_created_at`).
//!
//! Other consumers (issue 17's webhook deliveries) keep their own state in their own
//! tables keyed by `event_outbox.id`; the pruner is where they would hold rows back.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventOutbox::Table)
                    .col(big_pk_auto(EventOutbox::Id))
                    .col(uuid(EventOutbox::OrgId))
                    .col(string(EventOutbox::Kind))
                    .col(text(EventOutbox::Payload))
                    .col(timestamp_with_time_zone(EventOutbox::OccurredAt))
                    .col(timestamp_with_time_zone(EventOutbox::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_event_outbox_created_at")
                    .table(EventOutbox::Table)
                    .col(EventOutbox::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventOutbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EventOutbox {
    Table,
    Id,
    OrgId,
    Kind,
    Payload,
    OccurredAt,
    CreatedAt,
}
