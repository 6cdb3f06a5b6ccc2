use sea_orm::entity::prelude::*;

/// A secret's metadata. Its values live in `secret_version`, encrypted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// ASCII-lowercased `name`; unique per organization.
    pub name_key: String,
    pub description: Option<String>,
    pub current_version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub created_by: Option<Uuid>,
    pub updated_by: Option<Uuid>,
    /// `ACTIVE`, `DISABLED` or `DELETED` (pending purge at `purge_at`).
    pub state: String,
    pub disabled_at: Option<DateTimeUtc>,
    pub disabled_reason: Option<String>,
    pub deleted_at: Option<DateTimeUtc>,
    pub purge_at: Option<DateTimeUtc>,
    pub rotation_period_days: Option<i32>,
    /// When the current value was set.
    pub value_changed_at: Option<DateTimeUtc>,
    /// `value_changed_at` plus `rotation_period_days`, when a period is set.
    pub rotation_due_at: Option<DateTimeUtc>,
    /// The rotation due date whose `ROTATION_DUE` event was sent.
    pub rotation_notified_at: Option<DateTimeUtc>,
    /// The latest reveal or fetch of a value (coalesced, see `domain::usage`).
    pub last_accessed_at: Option<DateTimeUtc>,
    /// `ALL_RESOURCES`, or `SELECTED_RESOURCES`: only those in `secret_allowed_resources`
    /// may be deployed with it.
    pub access: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::organization::Entity",
        from = "Column::OrgId",
        to = "super::organization::Column::Id",
        on_delete = "Cascade"
    )]
    Organization,
    #[sea_orm(has_many = "super::secret_version::Entity")]
    SecretVersion,
}

impl Related<super::organization::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organization.def()
    }
}

impl Related<super::secret_version::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SecretVersion.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
