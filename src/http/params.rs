//! The GraphQL-over-HTTP request parameters — `query`, `operationName`, `variables`,
//! `extensions`, by the spec's names — read from a JSON POST body (one request or a batch)
//! or from a GET query string, into async-graphql requests.
//!
//! Read here rather than by async-graphql's own readers: those take a missing `query` for
//! an empty document and spell the GET parameter `operation_name`.
use crate::error::Code;
use async_graphql::{BatchRequest, Extensions, Request, Variables};
use axum::{
    body::Bytes,
    extract::{FromRequest, Query, Request as HttpRequest},
    http::{StatusCode, Uri, header::CONTENT_LENGTH},
    response::Response,
};
use serde::Deserialize;

use super::media::Media;

/// Apollo's automatic persisted queries (see `graphql::persisted`): a request that names a
/// query by its hash may leave `query` out.
const PERSISTED_QUERY: &str = "persistedQuery";

/// A body or query string that is not a GraphQL request. Nothing of what the client sent
/// is quoted back: a parser's message can hold a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Over the body limit (413).
    TooLarge,
    /// Not JSON, or not the parameters' shape (400).
    Malformed,
    /// No `query`, and no persisted query named instead (400).
    NoQuery,
}

impl Unreadable {
    pub fn answer(self, media: Media) -> Response {
        let (status, message) = match self {
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than the server accepts",
            ),
            Self::Malformed => (
                StatusCode::BAD_REQUEST,
                "the request is not a GraphQL request: send JSON like \
                 {\"query\": \"...\", \"variables\": {...}, \"operationName\": \"...\"}",
            ),
            Self::NoQuery => (
                StatusCode::BAD_REQUEST,
                "the request has no `query`: send the GraphQL document in it",
            ),
        };
        media.refusal(status, Code::BadRequest, message)
    }
}

/// One request as a JSON body holds it. `null` for an optional parameter is its absence.
#[derive(Deserialize)]
struct JsonParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    extensions: Extensions,
}

/// A JSON body: one request, or a batch of them (Apollo's batching).
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonBody {
    One(JsonParams),
    Many(Vec<JsonParams>),
}

/// One request as a GET query string holds it: `variables` and `extensions` as JSON text.
#[derive(Deserialize)]
struct QueryParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// Reads a JSON POST body (its `Content-Type` already checked) of at most `limit` bytes.
pub async fn from_body(request: HttpRequest, limit: usize) -> Result<BatchRequest, Unreadable> {
    // A declared length over the limit is refused before a byte is read.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Unreadable::TooLarge);
    }
    // Within the router's `DefaultBodyLimit` (the same limit), for bodies of no declared length.
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Unreadable::TooLarge,
            _ => Unreadable::Malformed,
        })?;
    from_json(&bytes)
}

fn from_json(bytes: &[u8]) -> Result<BatchRequest, Unreadable> {
    match serde_json::from_slice(bytes).map_err(|_| Unreadable::Malformed)? {
        JsonBody::One(params) => Ok(BatchRequest::Single(params.into_request()?)),
        JsonBody::Many(batch) if batch.is_empty() => Err(Unreadable::Malformed),
        JsonBody::Many(batch) => batch
            .into_iter()
            .map(JsonParams::into_request)
            .collect::<Result<_, _>>()
            .map(BatchRequest::Batch),
    }
}

impl JsonParams {
    fn into_request(self) -> Result<Request, Unreadable> {
        let mut request = Request::new(query_or_hash(self.query, &self.extensions)?);
        request.operation_name = self.operation_name;
        request.variables = self.variables;
        request.extensions = self.extensions;
        Ok(request)
    }
}

/// Reads a GET request's query string. An empty optional parameter is an absent one.
pub fn from_uri(uri: &Uri) -> Result<Request, Unreadable> {
    let Query(params) =
        Query::<QueryParams>::try_from_uri(uri).map_err(|_| Unreadable::Malformed)?;
    let present = |value: Option<String>| value.filter(|v| !v.is_empty());
    let json = |text: Option<String>| -> Result<Option<serde_json::Value>, Unreadable> {
        present(text)
            .map(|text| serde_json::from_str(&text).map_err(|_| Unreadable::Malformed))
            .transpose()
    };
    let variables: Variables = match json(params.variables)? {
        Some(value) => serde_json::from_value(value).map_err(|_| Unreadable::Malformed)?,
        None => Variables::default(),
    };
    let extensions: Extensions = match json(params.extensions)? {
        Some(value) => serde_json::from_value(value).map_err(|_| Unreadable::Malformed)?,
        None => Extensions::default(),
    };
    let mut request = Request::new(query_or_hash(params.query, &extensions)?);
    request.operation_name = present(params.operation_name);
    request.variables = variables;
    request.extensions = extensions;
    Ok(request)
}

