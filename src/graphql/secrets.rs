//! Secrets: every field needs `Permission::Inspect` (admins and inspectors), by a guard on
//! the field and on the `Secret` type itself, so no path (`node(id:)`, a nested field)
//! reaches a secret without one; values (`secretValue`) and every change need an admin.
use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Object, ResultExt, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, Utc};
use entity::{secret, secret_version};

use super::{
    access::SecretAccess,
    dependents::{Dependent, dependents},
    guard::{RoleGuard, actor, app},
    identity::{Principal, load_principal},
    ids,
    loaders::{AllowedResourcesOf, DependentsOf, VersionsPage, load, prime_dependents},
    paging::{TotalCount, page_complexity, paged, to_connection},
    resources::Resource,
};
use crate::domain::{
    Description, Page, PageRequest, Permission, RecoveryWindow, SecretName, SecretValue,
    dependents,
    secrets::{self as service, ListFilter, NewSecret, SecretUpdate, check_rotation_period},
};

/// Where a secret is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "service::SecretState")]
pub enum SecretState {
    /// In service.
    Active,
    /// Its values are refused (`SECRET_DISABLED`) until it is enabled; updates still work.
    Disabled,
    /// Deleted, restorable until `purgeAt`; its values unreadable, its name reserved.
    Deleted,
}

/// A named secret. Its value is only ever returned by `secretValue`.
#[derive(SimpleObject)]
#[graphql(complex, guard = "RoleGuard::new(Permission::Inspect)")]
pub struct Secret {
    #[graphql(skip)]
    pub(super) row: secret::Model,
    pub name: String,
    pub description: Option<String>,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<secret::Model> for Secret {
    fn from(row: secret::Model) -> Self {
        Self {
            name: row.name.clone(),
            description: row.description.clone(),
            current_version: row.current_version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            row,
        }
    }
}

#[ComplexObject(guard = "RoleGuard::new(Permission::Inspect)")]
impl Secret {
    pub async fn id(&self) -> ID {
        ids::encode(ids::SECRET, self.row.id)
    }

    async fn state(&self) -> SecretState {
        service::SecretState::of(&self.row).into()
    }

    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.row.disabled_at
    }

    async fn disabled_reason(&self) -> Option<&str> {
        self.row.disabled_reason.as_deref()
    }

    /// When a deleted secret will be purged (null unless `DELETED`).
    async fn purge_at(&self) -> Option<DateTime<Utc>> {
        self.row.purge_at
    }

    /// The latest reveal (`secretValue`) or fetch (`resourceSecrets`) of a value, recorded
    /// within `STRONGROOM_USAGE_FLUSH_SECONDS`.
    async fn last_accessed_at(&self) -> Option<DateTime<Utc>> {
        self.row.last_accessed_at
    }

    async fn rotation_period_days(&self) -> Option<i32> {
        self.row.rotation_period_days
    }

    /// The last value change plus `rotationPeriodDays` (null without a period).
    async fn rotation_due_at(&self) -> Option<DateTime<Utc>> {
        self.row.rotation_due_at
    }

    /// Which resources may be deployed with it (`setSecretAccess`).
    async fn access(&self) -> SecretAccess {
        crate::domain::access::SecretAccess::of(&self.row).into()
    }

    /// With SELECTED_RESOURCES access, the resources that may use it, by name; empty with
    /// ALL_RESOURCES.
    async fn allowed_resources(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Resource>> {
        let allowed = load(ctx, AllowedResourcesOf(self.row.id)).await?;
        Ok(allowed
            .unwrap_or_default()
            .into_iter()
            .map(Resource)
            .collect())
    }

    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, self.row.created_by).await
    }

    async fn updated_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, self.row.updated_by).await
    }

    /// Who references this secret, and whether each runs its current version.
    async fn dependents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Dependent>> {
        let key = DependentsOf {
            org_id: self.row.org_id,
            name_key: self.row.name_key.clone(),
        };
        let list = load(ctx, key).await?.unwrap_or_default();
        Ok(dependents(list))
    }

    /// Retained versions, newest first.
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<i32>, SecretVersion, TotalCount>> {
        let secret_id = self.row.id;
        let request = paged(
            after,
            None,
            first,
            None,
            |page: PageRequest<i32>| async move {
                page.direction()?;
                Ok(page)
            },
        )
        .await?;
        // One statement for the versions of every secret on the page (see the loader).
        let key = VersionsPage {
            secret_id,
            first: request.first,
            after: request.after,
        };
        let page = load(ctx, key).await?.ok_or_else(|| {
            async_graphql::ErrorExtensions::extend(&crate::Error::Internal(
                "the versions loader skipped a secret".into(),
            ))
        })?;
        let page = Page {
            items: page.items.clone(),
            has_previous: page.has_previous,
            has_next: page.has_next,
        };
        let count = TotalCount::versions_of(secret_id);
        Ok(to_connection(page, |v| v.version, SecretVersion, count))
    }
}

