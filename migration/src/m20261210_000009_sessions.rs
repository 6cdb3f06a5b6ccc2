//! People's single sign-on to the console (DESIGN §10 "People", §12):
//!
//! - `principals.oidc_issuer` / `oidc_subject`: the OpenID identity a `USER` principal was
//!   created for at its first sign-in, by which it is found at every later one (unique
//!   together; null for principals made any other way).
//! - `console_sessions`: server-side console sessions. Only the SHA-256 of the session id
//!   (the cookie's value) is stored. A session ends at `expires_at` (absolute), when
//!   `last_seen_at` is older than the idle timeout, or when revoked (sign-out). The issuer
//!   and subject say which sign-in made it (for the audit log's credential).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Principals::OidcIssuer, Principals::OidcSubject] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Principals::Table)
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ux_principals_oidc_identity")
                    .table(Principals::Table)
                    .col(Principals::OidcIssuer)
                    .col(Principals::OidcSubject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConsoleSessions::Table)
                    .col(uuid(ConsoleSessions::Id).primary_key())
                    .col(uuid(ConsoleSessions::OrgId))
                    .col(uuid(ConsoleSessions::PrincipalId))
                    .col(string_uniq(ConsoleSessions::SessionHash))
                    .col(text(ConsoleSessions::OidcIssuer))
                    .col(text(ConsoleSessions::OidcSubject))
                    .col(timestamp_with_time_zone(ConsoleSessions::CreatedAt))
                    .col(timestamp_with_time_zone(ConsoleSessions::ExpiresAt))
                    .col(timestamp_with_time_zone(ConsoleSessions::LastSeenAt))
                    .col(timestamp_with_time_zone_null(ConsoleSessions::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ConsoleSessions::Table, ConsoleSessions::PrincipalId)
                            .to(Principals::Table, Principals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_console_sessions_principal")
                    .table(ConsoleSessions::Table)
                    .col(ConsoleSessions::PrincipalId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsoleSessions::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_principals_oidc_identity")
                    .table(Principals::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Principals::OidcIssuer, Principals::OidcSubject] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Principals::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
    OidcIssuer,
    OidcSubject,
}

#[derive(DeriveIden)]
enum ConsoleSessions {
    Table,
    Id,
    OrgId,
    PrincipalId,
    SessionHash,
    OidcIssuer,
    OidcSubject,
    CreatedAt,
    ExpiresAt,
    LastSeenAt,
    RevokedAt,
}
