//! Organizations, principals and API tokens.
//!
//! A token is `srt_` followed by 43 base64url characters (256 random bits). The prefix
//! lets secret scanners recognise a leaked token. Only its SHA-256 is stored: with 256
//! bits of entropy a fast hash is enough, and lookups are by hash.
use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{api_token, organization, principal};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Actor, Description, Natural, Page, PageRequest, Principal, PrincipalKind, PrincipalName, Role,
    audit::{self, Event, Target},
};
use crate::{Error, Result, crypto::random_bytes, db::Db};

pub const TOKEN_PREFIX: &str = "srt_";
const TOKEN_BODY_LEN: usize = 43;

/// A token as handed to its owner, once. `Debug` is redacted.
pub struct IssuedToken {
    pub token: SecretString,
    pub record: api_token::Model,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[REDACTED]")
            .field("record", &self.record)
            .finish()
    }
}

/// The stored form of a token: its SHA-256, in hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(token_digest(token))
}

/// A token's SHA-256 (what caches key it by; never the token itself).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn mint() -> Result<SecretString> {
    let bytes = random_bytes::<32>().map_err(|e| Error::Internal(format!("rng: {e}")))?;
    Ok(SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// Mints a token for `principal` and inserts its record on `conn`.
async fn issue<C: ConnectionTrait>(
    conn: &C,
    principal: &principal::Model,
    created_by: Option<Uuid>,
    description: Option<Description>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedToken> {
    issue_with(conn, principal, created_by, description, expires_at, None).await
}

/// [`issue`], for a token exchanged for a JWT: `exchanged` is its `(iss, sub)`.
pub(crate) async fn issue_with<C: ConnectionTrait>(
    conn: &C,
    principal: &principal::Model,
    created_by: Option<Uuid>,
    description: Option<Description>,
    expires_at: Option<DateTime<Utc>>,
    exchanged: Option<(String, String)>,
) -> Result<IssuedToken> {
    let (oidc_issuer, oidc_subject) = exchanged.unzip();
    let token = mint()?;
    let display_prefix = token.expose_secret()[..TOKEN_PREFIX.len() + 6].to_owned();
    let record = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(principal.org_id),
        principal_id: Set(principal.id),
        token_hash: Set(hash_token(token.expose_secret())),
        display_prefix: Set(display_prefix),
        description: Set(description.map(Description::into_inner)),
        created_at: Set(super::now()),
        created_by: Set(created_by),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        oidc_issuer: Set(oidc_issuer),
        oidc_subject: Set(oidc_subject),
    }
    .insert(conn)
    .await?;
    Ok(IssuedToken { token, record })
}

/// Whether the database has no organization yet (a fresh install).
pub async fn is_fresh(db: &DatabaseConnection) -> Result<bool> {
    Ok(organization::Entity::find().count(db).await? == 0)
}

/// Creates organization `org_name` if it is new and admin user `admin_name` if it is
/// new, and issues a new token for that admin. Re-running it is how an operator recovers
/// admin access.
pub async fn bootstrap(
    db: &Db,
    org_name: &str,
    admin_name: &str,
) -> Result<(organization::Model, principal::Model, IssuedToken)> {
    let org_name = org_name.trim();
    if org_name.is_empty() || org_name.chars().count() > 128 {
        return Err(Error::bad_input(
            "an organization name is 1 to 128 characters",
        ));
    }
    let admin_name = PrincipalName::parse(admin_name)?;
    let txn = crate::db::begin_write(db).await?;
    let org = match organization::Entity::find()
        .filter(organization::Column::Name.eq(org_name))
        .one(&txn)
        .await?
    {
        Some(org) => org,
        None => {
            organization::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(org_name.to_owned()),
                created_at: Set(super::now()),
            }
            .insert(&txn)
            .await?
        }
    };
    let admin = match principal::Entity::find()
        .filter(principal::Column::OrgId.eq(org.id))
        .filter(principal::Column::Name.eq(admin_name.as_str()))
        .one(&txn)
        .await?
    {
        Some(existing) if existing.role == Role::Admin.as_str() => existing,
        Some(_) => {
            return Err(Error::bad_input(format!(
                "principal {} exists in {org_name} but is not an admin",
                admin_name.as_str()
            )));
        }
        None => {
            principal::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org.id),
                kind: Set(PrincipalKind::User.as_str().to_owned()),
                name: Set(admin_name.as_str().to_owned()),
                role: Set(Role::Admin.as_str().to_owned()),
                created_at: Set(super::now()),
                oidc_issuer: Set(None),
                oidc_subject: Set(None),
            }
            .insert(&txn)
            .await?
        }
    };
    let description = Description::parse("bootstrap".to_owned())?;
    let issued = issue(&txn, &admin, None, Some(description), None).await?;
    let event = Event::allowed("token.create", Target::token(issued.record.id))
        .with_detail(serde_json::json!({ "via": "bootstrap", "principal": admin.name }));
    audit::record_for(&txn, org.id, None, None, event).await?;
    txn.commit().await?;
    Ok((org, admin, issued))
}

