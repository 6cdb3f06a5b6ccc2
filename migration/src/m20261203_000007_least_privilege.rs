//! Least privilege (DESIGN §9):
//!
//! - `runtime_bindings`: which RUNTIME service accounts may see a resource and fetch its
//!   pinned values. One row per (resource, principal), enforced by a unique index;
//!   deleting either side deletes the binding.
//! - `resources.protected`: only admins change, deploy or delete a protected resource.
//! - `audit_events.credential`: which credential the principal acted with (JSON: kind,
//!   token id and prefix, or an OIDC issuer and subject).
//! - `workload_identities`: which JWTs of which issuer may be exchanged for short-lived
//!   tokens of which service account (`POST /oauth/token`); `api_tokens.oidc_issuer` and
//!   `oidc_subject` say which JWT an exchanged token came from.
//! - `secrets.access` (`ALL_RESOURCES`, the existing secrets' value, or
//!   `SELECTED_RESOURCES`) and `secret_allowed_resources`: the resources a secret with
//!   selected access may be deployed with. One row per (secret, resource); deleting either
//!   side deletes it.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RuntimeBindings::Table)
                    .col(uuid(RuntimeBindings::Id).primary_key())
                    .col(uuid(RuntimeBindings::OrgId))
                    .col(uuid(RuntimeBindings::ResourceId))
                    .col(uuid(RuntimeBindings::PrincipalId))
                    .col(timestamp_with_time_zone(RuntimeBindings::CreatedAt))
                    .col(uuid_null(RuntimeBindings::CreatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RuntimeBindings::Table, RuntimeBindings::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RuntimeBindings::Table, RuntimeBindings::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_runtime_bindings_resource_principal")
                    .table(RuntimeBindings::Table)
                    .col(RuntimeBindings::ResourceId)
                    .col(RuntimeBindings::PrincipalId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_runtime_bindings_principal")
                    .table(RuntimeBindings::Table)
                    .col(RuntimeBindings::PrincipalId)
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Resources::Table)
                    .add_column(boolean(Resources::Protected).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Secrets::Table)
                    .add_column(string(Secrets::Access).default("ALL_RESOURCES"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(json_null(AuditEvents::Credential))
                    .to_owned(),
            )
            .await?;
        for column in [ApiTokens::OidcIssuer, ApiTokens::OidcSubject] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiTokens::Table)
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(WorkloadIdentities::Table)
                    .col(uuid(WorkloadIdentities::Id).primary_key())
                    .col(uuid(WorkloadIdentities::OrgId))
                    .col(text(WorkloadIdentities::Issuer))
                    .col(text(WorkloadIdentities::Audience))
                    .col(json(WorkloadIdentities::BoundClaims))
                    .col(uuid(WorkloadIdentities::PrincipalId))
                    .col(integer(WorkloadIdentities::TokenLifetimeSeconds))
                    .col(timestamp_with_time_zone(WorkloadIdentities::CreatedAt))
                    .col(uuid_null(WorkloadIdentities::CreatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WorkloadIdentities::Table, WorkloadIdentities::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_workload_identities_issuer")
                    .table(WorkloadIdentities::Table)
                    .col(WorkloadIdentities::Issuer)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SecretAllowedResources::Table)
                    .col(uuid(SecretAllowedResources::Id).primary_key())
                    .col(uuid(SecretAllowedResources::OrgId))
                    .col(uuid(SecretAllowedResources::SecretId))
                    .col(uuid(SecretAllowedResources::ResourceId))
                    .col(timestamp_with_time_zone(SecretAllowedResources::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SecretAllowedResources::Table,
                                SecretAllowedResources::SecretId,
                            )
                            .to(Secrets::Table, Secrets::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SecretAllowedResources::Table,
                                SecretAllowedResources::ResourceId,
                            )
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_secret_allowed_resources_secret_resource")
                    .table(SecretAllowedResources::Table)
                    .col(SecretAllowedResources::SecretId)
                    .col(SecretAllowedResources::ResourceId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_secret_allowed_resources_resource")
                    .table(SecretAllowedResources::Table)
                    .col(SecretAllowedResources::ResourceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WorkloadIdentities::Table.into_iden(),
            SecretAllowedResources::Table.into_iden(),
            RuntimeBindings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Secrets::Table)
                    .drop_column(Secrets::Access)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::Credential)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Resources::Table)
                    .drop_column(Resources::Protected)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum RuntimeBindings {
    Table,
    Id,
    OrgId,
    ResourceId,
    PrincipalId,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    Id,
    Protected,
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Id,
    Access,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    OidcIssuer,
    OidcSubject,
}

#[derive(DeriveIden)]
enum WorkloadIdentities {
    Table,
    Id,
    OrgId,
    Issuer,
    Audience,
    BoundClaims,
    PrincipalId,
    TokenLifetimeSeconds,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Credential,
}

#[derive(DeriveIden)]
enum SecretAllowedResources {
    Table,
    Id,
    OrgId,
    SecretId,
    ResourceId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
}
