//! The GraphQL layer: schema, guards, loaders and error codes. Resolvers translate
//! between GraphQL types and [`crate::domain`] calls; they hold no business rules.
mod access;
mod audit;
mod dependents;
mod errors;
mod events;
mod guard;
mod identity;
pub(crate) mod ids;
mod inputs;
mod lifecycle;
mod limits;
mod loaders;
mod node;
mod paging;
mod parsed;
mod persisted;
mod pipeline;
mod request;
mod resources;
mod secrets;
mod shape;
mod webhooks;
mod workload;

use std::sync::Arc;

use crate::{
    auth::Authenticator,
    config::Limits,
    crypto::KeyProvider,
    db::Db,
    domain::{audit::AuditLog, plaintext::Plaintext, usage::Usage},
};
use async_graphql::{
    MergedObject, Schema, SchemaBuilder,
    dataloader::{DataLoader, HashMapCache},
};

pub use errors::error_response;
pub use events::{EVENTS_MISSED, SubscriptionRoot};
pub use guard::Denials;
pub use limits::OperationLimits;
pub use parsed::ParsedDocuments;
pub use persisted::PersistedQueries;
pub use request::{Auth, OverHttp, RequestCtx};

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    identity::IdentityQuery,
    node::NodeQuery,
    secrets::SecretQuery,
    resources::ResourceQuery,
    audit::AuditQuery,
    workload::WorkloadQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    secrets::SecretMutation,
    lifecycle::LifecycleMutation,
    resources::ResourceMutation,
    identity::IdentityMutation,
    access::AccessMutation,
    workload::WorkloadMutation,
    webhooks::WebhookMutation,
);

/// Shared services, available to every resolver.
#[derive(Clone)]
pub struct AppData {
    pub db: Db,
    pub keys: Arc<dyn KeyProvider>,
    /// Where reads of plaintext are recorded (group commit).
    pub audit: AuditLog,
    /// Who fetched what, noted in memory and flushed in the background.
    pub usage: Usage,
    pub tokens: Arc<Authenticator>,
    /// Queries kept for clients that send only their hash (APQ).
    pub persisted: PersistedQueries,
    /// Documents already parsed, per organization.
    pub parsed: ParsedDocuments,
    /// How many refusal rows each principal may write per minute.
    pub denials: Arc<crate::domain::denials::DenialBudget>,
    pub version_retention: u32,
    /// The access of a new secret (`STRONGROOM_DEFAULT_SECRET_ACCESS`).
    pub default_secret_access: crate::domain::access::SecretAccess,
    /// How long a deleted secret stays restorable unless a call says otherwise.
    pub recovery_window: chrono::TimeDelta,
    /// How webhooks are delivered, and where they may go.
    pub webhooks: Arc<crate::webhooks::Settings>,
}

impl AppData {
    /// The one way to plaintext: decrypt, record, then answer.
    pub fn plaintext(&self) -> Plaintext<'_> {
        Plaintext {
            db: &self.db,
            keys: self.keys.as_ref(),
            audit: &self.audit,
            usage: &self.usage,
        }
    }
}

/// The schema without runtime data: what the SDL export and the server share.
pub fn schema_builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
}

/// The server's schema with its limits. Limits are checked before any resolver runs.
pub fn build_schema(data: AppData, limits: &Limits) -> AppSchema {
    schema_builder()
        .extension(pipeline::Pipeline::new(OperationLimits {
            max_aliases: limits.max_aliases,
            max_root_fields: limits.max_root_fields,
            max_expanded_fields: limits.max_complexity,
        }))
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(limits.max_recursive_depth)
        .limit_directives(limits.max_directives)
        .data(data)
        .finish()
}

/// Per-request loaders: their caches must not outlive a request (or cross tenants). The
/// cache also lets a page resolver prime it for its items (see `secrets`).
pub fn request_loaders(data: &AppData) -> loaders::RequestLoader {
    DataLoader::with_cache(
        loaders::DbLoader::new(data.db.read().clone()),
        tokio::spawn,
        HashMapCache::default(),
    )
}

/// The SDL checked in as `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

#[cfg(test)]
mod tests {
    /// `schema.graphql` is generated from the code; clients and reviewers read it.
    #[test]
    fn checked_in_sdl_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == super::sdl(),
            "schema.graphql is out of date with the code; regenerate it with\n\n    \
             cargo run -q -- schema > schema.graphql\n"
        );
    }
}
