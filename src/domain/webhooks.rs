//! Webhook endpoints (DESIGN §11): where an organization's events are posted, signed, for
//! CI systems that react to "secret updated, redeploy" without holding a WebSocket. This
//! module is the endpoints' rules (create, rotate the signing secret, enable, delete,
//! list, their deliveries) and which event becomes which payload type; queueing and
//! posting are `crate::webhooks`'.
use std::collections::HashSet;

use entity::{webhook_delivery, webhook_endpoint};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    Actor, Natural, Page, PageRequest, SecretName,
    audit::{self, Event, Outcome},
    dependents::DependentState,
    events::{Change, Notice, SecretEventKind},
    now,
};
use crate::{
    Error, Result,
    crypto::KeyProvider,
    db::{self, Db},
    webhooks::{TargetPolicy, signing},
};

/// Endpoints per organization, at most.
pub const MAX_ENDPOINTS: u64 = 100;
/// Secret names one endpoint may filter on, at most.
pub const MAX_SECRET_NAMES: usize = 100;

/// What an endpoint may subscribe to; the payload's `type` is [`EventType::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    SecretCreated,
    SecretUpdated,
    SecretDeleted,
    SecretDisabled,
    SecretEnabled,
    SecretRestored,
    SecretPurged,
    SecretRolledBack,
    SecretRotationDue,
    /// A deployment is pinned to an older version than the secret's current one.
    DependentStale,
    /// A deployment failed (its secret was deleted) or its secret does not exist.
    DependentBroken,
    /// A stale or broken dependent is up to date again.
    DependentHealed,
}

impl EventType {
    pub const ALL: [Self; 12] = [
        Self::SecretCreated,
        Self::SecretUpdated,
        Self::SecretDeleted,
        Self::SecretDisabled,
        Self::SecretEnabled,
        Self::SecretRestored,
        Self::SecretPurged,
        Self::SecretRolledBack,
        Self::SecretRotationDue,
        Self::DependentStale,
        Self::DependentBroken,
        Self::DependentHealed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretCreated => "secret.created",
            Self::SecretUpdated => "secret.updated",
            Self::SecretDeleted => "secret.deleted",
            Self::SecretDisabled => "secret.disabled",
            Self::SecretEnabled => "secret.enabled",
            Self::SecretRestored => "secret.restored",
            Self::SecretPurged => "secret.purged",
            Self::SecretRolledBack => "secret.rolled_back",
            Self::SecretRotationDue => "secret.rotation_due",
            Self::DependentStale => "dependent.stale",
            Self::DependentBroken => "dependent.broken",
            Self::DependentHealed => "dependent.healed",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == stored)
    }

    /// The payload type a change is posted as, if any: a dependent becoming stale or
    /// broken, or up to date again after either; not one deployed for the first time or
    /// no longer deployed.
    pub fn of(notice: &Notice) -> Option<Self> {
        Some(match &notice.change {
            Change::Secret { kind, .. } => match kind {
                SecretEventKind::Created => Self::SecretCreated,
                SecretEventKind::Updated => Self::SecretUpdated,
                SecretEventKind::Deleted => Self::SecretDeleted,
                SecretEventKind::Disabled => Self::SecretDisabled,
                SecretEventKind::Enabled => Self::SecretEnabled,
                SecretEventKind::Restored => Self::SecretRestored,
                SecretEventKind::Purged => Self::SecretPurged,
                SecretEventKind::RolledBack => Self::SecretRolledBack,
                SecretEventKind::RotationDue => Self::SecretRotationDue,
            },
            Change::Dependent {
                previous, state, ..
            } => match state {
                DependentState::Stale => Self::DependentStale,
                DependentState::Broken => Self::DependentBroken,
                DependentState::UpToDate
                    if matches!(
                        previous,
                        Some(
                            DependentState::Stale
                                | DependentState::Broken
                                | DependentState::NotAllowed
                        )
                    ) =>
                {
                    Self::DependentHealed
                }
                _ => return None,
            },
        })
    }
}

/// What an endpoint wants, as stored.
pub struct Filter {
    pub events: HashSet<EventType>,
    /// Case-folded secret names; `None` for every secret.
    pub secret_keys: Option<HashSet<String>>,
}

impl Filter {
    pub fn of(row: &webhook_endpoint::Model) -> Self {
        Self {
            events: events(row).into_iter().collect(),
            secret_keys: secret_names(row)
                .map(|names| names.iter().map(|n| n.to_ascii_lowercase()).collect()),
        }
    }

