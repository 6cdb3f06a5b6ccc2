//! Webhook endpoints (DESIGN §11): signed posts of the organization's events for CI
//! systems that redeploy when a secret changes. Admins manage them; inspectors may read
//! them and their deliveries (never a signing secret: it is shown once, to the admin who
//! creates or rotates it).
use async_graphql::{
    Context, Enum, ID, InputObject, Object, ResultExt, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::{webhook_delivery, webhook_endpoint};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{
    guard::{RoleGuard, actor, app},
    ids,
    paging::{TotalCount, page_complexity, paged, to_connection},
};
use crate::domain::{
    Permission,
    webhooks::{self as service, Endpoints, EventType, NewEndpoint},
};

/// What an endpoint subscribes to; the payload's `type` is the lower-cased dotted form
/// (`SECRET_UPDATED` → `secret.updated`, `DEPENDENT_STALE` → `dependent.stale`).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "service::EventType")]
pub enum WebhookEventType {
    SecretCreated,
    SecretUpdated,
    SecretDeleted,
    SecretDisabled,
    SecretEnabled,
    SecretRestored,
    SecretPurged,
    SecretRolledBack,
    SecretRotationDue,
    /// A deployment is pinned to an older version than its secret's current one.
    DependentStale,
    /// A deployment failed (its secret was deleted), or its secret does not exist.
    DependentBroken,
    /// A stale or broken dependent is up to date again.
    DependentHealed,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The attempt failed; another is due at `nextAttemptAt`.
    Pending,
    /// Answered 2xx.
    Succeeded,
    /// The attempt failed and no attempt is left.
    Failed,
}

/// Where the organization's events are posted, signed per the Standard Webhooks
/// specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
pub struct WebhookEndpoint(pub webhook_endpoint::Model);

#[Object(guard = "RoleGuard::new(Permission::Inspect)")]
impl WebhookEndpoint {
    pub async fn id(&self) -> ID {
        ids::encode(ids::WEBHOOK_ENDPOINT, self.0.id)
    }

    async fn url(&self) -> &str {
        &self.0.url
    }

    async fn events(&self) -> Vec<WebhookEventType> {
        service::events(&self.0)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// The secrets whose events are posted; null for every secret.
    async fn secret_names(&self) -> Option<Vec<String>> {
        service::secret_names(&self.0)
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Why it is disabled: by an admin, or after failing for too long.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Its delivery attempts, newest first.
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, WebhookDelivery, TotalCount>> {
        let endpoint_id = self.0.id;
        let db = app(ctx)?.db.read();
        paged(after, None, first, None, |page| async move {
            let deliveries = service::deliveries(db, endpoint_id, &page).await?;
            let count = TotalCount::new(move |db| async move {
                service::count_deliveries(&db, endpoint_id).await
            });
            Ok(to_connection(deliveries, |d| d.id, WebhookDelivery, count))
        })
        .await
    }
}

/// One attempt to post an event to an endpoint.
pub struct WebhookDelivery(webhook_delivery::Model);

#[Object(guard = "RoleGuard::new(Permission::Inspect)")]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The `webhook-id` every attempt of this event carries.
    async fn event_id(&self) -> ID {
        ID(crate::webhooks::webhook_id(self.0.event_id))
    }

    /// The payload's `type`: `secret.updated`, `dependent.stale`…
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// 1 for the first attempt.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }

    async fn status(&self) -> DeliveryStatus {
        match self.0.status.as_str() {
            crate::webhooks::SUCCEEDED => DeliveryStatus::Succeeded,
            crate::webhooks::PENDING => DeliveryStatus::Pending,
            _ => DeliveryStatus::Failed,
        }
    }

    /// The HTTP status the endpoint answered, if it answered.
    async fn response_status(&self) -> Option<i32> {
        self.0.response_status
    }

    /// Why the attempt failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    async fn attempted_at(&self) -> DateTime<Utc> {
        self.0.attempted_at
    }

    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The organization's webhook endpoints, oldest first.
    #[graphql(
        guard = "RoleGuard::new(Permission::Inspect)",
        complexity = "page_complexity(first, None, child_complexity)"
    )]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<Uuid>, WebhookEndpoint, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        paged(after, None, first, None, |page| async move {
            let endpoints = service::list(db, org_id, &page).await?;
            let count = TotalCount::new(move |db| async move { service::count(&db, org_id).await });
            Ok(to_connection(endpoints, |e| e.id, WebhookEndpoint, count))
        })
        .await
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// `https://…`; `http://` and private addresses only for hosts the server lists in
    /// `STRONGROOM_WEBHOOK_ALLOW_HOSTS`.
    url: String,
    /// The event types to post (at least one).
    events: Vec<WebhookEventType>,
    /// Only the events of these secrets; omit for every secret.
    secret_names: Option<Vec<String>>,
}