/// One retained version of a secret (metadata only).
pub struct SecretVersion(secret_version::Model);

#[Object(guard = "RoleGuard::new(Permission::Inspect)")]
impl SecretVersion {
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Principal>> {
        load_principal(ctx, self.0.created_by).await
    }

    /// The key-provider key that wraps this version's data key.
    async fn key_id(&self) -> &str {
        &self.0.key_id
    }
}

/// A revealed value. No `id`, so client caches do not keep values keyed by object.
#[derive(SimpleObject)]
#[graphql(name = "SecretValue", guard = "RoleGuard::new(Permission::Reveal)")]
pub struct SecretValueResult {
    name: String,
    version: i32,
    value: String,
}

#[derive(InputObject, Default)]
pub struct SecretFilter {
    /// Case-insensitive substring of the name.
    name_contains: Option<String>,
    /// Only secrets in this state. Without it, every secret but the deleted ones.
    state: Option<SecretState>,
    /// Only secrets whose value no one revealed or fetched since then (or ever).
    not_accessed_since: Option<DateTime<Utc>>,
    /// Only secrets whose rotation is due (`true`), or not due (`false`).
    rotation_due: Option<bool>,
}

pub(super) fn parse_name(name: &str) -> async_graphql::Result<SecretName> {
    SecretName::parse(name).extend()
}

#[derive(Default)]
pub struct SecretQuery;

#[Object]
impl SecretQuery {
    /// A secret by name (case-insensitive); null if there is none.
    #[graphql(guard = "RoleGuard::new(Permission::Inspect)")]
    async fn secret(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Option<Secret>> {
        let actor = actor(ctx)?;
        let name = parse_name(&name)?;
        let found = service::find(app(ctx)?.db.read(), actor.org_id(), &name)
            .await
            .extend()?;
        Ok(found.map(Secret::from))
    }

    /// The organization's secrets ordered by name. Pages hold at most 100.
    #[graphql(
        guard = "RoleGuard::new(Permission::Inspect)",
        complexity = "page_complexity(first, last, child_complexity)"
    )]
    async fn secrets(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<SecretFilter>,
    ) -> async_graphql::Result<Connection<OpaqueCursor<String>, Secret, TotalCount>> {
        let org_id = actor(ctx)?.org_id();
        let db = app(ctx)?.db.read();
        let filter = filter.unwrap_or_default();
        let filter = ListFilter {
            name_contains: filter.name_contains,
            state: filter.state.map(Into::into),
            not_accessed_since: filter.not_accessed_since,
            rotation_due: filter.rotation_due.map(|due| (due, chrono::Utc::now())),
        };
        let look_ahead = ctx.look_ahead();
        let wants_dependents = look_ahead.field("nodes").field("dependents").exists()
            || look_ahead
                .field("edges")
                .field("node")
                .field("dependents")
                .exists();
        let connection = paged(after, before, first, last, |page| async move {
            let secrets = service::list(db, org_id, &filter, &page).await?;
            let count = TotalCount::new(move |db| {
                let filter = filter.clone();
                async move { service::count(&db, org_id, &filter).await }
            });
            Ok(to_connection(
                secrets,
                |s| s.name_key.clone(),
                Secret::from,
                count,
            ))
        })
        .await?;
        if wants_dependents {
            let keys = connection
                .edges
                .iter()
                .map(|e| e.node.row.name_key.clone())
                .collect();
            prime_dependents(ctx, org_id, keys).await?;
        }
        Ok(connection)
    }

    /// Decrypts a value: the current version, or `version`. Every call is audited.
    #[graphql(name = "secretValue", guard = "RoleGuard::new(Permission::Reveal)")]
    async fn secret_value(
        &self,
        ctx: &Context<'_>,
        name: String,
        version: Option<i32>,
    ) -> async_graphql::Result<SecretValueResult> {
        let actor = actor(ctx)?;
        let name = parse_name(&name)?;
        let data = app(ctx)?;
        let revealed = data
            .plaintext()
            .reveal(&actor, &name, version)
            .await
            .extend()?;
        Ok(SecretValueResult {
            name: revealed.name,
            version: revealed.version,
            value: revealed.value.expose().to_owned(),
        })
    }
}

#[derive(InputObject)]
pub struct CreateSecretInput {
    /// 1–128 characters of A–Z, a–z, 0–9 and `_`, not starting with a digit; unique in
    /// the organization ignoring case; cannot be changed later.
    name: String,
    /// UTF-8, 1 byte to 64 KiB.
    value: String,
    /// At most 1,024 characters.
    description: Option<String>,
    /// Rotation is due this many days (1–3650) after each value change.
    rotation_period_days: Option<i32>,
}

#[derive(SimpleObject)]
pub struct CreateSecretPayload {
    secret: Secret,
}