    pub fn wants(&self, event: EventType, secret_name: &str) -> bool {
        self.events.contains(&event)
            && self
                .secret_keys
                .as_ref()
                .is_none_or(|keys| keys.contains(&secret_name.to_ascii_lowercase()))
    }
}

/// The endpoint's event types, in the canonical order.
pub fn events(row: &webhook_endpoint::Model) -> Vec<EventType> {
    let stored: Vec<String> = serde_json::from_value(row.events.clone()).unwrap_or_default();
    let stored: HashSet<&str> = stored.iter().map(String::as_str).collect();
    EventType::ALL
        .into_iter()
        .filter(|t| stored.contains(t.as_str()))
        .collect()
}

pub fn secret_names(row: &webhook_endpoint::Model) -> Option<Vec<String>> {
    row.secret_names
        .as_ref()
        .map(|names| serde_json::from_value(names.clone()).unwrap_or_default())
}

pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<EventType>,
    pub secret_names: Option<Vec<String>>,
}

/// Where a caller's changes are checked and the signing secret is sealed.
pub struct Endpoints<'a> {
    pub db: &'a Db,
    pub keys: &'a dyn KeyProvider,
    pub policy: &'a TargetPolicy,
}

impl Endpoints<'_> {
    /// Creates an endpoint; returns it with its signing secret (shown this once). Audited.
    pub async fn create(
        &self,
        actor: &Actor,
        new: NewEndpoint,
    ) -> Result<(webhook_endpoint::Model, SecretString)> {
        let url = self.policy.check_url(&new.url).map_err(Error::BadInput)?;
        if new.events.is_empty() {
            return Err(Error::bad_input(
                "name at least one event type in `events` (SECRET_UPDATED, DEPENDENT_STALE…)",
            ));
        }
        let names = match new.secret_names {
            None => None,
            Some(names) if names.is_empty() => {
                return Err(Error::bad_input(
                    "secretNames is a non-empty list of secret names; omit it for every secret",
                ));
            }
            Some(names) if names.len() > MAX_SECRET_NAMES => {
                return Err(Error::bad_input(format!(
                    "secretNames lists at most {MAX_SECRET_NAMES} names"
                )));
            }
            Some(names) => {
                let mut seen = HashSet::new();
                let mut kept = Vec::new();
                for name in names {
                    let name = SecretName::parse(&name)?;
                    if seen.insert(name.key()) {
                        kept.push(name.as_str().to_owned());
                    }
                }
                Some(kept)
            }
        };
        self.policy
            .check_resolution(&url)
            .await
            .map_err(Error::BadInput)?;
        let org_id = actor.org_id();
        if of_org(org_id).count(self.db.read()).await? >= MAX_ENDPOINTS {
            return Err(Error::bad_input(format!(
                "an organization has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"
            )));
        }
        let id = Uuid::now_v7();
        let key_row = Uuid::now_v7();
        let key = signing::SigningKey::generate()?;
        let sealed = signing::seal(self.keys, org_id, id, key_row, &key).await?;
        let events: Vec<&str> = EventType::ALL
            .into_iter()
            .filter(|t| new.events.contains(t))
            .map(EventType::as_str)
            .collect();
        let txn = db::begin_write(self.db).await?;
        let row = webhook_endpoint::ActiveModel {
            id: Set(id),
            org_id: Set(org_id),
            url: Set(url.to_string()),
            events: Set(serde_json::json!(events)),
            secret_names: Set(names.map(|n| serde_json::json!(n))),
            enabled: Set(true),
            disabled_reason: Set(None),
            failing_since: Set(None),
            signing_ciphertext: Set(sealed.ciphertext),
            signing_nonce: Set(sealed.nonce),
            signing_wrapped_key: Set(sealed.wrapped_key.blob),
            signing_key_id: Set(sealed.wrapped_key.key_id),
            signing_scheme: Set(sealed.scheme.to_owned()),
            signing_key_row: Set(key_row),
            created_at: Set(now()),
            created_by: Set(Some(actor.principal.id)),
        }
        .insert(&txn)
        .await?;
        audit::record(&txn, actor, event("webhook.create", &row)).await?;
        txn.commit().await?;
        Ok((row, key.to_secret()))
    }

    /// A new signing secret for the endpoint; the old one signs nothing from now on.
    /// Audited.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<(webhook_endpoint::Model, SecretString)> {
        let row = find(self.db.read(), actor.org_id(), id).await?;
        let key_row = Uuid::now_v7();
        let key = signing::SigningKey::generate()?;
        let sealed = signing::seal(self.keys, row.org_id, row.id, key_row, &key).await?;
        let txn = db::begin_write(self.db).await?;
        // Found again under the write lock: deleted meanwhile means not found.
        let row = find(&txn, actor.org_id(), id).await?;
        let mut active: webhook_endpoint::ActiveModel = row.into();
        active.signing_ciphertext = Set(sealed.ciphertext);
        active.signing_nonce = Set(sealed.nonce);
        active.signing_wrapped_key = Set(sealed.wrapped_key.blob);
        active.signing_key_id = Set(sealed.wrapped_key.key_id);
        active.signing_scheme = Set(sealed.scheme.to_owned());
        active.signing_key_row = Set(key_row);
        let row = active.update(&txn).await?;
        audit::record(&txn, actor, event("webhook.rotate_secret", &row)).await?;
        txn.commit().await?;
        Ok((row, key.to_secret()))
    }

    /// Enables or disables the endpoint. Enabling clears the reason it was disabled and
    /// its failure streak; messages still pending are posted again. Audited.
    pub async fn set_enabled(
        &self,
        actor: &Actor,
        id: Uuid,
        enabled: bool,
    ) -> Result<webhook_endpoint::Model> {
        let txn = db::begin_write(self.db).await?;
        let row = find(&txn, actor.org_id(), id).await?;
        let mut active: webhook_endpoint::ActiveModel = row.into();
        active.enabled = Set(enabled);
        active.failing_since = Set(None);
        active.disabled_reason = Set((!enabled).then(|| "disabled by an admin".to_owned()));
        let row = active.update(&txn).await?;
        let action = if enabled {
            "webhook.enable"
        } else {
            "webhook.disable"
        };
        audit::record(&txn, actor, event(action, &row)).await?;
        txn.commit().await?;
        Ok(row)
    }

    /// Deletes the endpoint with its pending messages and delivery records. Audited.
    pub async fn delete(&self, actor: &Actor, id: Uuid) -> Result<webhook_endpoint::Model> {
        let txn = db::begin_write(self.db).await?;
        let row = find(&txn, actor.org_id(), id).await?;
        webhook_endpoint::Entity::delete_by_id(row.id)
            .exec(&txn)
            .await?;
        audit::record(&txn, actor, event("webhook.delete", &row)).await?;
        txn.commit().await?;
        Ok(row)
    }
}

