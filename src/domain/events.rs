//! What a change announces (DESIGN §7): what happened to a secret, and which dependents
//! changed state because of it. A leaf of the domain: writers build [`Notice`]s while their
//! transaction is open and hand them to the transport (`crate::events`), which stores and
//! publishes them; nothing here knows how they travel.
//!
//! A notice is small and free of values: ids, names, states and versions. Its JSON form is
//! what the events outbox stores and what subscribers' replicas read back, so it stays
//! stable: fields may be added, never renamed.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dependents::{Dependent, DependentState};

/// What happened to a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecretEventKind {
    Created,
    /// A new value (a new version), description or rotation period.
    Updated,
    /// Scheduled for purge (or purged at once, then also `Purged`).
    Deleted,
    Disabled,
    Enabled,
    Restored,
    /// Destroyed with every version, by a call or at the end of its recovery window.
    Purged,
    /// A new version with the value of an earlier one.
    RolledBack,
    /// Its rotation period has passed since the value last changed (once per due date).
    RotationDue,
}

impl SecretEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Updated => "UPDATED",
            Self::Deleted => "DELETED",
            Self::Disabled => "DISABLED",
            Self::Enabled => "ENABLED",
            Self::Restored => "RESTORED",
            Self::Purged => "PURGED",
            Self::RolledBack => "ROLLED_BACK",
            Self::RotationDue => "ROTATION_DUE",
        }
    }
}

/// One change, as published: small, and free of values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub org_id: Uuid,
    pub secret_name: String,
    pub occurred_at: DateTime<Utc>,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Change {
    Secret {
        kind: SecretEventKind,
        secret_id: Uuid,
        version: Option<i32>,
        principal_id: Option<Uuid>,
    },
    /// A dependent (a resource's reference to the secret) changed state.
    Dependent {
        resource_id: Uuid,
        field: String,
        previous: Option<DependentState>,
        state: DependentState,
        deployed_version: Option<i32>,
        deployed_at: Option<DateTime<Utc>>,
    },
}

impl Notice {
    /// Something happened to a secret, done by `principal_id`.
    pub fn secret(
        org_id: Uuid,
        secret: (Uuid, &str),
        kind: SecretEventKind,
        version: Option<i32>,
        principal_id: Option<Uuid>,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            org_id,
            secret_name: secret.1.to_owned(),
            occurred_at,
            change: Change::Secret {
                kind,
                secret_id: secret.0,
                version,
                principal_id,
            },
        }
    }

    /// `dependent` (as it stands now) was `previous` before this change.
    pub fn dependent(
        org_id: Uuid,
        secret_name: &str,
        dependent: &Dependent,
        previous: Option<DependentState>,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            org_id,
            secret_name: secret_name.to_owned(),
            occurred_at,
            change: Change::Dependent {
                resource_id: dependent.resource.id,
                field: dependent.field.clone(),
                previous,
                state: dependent.state,
                deployed_version: dependent.deployed_version,
                deployed_at: dependent.deployed_at,
            },
        }
    }

    /// The event's type, as a consumer filters on it: `secret.updated`,
    /// `secret.rolled_back`, `dependent.stale`, `dependent.up_to_date`… (the webhook
    /// payloads' `type` is built from it).
    pub fn kind(&self) -> String {
        match &self.change {
            Change::Secret { kind, .. } => format!("secret.{}", kind.as_str()),
            Change::Dependent { state, .. } => format!("dependent.{}", state.as_str()),
        }
        .to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored and published form: what replicas of another version read back.
    #[test]
    fn a_notice_keeps_its_json_form() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let notice = Notice::secret(
            Uuid::from_u128(1),
            (Uuid::from_u128(2), "DB_URL"),
            SecretEventKind::RolledBack,
            Some(4),
            None,
            at,
        );
        let json = serde_json::to_value(&notice).expect("encodes");
        assert_eq!(
            json,
            serde_json::json!({
                "orgId": "00000000-0000-0000-0000-000000000001",
                "secretName": "DB_URL",
                "occurredAt": "2026-12-01T10:00:00Z",
                "change": {
                    "type": "secret",
                    "kind": "ROLLED_BACK",
                    "secretId": "00000000-0000-0000-0000-000000000002",
                    "version": 4,
                    "principalId": null,
                },
            })
        );
        assert_eq!(notice.kind(), "secret.rolled_back");
        let back: Notice = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, notice);
    }
}
