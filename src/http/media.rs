//! GraphQL over HTTP, the media-type rules: which response media type a client gets (its
//! `Accept` header, RFC 9110 negotiation), which request bodies are read (`Content-Type`),
//! and how a GraphQL response maps onto a status and a body under the chosen type.
//!
//! - `application/graphql-response+json`: a *request error* (the document does not parse
//!   or validate, the variables do not fit, the operation cannot be chosen, a persisted
//!   query is unknown) is a 400 without a `data` entry; once execution began the answer
//!   is 200 with `data`, field errors and all.
//! - `application/json` (legacy clients, and any client that sends no `Accept` or `*/*`):
//!   every GraphQL response is 200, as the spec asks, so a client that reads only 2xx
//!   bodies still sees the errors; a request error has no `data` entry here either.
//! - Neither acceptable: 406.
//!
//! Refusals made before GraphQL runs (400, 405, 413, 415, 429, 503) are GraphQL-shaped too
//! and travel under the negotiated type.
use crate::error::Code;
use std::collections::BTreeMap;

use async_graphql::{BatchResponse, ServerError, Value};
use axum::{
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{ACCEPT, CONTENT_TYPE},
    },
    response::{IntoResponse, Response},
};
use mime::Mime;
use serde::Serialize;

use crate::graphql::error_response;

/// A response media type this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: the spec's own type; status codes carry meaning.
    GraphqlResponse,
    /// `application/json`: the legacy type; every GraphQL response is a 200.
    Json,
}

/// How closely an `Accept` range names a media type (RFC 9110 §12.5.1: the most specific
/// matching range decides a type's quality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    /// `*/*`
    Any,
    /// `application/*`
    Subtypes,
    /// `application/json`
    Exact,
}

/// The quality an `Accept` header gives one media type, from its most specific range.
#[derive(Clone, Copy, Debug)]
struct Preference {
    q: f32,
    specificity: Specificity,
}

impl Media {
    const ALL: [Self; 2] = [Self::GraphqlResponse, Self::Json];

    fn essence(self) -> &'static str {
        match self {
            Self::GraphqlResponse => "application/graphql-response+json",
            Self::Json => "application/json",
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }

    /// The type to answer in, by the client's `Accept`; `None` when it accepts neither.
    ///
    /// No `Accept` (or an empty one) is taken as `application/json`, as the spec asks of
    /// servers while legacy clients are about; so is `*/*` and `application/*`: a wildcard
    /// never picks the newer type over the one every client reads. Otherwise the higher
    /// quality wins, then the more specific range; between two types named outright with
    /// the same quality, `application/graphql-response+json`.
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let values = headers.get_all(ACCEPT);
        if values.iter().all(|v| v.as_bytes().trim_ascii().is_empty()) {
            return Some(Self::Json);
        }
        let ranges: Vec<Mime> = values
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(list_elements)
            .filter_map(parse_media)
            .collect();
        let rank = |media: Self| {
            let preference = media.preference(&ranges)?;
            // On a tie, a type named outright favours the spec's own; a wildcard, the legacy.
            let favoured = match preference.specificity {
                Specificity::Exact => media == Self::GraphqlResponse,
                Specificity::Subtypes | Specificity::Any => media == Self::Json,
            };
            (preference.q > 0.0).then_some((preference.q, preference.specificity, favoured))
        };
        Self::ALL
            .into_iter()
            .filter_map(|media| rank(media).map(|rank| (rank, media)))
            .max_by(|(a, _), (b, _)| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .map(|(_, media)| media)
    }

    /// The type for a refusal that is not about negotiation (load, rate limit): the
    /// negotiated one, else `application/json`.
    pub fn for_refusal(headers: &HeaderMap) -> Self {
        Self::negotiate(headers).unwrap_or(Self::Json)
    }

    /// The quality `ranges` give this type, from the most specific range that matches it.
    fn preference(self, ranges: &[Mime]) -> Option<Preference> {
        let (kind, _) = self.essence().split_once('/')?;
        let mut best: Option<Preference> = None;
        for range in ranges {
            let specificity = if range.type_() == mime::STAR {
                Specificity::Any
            } else if !range.type_().as_str().eq_ignore_ascii_case(kind) {
                continue;
            } else if range.subtype() == mime::STAR {
                Specificity::Subtypes
            } else if range.essence_str().eq_ignore_ascii_case(self.essence()) {
                Specificity::Exact
            } else {
                continue;
            };
            // We only ever answer in UTF-8: a range asking for another charset is not us.
            if range
                .get_param(mime::CHARSET)
                .is_some_and(|charset| !is_utf8(charset.as_str()))
            {
                continue;
            }
            let Some(q) = quality(range) else { continue };
            if best.is_none_or(|b| specificity > b.specificity) {
                best = Some(Preference { q, specificity });
            }
        }
        best
    }

    /// A GraphQL-shaped refusal made outside GraphQL (`{"errors": [...]}`, no `data`).
    pub fn refusal(self, status: StatusCode, code: Code, message: &str) -> Response {
        self.respond(status, &error_response(code, message))
    }

