//! Automatic persisted queries, Apollo's APQ protocol: a client sends only the SHA-256 of
//! its query (`extensions.persistedQuery`); the first time the server answers
//! `PERSISTED_QUERY_NOT_FOUND`, the client retries with the query and the hash, and the
//! server keeps the query under its hash. Queries sent by hash can travel as short `GET`s.
//!
//! Kept here rather than as async-graphql's `ApolloPersistedQueries` extension: every
//! installed extension adds work to every resolved field, its errors carry no code, and its
//! LRU bounds entries, not bytes. The query text is kept (a moka cache weighed in bytes,
//! each query at most [`MAX_QUERY_BYTES`]); it is parsed and checked like any other query
//! by the pipeline, so a persisted query passes the same limits, text rules and guards.
//!
//! Queries are kept **per organization** and only for an authenticated caller: the hash
//! is looked up after authentication, under the caller's organization, so one
//! organization can neither learn which queries another runs (a hash that answers without
//! `PERSISTED_QUERY_NOT_FOUND` would say so) nor plant a query for it, and a caller without
//! a valid token can neither fill the cache nor probe it.
use crate::error::Code;
use std::sync::Arc;

use async_graphql::{Request, ServerError};
use moka::sync::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::errors::coded;

/// Bytes of query text kept in all.
const CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// Longer queries are answered but not kept (clients then send them in full each time).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// The APQ extension's key in a request's `extensions`.
const EXTENSION: &str = "persistedQuery";

#[derive(Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

/// The persisted queries of this server process.
#[derive(Clone)]
pub struct PersistedQueries {
    /// By organization and hash.
    queries: Cache<(Uuid, [u8; 32]), Arc<str>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        let queries = Cache::builder()
            .max_capacity(CAPACITY_BYTES)
            .weigher(|_, query: &Arc<str>| u32::try_from(query.len()).unwrap_or(u32::MAX))
            .build();
        Self { queries }
    }
}

impl PersistedQueries {
    /// Resolves `request`'s persisted query, if it names one, for a caller of
    /// organization `org` (`None`: no valid token): fills in the query text from its
    /// hash, or checks the hash of the text given and keeps it (for an organization).
    pub fn resolve(&self, org: Option<Uuid>, request: &mut Request) -> Result<(), ServerError> {
        let Some(hash) = requested_hash(request)? else {
            return Ok(());
        };
        if request.query.is_empty() {
            let found = org.and_then(|org| self.queries.get(&(org, hash)));
            let query = found.ok_or_else(|| {
                // Apollo clients look for this message (and this code).
                coded("PersistedQueryNotFound", Code::PersistedQueryNotFound, None)
            })?;
            request.query = query.to_string();
            return Ok(());
        }
        let digest: [u8; 32] = Sha256::digest(request.query.as_bytes()).into();
        if digest != hash {
            return Err(coded(
                "`persistedQuery.sha256Hash` is not the SHA-256 of the query",
                Code::BadRequest,
                None,
            ));
        }
        if let Some(org) = org
            && request.query.len() <= MAX_QUERY_BYTES
        {
            self.queries
                .insert((org, hash), Arc::from(request.query.as_str()));
        }
        Ok(())
    }

    /// The text kept for organization `org` under the hash `request` names, when it
    /// sends no query of its own.
    pub fn lookup(&self, org: Uuid, request: &Request) -> Option<Arc<str>> {
        if !request.query.is_empty() {
            return None;
        }
        let hash = requested_hash(request).ok().flatten()?;
        self.queries.get(&(org, hash))
    }
}

