//! Resources (pipelines and integrations) with their secret references, and deployments
//! pinned to secret versions.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Resources::Table)
                    .col(pk_uuid(Resources::Id))
                    .col(uuid(Resources::OrgId))
                    .col(string(Resources::Kind))
                    .col(string(Resources::Name))
                    .col(text_null(Resources::Description))
                    .col(timestamp_with_time_zone(Resources::CreatedAt))
                    .col(timestamp_with_time_zone(Resources::UpdatedAt))
                    .col(uuid_null(Resources::CreatedBy))
                    .col(uuid_null(Resources::UpdatedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Resources::Table, Resources::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_resources_org_kind_name")
                    .table(Resources::Table)
                    .col(Resources::OrgId)
                    .col(Resources::Kind)
                    .col(Resources::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ResourceReferences::Table)
                    .col(pk_uuid(ResourceReferences::Id))
                    .col(uuid(ResourceReferences::ResourceId))
                    .col(uuid(ResourceReferences::OrgId))
                    .col(string(ResourceReferences::SecretName))
                    // ASCII-lowercased, to match `secrets.name_key`.
                    .col(string(ResourceReferences::SecretNameKey))
                    .col(string(ResourceReferences::Field))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ResourceReferences::Table, ResourceReferences::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_resource_references_org_secret")
                    .table(ResourceReferences::Table)
                    .col(ResourceReferences::OrgId)
                    .col(ResourceReferences::SecretNameKey)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_resource_references_resource")
                    .table(ResourceReferences::Table)
                    .col(ResourceReferences::ResourceId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .col(pk_uuid(Deployments::Id))
                    .col(uuid(Deployments::ResourceId))
                    .col(uuid(Deployments::OrgId))
                    // ACTIVE, FAILED or SUPERSEDED; a resource has at most one that is not
                    // SUPERSEDED (its current deployment).
                    .col(string(Deployments::State))
                    .col(timestamp_with_time_zone(Deployments::DeployedAt))
                    .col(uuid_null(Deployments::DeployedBy))
                    .col(timestamp_with_time_zone_null(Deployments::FailedAt))
                    .col(text_null(Deployments::FailureReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Deployments::Table, Deployments::ResourceId)
                            .to(Resources::Table, Resources::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_deployments_resource_state")
                    .table(Deployments::Table)
                    .col(Deployments::ResourceId)
                    .col(Deployments::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentPins::Table)
                    .col(pk_uuid(DeploymentPins::Id))
                    .col(uuid(DeploymentPins::DeploymentId))
                    .col(uuid(DeploymentPins::OrgId))
                    // No foreign key: a pin outlives a force-deleted secret, to say what broke.
                    .col(uuid(DeploymentPins::SecretId))
                    .col(string(DeploymentPins::SecretName))
                    .col(string(DeploymentPins::SecretNameKey))
                    .col(integer(DeploymentPins::Version))
                    // The reference's field at deploy time: a deployment is a snapshot.
                    .col(string(DeploymentPins::Field))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeploymentPins::Table, DeploymentPins::DeploymentId)
                            .to(Deployments::Table, Deployments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_deployment_pins_deployment")
                    .table(DeploymentPins::Table)
                    .col(DeploymentPins::DeploymentId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_deployment_pins_secret")
                    .table(DeploymentPins::Table)
                    .col(DeploymentPins::SecretId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeploymentPins::Table.into_iden(),
            Deployments::Table.into_iden(),
            ResourceReferences::Table.into_iden(),
            Resources::Table.into_iden(),
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
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    Id,
    OrgId,
    Kind,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum ResourceReferences {
    Table,
    Id,
    ResourceId,
    OrgId,
    SecretName,
    SecretNameKey,
    Field,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    ResourceId,
    OrgId,
    State,
    DeployedAt,
    DeployedBy,
    FailedAt,
    FailureReason,
}

#[derive(DeriveIden)]
enum DeploymentPins {
    Table,
    Id,
    DeploymentId,
    OrgId,
    SecretId,
    SecretName,
    SecretNameKey,
    Version,
    Field,
}
