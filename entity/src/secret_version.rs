use sea_orm::entity::prelude::*;

/// One encrypted value of a secret (envelope encryption, see the server's `crypto` module).
///
/// `Debug` is derived: every field here is either metadata or ciphertext, never plaintext.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secret_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub secret_id: Uuid,
    pub org_id: Uuid,
    pub version: i32,
    /// AES-256-GCM ciphertext with its 16-byte tag appended.
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// The data key, wrapped by the key provider.
    pub wrapped_key: Vec<u8>,
    /// Which provider key wrapped `wrapped_key`.
    pub key_id: String,
    /// Format tag, so the envelope format can evolve.
    pub scheme: String,
    pub created_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::secret::Entity",
        from = "Column::SecretId",
        to = "super::secret::Column::Id",
        on_delete = "Cascade"
    )]
    Secret,
}

impl Related<super::secret::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Secret.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
