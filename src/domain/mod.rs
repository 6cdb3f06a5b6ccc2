//! Domain services: plain async functions on a database handle. No GraphQL or HTTP
//! types here; callers pass an [`Actor`] (who is asking, from which request).
pub mod access;
pub mod audit;
pub mod denials;
pub mod dependents;
pub mod events;
pub mod identity;
pub mod lifecycle;
pub mod plaintext;
pub mod redeploy;
pub mod resources;
pub mod rotation;
pub mod secrets;
pub mod sessions;
pub mod usage;
mod values;
pub mod webhooks;
pub mod workload;

use uuid::Uuid;

pub use values::{
    Description, PrincipalName, RecoveryWindow, ReferenceField, ResourceName, RotationPeriod,
    SecretName, SecretValue,
};

/// A principal's role (DESIGN §3, §9). ADMIN, MEMBER and VIEWER are for people and
/// service accounts; RUNTIME (a pipeline's runtime: its own resources' pinned values) and
/// INSPECTOR (integration services: every read but values) for service accounts only.
/// What each may do is [`Role::allows`]; guards name a [`Permission`], never a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Runtime,
    Inspector,
}

/// What a field needs. Fields are guarded by these, so that a role's powers are listed in
/// one place ([`Role::allows`]) rather than spread over field guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `viewer`: who the caller is.
    Identify,
    /// Resources with their references and deployments. A RUNTIME principal sees only the
    /// resources bound to it (the resolvers filter).
    ReadResources,
    /// Everything an admin may read except values: secrets' metadata and versions,
    /// dependents, usage, the audit log, principals and tokens' metadata, secret events.
    Inspect,
    /// Values (`secretValue`).
    Reveal,
    /// A resource's pinned values (`resourceSecrets`). A RUNTIME principal only for the
    /// resources bound to it (the resolver checks).
    FetchPinned,
    /// How a resource's references stand, as they change (`dependentEvents` and the
    /// `Dependent`s it carries), and what happens to the secrets they name
    /// (`secretEvents`). A RUNTIME principal only for a resource bound to it and the
    /// secrets it references (the subscriptions check, at their start and at every
    /// event); every other path to a dependent needs [`Permission::Inspect`] at its root.
    WatchResources,
    /// Changing resources and deploying them (protected resources: admins only).
    EditResources,
    /// Changing secrets, access, principals and tokens.
    Administer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "ADMIN",
            Self::Member => "MEMBER",
            Self::Viewer => "VIEWER",
            Self::Runtime => "RUNTIME",
            Self::Inspector => "INSPECTOR",
        }
    }

    /// Whether this role grants `permission`: the whole access model in one match.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Self::Admin => true,
            Self::Member => matches!(
                permission,
                P::Identify | P::ReadResources | P::EditResources
            ),
            Self::Viewer => matches!(permission, P::Identify | P::ReadResources),
            Self::Inspector => matches!(
                permission,
                P::Identify | P::ReadResources | P::Inspect | P::WatchResources
            ),
            Self::Runtime => matches!(
                permission,
                P::Identify | P::ReadResources | P::FetchPinned | P::WatchResources
            ),
        }
    }

    /// Whether a principal of this role may hold a subscription connection: those that
    /// may subscribe to something ([`Permission::Inspect`] or
    /// [`Permission::WatchResources`]). Anyone else is refused at `connection_init`
    /// rather than acknowledged and then refused field by field.
    pub fn may_subscribe(self) -> bool {
        self.allows(Permission::Inspect) || self.allows(Permission::WatchResources)
    }

    pub fn parse(stored: &str) -> crate::Result<Self> {
        match stored {
            "ADMIN" => Ok(Self::Admin),
            "MEMBER" => Ok(Self::Member),
            "VIEWER" => Ok(Self::Viewer),
            "RUNTIME" => Ok(Self::Runtime),
            "INSPECTOR" => Ok(Self::Inspector),
            other => Err(crate::Error::Internal(format!(
                "unknown stored role {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::ServiceAccount => "SERVICE_ACCOUNT",
        }
    }

    pub fn parse(stored: &str) -> crate::Result<Self> {
        match stored {
            "USER" => Ok(Self::User),
            "SERVICE_ACCOUNT" => Ok(Self::ServiceAccount),
            other => Err(crate::Error::Internal(format!(
                "unknown stored principal kind {other:?}"
            ))),
        }
    }
}

/// An authenticated principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub org_id: Uuid,
    pub kind: PrincipalKind,
    pub name: String,
    pub role: Role,
}

impl TryFrom<entity::principal::Model> for Principal {
    type Error = crate::Error;

    fn try_from(row: entity::principal::Model) -> crate::Result<Self> {
        Ok(Self {
            id: row.id,
            org_id: row.org_id,
            kind: PrincipalKind::parse(&row.kind)?,
            role: Role::parse(&row.role)?,
            name: row.name,
        })
    }
}

/// Who performs an operation, with which credential, and from which request (for the
/// audit log).
#[derive(Clone, Debug)]
pub struct Actor {
    pub principal: Principal,
    pub request_id: Option<String>,
    /// What the principal authenticated with; `None` for work not done on a request.
    pub credential: Option<Credential>,
}

/// What a principal authenticated with (DESIGN §9 "Who acted with what"): never the
/// secret part of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub kind: CredentialKind,
    /// The API token's id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<Uuid>,
    /// The API token's display prefix (`srt_AbCd`), what its owner recognises it by.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prefix: Option<String>,
    /// An exchanged JWT's issuer and subject.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialKind {
    ApiToken,
    Oidc,
    Session,
}

