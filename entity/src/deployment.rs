use sea_orm::entity::prelude::*;

/// A resource's deployment, pinned to the secret versions it was deployed with.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub resource_id: Uuid,
    pub org_id: Uuid,
    /// `ACTIVE`, `FAILED` or `SUPERSEDED`.
    pub state: String,
    pub deployed_at: DateTimeUtc,
    pub deployed_by: Option<Uuid>,
    pub failed_at: Option<DateTimeUtc>,
    pub failure_reason: Option<String>,
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
    #[sea_orm(has_many = "super::deployment_pin::Entity")]
    Pin,
}

impl Related<super::resource::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Resource.def()
    }
}

impl Related<super::deployment_pin::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Pin.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
