//! Console sessions of people who signed in with OpenID Connect (DESIGN §10 "People").
//!
//! A sign-in finds the `USER` principal made for the person's `(iss, sub)` at their first
//! sign-in (or makes it), sets its role from the ID token's claim, and opens a session. The
//! session id is `srs_` and 43 base64url characters (256 random bits), handed to the
//! browser in a cookie once; only its SHA-256 is stored, so a copy of the database opens
//! no session. A session ends at its absolute expiry, after the idle timeout without a
//! request, or when revoked (sign-out), whichever comes first. Sign-ins and sign-outs are
//! audited as `session.create` / `session.revoke` with a `SESSION` credential.
use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use entity::{console_session, organization, principal};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Actor, Credential, CredentialKind, Principal, PrincipalKind, PrincipalName, Role,
    audit::{self, Event, Target},
};
use crate::{Error, Result, crypto::random_bytes, db::Db};

pub const SESSION_PREFIX: &str = "srs_";
const SESSION_BODY_LEN: usize = 43;

/// How long sessions last.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// From sign-in, whatever happens.
    pub absolute: TimeDelta,
    /// Without a request.
    pub idle: TimeDelta,
}

/// A person as their provider vouched for them in a verified ID token.
#[derive(Clone, Debug)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// What to name a new principal (`preferred_username`, `email`…), made to fit.
    pub name_hint: Option<String>,
    /// The role the claim maps to, now.
    pub role: Role,
}

/// A session as handed to the browser, once. `Debug` is redacted.
pub struct IssuedSession {
    pub id: SecretString,
    pub record: console_session::Model,
}

impl fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSession")
            .field("id", &"[REDACTED]")
            .field("record", &self.record)
            .finish()
    }
}

/// A live session's principal.
#[derive(Clone, Debug)]
pub struct Found {
    pub session_id: Uuid,
    pub principal: Principal,
    pub issuer: String,
    pub subject: String,
}

impl Found {
    /// The credential, as the audit log names it (the session's row id, never its secret).
    pub fn credential(&self) -> Credential {
        credential(self.session_id, &self.issuer, &self.subject)
    }
}

fn credential(session_id: Uuid, issuer: &str, subject: &str) -> Credential {
    Credential {
        kind: CredentialKind::Session,
        id: Some(session_id),
        prefix: None,
        issuer: Some(issuer.to_owned()),
        subject: Some(subject.to_owned()),
    }
}

/// Whether `presented` has the shape of a session id (a cheap check before any lookup).
pub fn is_well_formed(presented: &str) -> bool {
    presented.len() == SESSION_PREFIX.len() + SESSION_BODY_LEN
        && presented.starts_with(SESSION_PREFIX)
}

fn hash(presented: &str) -> String {
    hex::encode(Sha256::digest(presented.as_bytes()))
}

