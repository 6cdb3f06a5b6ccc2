//! Relay's `node(id:)`. Its guard decides from the id's kind, before any lookup, so a
//! secret's id needs exactly what every other path to a secret needs, and a resource's id
//! finds only the resources the caller may see (a RUNTIME principal: those bound to it).
use async_graphql::{Context, ID, Interface, Object, ResultExt};

use super::{
    guard::{NodeGuard, actor, app},
    ids,
    resources::Resource,
    secrets::Secret,
    webhooks::WebhookEndpoint,
};
use crate::domain::{
    resources::{self as resource_service, Visible},
    secrets as secret_service, webhooks as webhook_service,
};

// One per `node(id:)` answer, never stored in bulk: boxing the larger variant would buy
// nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Secret(Secret),
    Resource(Resource),
    WebhookEndpoint(WebhookEndpoint),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by its global id; null if it does not exist in your organization.
    #[graphql(guard = "NodeGuard::for_id(&id)")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let principal = actor(ctx)?.principal;
        let org_id = principal.org_id;
        let Some((kind, uuid)) = ids::decode(&id) else {
            return Ok(None);
        };
        let db = app(ctx)?.db.read();
        Ok(match kind.as_str() {
            ids::SECRET => secret_service::find_by_id(db, org_id, uuid)
                .await
                .extend()?
                .map(|s| Node::Secret(s.into())),
            ids::RESOURCE => resource_service::find_visible(db, Visible::to(&principal), uuid)
                .await
                .extend()?
                .map(|r| Node::Resource(Resource(r))),
            ids::WEBHOOK_ENDPOINT => match webhook_service::find(db, org_id, uuid).await {
                Ok(row) => Some(Node::WebhookEndpoint(WebhookEndpoint(row))),
                Err(crate::Error::NotFound(_)) => None,
                Err(e) => return Err(async_graphql::ErrorExtensions::extend(&e)),
            },
            _ => None,
        })
    }
}