    /// `body` as JSON under this type, with `status`.
    pub fn respond(self, status: StatusCode, body: &impl Serialize) -> Response {
        match serde_json::to_vec(body) {
            Ok(bytes) => (status, [(CONTENT_TYPE, self.content_type())], bytes).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "could not serialize a response");
                let body = error_response(Code::InternalServerError, "internal server error");
                let bytes = body.to_string().into_bytes();
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                (status, [(CONTENT_TYPE, self.content_type())], bytes).into_response()
            }
        }
    }

    /// The HTTP answer to what async-graphql returned. A batch (our extension; the spec
    /// knows single requests only) is a 200 whose entries each follow the body rules: one
    /// status cannot speak for operations that fared differently.
    pub fn graphql(self, response: BatchResponse) -> Response {
        let headers: Vec<_> = response.http_headers_iter().collect();
        let mut answer = match &response {
            BatchResponse::Single(single) => {
                self.respond(self.status_of(single), &Answer::from(single))
            }
            BatchResponse::Batch(batch) => {
                let answers: Vec<Answer<'_>> = batch.iter().map(Answer::from).collect();
                self.respond(StatusCode::OK, &answers)
            }
        };
        answer.headers_mut().extend(headers);
        answer
    }

    /// 200, except for a request error under `application/graphql-response+json`: the
    /// client's (400), or ours when the server failed before executing (500).
    fn status_of(self, response: &async_graphql::Response) -> StatusCode {
        if self == Self::Json || !is_request_error(response) {
            return StatusCode::OK;
        }
        let internal = response
            .errors
            .iter()
            .any(|e| code_of(e) == Some("INTERNAL_SERVER_ERROR"));
        if internal {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        }
    }
}

/// The answer to a client that accepts neither type: 406, the spec's recommended choice,
/// with the reason in `application/json` (the default type) for whoever reads it.
pub fn not_acceptable() -> Response {
    Media::Json.refusal(
        StatusCode::NOT_ACCEPTABLE,
        Code::BadRequest,
        "this endpoint answers in application/graphql-response+json or application/json; \
         the Accept header allows neither",
    )
}

/// Whether a POST body's `Content-Type` is one we read: `application/json` in UTF-8 (the
/// default). Anything else, or none, is refused (415) rather than guessed at: a form or
/// `text/plain` POST is also what a cross-site page can send without a preflight.
pub fn is_json_body(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let Some(content_type) = content_type.to_str().ok().and_then(parse_media) else {
        return false;
    };
    content_type
        .essence_str()
        .eq_ignore_ascii_case(Media::Json.essence())
        && content_type
            .get_param(mime::CHARSET)
            .is_none_or(|charset| is_utf8(charset.as_str()))
}

/// A request error is raised before execution begins, and then the GraphQL spec leaves
/// `data` out. async-graphql answers those with `data: null` and errors that have no
/// path; a field error always has one (the pipeline sees to it), so a `null` that
/// execution produced is still told apart.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code),
        _ => None,
    }
}

/// One GraphQL response as sent: without `data` after a request error.
#[derive(Serialize)]
struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "no_extensions")]
    extensions: &'a BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "no_errors")]
    errors: &'a [ServerError],
}

impl<'a> From<&'a async_graphql::Response> for Answer<'a> {
    fn from(response: &'a async_graphql::Response) -> Self {
        Self {
            data: (!is_request_error(response)).then_some(&response.data),
            extensions: &response.extensions,
            errors: &response.errors,
        }
    }
}

fn no_extensions(extensions: &&BTreeMap<String, Value>) -> bool {
    extensions.is_empty()
}

fn no_errors(errors: &&[ServerError]) -> bool {
    errors.is_empty()
}

fn is_utf8(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
}

/// A media type or range. The `mime` crate reads no whitespace before a `;`, which RFC 9110
/// allows (`OWS ";" OWS`), so that is dropped first.
fn parse_media(text: &str) -> Option<Mime> {
    let parts: Vec<&str> = text.split(';').map(str::trim).collect();
    parts.join(";").parse().ok()
}

/// A range's `q`, 1 when absent; a malformed one makes the range unusable.
fn quality(range: &Mime) -> Option<f32> {
    match range.get_param("q") {
        None => Some(1.0),
        Some(q) => q
            .as_str()
            .parse::<f32>()
            .ok()
            .filter(|q| (0.0..=1.0).contains(q)),
    }
}