fn mint() -> Result<SecretString> {
    let bytes = random_bytes::<32>().map_err(|e| Error::Internal(format!("rng: {e}")))?;
    Ok(SecretString::from(format!(
        "{SESSION_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

/// Signs `person` in to organization `org_name` (or the only one there is): their
/// principal, made at the first sign-in, with its role set from the claim now, and a new
/// session.
pub async fn sign_in(
    db: &Db,
    org_name: Option<&str>,
    person: &Person,
    lifetimes: Lifetimes,
    request_id: Option<String>,
) -> Result<(Principal, IssuedSession)> {
    let txn = crate::db::begin_write(db).await?;
    let org = organization_for(&txn, org_name).await?;
    let existing = principal::Entity::find()
        .filter(principal::Column::OidcIssuer.eq(&person.issuer))
        .filter(principal::Column::OidcSubject.eq(&person.subject))
        .one(&txn)
        .await?;
    let (row, previous_role) = match existing {
        Some(row) if row.org_id != org.id => {
            return Err(Error::Denied(
                "this person's principal belongs to another organization".into(),
            ));
        }
        Some(row) if row.role == person.role.as_str() => (row, None),
        Some(row) => {
            let previous = row.role.clone();
            let mut changed: principal::ActiveModel = row.into();
            changed.role = Set(person.role.as_str().to_owned());
            (changed.update(&txn).await?, Some(previous))
        }
        None => (create_person(&txn, org.id, person).await?, None),
    };
    let principal = Principal::try_from(row)?;
    let id = mint()?;
    let now = super::now();
    let record = console_session::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org.id),
        principal_id: Set(principal.id),
        session_hash: Set(hash(id.expose_secret())),
        oidc_issuer: Set(person.issuer.clone()),
        oidc_subject: Set(person.subject.clone()),
        created_at: Set(now),
        expires_at: Set(now + lifetimes.absolute),
        last_seen_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    let actor = Actor {
        principal: principal.clone(),
        request_id,
        credential: Some(credential(record.id, &person.issuer, &person.subject)),
    };
    let mut detail = serde_json::json!({
        "session": record.id,
        "role": principal.role.as_str(),
        "expiresAt": record.expires_at,
    });
    if let Some(previous) = previous_role {
        detail["previousRole"] = previous.into();
    }
    let event = Event::allowed(
        "session.create",
        Target::principal(principal.id, &principal.name),
    )
    .with_detail(detail);
    audit::record(&txn, &actor, event).await?;
    txn.commit().await?;
    Ok((principal, IssuedSession { id, record }))
}

/// The organization people sign in to: the one named, or the only one.
async fn organization_for<C: ConnectionTrait>(
    conn: &C,
    name: Option<&str>,
) -> Result<organization::Model> {
    if let Some(name) = name {
        return organization::Entity::find()
            .filter(organization::Column::Name.eq(name))
            .one(conn)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "STRONGROOM_OIDC_ORGANIZATION names {name:?}, which does not exist"
                ))
            });
    }
    let mut all = organization::Entity::find().all(conn).await?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(Error::Internal(
            "there is no organization to sign in to yet (run `strongroom bootstrap`)".into(),
        )),
        _ => Err(Error::Internal(
            "there are several organizations: name the one people sign in to with \
             STRONGROOM_OIDC_ORGANIZATION"
                .into(),
        )),
    }
}

/// A new `USER` principal for `person`, named after their hint (made to fit
/// [`PrincipalName`]); a name another principal has gets a suffix from their identity.
async fn create_person<C: ConnectionTrait>(
    conn: &C,
    org_id: Uuid,
    person: &Person,
) -> Result<principal::Model> {
    let base = fitting_name(person.name_hint.as_deref().unwrap_or(&person.subject));
    let identity = hex::encode(Sha256::digest(
        format!("{}\n{}", person.issuer, person.subject).as_bytes(),
    ));
    let suffixed = format!("{}-{}", truncated(&base, 55), &identity[..8]);
    for name in [base, suffixed] {
        let name = PrincipalName::parse(&name)?;
        let taken = principal::Entity::find()
            .filter(principal::Column::OrgId.eq(org_id))
            .filter(principal::Column::Name.eq(name.as_str()))
            .one(conn)
            .await?
            .is_some();
        if taken {
            continue;
        }
        let row = principal::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(org_id),
            kind: Set(PrincipalKind::User.as_str().to_owned()),
            name: Set(name.as_str().to_owned()),
            role: Set(person.role.as_str().to_owned()),
            created_at: Set(super::now()),
            oidc_issuer: Set(Some(person.issuer.clone())),
            oidc_subject: Set(Some(person.subject.clone())),
        }
        .insert(conn)
        .await?;
        return Ok(row);
    }
    Err(Error::AlreadyExists(
        "a principal with this person's name".into(),
    ))
}

/// `hint` in `[A-Za-z0-9_.-]`, 1–64 characters.
fn fitting_name(hint: &str) -> String {
    let name: String = hint
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    let name = truncated(name.trim_matches('-'), 64);
    if name.is_empty() {
        "user".to_owned()
    } else {
        name
    }
}

fn truncated(text: &str, at: usize) -> String {
    text.chars().take(at).collect()
}

