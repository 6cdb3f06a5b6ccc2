//! Batched loading (async-graphql's DataLoader): a page of N objects costs one query per
//! related kind, not N.
use std::{collections::HashMap, hash::Hash, sync::Arc};

use async_graphql::{
    Context, ErrorExtensions,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use entity::{
    deployment, deployment_pin, principal, resource_reference, secret, secret_usage, secret_version,
};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::{Page, PageRequest, dependents, identity, resources, secrets, usage};

/// Loads `key` through the request's loader.
pub async fn load<K>(
    ctx: &Context<'_>,
    key: K,
) -> async_graphql::Result<Option<<DbLoader as Loader<K>>::Value>>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    DbLoader: Loader<K, Error = Arc<crate::Error>>,
{
    ctx.data::<RequestLoader>()?
        .load_one(key)
        .await
        .map_err(|e| e.extend())
}

/// The loader every request gets, with a request-scoped cache.
pub type RequestLoader = DataLoader<DbLoader, HashMapCache>;

/// Loads the dependents of a whole page of secrets at once and primes the request's
/// cache with them, so `Secret.dependents` resolves without a query per item — however
/// the item resolvers happen to be scheduled.
pub async fn prime_dependents(
    ctx: &Context<'_>,
    org_id: Uuid,
    name_keys: Vec<String>,
) -> async_graphql::Result<()> {
    let loader = ctx.data::<RequestLoader>()?;
    let mut found = dependents::dependents_of(&loader.loader().db, org_id, &name_keys)
        .await
        .map_err(|e| e.extend())?;
    let values = name_keys.into_iter().map(|name_key| {
        let list = found.remove(&name_key).unwrap_or_default();
        (DependentsOf { org_id, name_key }, list)
    });
    loader.feed_many(values).await;
    Ok(())
}

pub struct DbLoader {
    db: DatabaseConnection,
}

impl DbLoader {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// Key: a principal's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrincipalId(pub Uuid);

impl Loader<PrincipalId> for DbLoader {
    type Value = principal::Model;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[PrincipalId],
    ) -> Result<HashMap<PrincipalId, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = identity::principals_by_ids(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|p| (PrincipalId(p.id), p)).collect())
    }
}

/// Key: a resource, for its references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReferencesOf(pub Uuid);

impl Loader<ReferencesOf> for DbLoader {
    type Value = Vec<resource_reference::Model>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[ReferencesOf],
    ) -> Result<HashMap<ReferencesOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = resources::references_of(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(grouped(rows, |row| ReferencesOf(row.resource_id)))
    }
}

/// Key: a secret, for the resources its selected access lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllowedResourcesOf(pub Uuid);

impl Loader<AllowedResourcesOf> for DbLoader {
    type Value = Vec<entity::resource::Model>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[AllowedResourcesOf],
    ) -> Result<HashMap<AllowedResourcesOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let allowed = crate::domain::access::allowed_resources_of(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(allowed
            .into_iter()
            .map(|(secret_id, resources)| (AllowedResourcesOf(secret_id), resources))
            .collect())
    }
}

/// Key: a resource, for the RUNTIME principals bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuntimePrincipalsOf(pub Uuid);

impl Loader<RuntimePrincipalsOf> for DbLoader {
    type Value = Vec<entity::principal::Model>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[RuntimePrincipalsOf],
    ) -> Result<HashMap<RuntimePrincipalsOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let bound = resources::runtime_principals_of(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(bound
            .into_iter()
            .map(|(resource_id, principals)| (RuntimePrincipalsOf(resource_id), principals))
            .collect())
    }
}

/// Key: a resource, for its current deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CurrentDeployment(pub Uuid);

impl Loader<CurrentDeployment> for DbLoader {
    type Value = deployment::Model;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[CurrentDeployment],
    ) -> Result<HashMap<CurrentDeployment, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = dependents::current_deployments(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .map(|d| (CurrentDeployment(d.resource_id), d))
            .collect())
    }
}

/// Key: a secret (organization and case-folded name), for its dependents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DependentsOf {
    pub org_id: Uuid,
    pub name_key: String,
}

impl Loader<DependentsOf> for DbLoader {
    type Value = Vec<dependents::Dependent>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[DependentsOf],
    ) -> Result<HashMap<DependentsOf, Self::Value>, Self::Error> {
        let mut found = HashMap::new();
        for (org_id, names) in by_org(keys.iter().map(|k| (k.org_id, k.name_key.clone()))) {
            let dependents = dependents::dependents_of(&self.db, org_id, &names)
                .await
                .map_err(Arc::new)?;
            found.extend(
                dependents
                    .into_iter()
                    .map(|(name_key, list)| (DependentsOf { org_id, name_key }, list)),
            );
        }
        Ok(found)
    }
}

