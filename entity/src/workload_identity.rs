use sea_orm::entity::prelude::*;

/// Who may exchange a JWT for a short-lived token of a service account (DESIGN §10):
/// tokens of `issuer`, for `audience`, whose claims match every bound claim.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workload_identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub issuer: String,
    pub audience: String,
    /// `[{"claim": "repository", "pattern": "acme/*"}]`.
    pub bound_claims: Json,
    pub principal_id: Uuid,
    pub token_lifetime_seconds: i32,
    pub created_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::principal::Entity",
        from = "Column::PrincipalId",
        to = "super::principal::Column::Id",
        on_delete = "Cascade"
    )]
    Principal,
}

impl Related<super::principal::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Principal.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
