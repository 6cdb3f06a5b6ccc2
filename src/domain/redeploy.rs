//! Redeploying the stale: after a secret changes, every resource still running an older
//! version of it gets a new deployment, one resource at a time.
//!
//! - **One transaction per resource** ([`resources::deploy_if_stale_on`]): a resource that
//!   cannot deploy (another of its references names a missing or disabled secret) is
//!   reported and the others go ahead; each deploy records its own audit event and
//!   publishes its own `STALE → UP_TO_DATE` transitions, exactly as `deployResource` does.
//! - **Stale is re-checked under the deploy's locks**: a resource that stopped being stale
//!   between the list and its turn (someone redeployed it, dropped the reference, or the
//!   secret was deleted) is skipped, not redeployed again and not reported as a failure.
//! - **Sequential**: deploys of a thousand dependents run one after the other, so a
//!   redeploy never holds more than one writer connection (SQLite has one), and other
//!   requests' writes interleave with it instead of queueing behind a burst. Stopping half
//!   way (the request timed out, the server stopped) leaves every finished deploy committed
//!   and audited; calling again redeploys what is still stale.
//! - **One audit event for the call**, `secret.redeploy_stale` on the secret, listing what
//!   was deployed, what failed (with its code) and what was skipped, written after the
//!   last deploy.
use entity::{deployment, resource, secret};
use tracing::instrument;

use super::{
    Actor, SecretName,
    audit::{self, Event, Target},
    dependents, resources,
    secrets::{self, SecretState},
};
use crate::{Error, Result, db::Db};

/// What one `redeploy_stale` call did.
#[derive(Debug)]
pub struct Redeployed {
    /// The resources deployed, with their new deployments, in the order of `dependents`.
    pub deployed: Vec<(resource::Model, deployment::Model)>,
    /// The resources that could not be deployed; each is unchanged.
    pub failed: Vec<Failure>,
    /// The resources that were no longer stale by their turn.
    pub skipped: Vec<resource::Model>,
}

/// A stale resource whose deploy was refused.
#[derive(Debug)]
pub struct Failure {
    pub resource: resource::Model,
    pub error: Error,
}

/// Deploys every resource whose dependent state for `name` is `STALE`. `NOT_FOUND` if the
/// secret does not exist (or is deleted, awaiting purge: nothing can deploy it);
/// `SECRET_DISABLED` if it is disabled, before anything is tried, since every deploy would
/// be refused for it.
#[instrument(skip(db, actor), fields(org = %actor.org_id()))]
pub async fn redeploy_stale(db: &Db, actor: &Actor, name: &SecretName) -> Result<Redeployed> {
    let org_id = actor.org_id();
    let secret = secrets::find(db.read(), org_id, name)
        .await?
        .filter(|s| SecretState::of(s) != SecretState::Deleted)
        .ok_or_else(|| Error::not_found(format!("secret {name}")))?;
    if SecretState::of(&secret) == SecretState::Disabled {
        return Err(Error::SecretDisabled(vec![secret.name]));
    }

    let stale = dependents::stale_dependents(db.read(), &secret).await?;
    // One entry per reference: a resource that uses the secret at two fields deploys once.
    let mut seen = std::collections::HashSet::new();
    let stale: Vec<resource::Model> = stale
        .into_iter()
        .map(|d| d.resource)
        .filter(|r| seen.insert(r.id))
        .collect();

    let mut done = Redeployed {
        deployed: Vec::new(),
        failed: Vec::new(),
        skipped: Vec::new(),
    };
    for resource in stale {
        match resources::deploy_if_stale_on(db, actor, resource.id, Some(&secret.name_key)).await {
            Ok(Some((row, deployment, _))) => done.deployed.push((row, deployment)),
            // Deleted since it was listed: no longer stale either.
            Ok(None) | Err(Error::NotFound(_)) => done.skipped.push(resource),
            Err(error) => {
                if error.is_internal() {
                    tracing::error!(resource = %resource.id, error = %error, "a redeploy failed");
                }
                done.failed.push(Failure { resource, error });
            }
        }
    }

    record(db, actor, &secret, &done).await?;
    Ok(done)
}