/// Key: a deployment, for its pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinsOf(pub Uuid);

impl Loader<PinsOf> for DbLoader {
    type Value = Vec<deployment_pin::Model>;
    type Error = Arc<crate::Error>;

    async fn load(&self, keys: &[PinsOf]) -> Result<HashMap<PinsOf, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = dependents::pins_of(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(grouped(rows, |row| PinsOf(row.deployment_id)))
    }
}

/// Key: a secret by organization and case-folded name (what a reference names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretNamed {
    pub org_id: Uuid,
    pub name_key: String,
}

impl Loader<SecretNamed> for DbLoader {
    type Value = secret::Model;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[SecretNamed],
    ) -> Result<HashMap<SecretNamed, Self::Value>, Self::Error> {
        let mut found = HashMap::new();
        for (org_id, names) in by_org(keys.iter().map(|k| (k.org_id, k.name_key.clone()))) {
            let rows = secrets::find_many(&self.db, org_id, &names)
                .await
                .map_err(Arc::new)?;
            found.extend(rows.into_iter().map(|row| {
                let key = SecretNamed {
                    org_id,
                    name_key: row.name_key.clone(),
                };
                (key, row)
            }));
        }
        Ok(found)
    }
}

/// Key: a page of one secret's versions (`first`, `after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionsPage {
    pub secret_id: Uuid,
    pub first: Option<usize>,
    pub after: Option<i32>,
}

impl Loader<VersionsPage> for DbLoader {
    type Value = Arc<Page<secret_version::Model>>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[VersionsPage],
    ) -> Result<HashMap<VersionsPage, Self::Value>, Self::Error> {
        // Every secret of a page asks for the same window: normally one statement.
        let mut windows: HashMap<(Option<usize>, Option<i32>), Vec<Uuid>> = HashMap::new();
        for key in keys {
            windows
                .entry((key.first, key.after))
                .or_default()
                .push(key.secret_id);
        }
        let mut found = HashMap::new();
        for ((first, after), ids) in windows {
            let page = PageRequest {
                after,
                before: None,
                first,
                last: None,
            };
            let pages = secrets::versions_of_many(&self.db, &ids, &page)
                .await
                .map_err(Arc::new)?;
            found.extend(pages.into_iter().map(|(secret_id, page)| {
                let key = VersionsPage {
                    secret_id,
                    first,
                    after,
                };
                (key, Arc::new(page))
            }));
        }
        Ok(found)
    }
}

/// Key: a secret, for how many versions it retains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionCount(pub Uuid);

impl Loader<VersionCount> for DbLoader {
    type Value = u64;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[VersionCount],
    ) -> Result<HashMap<VersionCount, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let counts = secrets::count_versions_of_many(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(counts
            .into_iter()
            .map(|(id, n)| (VersionCount(id), n))
            .collect())
    }
}

/// Key: a resource and a secret it references (case-folded name), for its last fetch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageOf {
    pub resource_id: Uuid,
    pub secret_name_key: String,
}

impl Loader<UsageOf> for DbLoader {
    type Value = secret_usage::Model;
    type Error = Arc<crate::Error>;

    async fn load(&self, keys: &[UsageOf]) -> Result<HashMap<UsageOf, Self::Value>, Self::Error> {
        let pairs: Vec<(Uuid, String)> = keys
            .iter()
            .map(|k| (k.resource_id, k.secret_name_key.clone()))
            .collect();
        let found = usage::usage_of(&self.db, &pairs).await.map_err(Arc::new)?;
        Ok(found
            .into_iter()
            .map(|((resource_id, secret_name_key), row)| {
                let key = UsageOf {
                    resource_id,
                    secret_name_key,
                };
                (key, row)
            })
            .collect())
    }
}

/// Names grouped by organization (a request is one principal, so normally one group).
fn by_org(keys: impl Iterator<Item = (Uuid, String)>) -> HashMap<Uuid, Vec<String>> {
    let mut grouped: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (org_id, name) in keys {
        grouped.entry(org_id).or_default().push(name);
    }
    grouped
}

/// `rows` grouped under `key`.
fn grouped<K: Hash + Eq, T>(rows: Vec<T>, key: impl Fn(&T) -> K) -> HashMap<K, Vec<T>> {
    let mut groups: HashMap<K, Vec<T>> = HashMap::new();
    for row in rows {
        groups.entry(key(&row)).or_default().push(row);
    }
    groups
}
