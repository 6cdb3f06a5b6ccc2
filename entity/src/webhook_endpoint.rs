use sea_orm::entity::prelude::*;

/// Where an organization's events are posted (DESIGN §11), signed with a secret stored
/// like a value: ciphertext under a data key the key provider wrapped, bound to the
/// organization, the endpoint and `signing_key_row` (renewed by every rotation).
///
/// `Debug` is derived: every field is metadata or ciphertext, never the signing secret.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub url: String,
    /// The payload types posted: `["secret.updated", "dependent.stale"]`.
    pub events: Json,
    /// The secrets whose events are posted (`["DB_URL"]`); null for every secret.
    pub secret_names: Option<Json>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last successful one.
    pub failing_since: Option<DateTimeUtc>,
    pub signing_ciphertext: Vec<u8>,
    pub signing_nonce: Vec<u8>,
    pub signing_wrapped_key: Vec<u8>,
    pub signing_key_id: String,
    pub signing_scheme: String,
    pub signing_key_row: Uuid,
    pub created_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
