//! The one way out for plaintext: revealing a secret's value to an admin
//! (`secretValue`) and serving a deployment's pinned values to its resource
//! (`resourceSecrets`). Both decrypt, then record the access in the audit log, and return
//! the value only once that record is durable: if it cannot be written, the caller gets an
//! error and no value (fail-closed).
use std::collections::{BTreeMap, HashMap};

use entity::{secret, secret_version};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    Actor, SecretName, SecretValue,
    audit::{AuditLog, Event, Outcome, Target},
    dependents::{self, DeploymentState},
    resources, secrets,
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
    let context = EncryptionContext {
        org_id: secret.org_id,
        secret_id: secret.id,
        version: row.version,
    };
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
    match found {
        Some((row, Some(secret))) => Ok((secret, row)),
        _ => {
            // Say which is missing: the secret, or only that version of it.
            let secret = secrets::find(conn, org_id, name)
                .await?
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
    /// event cannot be written, the value is not returned.
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
        match decrypt_version(self.keys, &secret, &row).await {
            Ok(value) => {
                let event = Event::allowed("secret.reveal", target).with_detail(detail);
                self.audit.record(actor, event).await?;
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
    /// current versions). Audited per call with the deployment served.
    pub async fn resolve_secrets(&self, actor: &Actor, id: Uuid) -> Result<Vec<ResolvedSecret>> {
        let org_id = actor.org_id();
        // One snapshot: a redeploy and a prune committing meanwhile cannot take a pinned
        // version away between reading the pins and reading the versions.
        let snapshot = db::begin_snapshot(self.db).await?;
        let row = resources::find(&snapshot, org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("resource"))?;
        let deployment = dependents::current_deployments(&snapshot, &[row.id])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found(format!("an active deployment of {}", row.name)))?;
        let pins = dependents::pins_of(&snapshot, &[deployment.id]).await?;
        let secret_ids: Vec<Uuid> = super::unique(pins.iter().map(|p| p.secret_id));
        let live: HashMap<Uuid, secret::Model> = secret::Entity::find()
            .filter(secret::Column::OrgId.eq(org_id))
            .filter(secret::Column::Id.is_in(secret_ids))
            .all(&snapshot)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let missing = super::unique(
            pins.iter()
                .filter(|p| !live.contains_key(&p.secret_id))
                .map(|p| p.secret_name.clone()),
        );
        if deployment.state != DeploymentState::Active.as_str() || !missing.is_empty() {
            return Err(Error::MissingSecrets(missing));
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
        Ok(pins
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
            .collect())
    }
}

/// A value served to a resource's runtime.
#[derive(Debug)]
pub struct ResolvedSecret {
    pub name: String,
    pub field: String,
    pub version: i32,
    pub value: SecretValue,
}