#[derive(SimpleObject)]
pub struct WebhookSecretPayload {
    endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`), shown this once: configure it in the receiver
    /// and verify every request with a Standard Webhooks library.
    signing_secret: String,
}

#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    id: ID,
}

#[derive(InputObject)]
pub struct SetWebhookEnabledInput {
    id: ID,
    enabled: bool,
}

#[derive(SimpleObject)]
pub struct SetWebhookEnabledPayload {
    endpoint: WebhookEndpoint,
}

#[derive(InputObject)]
pub struct DeleteWebhookEndpointInput {
    id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteWebhookEndpointPayload {
    deleted_id: ID,
}

fn endpoints<'a>(ctx: &Context<'a>) -> async_graphql::Result<Endpoints<'a>> {
    let app = app(ctx)?;
    Ok(Endpoints {
        db: &app.db,
        keys: app.keys.as_ref(),
        policy: &app.webhooks.policy,
    })
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Posts the organization's events of the chosen types (and secrets) to `url`, signed
    /// with a new secret returned this once.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookSecretPayload> {
        let new = NewEndpoint {
            url: input.url,
            events: input.events.into_iter().map(EventType::from).collect(),
            secret_names: input.secret_names,
        };
        let (row, secret) = endpoints(ctx)?.create(&actor(ctx)?, new).await.extend()?;
        Ok(WebhookSecretPayload {
            endpoint: WebhookEndpoint(row),
            signing_secret: secret.expose_secret().to_owned(),
        })
    }

    /// A new signing secret, returned this once; the old one signs nothing from now on.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        input: RotateWebhookSecretInput,
    ) -> async_graphql::Result<WebhookSecretPayload> {
        let id = ids::decode_as(&input.id, ids::WEBHOOK_ENDPOINT).extend()?;
        let (row, secret) = endpoints(ctx)?
            .rotate_secret(&actor(ctx)?, id)
            .await
            .extend()?;
        Ok(WebhookSecretPayload {
            endpoint: WebhookEndpoint(row),
            signing_secret: secret.expose_secret().to_owned(),
        })
    }

    /// Stops (or resumes) posting to the endpoint. Resuming clears `disabledReason` and
    /// posts what is still pending.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn set_webhook_enabled(
        &self,
        ctx: &Context<'_>,
        input: SetWebhookEnabledInput,
    ) -> async_graphql::Result<SetWebhookEnabledPayload> {
        let id = ids::decode_as(&input.id, ids::WEBHOOK_ENDPOINT).extend()?;
        let row = endpoints(ctx)?
            .set_enabled(&actor(ctx)?, id, input.enabled)
            .await
            .extend()?;
        Ok(SetWebhookEnabledPayload {
            endpoint: WebhookEndpoint(row),
        })
    }

    /// Deletes the endpoint, its pending messages and its delivery records.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: DeleteWebhookEndpointInput,
    ) -> async_graphql::Result<DeleteWebhookEndpointPayload> {
        let id = ids::decode_as(&input.id, ids::WEBHOOK_ENDPOINT).extend()?;
        let row = endpoints(ctx)?.delete(&actor(ctx)?, id).await.extend()?;
        Ok(DeleteWebhookEndpointPayload {
            deleted_id: ids::encode(ids::WEBHOOK_ENDPOINT, row.id),
        })
    }
}
