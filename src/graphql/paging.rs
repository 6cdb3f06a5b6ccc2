//! Relay cursor connections over the domain's keyset pages.
use std::{future::Future, pin::Pin};

use async_graphql::{
    Context, ErrorExtensions, Object, ResultExt,
    connection::{Connection, Edge, OpaqueCursor, query_with},
};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    guard::app,
    loaders::{VersionCount, load},
};
use crate::domain::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest};

/// Complexity of a page: its size times what each item selects.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let size = first.or(last).map_or(DEFAULT_PAGE_SIZE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE)
    });
    size.max(1).saturating_mul(child).saturating_add(1)
}

type CountFuture = Pin<Box<dyn Future<Output = crate::Result<u64>> + Send>>;

/// `totalCount` of a connection (every connection has one), counted only when asked for.
pub struct TotalCount(Count);

enum Count {
    /// A top-level list: one statement when asked for.
    Query(Box<dyn Fn(DatabaseConnection) -> CountFuture + Send + Sync>),
    /// A secret's versions: batched across the secrets of a page.
    VersionsOf(Uuid),
}

impl TotalCount {
    /// `count` counts the whole list, every page, on the connection it is given.
    pub fn new<F, Fut>(count: F) -> Self
    where
        F: Fn(DatabaseConnection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::Result<u64>> + Send + 'static,
    {
        Self(Count::Query(Box::new(move |db| Box::pin(count(db)))))
    }

    /// The versions a secret retains.
    pub fn versions_of(secret_id: Uuid) -> Self {
        Self(Count::VersionsOf(secret_id))
    }
}

#[Object]
impl TotalCount {
    /// How many items the whole list holds, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        match &self.0 {
            Count::Query(count) => count(app(ctx)?.db.read().clone()).await.extend(),
            Count::VersionsOf(secret_id) => {
                Ok(load(ctx, VersionCount(*secret_id)).await?.unwrap_or(0))
            }
        }
    }
}

/// Converts a domain page into a Relay connection.
pub fn to_connection<K, T, N>(
    page: Page<T>,
    cursor: impl Fn(&T) -> K,
    node: impl Fn(T) -> N,
    count: TotalCount,
) -> Connection<OpaqueCursor<K>, N, TotalCount>
where
    K: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    N: async_graphql::OutputType,
{
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, count);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(OpaqueCursor(cursor(&item)), node(item))),
    );
    connection
}

/// Runs a paged domain query with Relay arguments. A cursor that does not decode, or a
/// negative page size, is the caller's mistake: `BAD_USER_INPUT`.
pub async fn paged<K, T, Fut>(
    after: Option<String>,
    before: Option<String>,
    first: Option<i32>,
    last: Option<i32>,
    fetch: impl FnOnce(PageRequest<K>) -> Fut,
) -> async_graphql::Result<T>
where
    K: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    query_with(
        after,
        before,
        first,
        last,
        |after: Option<OpaqueCursor<K>>, before: Option<OpaqueCursor<K>>, first, last| async move {
            let request = PageRequest {
                after: after.map(|c| c.0),
                before: before.map(|c| c.0),
                first,
                last,
            };
            fetch(request).await.extend()
        },
    )
    .await
    .map_err(|error| {
        if error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some())
        {
            return error;
        }
        let message = if error.message.contains("parameter") {
            error.message
        } else {
            "a cursor (`after` or `before`) that this list did not give out".to_owned()
        };
        crate::Error::bad_input(message).extend()
    })
}
