//! Signed webhooks (DESIGN §11):
//!
//! - `webhook_endpoints`: where an organization's events are posted, which event types
//!   (`events`, JSON array of payload types: `["secret.updated", "dependent.stale"]`) and
//!   which secrets (`secret_names`, JSON array, null for all). The signing secret is stored
//!   like a value (envelope encryption: `signing_ciphertext` under a data key wrapped by the
//!   key provider, bound to the organization, the endpoint and `signing_key_row`, which a
//!   rotation renews). `failing_since`: the first failed attempt since the last success.
//! - `webhook_messages`: one event to post to one endpoint (at most one per pair: the
//!   unique index is what makes a second dispatch of an outbox row a no-op), its body
//!   fixed when it is queued so every retry sends the same bytes, and when it is next due.
//!   A delivery worker claims a due row by moving `next_attempt_at` past the attempt's
//!   timeout in the statement that selects it (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so
//!   each attempt is made by one replica; a replica that dies mid-attempt leaves the row to
//!   be claimed again when that time passes.
//! - `webhook_deliveries`: one row per attempt, for `WebhookEndpoint.deliveries`.
//! - `event_outbox.dispatched`: whether the dispatcher has turned the event into messages
//!   (rows already there when this migration runs count as dispatched: endpoints created
//!   from now on do not want them). A partial index keeps finding the undispatched rows
//!   cheap however long the outbox.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(uuid(WebhookEndpoints::Id).primary_key())
                    .col(uuid(WebhookEndpoints::OrgId))
                    .col(text(WebhookEndpoints::Url))
                    .col(json(WebhookEndpoints::Events))
                    .col(json_null(WebhookEndpoints::SecretNames))
                    .col(boolean(WebhookEndpoints::Enabled))
                    .col(text_null(WebhookEndpoints::DisabledReason))
                    .col(timestamp_with_time_zone_null(
                        WebhookEndpoints::FailingSince,
                    ))
                    .col(blob(WebhookEndpoints::SigningCiphertext))
                    .col(blob(WebhookEndpoints::SigningNonce))
                    .col(blob(WebhookEndpoints::SigningWrappedKey))
                    .col(string(WebhookEndpoints::SigningKeyId))
                    .col(string(WebhookEndpoints::SigningScheme))
                    .col(uuid(WebhookEndpoints::SigningKeyRow))
                    .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                    .col(uuid_null(WebhookEndpoints::CreatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookEndpoints::Table, WebhookEndpoints::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_endpoints_org")
                    .table(WebhookEndpoints::Table)
                    .col(WebhookEndpoints::OrgId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookMessages::Table)
                    .col(uuid(WebhookMessages::Id).primary_key())
                    .col(uuid(WebhookMessages::OrgId))
                    .col(uuid(WebhookMessages::EndpointId))
                    .col(big_integer(WebhookMessages::EventId))
                    .col(string(WebhookMessages::EventType))
                    .col(text(WebhookMessages::Body))
                    .col(string(WebhookMessages::Status))
                    .col(integer(WebhookMessages::Attempts))
                    .col(timestamp_with_time_zone(WebhookMessages::NextAttemptAt))
                    .col(timestamp_with_time_zone(WebhookMessages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookMessages::Table, WebhookMessages::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_webhook_messages_endpoint_event")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::EndpointId)
                    .col(WebhookMessages::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_messages_due")
                    .table(WebhookMessages::Table)
                    .col(WebhookMessages::Status)
                    .col(WebhookMessages::NextAttemptAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(uuid(WebhookDeliveries::Id).primary_key())
                    .col(uuid(WebhookDeliveries::MessageId))
                    .col(uuid(WebhookDeliveries::EndpointId))
                    .col(big_integer(WebhookDeliveries::EventId))
                    .col(string(WebhookDeliveries::EventType))
                    .col(integer(WebhookDeliveries::Attempt))
                    .col(string(WebhookDeliveries::Status))
                    .col(integer_null(WebhookDeliveries::ResponseStatus))
                    .col(text_null(WebhookDeliveries::Error))
                    .col(timestamp_with_time_zone(WebhookDeliveries::AttemptedAt))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::NextAttemptAt,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::MessageId)
                            .to(WebhookMessages::Table, WebhookMessages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_endpoint")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_webhook_deliveries_message")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::MessageId)
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(EventOutbox::Table)
                    .add_column(boolean(EventOutbox::Dispatched).default(false))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("UPDATE event_outbox SET dispatched = TRUE")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX ix_event_outbox_undispatched ON event_outbox (id) \
             WHERE dispatched = FALSE",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX ix_event_outbox_undispatched")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(EventOutbox::Table)
                    .drop_column(EventOutbox::Dispatched)
                    .to_owned(),
            )
            .await?;
        for table in [
            WebhookDeliveries::Table.into_iden(),
            WebhookMessages::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    OrgId,
    Url,
    Events,
    SecretNames,
    Enabled,
    DisabledReason,
    FailingSince,
    SigningCiphertext,
    SigningNonce,
    SigningWrappedKey,
    SigningKeyId,
    SigningScheme,
    SigningKeyRow,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum WebhookMessages {
    Table,
    Id,
    OrgId,
    EndpointId,
    EventId,
    EventType,
    Body,
    Status,
    Attempts,
    NextAttemptAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    MessageId,
    EndpointId,
    EventId,
    EventType,
    Attempt,
    Status,
    ResponseStatus,
    Error,
    AttemptedAt,
    NextAttemptAt,
}

#[derive(DeriveIden)]
enum EventOutbox {
    Table,
    Dispatched,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}
