//! Organizations, principals, API tokens, secrets with their encrypted versions, and the
//! audit log.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(pk_uuid(Organizations::Id))
                    .col(string_uniq(Organizations::Name))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Principals::Table)
                    .col(pk_uuid(Principals::Id))
                    .col(uuid(Principals::OrgId))
                    .col(string(Principals::Kind))
                    .col(string(Principals::Name))
                    .col(string(Principals::Role))
                    .col(timestamp_with_time_zone(Principals::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Principals::Table, Principals::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_principals_org_name")
                    .table(Principals::Table)
                    .col(Principals::OrgId)
                    .col(Principals::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(pk_uuid(ApiTokens::Id))
                    .col(uuid(ApiTokens::OrgId))
                    .col(uuid(ApiTokens::PrincipalId))
                    .col(string_uniq(ApiTokens::TokenHash))
                    .col(string(ApiTokens::DisplayPrefix))
                    .col(string_null(ApiTokens::Description))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(uuid_null(ApiTokens::CreatedBy))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Secrets::Table)
                    .col(pk_uuid(Secrets::Id))
                    .col(uuid(Secrets::OrgId))
                    .col(string(Secrets::Name))
                    // ASCII-lowercased name: names are unique per organization ignoring case.
                    .col(string(Secrets::NameKey))
                    .col(text_null(Secrets::Description))
                    .col(integer(Secrets::CurrentVersion))
                    .col(timestamp_with_time_zone(Secrets::CreatedAt))
                    .col(timestamp_with_time_zone(Secrets::UpdatedAt))
                    .col(uuid_null(Secrets::CreatedBy))
                    .col(uuid_null(Secrets::UpdatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Secrets::Table, Secrets::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_secrets_org_name_key")
                    .table(Secrets::Table)
                    .col(Secrets::OrgId)
                    .col(Secrets::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SecretVersions::Table)
                    .col(pk_uuid(SecretVersions::Id))
                    .col(uuid(SecretVersions::SecretId))
                    .col(uuid(SecretVersions::OrgId))
                    .col(integer(SecretVersions::Version))
                    .col(blob(SecretVersions::Ciphertext))
                    .col(blob(SecretVersions::Nonce))
                    .col(blob(SecretVersions::WrappedKey))
                    .col(string(SecretVersions::KeyId))
                    .col(string(SecretVersions::Scheme))
                    .col(timestamp_with_time_zone(SecretVersions::CreatedAt))
                    .col(uuid_null(SecretVersions::CreatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SecretVersions::Table, SecretVersions::SecretId)
                            .to(Secrets::Table, Secrets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_secret_versions_secret_version")
                    .table(SecretVersions::Table)
                    .col(SecretVersions::SecretId)
                    .col(SecretVersions::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    // UUIDv7: time-ordered, so the id doubles as the pagination key.
                    .col(pk_uuid(AuditEvents::Id))
                    .col(uuid(AuditEvents::OrgId))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(uuid_null(AuditEvents::PrincipalId))
                    .col(string_null(AuditEvents::RequestId))
                    .col(string(AuditEvents::Action))
                    .col(string(AuditEvents::Outcome))
                    .col(string_null(AuditEvents::TargetKind))
                    .col(string_null(AuditEvents::TargetId))
                    .col(string_null(AuditEvents::TargetName))
                    .col(json_null(AuditEvents::Detail))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuditEvents::Table, AuditEvents::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_org_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrgId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            SecretVersions::Table.into_iden(),
            Secrets::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Principals::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
    OrgId,
    Kind,
    Name,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    OrgId,
    PrincipalId,
    TokenHash,
    DisplayPrefix,
    Description,
    CreatedAt,
    CreatedBy,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Id,
    OrgId,
    Name,
    NameKey,
    Description,
    CurrentVersion,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum SecretVersions {
    Table,
    Id,
    SecretId,
    OrgId,
    Version,
    Ciphertext,
    Nonce,
    WrappedKey,
    KeyId,
    Scheme,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrgId,
    OccurredAt,
    PrincipalId,
    RequestId,
    Action,
    Outcome,
    TargetKind,
    TargetId,
    TargetName,
    Detail,
}
