use sea_orm::entity::prelude::*;

/// One event to post to one endpoint, with the body every attempt sends, and when the
/// next attempt is due (a worker that claims it moves this past the attempt's timeout).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub endpoint_id: Uuid,
    /// The events outbox row it came from (the `webhook-id` names it).
    pub event_id: i64,
    /// `secret.updated`, `dependent.stale`…
    pub event_type: String,
    /// The JSON body, fixed when queued: ids, names, states, versions; never a value.
    pub body: String,
    /// `PENDING`, `SUCCEEDED` or `FAILED` (no attempt left).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