/// The document, which is required unless a persisted query is named by its hash (the
/// pipeline then fills it in, or answers `PERSISTED_QUERY_NOT_FOUND`).
fn query_or_hash(query: Option<String>, extensions: &Extensions) -> Result<String, Unreadable> {
    match query {
        Some(query) => Ok(query),
        None if extensions.contains_key(PERSISTED_QUERY) => Ok(String::new()),
        None => Err(Unreadable::NoQuery),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Result<Request, Unreadable> {
        match from_json(body.as_bytes())? {
            BatchRequest::Single(request) => Ok(request),
            BatchRequest::Batch(_) => panic!("a batch from {body}"),
        }
    }

    #[test]
    fn json_parameters_by_the_spec_names() {
        let request = single(
            r#"{"query": "query Q($a: Int) { x }", "operationName": "Q",
                "variables": {"a": 1}, "extensions": {"k": "v"}, "unknown": true}"#,
        )
        .expect("a request");
        assert_eq!(request.query, "query Q($a: Int) { x }");
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        assert!(request.extensions.contains_key("k"));
        // `null` is absence; an empty document is still a document (it fails to parse).
        let request = single(
            r#"{"query": "", "operationName": null, "variables": null, "extensions": null}"#,
        )
        .expect("a request");
        assert_eq!(request.query, "");
        assert_eq!(request.operation_name, None);
    }

    #[test]
    fn a_query_is_required_unless_a_hash_names_it() {
        assert_eq!(
            single(r#"{"qeury": "{ x }"}"#).err(),
            Some(Unreadable::NoQuery)
        );
        assert_eq!(
            single(r#"{"query": null}"#).err(),
            Some(Unreadable::NoQuery)
        );
        let hashed = r#"{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}"#;
        assert_eq!(single(hashed).expect("a hash-only request").query, "");
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        for body in [
            "",
            "{ \"not a JSON",
            "[]",
            "42",
            r#"{"query": {"obj": "ect"}}"#,
            r#"{"query": ["array"]}"#,
            r#"{"query": "{ x }", "operationName": 0}"#,
            r#"{"query": "{ x }", "variables": "string"}"#,
            r#"{"query": "{ x }", "variables": [7]}"#,
            r#"{"query": "{ x }", "extensions": false}"#,
        ] {
            assert_eq!(
                from_json(body.as_bytes()).err(),
                Some(Unreadable::Malformed),
                "{body}"
            );
        }
    }

    #[test]
    fn batches_keep_their_order() {
        let batch = from_json(br#"[{"query": "{ a }"}, {"query": "{ b }"}]"#).expect("a batch");
        let queries: Vec<&str> = batch.iter().map(|r| r.query.as_str()).collect();
        assert_eq!(queries, ["{ a }", "{ b }"]);
        assert_eq!(
            from_json(br#"[{"query": "{ a }"}, {"qeury": "{ b }"}]"#).err(),
            Some(Unreadable::NoQuery)
        );
    }

    fn get(path_and_query: &str) -> Result<Request, Unreadable> {
        from_uri(&path_and_query.parse::<Uri>().expect("a URI"))
    }

    #[test]
    fn get_parameters_by_the_spec_names() {
        let request = get("/graphql?query=query%20Q%20%7B%20x%20%7D&operationName=Q\
             &variables=%7B%22a%22%3A1%7D&extensions=")
        .expect("a request");
        assert_eq!(request.query, "query Q { x }");
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        assert!(request.extensions.is_empty());
        // Empty optional parameters are absent ones.
        let request =
            get("/graphql?query=%7B%20x%20%7D&operationName=&variables=").expect("a request");
        assert_eq!(request.operation_name, None);
        assert!(request.variables.is_empty());
    }

    #[test]
    fn get_refusals() {
        assert_eq!(get("/graphql").err(), Some(Unreadable::NoQuery));
        assert_eq!(
            get("/graphql?query=%7B%20x%20%7D&variables=%7Bnot").err(),
            Some(Unreadable::Malformed)
        );
        assert_eq!(
            get("/graphql?query=%7B%20x%20%7D&variables=%5B1%5D").err(),
            Some(Unreadable::Malformed)
        );
        let hashed = "/graphql?extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C\
                      %22sha256Hash%22%3A%22ab%22%7D%7D";
        assert_eq!(get(hashed).expect("a hash-only request").query, "");
    }
}
