use sea_orm::entity::prelude::*;

/// A console session (single sign-on). Only the SHA-256 of the session id is stored; the
/// id itself lives in the browser's cookie.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub principal_id: Uuid,
    /// Hex SHA-256 of the session id.
    #[sea_orm(unique)]
    pub session_hash: String,
    /// The sign-in's `iss` and `sub`.
    pub oidc_issuer: String,
    pub oidc_subject: String,
    pub created_at: DateTimeUtc,
    /// The absolute end.
    pub expires_at: DateTimeUtc,
    /// The last request made with it (the idle timeout runs from here).
    pub last_seen_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
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