impl Credential {
    pub fn api_token(id: Uuid, prefix: &str) -> Self {
        Self {
            kind: CredentialKind::ApiToken,
            id: Some(id),
            prefix: Some(prefix.to_owned()),
            issuer: None,
            subject: None,
        }
    }
}

impl Actor {
    pub fn org_id(&self) -> Uuid {
        self.principal.org_id
    }
}

/// A page request on a keyset (cursor) ordering.
#[derive(Clone, Debug)]
pub struct PageRequest<K> {
    pub after: Option<K>,
    pub before: Option<K>,
    pub first: Option<usize>,
    pub last: Option<usize>,
}

/// A page of rows in display order.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_previous: bool,
    pub has_next: bool,
}

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

/// The natural order of a keyset listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Natural {
    Ascending,
    /// Newest first: "after" a cursor means a smaller key.
    Descending,
}

impl<K> PageRequest<K>
where
    K: Clone + Into<sea_orm::Value>,
{
    /// Fetches one page of `query` ordered by `column` (unique), in display order.
    pub(crate) async fn fetch<E, C>(
        &self,
        conn: &C,
        query: sea_orm::Select<E>,
        column: E::Column,
        natural: Natural,
    ) -> crate::Result<Page<E::Model>>
    where
        E: sea_orm::EntityTrait,
        C: sea_orm::ConnectionTrait,
    {
        use sea_orm::{ColumnTrait, Order, QueryFilter, QueryOrder, QuerySelect};
        let (backward, limit) = self.direction()?;
        let ascending = natural == Natural::Ascending;
        let mut query = query;
        if let Some(after) = self.after.clone() {
            query = query.filter(if ascending {
                column.gt(after)
            } else {
                column.lt(after)
            });
        }
        if let Some(before) = self.before.clone() {
            query = query.filter(if ascending {
                column.lt(before)
            } else {
                column.gt(before)
            });
        }
        let order = if ascending != backward {
            Order::Asc
        } else {
            Order::Desc
        };
        let rows = query
            .order_by(column, order)
            .limit(limit as u64 + 1)
            .all(conn)
            .await?;
        Ok(self.finish(rows, backward, limit))
    }
}

impl<K> PageRequest<K> {
    /// Forward pages unless only `last` is given. Returns (backward, limit).
    pub(crate) fn direction(&self) -> crate::Result<(bool, usize)> {
        let (backward, size) = match (self.first, self.last) {
            (Some(_), Some(_)) => {
                return Err(crate::Error::bad_input(
                    "pass either `first` or `last`, not both",
                ));
            }
            (None, Some(last)) => (true, last),
            (first, None) => (false, first.unwrap_or(DEFAULT_PAGE_SIZE)),
        };
        if size > MAX_PAGE_SIZE {
            return Err(crate::Error::bad_input(format!(
                "a page holds at most {MAX_PAGE_SIZE} items"
            )));
        }
        Ok((backward, size))
    }

    /// Turns `limit + 1` fetched rows (in query order) into a page in display order.
    pub(crate) fn finish<T>(&self, mut rows: Vec<T>, backward: bool, limit: usize) -> Page<T> {
        let more = rows.len() > limit;
        rows.truncate(limit);
        if backward {
            rows.reverse();
            Page {
                items: rows,
                has_previous: more,
                has_next: self.before.is_some(),
            }
        } else {
            Page {
                items: rows,
                has_previous: self.after.is_some(),
                has_next: more,
            }
        }
    }
}

/// The current time at the precision both stores keep (microseconds), so a row returned
/// from a write equals the row read back later.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// `items` without repeats, in first-seen order.
pub(crate) fn unique<T: Clone + Eq + std::hash::Hash>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// What the domain's own tests start from: a migrated in-memory SQLite database with the
/// organization `acme` and its admin, and local keyrings.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Actor, Principal, identity};
    use crate::{
        crypto::{LocalKeyProvider, MasterKey},
        db::Db,
        metrics::ProviderCalls,
    };

    /// A base64 master key for tests.
    pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    /// A fresh database and `acme`'s admin as the actor.
    pub async fn admin_on_fresh_db() -> (Db, Actor) {
        let db = crate::db::connect("sqlite::memory:", 1).await.expect("db");
        let (_, admin, _) = identity::bootstrap(&db, "acme", "admin")
            .await
            .expect("org");
        let actor = Actor {
            principal: Principal::try_from(admin).expect("principal"),
            request_id: None,
            credential: None,
        };
        (db, actor)
    }

    /// A local provider over `keys` (base64), the first one active.
    pub fn keyring(keys: &[&str]) -> LocalKeyProvider {
        let keys = keys
            .iter()
            .map(|k| MasterKey::from_base64(k).expect("key"))
            .collect();
        LocalKeyProvider::new(keys, ProviderCalls::detached("local"))
    }
}
