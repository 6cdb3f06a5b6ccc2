//! Key rotation: re-wrap stored data keys under another key without touching ciphertexts:
//! those of secret versions, and those of webhook endpoints' signing secrets.
//!
//! Each version is re-wrapped by one conditional UPDATE (it must still hold the wrapped key
//! we unwrapped), so the work can be interrupted at any point and simply run again: it
//! picks up what is left, and values stay readable throughout.
use entity::{secret_version, webhook_endpoint};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    Error, Result,
    crypto::{EncryptionContext, KeyError, KeyProvider},
    domain::secrets::wrapped_key_of,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Data keys re-wrapped by this run.
    pub rotated: u64,
    /// Data keys that were already wrapped by the target.
    pub already: u64,
    /// Data keys that could not be unwrapped (left as they were).
    pub failed: u64,
}

/// Re-wraps every data key not wrapped by `target_key_id`: unwrapped with `source`,
/// wrapped with `target` (whose active key must be `target_key_id`). `progress` hears
/// (done, to do) after every batch. An unavailable provider stops the run (re-run it
/// later); a data key that fails to unwrap is counted and skipped.
pub async fn rotate(
    db: &DatabaseConnection,
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
    target_key_id: &str,
    batch_size: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<RotationReport> {
    let pending =
        || secret_version::Entity::find().filter(secret_version::Column::KeyId.ne(target_key_id));
    let total = pending().count(db).await?;
    let mut report = RotationReport {
        already: secret_version::Entity::find()
            .filter(secret_version::Column::KeyId.eq(target_key_id))
            .count(db)
            .await?,
        ..RotationReport::default()
    };
    let mut cursor: Option<Uuid> = None;
    loop {
        let mut query = pending();
        if let Some(last) = cursor {
            query = query.filter(secret_version::Column::Id.gt(last));
        }
        let rows = query
            .order_by_asc(secret_version::Column::Id)
            .limit(batch_size)
            .all(db)
            .await?;
        let Some(last) = rows.last() else { break };
        cursor = Some(last.id);
        for row in rows {
            match rewrap(db, source, target, target_key_id, &row).await {
                Ok(true) => report.rotated += 1,
                // Deleted, pruned or rotated by someone else meanwhile.
                Ok(false) => {}
                Err(Error::Integrity(reason)) => {
                    tracing::warn!(version_id = %row.id, %reason, "cannot unwrap data key; left as it was");
                    report.failed += 1;
                }
                Err(e) => return Err(e),
            }
        }
        progress(report.rotated + report.failed, total);
    }
    rotate_signing_keys(db, source, target, target_key_id, &mut report).await?;
    Ok(report)
}

/// The same for webhook endpoints' signing secrets (a few per organization: one pass).
async fn rotate_signing_keys(
    db: &DatabaseConnection,
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
    target_key_id: &str,
    report: &mut RotationReport,
) -> Result<()> {
    use webhook_endpoint::Column;
    report.already += webhook_endpoint::Entity::find()
        .filter(Column::SigningKeyId.eq(target_key_id))
        .count(db)
        .await?;
    let rows = webhook_endpoint::Entity::find()
        .filter(Column::SigningKeyId.ne(target_key_id))
        .all(db)
        .await?;
    for row in rows {
        let context = EncryptionContext::stored(
            row.org_id,
            row.id,
            0,
            row.signing_key_row,
            &row.signing_scheme,
        );
        let old = crate::crypto::WrappedKey {
            key_id: row.signing_key_id.clone(),
            blob: row.signing_wrapped_key.clone(),
        };
        let new = match rewrapped(source, target, target_key_id, &old, &context).await {
            Ok(new) => new,
            Err(Error::Integrity(reason)) => {
                tracing::warn!(endpoint_id = %row.id, %reason, "cannot unwrap a signing key; left as it was");
                report.failed += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let updated = webhook_endpoint::Entity::update_many()
            .col_expr(Column::SigningKeyId, Expr::value(new.key_id))
            .col_expr(Column::SigningWrappedKey, Expr::value(new.blob))
            .filter(Column::Id.eq(row.id))
            .filter(Column::SigningKeyId.eq(old.key_id))
            .filter(Column::SigningWrappedKey.eq(old.blob))
            .exec(db)
            .await?;
        // Zero: rotated or deleted by someone else meanwhile.
        report.rotated += updated.rows_affected;
    }
    Ok(())
}

/// `old` unwrapped by `source` and wrapped again by `target` under `target_key_id`.
async fn rewrapped(
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
    target_key_id: &str,
    old: &crate::crypto::WrappedKey,
    context: &EncryptionContext,
) -> Result<crate::crypto::WrappedKey> {
    let data_key = source
        .decrypt_data_key(old, context)
        .await
        .map_err(|e| match e {
            KeyError::Provider(m) => Error::Integrity(m),
            other => other.into(),
        })?;
    let new = target.wrap_data_key(&data_key, context).await?;
    if new.key_id != target_key_id {
        return Err(Error::Internal(format!(
            "the target wrapped under {}, not {target_key_id}",
            new.key_id
        )));
    }
    Ok(new)
}

async fn rewrap(
    db: &DatabaseConnection,
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
    target_key_id: &str,
    row: &secret_version::Model,
) -> Result<bool> {
    let context =
        EncryptionContext::stored(row.org_id, row.secret_id, row.version, row.id, &row.scheme);
    let old = wrapped_key_of(row);
    let new = rewrapped(source, target, target_key_id, &old, &context).await?;
    let updated = secret_version::Entity::update_many()
        .col_expr(secret_version::Column::KeyId, Expr::value(new.key_id))
        .col_expr(secret_version::Column::WrappedKey, Expr::value(new.blob))
        .filter(secret_version::Column::Id.eq(row.id))
        .filter(secret_version::Column::KeyId.eq(old.key_id))
        .filter(secret_version::Column::WrappedKey.eq(old.blob))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{
        SecretName, SecretValue,
        audit::AuditLog,
        plaintext::Plaintext,
        secrets::{self, NewSecret, SecretUpdate},
        testing::{self, keyring},
        usage::Usage,
        webhooks,
    };
    use secrecy::ExposeSecret;

    const OLD: &str = testing::KEY;
    const NEW: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

    /// Local → local rotation on a real (in-memory) SQLite database: afterwards every data
    /// key is wrapped by the new key, the old key can be dropped, and a re-run is a no-op.
    #[tokio::test]
    async fn local_rotation_rewraps_every_version_and_is_idempotent() {
        let (db, actor) = testing::admin_on_fresh_db().await;
        let old = keyring(&[OLD]);
        for (name, value) in [("A", "alpha"), ("B", "bravo")] {
            let new = NewSecret {
                name: SecretName::parse(name).expect("name"),
                value: SecretValue::parse(value.into()).expect("value"),
                description: None,
                rotation_period_days: None,
                access: crate::domain::access::SecretAccess::AllResources,
            };
            secrets::create(&db, &old, &actor, new)
                .await
                .expect("create");
        }
        let change = SecretUpdate {
            name: SecretName::parse("A").expect("name"),
            value: Some(SecretValue::parse("alpha-2".into()).expect("value")),
            description: None,
            expected_version: Some(1),
            rotation_period_days: None,
            rolled_back_from: None,
        };
        secrets::update(&db, &old, &actor, change, 10)
            .await
            .expect("update");
        let policy = crate::webhooks::TargetPolicy::new(&["127.0.0.1".to_owned()]);
        let endpoints = webhooks::Endpoints {
            db: &db,
            keys: &old,
            policy: &policy,
        };
        let new_endpoint = webhooks::NewEndpoint {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec![webhooks::EventType::SecretUpdated],
            secret_names: None,
        };
        let (endpoint, signing_secret) = endpoints
            .create(&actor, new_endpoint)
            .await
            .expect("an endpoint");

        // The operator puts the new key first; both unwrap until rotation is done.
        let both = keyring(&[NEW, OLD]);
        let target_id = both.active_key_id().to_owned();
        let report = rotate(db.write(), &both, &both, &target_id, 2, |_, _| {})
            .await
            .expect("rotate");
        assert_eq!(
            report,
            RotationReport {
                rotated: 4,
                already: 0,
                failed: 0
            }
        );
        let again = rotate(db.write(), &both, &both, &target_id, 2, |_, _| {})
            .await
            .expect("rotate again");
        assert_eq!(
            again,
            RotationReport {
                rotated: 0,
                already: 4,
                failed: 0
            }
        );

        let new_only: Arc<dyn KeyProvider> = Arc::new(keyring(&[NEW]));
        let audit = AuditLog::start(db.write().clone());
        let usage = Usage::default();
        for (name, version, value) in [("A", 1, "alpha"), ("A", 2, "alpha-2"), ("B", 1, "bravo")] {
            let name = SecretName::parse(name).expect("name");
            let plaintext = Plaintext {
                db: &db,
                keys: new_only.as_ref(),
                audit: &audit,
                usage: &usage,
            };
            let revealed = plaintext
                .reveal(&actor, &name, Some(version))
                .await
                .expect("readable with the new key alone");
            assert_eq!(revealed.value.expose(), value);
        }
        let endpoint = webhooks::find(db.read(), endpoint.org_id, endpoint.id)
            .await
            .expect("the endpoint");
        let key = crate::webhooks::signing::open(new_only.as_ref(), &endpoint)
            .await
            .expect("the signing secret opens with the new key alone");
        assert_eq!(
            key.to_secret().expose_secret(),
            signing_secret.expose_secret()
        );
    }
}