/// A principal, and the token it presented.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub principal: Principal,
    pub token_id: Uuid,
    /// The token's display prefix.
    pub prefix: String,
    /// For a token exchanged for a JWT: its `(iss, sub)`.
    pub exchanged: Option<(String, String)>,
    /// When the token stops being accepted, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Authenticated {
    /// The credential, as the audit log names it.
    pub fn credential(&self) -> super::Credential {
        match &self.exchanged {
            Some((issuer, subject)) => super::Credential {
                kind: super::CredentialKind::Oidc,
                issuer: Some(issuer.clone()),
                subject: Some(subject.clone()),
                ..super::Credential::api_token(self.token_id, &self.prefix)
            },
            None => super::Credential::api_token(self.token_id, &self.prefix),
        }
    }

    /// Whether the token is still accepted at `now` (revocation aside).
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Whether `token` has the shape of a strongroom token (a cheap check before any lookup).
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + TOKEN_BODY_LEN && token.starts_with(TOKEN_PREFIX)
}

/// The token stored as `token_hash` (see [`hash_token`]) with its principal, and when it
/// was revoked, if it was. Expiry is for the caller to check against the time of each use.
pub async fn find_by_hash(
    db: &DatabaseConnection,
    token_hash: &str,
) -> Result<Option<(Authenticated, Option<DateTime<Utc>>)>> {
    let found = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(token_hash))
        .find_also_related(principal::Entity)
        .one(db)
        .await?;
    let Some((record, Some(principal))) = found else {
        return Ok(None);
    };
    let authenticated = Authenticated {
        principal: Principal::try_from(principal)?,
        token_id: record.id,
        prefix: record.display_prefix,
        expires_at: record.expires_at,
        exchanged: record.oidc_issuer.zip(record.oidc_subject),
    };
    Ok(Some((authenticated, record.revoked_at)))
}

/// A principal of the actor's organization.
pub async fn find_principal<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<principal::Model>> {
    Ok(principal::Entity::find_by_id(id)
        .filter(principal::Column::OrgId.eq(org_id))
        .one(conn)
        .await?)
}

/// Principals by id (for batched loading).
pub async fn principals_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<principal::Model>> {
    Ok(principal::Entity::find()
        .filter(principal::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?)
}

pub async fn find_organization<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<organization::Model> {
    organization::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("organization"))
}

/// Creates a service account in the actor's organization with its first token.
pub async fn create_service_account(
    db: &Db,
    actor: &Actor,
    name: &str,
    role: Role,
) -> Result<(principal::Model, IssuedToken)> {
    let name = PrincipalName::parse(name)?;
    let txn = crate::db::begin_write(db).await?;
    let account = principal::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(actor.org_id()),
        kind: Set(PrincipalKind::ServiceAccount.as_str().to_owned()),
        name: Set(name.as_str().to_owned()),
        role: Set(role.as_str().to_owned()),
        created_at: Set(super::now()),
        oidc_issuer: Set(None),
        oidc_subject: Set(None),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            Error::AlreadyExists(format!("a principal named {}", name.as_str()))
        } else {
            e.into()
        }
    })?;
    let description = Description::parse("initial token".to_owned())?;
    let issued = issue(
        &txn,
        &account,
        Some(actor.principal.id),
        Some(description),
        None,
    )
    .await?;
    let event = Event::allowed(
        "service_account.create",
        Target::principal(account.id, &account.name),
    )
    .with_detail(serde_json::json!({ "role": role.as_str(), "token": issued.record.id }));
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok((account, issued))
}

