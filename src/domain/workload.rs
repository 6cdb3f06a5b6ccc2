//! Workload identity (DESIGN §10): which JWTs may be exchanged for a short-lived token of
//! which service account. An identity trusts one issuer and one audience, and binds
//! claims (`repository` = `acme/*`); a JWT is exchanged only if exactly one identity
//! matches it. Verifying the JWT itself is `crate::oidc`'s.
use chrono::{DateTime, TimeDelta, Utc};
use entity::{principal, workload_identity};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    Actor, Description, Natural, Page, PageRequest, PrincipalKind,
    audit::{self, Event, Outcome, Target},
    identity::{self, IssuedToken},
    now,
};
use crate::{
    Error, Result,
    db::{self, Db},
    oidc::{self, Verified},
};

/// Bound claims per identity, at most.
pub const MAX_BOUND_CLAIMS: usize = 32;
/// The lifetime of an exchanged token, in seconds: at least, at most, by default.
pub const LIFETIME_RANGE: std::ops::RangeInclusive<i32> = 60..=3600;
pub const DEFAULT_LIFETIME: i32 = 900;

/// A claim the JWT must carry, with a value matching `pattern` (`*` matches any run of
/// characters, everything else itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMatch {
    pub claim: String,
    pub pattern: String,
}

impl ClaimMatch {
    /// Whether `claims` holds this claim with a matching value (a string, or a number or
    /// boolean as written).
    fn matches(&self, claims: &serde_json::Map<String, Value>) -> bool {
        let value = match claims.get(&self.claim) {
            Some(Value::String(text)) => text.clone(),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => value.to_string(),
            _ => return false,
        };
        wildcard(&self.pattern, &value)
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all: an exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

pub struct NewIdentity {
    pub issuer: String,
    pub audience: String,
    pub bound_claims: Vec<ClaimMatch>,
    pub principal_id: Uuid,
    pub token_lifetime_seconds: i32,
}

pub fn bound_claims(row: &workload_identity::Model) -> Vec<ClaimMatch> {
    serde_json::from_value(row.bound_claims.clone()).unwrap_or_default()
}

/// Creates an identity for a service account of the actor's organization. Audited.
pub async fn create(db: &Db, actor: &Actor, new: NewIdentity) -> Result<workload_identity::Model> {
    oidc::check_issuer_url(&new.issuer).map_err(|e| Error::bad_input(format!("issuer {e}")))?;
    if new.audience.trim().is_empty() {
        return Err(Error::bad_input("the audience may not be empty"));
    }
    if !LIFETIME_RANGE.contains(&new.token_lifetime_seconds) {
        return Err(Error::bad_input(format!(
            "tokenLifetimeSeconds is {} to {} seconds",
            LIFETIME_RANGE.start(),
            LIFETIME_RANGE.end()
        )));
    }
    if new.bound_claims.len() > MAX_BOUND_CLAIMS
        || new
            .bound_claims
            .iter()
            .any(|c| c.claim.is_empty() || c.pattern.is_empty())
    {
        return Err(Error::bad_input(format!(
            "boundClaims: at most {MAX_BOUND_CLAIMS}, each with a claim and a pattern"
        )));
    }
    for text in [&new.issuer, &new.audience]
        .into_iter()
        .chain(new.bound_claims.iter().flat_map(|c| [&c.claim, &c.pattern]))
    {
        Description::parse(text.clone())?;
    }
    let account = identity::find_principal(db.read(), actor.org_id(), new.principal_id)
        .await?
        .ok_or_else(|| Error::not_found("principal"))?;
    if account.kind != PrincipalKind::ServiceAccount.as_str() {
        return Err(Error::bad_input(format!(
            "{} is not a service account: workload identities act as service accounts",
            account.name
        )));
    }
    let txn = db::begin_write(db).await?;
    let row = workload_identity::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(actor.org_id()),
        issuer: Set(new.issuer),
        audience: Set(new.audience),
        bound_claims: Set(serde_json::to_value(&new.bound_claims)
            .map_err(|e| Error::Internal(format!("bound claims: {e}")))?),
        principal_id: Set(account.id),
        token_lifetime_seconds: Set(new.token_lifetime_seconds),
        created_at: Set(now()),
        created_by: Set(Some(actor.principal.id)),
    }
    .insert(&txn)
    .await?;
    let event = Event::allowed(
        "workload_identity.create",
        Target::principal(account.id, &account.name),
    )
    .with_detail(serde_json::json!({
        "identityId": row.id,
        "issuer": row.issuer,
        "audience": row.audience,
        "boundClaims": row.bound_claims,
    }));
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok(row)
}

/// Deletes an identity: its JWTs are exchanged no more (tokens already issued run out on
/// their own, within their lifetime). Audited.
pub async fn delete(db: &Db, actor: &Actor, id: Uuid) -> Result<workload_identity::Model> {
    let txn = db::begin_write(db).await?;
    let row = workload_identity::Entity::find_by_id(id)
        .filter(workload_identity::Column::OrgId.eq(actor.org_id()))
        .one(&txn)
        .await?
        .ok_or_else(|| Error::not_found("workload identity"))?;
    workload_identity::Entity::delete_by_id(row.id)
        .exec(&txn)
        .await?;
    let event = Event::untargeted("workload_identity.delete", Outcome::Allowed).with_detail(
        serde_json::json!({
            "identityId": row.id,
            "issuer": row.issuer,
            "principalId": row.principal_id,
        }),
    );
    audit::record(&txn, actor, event).await?;
    txn.commit().await?;
    Ok(row)
}

fn of_org(org_id: Uuid) -> sea_orm::Select<workload_identity::Entity> {
    workload_identity::Entity::find().filter(workload_identity::Column::OrgId.eq(org_id))
}

/// A page of the organization's identities, oldest first.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<workload_identity::Model>> {
    page.fetch(
        conn,
        of_org(org_id),
        workload_identity::Column::Id,
        Natural::Ascending,
    )
    .await
}