fn event(action: &'static str, row: &webhook_endpoint::Model) -> Event {
    // Without its query, where a receiver may have put a token of its own.
    let url = row
        .url
        .split_once('?')
        .map_or(row.url.as_str(), |(before, _)| before);
    Event::untargeted(action, Outcome::Allowed).with_detail(serde_json::json!({
        "endpointId": row.id,
        "url": url,
        "events": row.events,
        "secretNames": row.secret_names,
        "enabled": row.enabled,
    }))
}

fn of_org(org_id: Uuid) -> sea_orm::Select<webhook_endpoint::Entity> {
    webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::OrgId.eq(org_id))
}

/// The organization's endpoint `id`, or `NOT_FOUND`.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<webhook_endpoint::Model> {
    of_org(org_id)
        .filter(webhook_endpoint::Column::Id.eq(id))
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))
}

/// A page of the organization's endpoints, oldest first.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<webhook_endpoint::Model>> {
    page.fetch(
        conn,
        of_org(org_id),
        webhook_endpoint::Column::Id,
        Natural::Ascending,
    )
    .await
}

pub async fn count<C: ConnectionTrait>(conn: &C, org_id: Uuid) -> Result<u64> {
    Ok(of_org(org_id).count(conn).await?)
}

fn deliveries_of(endpoint_id: Uuid) -> sea_orm::Select<webhook_delivery::Entity> {
    webhook_delivery::Entity::find().filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
}

/// A page of an endpoint's delivery attempts, newest first.
pub async fn deliveries<C: ConnectionTrait>(
    conn: &C,
    endpoint_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<webhook_delivery::Model>> {
    page.fetch(
        conn,
        deliveries_of(endpoint_id),
        webhook_delivery::Column::Id,
        Natural::Descending,
    )
    .await
}

pub async fn count_deliveries<C: ConnectionTrait>(conn: &C, endpoint_id: Uuid) -> Result<u64> {
    Ok(deliveries_of(endpoint_id).count(conn).await?)
}
