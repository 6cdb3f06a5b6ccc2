use sea_orm::entity::prelude::*;

/// One attempt to post a message to its endpoint.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: i64,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// `SUCCEEDED`; `PENDING` (failed, another attempt is due at `next_attempt_at`); or
    /// `FAILED` (failed, no attempt left).
    pub status: String,
    pub response_status: Option<i32>,
    /// Why the attempt failed, in words (never a response body).
    pub error: Option<String>,
    pub attempted_at: DateTimeUtc,
    pub next_attempt_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