pub async fn count<C: ConnectionTrait>(conn: &C, org_id: Uuid) -> Result<u64> {
    Ok(of_org(org_id).count(conn).await?)
}

/// Every identity (of any organization) that trusts `issuer`.
pub async fn trusting<C: ConnectionTrait>(
    conn: &C,
    issuer: &str,
) -> Result<Vec<workload_identity::Model>> {
    Ok(workload_identity::Entity::find()
        .filter(workload_identity::Column::Issuer.eq(issuer))
        .all(conn)
        .await?)
}

/// The identities of `candidates` that `jwt` matches: its audience and every bound claim.
pub fn matching<'c>(
    candidates: &'c [workload_identity::Model],
    jwt: &Verified,
) -> Vec<&'c workload_identity::Model> {
    candidates
        .iter()
        .filter(|identity| jwt.audiences.iter().any(|aud| aud == &identity.audience))
        .filter(|identity| {
            bound_claims(identity)
                .iter()
                .all(|c| c.matches(&jwt.claims))
        })
        .collect()
}

/// Issues a token for `identity`'s service account, expiring at the JWT's `exp` or after
/// the identity's lifetime, whichever comes first. Audited (`token.exchange`), with the
/// JWT's `iss`, `sub` and `jti`.
pub async fn exchange(
    db: &Db,
    identity: &workload_identity::Model,
    jwt: &Verified,
    request_id: Option<String>,
) -> Result<IssuedToken> {
    let account = principal::Entity::find_by_id(identity.principal_id)
        .one(db.read())
        .await?
        .ok_or_else(|| Error::not_found("principal"))?;
    let at = now();
    let by_lifetime = at + TimeDelta::seconds(i64::from(identity.token_lifetime_seconds));
    let by_jwt = DateTime::<Utc>::from_timestamp(jwt.expires_at, 0).unwrap_or(at);
    let expires_at = by_lifetime.min(by_jwt);
    let description = Description::parse(format!(
        "exchanged for a JWT of {} (sub {})",
        jwt.issuer, jwt.subject
    ))
    .ok();
    let txn = db::begin_write(db).await?;
    let issued = identity::issue_with(
        &txn,
        &account,
        None,
        description,
        Some(expires_at),
        Some((jwt.issuer.clone(), jwt.subject.clone())),
    )
    .await?;
    let actor = Actor {
        principal: super::Principal::try_from(account)?,
        request_id,
        credential: Some(super::Credential {
            kind: super::CredentialKind::Oidc,
            id: None,
            prefix: None,
            issuer: Some(jwt.issuer.clone()),
            subject: Some(jwt.subject.clone()),
        }),
    };
    let event = Event::allowed("token.exchange", Target::token(issued.record.id)).with_detail(
        serde_json::json!({
            "iss": jwt.issuer, "sub": jwt.subject, "jti": jwt.jwt_id,
            "identityId": identity.id, "expiresAt": expires_at,
        }),
    );
    audit::record(&txn, &actor, event).await?;
    txn.commit().await?;
    Ok(issued)
}

/// Audits a refused exchange in each organization that trusts the issuer (an unknown
/// issuer has no organization to tell; the log has it).
pub async fn audit_refusal(
    db: &Db,
    candidates: &[workload_identity::Model],
    issuer: &str,
    jwt: Option<&Verified>,
    reason: &str,
) {
    let mut orgs: Vec<Uuid> = candidates.iter().map(|c| c.org_id).collect();
    orgs.sort();
    orgs.dedup();
    for org_id in orgs {
        let event =
            Event::untargeted("token.exchange", Outcome::Denied).with_detail(serde_json::json!({
                "iss": issuer,
                "sub": jwt.map(|j| j.subject.as_str()),
                "jti": jwt.and_then(|j| j.jwt_id.as_deref()),
                "reason": reason,
            }));
        if let Err(e) = audit::record_for(db.write(), org_id, None, None, event).await {
            tracing::error!(error = %e, "could not audit a refused token exchange");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        for (pattern, text, expected) in [
            ("acme/etl", "acme/etl", true),
            ("acme/etl", "acme/etl2", false),
            ("acme/*", "acme/etl", true),
            ("acme/*", "other/etl", false),
            ("refs/heads/*", "refs/heads/main", true),
            ("*", "", true),
            ("*main", "refs/heads/main", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            (
                "repo:acme/*:ref:refs/heads/main",
                "repo:acme/etl:ref:refs/heads/main",
                true,
            ),
            (
                "repo:acme/*:ref:refs/heads/main",
                "repo:acme/etl:ref:refs/heads/dev",
                false,
            ),
        ] {
            assert_eq!(wildcard(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