/// The hash a request's `persistedQuery` extension names, if it has one.
fn requested_hash(request: &Request) -> Result<Option<[u8; 32]>, ServerError> {
    let Some(value) = request.extensions.get(EXTENSION) else {
        return Ok(None);
    };
    let refuse = || {
        coded(
            "`extensions.persistedQuery` is `{\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}`",
            Code::BadRequest,
            None,
        )
    };
    let persisted: PersistedQuery =
        async_graphql::from_value(value.clone()).map_err(|_| refuse())?;
    if persisted.version != 1 {
        return Err(refuse());
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&persisted.sha256_hash, &mut hash).map_err(|_| refuse())?;
    Ok(Some(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        let extension = async_graphql::value!({ "version": 1, "sha256Hash": hash });
        request.extensions.insert(EXTENSION.to_owned(), extension);
        request
    }

    fn sha256_hex(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    fn code(error: &ServerError) -> Option<String> {
        match error.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        }
    }

    const ORG: Option<Uuid> = Some(Uuid::from_u128(1));
    const OTHER_ORG: Uuid = Uuid::from_u128(2);

    #[test]
    fn kept_per_organization_and_never_for_a_caller_without_a_token() {
        let persisted = PersistedQueries::default();
        let query = "{ viewer { role } }";
        let hash = sha256_hex(query);
        persisted
            .resolve(None, &mut with_hash(query, &hash))
            .expect("answered without a token");
        let error = persisted
            .resolve(ORG, &mut with_hash("", &hash))
            .expect_err("not kept for a caller without a token");
        assert_eq!(code(&error).as_deref(), Some("PERSISTED_QUERY_NOT_FOUND"));

        persisted
            .resolve(ORG, &mut with_hash(query, &hash))
            .expect("registered");
        assert!(persisted.lookup(OTHER_ORG, &with_hash("", &hash)).is_none());
        let error = persisted
            .resolve(Some(OTHER_ORG), &mut with_hash("", &hash))
            .expect_err("another organization's");
        assert_eq!(code(&error).as_deref(), Some("PERSISTED_QUERY_NOT_FOUND"));
        let error = persisted
            .resolve(None, &mut with_hash("", &hash))
            .expect_err("no token, no lookup");
        assert_eq!(code(&error).as_deref(), Some("PERSISTED_QUERY_NOT_FOUND"));
    }

    #[test]
    fn unknown_then_registered_then_served_by_hash() {
        let persisted = PersistedQueries::default();
        let query = "{ viewer { role } }";
        let hash = sha256_hex(query);
        let error = persisted
            .resolve(ORG, &mut with_hash("", &hash))
            .expect_err("not known yet");
        assert_eq!(code(&error).as_deref(), Some("PERSISTED_QUERY_NOT_FOUND"));
        assert_eq!(error.message, "PersistedQueryNotFound");

        persisted
            .resolve(ORG, &mut with_hash(query, &hash))
            .expect("registered");
        let mut by_hash = with_hash("", &hash);
        persisted.resolve(ORG, &mut by_hash).expect("served");
        assert_eq!(by_hash.query, query);
        assert_eq!(
            persisted
                .lookup(Uuid::from_u128(1), &with_hash("", &hash))
                .as_deref(),
            Some(query)
        );
    }

    #[test]
    fn a_wrong_hash_or_a_malformed_extension_is_refused_and_nothing_is_kept() {
        let persisted = PersistedQueries::default();
        let query = "{ viewer { role } }";
        let wrong = sha256_hex("{ other }");
        let error = persisted
            .resolve(ORG, &mut with_hash(query, &wrong))
            .expect_err("wrong hash");
        assert_eq!(code(&error).as_deref(), Some("BAD_REQUEST"));
        assert!(
            persisted
                .lookup(Uuid::from_u128(1), &with_hash("", &wrong))
                .is_none()
        );
        for bad in ["", "xyz", &sha256_hex(query)[..10]] {
            let error = persisted
                .resolve(ORG, &mut with_hash("", bad))
                .expect_err("malformed");
            assert_eq!(code(&error).as_deref(), Some("BAD_REQUEST"), "{bad:?}");
        }
        let mut old = Request::new(query);
        let extension = async_graphql::value!({ "version": 2, "sha256Hash": sha256_hex(query) });
        old.extensions.insert(EXTENSION.to_owned(), extension);
        assert!(persisted.resolve(ORG, &mut old).is_err());
    }

    #[test]
    fn long_queries_are_answered_but_not_kept() {
        let persisted = PersistedQueries::default();
        let query = format!("{{ viewer {{ role }} }} #{}", "x".repeat(MAX_QUERY_BYTES));
        let hash = sha256_hex(&query);
        persisted
            .resolve(ORG, &mut with_hash(&query, &hash))
            .expect("answered");
        assert!(
            persisted
                .lookup(Uuid::from_u128(1), &with_hash("", &hash))
                .is_none()
        );
    }
}