#[derive(InputObject)]
pub struct UpdateSecretInput {
    name: String,
    /// A new value makes a new version.
    value: Option<String>,
    /// A new description; `null` clears it, omitted leaves it.
    description: MaybeUndefined<String>,
    /// Check-and-set: fail with `VERSION_CONFLICT` unless this is the current version.
    expected_version: Option<i32>,
    /// Days (1–3650) between value changes before rotation is due; `null` removes it,
    /// omitted leaves it.
    rotation_period_days: MaybeUndefined<i32>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct UpdateSecretPayload {
    secret: Secret,
}

impl UpdateSecretPayload {
    pub fn new(secret: secret::Model) -> Self {
        Self {
            secret: secret.into(),
        }
    }
}

#[ComplexObject]
impl UpdateSecretPayload {
    /// Deployed resources now pinned to an older version: redeploy them to pick it up.
    /// Computed only when asked for.
    async fn stale_dependents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Dependent>> {
        let stale = dependents::stale_dependents(app(ctx)?.db.read(), &self.secret.row)
            .await
            .extend()?;
        Ok(dependents(stale))
    }
}

#[derive(InputObject)]
pub struct DeleteSecretInput {
    name: String,
    /// Delete even if deployed resources use it: their deployments are marked failed.
    #[graphql(default = false)]
    force: bool,
    /// Change nothing; list what the delete would affect.
    #[graphql(default = false)]
    dry_run: bool,
    /// Days (0–30) the secret stays restorable before it is purged; 0 shreds it now.
    /// Default: `STRONGROOM_RECOVERY_WINDOW_DAYS` (7).
    recovery_window_days: Option<i32>,
}

#[derive(SimpleObject)]
pub struct DeleteSecretPayload {
    /// Null on a dry run.
    deleted_secret_id: Option<ID>,
    /// When the secret will be purged; null on a dry run or when it was shredded at once.
    purge_at: Option<DateTime<Utc>>,
    /// Every resource that references the secret, as it stands afterwards.
    affected_dependents: Vec<Dependent>,
}

#[derive(Default)]
pub struct SecretMutation;

#[Object]
impl SecretMutation {
    /// Creates a secret (version 1).
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn create_secret(
        &self,
        ctx: &Context<'_>,
        input: CreateSecretInput,
    ) -> async_graphql::Result<CreateSecretPayload> {
        let actor = actor(ctx)?;
        let new = NewSecret {
            name: parse_name(&input.name)?,
            value: SecretValue::parse(input.value).extend()?,
            description: input
                .description
                .map(Description::parse)
                .transpose()
                .extend()?,
            rotation_period_days: check_rotation_period(input.rotation_period_days).extend()?,
            access: app(ctx)?.default_secret_access,
        };
        let data = app(ctx)?;
        let secret = service::create(&data.db, data.keys.as_ref(), &actor, new)
            .await
            .extend()?;
        Ok(CreateSecretPayload {
            secret: secret.into(),
        })
    }

    /// Changes a secret's value (a new version) and/or description.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn update_secret(
        &self,
        ctx: &Context<'_>,
        input: UpdateSecretInput,
    ) -> async_graphql::Result<UpdateSecretPayload> {
        let actor = actor(ctx)?;
        let description = match input.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(text) => Some(Some(Description::parse(text).extend()?)),
        };
        let rotation_period_days = match input.rotation_period_days {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(days) => Some(check_rotation_period(Some(days)).extend()?),
        };
        let change = SecretUpdate {
            name: parse_name(&input.name)?,
            value: input.value.map(SecretValue::parse).transpose().extend()?,
            description,
            expected_version: input.expected_version,
            rotation_period_days,
            rolled_back_from: None,
        };
        let data = app(ctx)?;
        let secret = service::update(
            &data.db,
            data.keys.as_ref(),
            &actor,
            change,
            data.version_retention,
        )
        .await
        .extend()?;
        Ok(UpdateSecretPayload::new(secret))
    }

    /// Deletes a secret: it becomes `DELETED` (values unreadable, name reserved) and is
    /// purged — every version's wrapped data key destroyed — when its recovery window
    /// ends, unless restored first. A window of 0 purges at once.
    #[graphql(guard = "RoleGuard::new(Permission::Administer)")]
    async fn delete_secret(
        &self,
        ctx: &Context<'_>,
        input: DeleteSecretInput,
    ) -> async_graphql::Result<DeleteSecretPayload> {
        let actor = actor(ctx)?;
        let name = parse_name(&input.name)?;
        let data = app(ctx)?;
        let window = match input.recovery_window_days {
            None => RecoveryWindow::configured(data.recovery_window),
            Some(days) => RecoveryWindow::days(days).extend()?,
        }
        .as_delta();
        let outcome = service::delete(&data.db, &actor, &name, input.force, input.dry_run, window)
            .await
            .extend()?;
        Ok(DeleteSecretPayload {
            purge_at: outcome.deleted.as_ref().and_then(|s| s.purge_at),
            deleted_secret_id: outcome.deleted.map(|s| ids::encode(ids::SECRET, s.id)),
            affected_dependents: dependents(outcome.affected),
        })
    }
}
