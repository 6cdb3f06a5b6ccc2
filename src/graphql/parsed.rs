//! Parsed documents, kept so that a query a client sends again is not parsed again.
//!
//! Clients send the same few documents over and over (the console's page, a pipeline's
//! `resourceSecrets`), and async-graphql's parser is a PEG parser that costs more than many
//! of the resolvers it feeds: on `{ __typename }` it was the largest single cost of the
//! pipeline. A document is a pure function of its text, so the parsed form is kept under
//! the text's SHA-256 and handed to async-graphql ready-made; every check that follows
//! (limits, text rules, validation, guards) still runs on every request.
//!
//! Like persisted queries (and for the same reasons) documents are kept **per
//! organization** and only for an authenticated caller: whether a text answers quickly
//! tells nothing across organizations, and a caller without a valid token cannot fill the
//! cache. Only documents that parse are kept, and none that holds a mutation (its text may
//! carry a value: `createSecret(input: { value: "…" })`); the cache is bounded in bytes of
//! query text.
use std::sync::Arc;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, OperationType},
};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::persisted::MAX_QUERY_BYTES;

/// Bytes of query text whose documents are kept (a parsed document takes a few times its
/// text).
const CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// Whether `document` holds a mutation, which may carry a value in its text: those are
/// parsed each time and never kept, so no value outlives its request in this cache.
fn has_mutation(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, operation)| operation.node.ty == OperationType::Mutation)
}

/// The parsed documents of this server process, by organization and SHA-256 of the text.
#[derive(Clone)]
pub struct ParsedDocuments {
    documents: Cache<(Uuid, [u8; 32]), Kept>,
}

#[derive(Clone)]
struct Kept {
    document: Arc<ExecutableDocument>,
    /// Its text's length, which weighs it.
    bytes: u32,
}

impl Default for ParsedDocuments {
    fn default() -> Self {
        let documents = Cache::builder()
            .max_capacity(CAPACITY_BYTES)
            .weigher(|_, kept: &Kept| kept.bytes)
            .build();
        Self { documents }
    }
}

impl ParsedDocuments {
    /// `query` parsed: the document kept for organization `org` (`None`: no valid token,
    /// nothing kept), or parsed now.
    pub fn parse(
        &self,
        org: Option<Uuid>,
        query: &str,
    ) -> Result<Arc<ExecutableDocument>, ServerError> {
        let key = org
            .filter(|_| query.len() <= MAX_QUERY_BYTES)
            .map(|org| (org, Sha256::digest(query.as_bytes()).into()));
        if let Some(key) = &key
            && let Some(kept) = self.documents.get(key)
        {
            return Ok(kept.document);
        }
        let document = Self::parse_fresh(query)?;
        if let Some(key) = key
            && !has_mutation(&document)
        {
            let bytes = u32::try_from(query.len()).unwrap_or(u32::MAX);
            self.documents.insert(
                key,
                Kept {
                    document: document.clone(),
                    bytes,
                },
            );
        }
        Ok(document)
    }

    /// `query` parsed, nothing kept.
    pub fn parse_fresh(query: &str) -> Result<Arc<ExecutableDocument>, ServerError> {
        Ok(Arc::new(async_graphql::parser::parse_query(query)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_kept_per_organization_and_only_for_one() {
        let documents = ParsedDocuments::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = documents.parse(Some(a), "{ me { id } }").unwrap();
        let again = documents.parse(Some(a), "{ me { id } }").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the kept document is reused");
        let other = documents.parse(Some(b), "{ me { id } }").unwrap();
        assert!(!Arc::ptr_eq(&first, &other), "not across organizations");
        let anonymous = documents.parse(None, "{ me { id } }").unwrap();
        let anonymous_again = documents.parse(None, "{ me { id } }").unwrap();
        assert!(
            !Arc::ptr_eq(&anonymous, &anonymous_again),
            "nothing kept without a token"
        );
    }

    #[test]
    fn a_document_with_a_mutation_is_never_kept() {
        let documents = ParsedDocuments::default();
        let org = Some(Uuid::new_v4());
        let text = "query Q { me { id } } \
                    mutation M { createSecret(input: { name: \"A\", value: \"hunter2\" }) { secret { id } } }";
        let first = documents.parse(org, text).unwrap();
        let again = documents.parse(org, text).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        documents.documents.run_pending_tasks();
        assert_eq!(documents.documents.entry_count(), 0);
    }

    #[test]
    fn a_text_that_does_not_parse_fails_every_time_and_is_not_kept() {
        let documents = ParsedDocuments::default();
        let org = Some(Uuid::new_v4());
        for _ in 0..2 {
            assert!(documents.parse(org, "{ me { id ").is_err());
        }
        documents.documents.run_pending_tasks();
        assert_eq!(documents.documents.entry_count(), 0);
    }
}
