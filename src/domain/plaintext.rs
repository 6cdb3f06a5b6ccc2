//! The one way out for plaintext: revealing a secret's value to an admin
//! (`secretValue`) and serving a deployment's pinned values to its resource
//! (`resourceSecrets`). Both decrypt, then record the access in the audit log, and return
//! the value only once that record is durable: if it cannot be written, the caller gets an
//! error and no value (fail-closed).
//!
//! A disabled secret is refused (`SECRET_DISABLED`), and the refusal is answered only once
//! it is recorded, like a read. A deleted secret (pending purge) is absent: `NOT_FOUND` for
//! a reveal, a missing secret for a fetch. Neither is ever decrypted. Every fetch, served
//! or refused, is also noted for [`super::usage`] (in memory; written later, in batches).
use std::collections::{BTreeMap, HashMap, HashSet};

use entity::{deployment, deployment_pin, resource, secret, secret_version};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    Actor, SecretName, SecretValue,
    audit::{AuditLog, Event, Outcome, Target},
    dependents::{self, DeploymentState},
    resources,
    secrets::{self, SecretState},
    usage::{Fetch, FetchOutcome, Usage},
};
use crate::{
    Error, Result,
    crypto::{self, EncryptionContext, KeyProvider, StoredEnvelope},
    db::{self, Db},
};

/// What a read of plaintext needs: the rows, the key provider that unwraps their data
/// keys, and the audit log that records the read.
#[derive(Clone, Copy)]
pub struct Plaintext<'a> {
    pub db: &'a Db,
    pub keys: &'a dyn KeyProvider,
    pub audit: &'a AuditLog,
    /// Where fetches and accesses are noted (no write on this path).
    pub usage: &'a Usage,
}

/// A decrypted value, as revealed to an admin.
#[derive(Debug)]
pub struct Revealed {
    pub name: String,
    pub version: i32,
    pub value: SecretValue,
}

/// Decrypts one stored version of `secret`. Any mismatch is an integrity error.
pub(crate) async fn decrypt_version(
    keys: &dyn KeyProvider,
    secret: &secret::Model,
    row: &secret_version::Model,
) -> Result<SecretValue> {
    // Bound to the secret we looked up, not to the ids the version row claims: a version
    // row moved under another secret fails here. (Rotation, which has no secret in hand,
    // uses the row's ids; re-wrapping cannot reveal anything.)
    let context =
        EncryptionContext::stored(secret.org_id, secret.id, row.version, row.id, &row.scheme);
    let stored = StoredEnvelope {
        ciphertext: &row.ciphertext,
        nonce: &row.nonce,
        wrapped_key: secrets::wrapped_key_of(row),
        scheme: &row.scheme,
    };
    let bytes = crypto::open(keys, &context, &stored).await?;
    SecretValue::from_decrypted(&bytes)
}

/// A secret and one of its versions (the current one when `version` is `None`), read in
/// one statement so that no update can land between the two reads.
async fn find_with_version<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    name: &SecretName,
    version: Option<i32>,
) -> Result<(secret::Model, secret_version::Model)> {
    let wanted = match version {
        Some(version) => {
            Expr::col((secret_version::Entity, secret_version::Column::Version)).eq(version)
        }
        None => Expr::col((secret_version::Entity, secret_version::Column::Version))
            .equals((secret::Entity, secret::Column::CurrentVersion)),
    };
    let found = secret_version::Entity::find()
        .find_also_related(secret::Entity)
        .filter(secret::Column::OrgId.eq(org_id))
        .filter(secret::Column::NameKey.eq(name.key()))
        .filter(wanted)
        .one(conn)
        .await?;
    // A deleted secret is absent, whichever version is asked for.
    let present = |secret: &secret::Model| SecretState::of(secret) != SecretState::Deleted;
    match found {
        Some((row, Some(secret))) if present(&secret) => Ok((secret, row)),
        _ => {
            // Say which is missing: the secret, or only that version of it.
            let secret = secrets::find(conn, org_id, name)
                .await?
                .filter(present)
                .ok_or_else(|| Error::not_found(format!("secret {name}")))?;
            let version = version.unwrap_or(secret.current_version);
            Err(Error::not_found(format!(
                "version {version} of secret {name}"
            )))
        }
    }
}

