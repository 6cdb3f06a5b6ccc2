//! Batched loading (async-graphql's DataLoader): a page of N objects costs one query per
//! related kind, not N.
use std::{collections::HashMap, hash::Hash, sync::Arc};

use async_graphql::{
    Context, ErrorExtensions,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use entity::{deployment, principal, resource_reference};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::{identity, resources};

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
    let mut found = resources::dependents_of(&loader.loader().db, org_id, &name_keys)
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
        let mut by_resource: HashMap<ReferencesOf, Self::Value> = HashMap::new();
        for row in rows {
            by_resource
                .entry(ReferencesOf(row.resource_id))
                .or_default()
                .push(row);
        }
        Ok(by_resource)
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
        let rows = resources::current_deployments(&self.db, &ids)
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
    type Value = Vec<resources::Dependent>;
    type Error = Arc<crate::Error>;

    async fn load(
        &self,
        keys: &[DependentsOf],
    ) -> Result<HashMap<DependentsOf, Self::Value>, Self::Error> {
        // One request is one principal, so one organization; group anyway.
        let mut by_org: HashMap<Uuid, Vec<String>> = HashMap::new();
        for key in keys {
            by_org
                .entry(key.org_id)
                .or_default()
                .push(key.name_key.clone());
        }
        let mut found = HashMap::new();
        for (org_id, names) in by_org {
            let dependents = resources::dependents_of(&self.db, org_id, &names)
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