/// The call's audit event: names, ids and codes, never a value.
async fn record(db: &Db, actor: &Actor, secret: &secret::Model, done: &Redeployed) -> Result<()> {
    let named = |r: &resource::Model| {
        serde_json::json!({
            "resourceId": r.id,
            "kind": r.kind,
            "name": r.name,
        })
    };
    let with = |r: &resource::Model, key: &str, value: serde_json::Value| {
        let mut entry = named(r);
        entry[key] = value;
        entry
    };
    let detail = serde_json::json!({
        "deployed": done.deployed.iter()
            .map(|(r, d)| with(r, "deployment", serde_json::json!(d.id)))
            .collect::<Vec<_>>(),
        "failed": done.failed.iter()
            .map(|f| with(&f.resource, "code", f.error.code().as_str().into()))
            .collect::<Vec<_>>(),
        "skipped": done.skipped.iter().map(named).collect::<Vec<_>>(),
    });
    let event = Event::allowed(
        "secret.redeploy_stale",
        Target::secret(Some(secret.id), &secret.name),
    )
    .with_detail(detail);
    audit::record(db.write(), actor, event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ReferenceField, ResourceName, SecretValue,
        resources::{NewReference, ResourceSpec},
        secrets::NewSecret,
        testing,
    };

    async fn pipeline(db: &Db, actor: &Actor, name: &str, secret: &str) -> resource::Model {
        let spec = ResourceSpec {
            kind: resources::ResourceKind::Pipeline,
            name: ResourceName::parse(name).expect("name"),
            description: None,
            references: vec![NewReference {
                secret_name: SecretName::parse(secret).expect("secret name"),
                field: ReferenceField::parse("sink.key").expect("field"),
            }],
        };
        resources::upsert(db, actor, spec).await.expect("upsert")
    }

    /// The check a redeploy makes under the deploy's locks: a resource that is not stale
    /// on the secret (up to date, never deployed, gone) is left exactly as it is.
    #[tokio::test]
    async fn only_the_still_stale_are_deployed() {
        let (db, actor) = testing::admin_on_fresh_db().await;
        let keys = testing::keyring(&[testing::KEY]);
        let new = NewSecret {
            name: SecretName::parse("DB_URL").expect("name"),
            value: SecretValue::parse("postgres://v1".into()).expect("value"),
            description: None,
            rotation_period_days: None,
            access: crate::domain::access::SecretAccess::AllResources,
        };
        secrets::create(&db, &keys, &actor, new)
            .await
            .expect("create");
        let key = SecretName::parse("DB_URL").expect("name").key();

        let deployed = pipeline(&db, &actor, "deployed", "DB_URL").await;
        let (_, first, _) = resources::deploy(&db, &actor, deployed.id)
            .await
            .expect("deploy");
        let idle = pipeline(&db, &actor, "idle", "DB_URL").await;
        for id in [deployed.id, idle.id] {
            let skipped = resources::deploy_if_stale_on(&db, &actor, id, Some(&key))
                .await
                .expect("a skip is no error");
            assert!(skipped.is_none(), "not stale, so not deployed");
        }
        let current = dependents::current_deployments(db.read(), &[deployed.id, idle.id])
            .await
            .expect("current deployments");
        assert_eq!(current.iter().map(|d| d.id).collect::<Vec<_>>(), [first.id]);
        let gone =
            resources::deploy_if_stale_on(&db, &actor, uuid::Uuid::now_v7(), Some(&key)).await;
        assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");

        // Nothing stale: nothing deployed, and the call is still audited.
        let name = SecretName::parse("DB_URL").expect("name");
        let done = redeploy_stale(&db, &actor, &name).await.expect("redeploy");
        assert!(done.deployed.is_empty() && done.failed.is_empty() && done.skipped.is_empty());
        let filter = audit::Filter {
            action: Some("secret.redeploy_stale".into()),
            ..audit::Filter::default()
        };
        let count = audit::count(db.read(), actor.org_id(), &filter)
            .await
            .expect("count");
        assert_eq!(count, 1);
        let missing = SecretName::parse("NO_SUCH").expect("name");
        let refused = redeploy_stale(&db, &actor, &missing).await;
        assert!(matches!(refused, Err(Error::NotFound(_))), "{refused:?}");
    }
}
