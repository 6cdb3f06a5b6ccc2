use sea_orm::entity::prelude::*;

/// Who did what to which object, and whether it was allowed. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// UUIDv7, so ordering by id is ordering by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub occurred_at: DateTimeUtc,
    pub principal_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// e.g. `secret.create`, `secret.reveal`, `token.revoke`.
    pub action: String,
    /// `ALLOWED`, `DENIED` or `FAILED`.
    pub outcome: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub target_name: Option<String>,
    pub detail: Option<Json>,
    /// The credential the principal acted with (`{"kind": "API_TOKEN", "id", "prefix"}`,
    /// or an OIDC issuer and subject); never a secret.
    pub credential: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
