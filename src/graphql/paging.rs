//! Relay cursor connections over the domain's keyset pages.
use async_graphql::{
    ResultExt,
    connection::{Connection, Edge, OpaqueCursor, query_with},
};

use crate::domain::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest};

/// Complexity of a page: its size times what each item selects.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let size = first.or(last).map_or(DEFAULT_PAGE_SIZE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE)
    });
    size.max(1).saturating_mul(child).saturating_add(1)
}

/// Converts a domain page into a Relay connection.
pub fn to_connection<K, T, N, F>(
    page: Page<T>,
    cursor: impl Fn(&T) -> K,
    node: impl Fn(T) -> N,
    fields: F,
) -> Connection<OpaqueCursor<K>, N, F>
where
    K: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    N: async_graphql::OutputType,
    F: async_graphql::ObjectType,
{
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, fields);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|item| Edge::new(OpaqueCursor(cursor(&item)), node(item))),
    );
    connection
}

/// Runs a paged domain query with Relay arguments.
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
}
