//! Batched loading (async-graphql's DataLoader): a page of N objects costs one query per
//! related kind, not N.
use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use entity::principal;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::identity;

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
