use sea_orm::entity::prelude::*;

/// A resource's last fetch of a referenced secret (by name), as `resourceSecrets` served
/// or refused it. Written at most once per resource and secret per flush interval.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secret_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub resource_id: Uuid,
    /// ASCII-lowercased secret name, matching `secrets.name_key`.
    pub secret_name_key: String,
    pub last_fetched_at: DateTimeUtc,
    pub last_fetched_version: Option<i32>,
    /// `SERVED`, `DISABLED` or `BROKEN`.
    pub last_fetch_outcome: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::resource::Entity",
        from = "Column::ResourceId",
        to = "super::resource::Column::Id",
        on_delete = "Cascade"
    )]
    Resource,
}

impl Related<super::resource::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Resource.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
