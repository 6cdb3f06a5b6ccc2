//! Runtime bindings (DESIGN §9): which RUNTIME service accounts may see a resource and
//! fetch its pinned values. One row per (resource, principal), enforced by a unique index;
//! deleting either side deletes the binding.
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
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RuntimeBindings::Table).to_owned())
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
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
}