/// Issues another token for a principal of the actor's organization.
pub async fn create_token(
    db: &Db,
    actor: &Actor,
    principal_id: Uuid,
    description: Option<String>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedToken> {
    let description = description.map(Description::parse).transpose()?;
    if expires_at.is_some_and(|at| at <= super::now()) {
        return Err(Error::bad_input("`expiresAt` must be in the future"));
    }
    let owner = find_principal(db.read(), actor.org_id(), principal_id)
        .await?
        .ok_or_else(|| Error::not_found("principal"))?;
    // A person's credentials are their own: an admin issues tokens for service accounts
    // and for themself, never for another person (who would then act as them).
    if owner.kind == PrincipalKind::User.as_str() && owner.id != actor.principal.id {
        return Err(Error::Denied(format!(
            "{} is a person: only they may issue tokens for themself; create a service \
             account for a machine",
            owner.name
        )));
    }
    let txn = crate::db::begin_write(db).await?;
    let issued = issue(
        &txn,
        &owner,
        Some(actor.principal.id),
        description,
        expires_at,
    )
    .await?;
    let event = Event::allowed("token.create", Target::token(issued.record.id))
        .with_detail(serde_json::json!({ "principal": owner.name }));
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok(issued)
}

/// Revokes a token of the actor's organization. Revoking a revoked token is a no-op.
pub async fn revoke_token(db: &Db, actor: &Actor, token_id: Uuid) -> Result<api_token::Model> {
    let txn = crate::db::begin_write(db).await?;
    let revoked = api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(super::now()))
        .filter(api_token::Column::Id.eq(token_id))
        .filter(api_token::Column::OrgId.eq(actor.org_id()))
        .filter(api_token::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    let record = api_token::Entity::find_by_id(token_id)
        .filter(api_token::Column::OrgId.eq(actor.org_id()))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found("API token"))?;
    if revoked.rows_affected > 0 {
        audit::record(
            &txn,
            actor,
            Event::allowed("token.revoke", Target::token(token_id)),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(record)
}

fn principals_of(org_id: Uuid) -> sea_orm::Select<principal::Entity> {
    principal::Entity::find().filter(principal::Column::OrgId.eq(org_id))
}

/// The organization's principals, oldest first; the cursor is the id.
pub async fn list_principals<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<principal::Model>> {
    page.fetch(
        conn,
        principals_of(org_id),
        principal::Column::Id,
        Natural::Ascending,
    )
    .await
}

pub async fn count_principals<C: ConnectionTrait>(conn: &C, org_id: Uuid) -> Result<u64> {
    Ok(principals_of(org_id).count(conn).await?)
}

fn tokens_of(org_id: Uuid, principal_id: Option<Uuid>) -> sea_orm::Select<api_token::Entity> {
    let query = api_token::Entity::find().filter(api_token::Column::OrgId.eq(org_id));
    match principal_id {
        Some(principal_id) => query.filter(api_token::Column::PrincipalId.eq(principal_id)),
        None => query,
    }
}

/// The organization's API tokens (revoked and expired ones included), newest first,
/// optionally of one principal; the cursor is the id.
pub async fn list_tokens<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    principal_id: Option<Uuid>,
    page: &PageRequest<Uuid>,
) -> Result<Page<api_token::Model>> {
    let query = tokens_of(org_id, principal_id);
    page.fetch(conn, query, api_token::Column::Id, Natural::Descending)
        .await
}

pub async fn count_tokens<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    principal_id: Option<Uuid>,
) -> Result<u64> {
    Ok(tokens_of(org_id, principal_id).count(conn).await?)
}

/// A token of the actor's organization.
pub async fn find_token<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<api_token::Model>> {
    Ok(api_token::Entity::find_by_id(id)
        .filter(api_token::Column::OrgId.eq(org_id))
        .one(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prefix_length_and_entropy() {
        let a = mint().expect("mint");
        let b = mint().expect("mint");
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose_secret().len(), TOKEN_PREFIX.len() + TOKEN_BODY_LEN);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(hash_token(a.expose_secret()).len(), 64);
        assert!(!format!("{a:?}").contains(a.expose_secret()));
    }
}
