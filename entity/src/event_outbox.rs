use sea_orm::entity::prelude::*;

/// One event a committed change announced (the events outbox): written in the change's
/// own transaction, read back by every replica by id, pruned after the retention.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_outbox")]
pub struct Model {
    /// A sequence, taken at insert (not at commit).
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: Uuid,
    /// The event's type: `secret.updated`, `dependent.stale`…
    pub kind: String,
    /// The notice as JSON: ids, names, states, versions; never a value.
    pub payload: String,
    pub occurred_at: DateTimeUtc,
    /// When the row was written (PostgreSQL: the database's clock at the insert).
    pub created_at: DateTimeUtc,
    /// Whether the webhook dispatcher has queued it for the endpoints that want it.
    pub dispatched: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