/// The elements of a comma-separated header list, splitting only outside quoted strings.
fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, byte) in value.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                elements.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    elements.push(&value[start..]);
    elements
        .into_iter()
        .map(str::trim)
        .filter(|element| !element.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                ACCEPT,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers
    }

    fn negotiated(value: &str) -> Option<Media> {
        Media::negotiate(&accept(&[value]))
    }

    #[test]
    fn no_accept_and_wildcards_get_json() {
        assert_eq!(Media::negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(negotiated(""), Some(Media::Json));
        assert_eq!(negotiated("*/*"), Some(Media::Json));
        assert_eq!(negotiated("application/*"), Some(Media::Json));
        // A browser's address bar.
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(negotiated(browser), Some(Media::Json));
    }

    #[test]
    fn clients_get_the_type_they_prefer() {
        // Apollo Client 4, the spec's recommendation.
        let apollo = "application/graphql-response+json,application/json;q=0.9";
        assert_eq!(negotiated(apollo), Some(Media::GraphqlResponse));
        // GraphiQL.
        let graphiql = "application/json, multipart/mixed";
        assert_eq!(negotiated(graphiql), Some(Media::Json));
        assert_eq!(negotiated("application/json"), Some(Media::Json));
        assert_eq!(
            negotiated("application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        // Named alike, the spec's own type; otherwise the quality decides.
        assert_eq!(
            negotiated("application/json, application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiated("application/graphql-response+json;q=0.5, application/json"),
            Some(Media::Json)
        );
        // A wildcard speaks for what is not named.
        assert_eq!(
            negotiated("application/json;q=0, */*"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiated("application/graphql-response+json;q=0.5, */*"),
            Some(Media::Json)
        );
        // Case, spaces and several header lines.
        assert_eq!(
            negotiated("Application/GraphQL-Response+JSON ; q=1"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            Media::negotiate(&accept(&["text/html", "application/json"])),
            Some(Media::Json)
        );
    }

    #[test]
    fn charset_must_be_utf8() {
        assert_eq!(
            negotiated("application/json; charset=utf-8"),
            Some(Media::Json)
        );
        assert_eq!(
            negotiated("application/graphql-response+json; charset=UTF-8"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(negotiated("application/json; charset=iso-8859-1"), None);
        assert_eq!(
            negotiated("application/graphql-response+json; charset=latin1, application/json"),
            Some(Media::Json)
        );
    }

    #[test]
    fn nothing_acceptable_is_none() {
        assert_eq!(negotiated("text/html"), None);
        assert_eq!(negotiated("application/xml, text/*"), None);
        assert_eq!(negotiated("*/*;q=0"), None);
        assert_eq!(negotiated("application/json;q=0"), None);
        assert_eq!(negotiated("not a media type"), None);
        // A malformed quality makes its range unusable, not the header.
        assert_eq!(
            negotiated("application/graphql-response+json;q=2, application/json"),
            Some(Media::Json)
        );
    }

    #[test]
    fn quoted_commas_do_not_split_elements() {
        assert_eq!(
            list_elements(r#"text/html;x="a,b\"c", application/json ,"#).collect::<Vec<_>>(),
            [r#"text/html;x="a,b\"c""#, "application/json"]
        );
        assert_eq!(
            negotiated(r#"text/html;x="a,application/json""#),
            None,
            "a type inside a quoted parameter is not offered"
        );
    }

    #[test]
    fn only_utf8_json_bodies_are_read() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).expect("a value"));
            is_json_body(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON;charset=UTF-8"));
        assert!(with("application/json ; charset=\"utf-8\""));
        assert!(!with("application/json; charset=utf-16"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("application/graphql-response+json"));
        assert!(!is_json_body(&HeaderMap::new()));
    }

    fn response(data: Value, errors: Vec<ServerError>) -> async_graphql::Response {
        let mut response = async_graphql::Response::new(data);
        response.errors = errors;
        response
    }

    fn field_error() -> ServerError {
        let mut error = ServerError::new("refused", None);
        error.path = vec![async_graphql::PathSegment::Field("secret".to_owned())];
        error
    }

    #[test]
    fn request_errors_are_told_from_execution() {
        let parse = ServerError::new("syntax error", None);
        assert!(is_request_error(&response(Value::Null, vec![parse])));
        // A non-null root field that failed nulls `data`; the request still executed.
        assert!(!is_request_error(&response(
            Value::Null,
            vec![field_error()]
        )));
        let data = async_graphql::value!({ "secret": null });
        assert!(!is_request_error(&response(data, vec![field_error()])));
        assert!(!is_request_error(&response(Value::Null, vec![])));
    }

    #[test]
    fn a_request_error_has_no_data_entry() {
        let parse = ServerError::new("syntax error", None);
        let failed = response(Value::Null, vec![parse]);
        let body = serde_json::to_value(Answer::from(&failed)).expect("JSON");
        assert!(body.get("data").is_none(), "{body}");
        let executed = response(Value::Null, vec![field_error()]);
        let body = serde_json::to_value(Answer::from(&executed)).expect("JSON");
        assert_eq!(body.get("data"), Some(&serde_json::Value::Null), "{body}");
        assert_eq!(
            Media::GraphqlResponse.status_of(&failed),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(Media::Json.status_of(&failed), StatusCode::OK);
        assert_eq!(Media::GraphqlResponse.status_of(&executed), StatusCode::OK);
    }
}