/// The live session `presented` opens, if any: unrevoked, before its absolute end, and
/// used within the idle timeout as of `now`. With `touch`, the use is recorded (at most
/// one write per tenth of the idle timeout, so a busy page costs few writes).
pub async fn find(
    db: &Db,
    presented: &str,
    lifetimes: Lifetimes,
    touch: bool,
) -> Result<Option<Found>> {
    if !is_well_formed(presented) {
        return Ok(None);
    }
    let found = console_session::Entity::find()
        .filter(console_session::Column::SessionHash.eq(hash(presented)))
        .find_also_related(principal::Entity)
        .one(db.read())
        .await?;
    let Some((session, Some(principal))) = found else {
        return Ok(None);
    };
    let now = super::now();
    if !is_live(&session, lifetimes, now) {
        return Ok(None);
    }
    if touch && now - session.last_seen_at >= (lifetimes.idle / 10).min(TimeDelta::minutes(1)) {
        let touched = console_session::Entity::update_many()
            .col_expr(console_session::Column::LastSeenAt, Expr::value(now))
            .filter(console_session::Column::Id.eq(session.id))
            .exec(db.write())
            .await;
        if let Err(e) = touched {
            // The request goes on; the session may end a little earlier than it would.
            tracing::warn!(error = %e, "could not record a session's use");
        }
    }
    Ok(Some(Found {
        session_id: session.id,
        principal: Principal::try_from(principal)?,
        issuer: session.oidc_issuer,
        subject: session.oidc_subject,
    }))
}

fn is_live(session: &console_session::Model, lifetimes: Lifetimes, now: DateTime<Utc>) -> bool {
    session.revoked_at.is_none()
        && now < session.expires_at
        && now - session.last_seen_at < lifetimes.idle
}

/// Signs out: revokes the session `presented` opens, if it is live. Whether one was.
pub async fn sign_out(
    db: &Db,
    presented: &str,
    lifetimes: Lifetimes,
    request_id: Option<String>,
) -> Result<bool> {
    let Some(found) = find(db, presented, lifetimes, false).await? else {
        return Ok(false);
    };
    let txn = crate::db::begin_write(db).await?;
    let revoked = console_session::Entity::update_many()
        .col_expr(
            console_session::Column::RevokedAt,
            Expr::value(super::now()),
        )
        .filter(console_session::Column::Id.eq(found.session_id))
        .filter(console_session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if revoked.rows_affected > 0 {
        let actor = Actor {
            principal: found.principal.clone(),
            request_id,
            credential: Some(found.credential()),
        };
        let event = Event::allowed(
            "session.revoke",
            Target::principal(found.principal.id, &found.principal.name),
        )
        .with_detail(serde_json::json!({ "session": found.session_id }));
        audit::record(&txn, &actor, event).await?;
    }
    txn.commit().await?;
    Ok(revoked.rows_affected > 0)
}

/// Deletes the sessions past their absolute end (every session has ended by then, revoked
/// or idle or not): the sweep's. How many.
pub async fn prune(db: &Db) -> Result<u64> {
    let deleted = console_session::Entity::delete_many()
        .filter(console_session::Column::ExpiresAt.lt(super::now()))
        .exec(db.write())
        .await?;
    Ok(deleted.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_have_prefix_length_and_entropy() {
        let a = mint().expect("mint");
        let b = mint().expect("mint");
        assert!(is_well_formed(a.expose_secret()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!is_well_formed(&a.expose_secret()[1..]));
    }

    #[test]
    fn names_are_made_to_fit() {
        assert_eq!(fitting_name("alice@example.com"), "alice-example.com");
        assert_eq!(fitting_name("Zoë Ö"), "Zo");
        assert_eq!(fitting_name("@@@"), "user");
        assert_eq!(fitting_name(&"x".repeat(100)).len(), 64);
        for hint in ["alice@example.com", "@@@", "Zoë Ö", &"é".repeat(80)] {
            assert!(PrincipalName::parse(&fitting_name(hint)).is_ok(), "{hint}");
        }
    }
}