impl Plaintext<'_> {
    /// Decrypts a version (the current one by default) and records the reveal. If the audit
    /// event cannot be written, the value is not returned. A disabled secret is refused
    /// without being decrypted, and the refusal recorded.
    pub async fn reveal(
        &self,
        actor: &Actor,
        name: &SecretName,
        version: Option<i32>,
    ) -> Result<Revealed> {
        let (secret, row) =
            find_with_version(self.db.read(), actor.org_id(), name, version).await?;
        let version = row.version;
        let target = Target::secret(Some(secret.id), &secret.name);
        let detail = serde_json::json!({ "version": version });
        if SecretState::of(&secret) == SecretState::Disabled {
            let event = Event {
                action: "secret.reveal".into(),
                outcome: Outcome::Denied,
                target: Some(target),
                detail: Some(serde_json::json!({ "version": version, "code": "SECRET_DISABLED" })),
            };
            // Fail-closed like a read: no answer that the audit log does not hold.
            self.audit.record(actor, event).await?;
            return Err(Error::SecretDisabled(vec![secret.name]));
        }
        match decrypt_version(self.keys, &secret, &row).await {
            Ok(value) => {
                let event = Event::allowed("secret.reveal", target).with_detail(detail);
                self.audit.record(actor, event).await?;
                self.usage.accessed(secret.id, super::now());
                Ok(Revealed {
                    name: secret.name,
                    version,
                    value,
                })
            }
            Err(e) => {
                let event = Event {
                    action: "secret.reveal".into(),
                    outcome: Outcome::Failed,
                    target: Some(target),
                    detail: Some(detail),
                };
                if let Err(audit_error) = self.audit.record(actor, event).await {
                    tracing::error!(error = %audit_error, "could not record a failed reveal");
                }
                Err(e)
            }
        }
    }

    /// The values of the versions the resource's current deployment is pinned to (not the
    /// current versions). Audited per call with the deployment served. Refused, serving
    /// nothing, when the deployment failed or a pinned secret is missing or deleted
    /// (`MISSING_SECRETS`), or when one is disabled (`SECRET_DISABLED`, audited).
    pub async fn resolve_secrets(&self, actor: &Actor, id: Uuid) -> Result<Vec<ResolvedSecret>> {
        Ok(self.resolve(actor, id).await?.secrets)
    }

    /// [`Plaintext::resolve_secrets`], with the resource and the deployment served.
    pub async fn resolve(&self, actor: &Actor, id: Uuid) -> Result<Resolved> {
        let org_id = actor.org_id();
        // One snapshot: a redeploy and a prune committing meanwhile cannot take a pinned
        // version away between reading the pins and reading the versions.
        let snapshot = db::begin_snapshot(self.db).await?;
        // A RUNTIME principal fetches only what is bound to it; another resource reads
        // exactly like one that does not exist.
        let row = resources::find_visible(&snapshot, resources::Visible::to(&actor.principal), id)
            .await?
            .ok_or_else(|| Error::not_found("resource"))?;
        let deployment = dependents::current_deployments(&snapshot, &[row.id])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("an active deployment of {}", row.name)))?;
        let pins = dependents::pins_of(&snapshot, &[deployment.id]).await?;
        let secret_ids: Vec<Uuid> = super::unique(pins.iter().map(|p| p.secret_id));
        // A deleted secret keeps its rows until purged; none of its values is served.
        let live: HashMap<Uuid, secret::Model> = secret::Entity::find()
            .filter(secret::Column::OrgId.eq(org_id))
            .filter(secret::Column::Id.is_in(secret_ids))
            .all(&snapshot)
            .await?
            .into_iter()
            .filter(|s| SecretState::of(s) != SecretState::Deleted)
            .map(|s| (s.id, s))
            .collect();
        let refusal = Refusal::of(&deployment, &pins, &live);
        if !refusal.is_none() {
            snapshot.commit().await?;
            return Err(self
                .refuse(actor, &row, deployment.id, &pins, refusal)
                .await);
        }
        let pinned = super::unique(pins.iter().map(|p| (p.secret_id, p.version)));
        let versions = secrets::versions_by_number(&snapshot, &pinned).await?;
        snapshot.commit().await?;

        // Each pinned version is decrypted once, however many fields use it.
        let mut values: BTreeMap<(Uuid, i32), SecretValue> = BTreeMap::new();
        for key in pinned {
            let (Some(secret), Some(version)) = (live.get(&key.0), versions.get(&key)) else {
                return Err(Error::Internal(format!(
                    "version {} of secret {} is pinned but not retained",
                    key.1, key.0
                )));
            };
            values.insert(key, decrypt_version(self.keys, secret, version).await?);
        }
        let event = Event::allowed(
            "resource.fetch_secrets",
            Target::resource(row.id, &row.name),
        )
        .with_detail(serde_json::json!({
            "deployment": deployment.id,
            "secrets": pins.iter()
                .map(|p| serde_json::json!({ "secretName": p.secret_name, "version": p.version }))
                .collect::<Vec<_>>(),
        }));
        self.audit.record(actor, event).await?;
        let at = super::now();
        for pin in &pins {
            self.note_fetch(&row, pin, at, FetchOutcome::Served);
            self.usage.accessed(pin.secret_id, at);
        }
        let secrets = pins
            .into_iter()
            .filter_map(|pin| {
                let value = values.get(&(pin.secret_id, pin.version))?;
                Some(ResolvedSecret {
                    name: pin.secret_name,
                    field: pin.field,
                    version: pin.version,
                    value: value.duplicate(),
                })
            })
            .collect();
        Ok(Resolved {
            resource: row,
            deployment,
            secrets,
        })
    }

    /// Notes a refused fetch for the pins it concerns, and answers with its error. A
    /// refusal for a disabled secret is recorded in the audit log first (fail-closed: if it
    /// cannot be, the caller gets that error instead).
    async fn refuse(
        &self,
        actor: &Actor,
        resource: &resource::Model,
        deployment_id: Uuid,
        pins: &[deployment_pin::Model],
        refusal: Refusal,
    ) -> Error {
        let at = super::now();
        for pin in pins {
            let outcome = if refusal.failed || refusal.missing_ids.contains(&pin.secret_id) {
                FetchOutcome::Broken
            } else if refusal.disabled_ids.contains(&pin.secret_id) {
                FetchOutcome::Disabled
            } else {
                // Not served, but through no fault of this secret: its record stands.
                continue;
            };
            self.note_fetch(resource, pin, at, outcome);
        }
        // A broken deployment stays broken once its secrets are enabled: that comes first.
        // Either refusal is audited (a runtime asking for what it cannot have is worth
        // knowing), fail-closed like the fetch itself.
        let (error, outcome, detail) = if refusal.failed || !refusal.missing.is_empty() {
            let detail = serde_json::json!({
                "deployment": deployment_id,
                "code": "MISSING_SECRETS",
                "deploymentFailed": refusal.failed,
                "missingSecrets": refusal.missing,
            });
            (
                Error::MissingSecrets(refusal.missing),
                Outcome::Failed,
                detail,
            )
        } else {
            let detail = serde_json::json!({
                "deployment": deployment_id,
                "code": "SECRET_DISABLED",
                "disabledSecrets": refusal.disabled,
            });
            (
                Error::SecretDisabled(refusal.disabled),
                Outcome::Denied,
                detail,
            )
        };
        let event = Event {
            action: "resource.fetch_secrets".into(),
            outcome,
            target: Some(Target::resource(resource.id, &resource.name)),
            detail: Some(detail),
        };
        match self.audit.record(actor, event).await {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    fn note_fetch(
        &self,
        resource: &resource::Model,
        pin: &deployment_pin::Model,
        at: chrono::DateTime<chrono::Utc>,
        outcome: FetchOutcome,
    ) {
        self.usage.fetched(Fetch {
            org_id: resource.org_id,
            resource_id: resource.id,
            secret_name_key: pin.secret_name_key.clone(),
            at,
            version: (outcome == FetchOutcome::Served).then_some(pin.version),
            outcome,
        });
    }
}

/// Why a deployment's values cannot be served, if they cannot.
struct Refusal {
    /// The deployment failed (a pinned secret was force-deleted).
    failed: bool,
    /// Pinned secrets that are gone or deleted: their names, and ids.
    missing: Vec<String>,
    missing_ids: HashSet<Uuid>,
    /// Pinned secrets that are disabled.
    disabled: Vec<String>,
    disabled_ids: HashSet<Uuid>,
}

impl Refusal {
    fn of(
        deployment: &deployment::Model,
        pins: &[deployment_pin::Model],
        live: &HashMap<Uuid, secret::Model>,
    ) -> Self {
        let gone = |pin: &&deployment_pin::Model| !live.contains_key(&pin.secret_id);
        let disabled = |pin: &&deployment_pin::Model| {
            live.get(&pin.secret_id)
                .is_some_and(|s| SecretState::of(s) == SecretState::Disabled)
        };
        Self {
            failed: deployment.state != DeploymentState::Active.as_str(),
            missing: super::unique(pins.iter().filter(gone).map(|p| p.secret_name.clone())),
            missing_ids: pins.iter().filter(gone).map(|p| p.secret_id).collect(),
            disabled: super::unique(pins.iter().filter(disabled).map(|p| p.secret_name.clone())),
            disabled_ids: pins.iter().filter(disabled).map(|p| p.secret_id).collect(),
        }
    }

    fn is_none(&self) -> bool {
        !self.failed && self.missing.is_empty() && self.disabled.is_empty()
    }
}

/// A resource's pinned values, with what they were served for.
#[derive(Debug)]
pub struct Resolved {
    pub resource: resource::Model,
    pub deployment: entity::deployment::Model,
    pub secrets: Vec<ResolvedSecret>,
}

/// A value served to a resource's runtime.
#[derive(Debug)]
pub struct ResolvedSecret {
    pub name: String,
    pub field: String,
    pub version: i32,
    pub value: SecretValue,
}
