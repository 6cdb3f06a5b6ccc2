//! GraphQL over HTTP, to the letter: the `graphql-http` package's conformance audit finds
//! no failed MUST or SHOULD, and each media-type rule is spelled out — which type an
//! `Accept` header gets (406 when neither), the status and `data` entry of a request error
//! under `application/graphql-response+json` (400, none) and `application/json` (200,
//! none), field errors (200 with `data` under both), what a POST body must be (415, 413,
//! 400), GET's parameters, batches, Apollo's persisted queries, and the server's own
//! refusals (405, 429, 503) in the negotiated type. Every answer says
//! `Cache-Control: no-store`. No store involved: SQLite only.
use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use reqwest::{StatusCode, Url, header::HeaderMap};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{MAX_BATCH, Store, TestApp, error_code, node_script};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
/// What Apollo Client 4's `HttpLink` sends (and the spec recommends).
const APOLLO_CLIENT_4: &str = "application/graphql-response+json,application/json;q=0.9";
/// What GraphiQL sends.
const GRAPHIQL: &str = "application/json, multipart/mixed";
/// What reqwest, curl and most HTTP libraries send unless told otherwise.
const ANYTHING: &str = "*/*";

const TYPENAME: &str = "{ __typename }";
/// How long a raw socket waits for the server before the test gives up (not a timing).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(60);

/// One `/graphql` answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// `Content-Type` without its parameters, lowercased.
    media: String,
    /// `Content-Type`'s `charset`, lowercased.
    charset: Option<String>,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// Reads an answer; every `/graphql` answer must forbid caching.
    #[track_caller]
    fn new(status: StatusCode, headers: HeaderMap, text: &str) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("cache-control"),
            Some("no-store"),
            "{status} {headers:?} {text}"
        );
        let content_type = header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut parts = content_type.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_owned();
        let charset = parts
            .filter_map(|part| part.strip_prefix("charset="))
            .map(|charset| charset.trim_matches('"').to_owned())
            .next();
        let body = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        Self {
            status,
            media,
            charset,
            headers,
            body,
        }
    }

    fn has_data(&self) -> bool {
        self.body.get("data").is_some()
    }

    /// Asserts a GraphQL answer's status and media type (in UTF-8).
    #[track_caller]
    fn expect(&self, status: StatusCode, media: &str, what: &str) -> &Self {
        assert_eq!(
            (self.status, self.media.as_str()),
            (status, media),
            "{what}: {self:#?}"
        );
        assert_eq!(self.charset.as_deref(), Some("utf-8"), "{what}: {self:#?}");
        self
    }

    /// Asserts a refusal or request error: `code`, and no `data` entry.
    #[track_caller]
    fn refused(&self, code: &str, what: &str) {
        assert_eq!(
            error_code(&self.body).as_deref(),
            Some(code),
            "{what}: {self:#?}"
        );
        assert!(!self.has_data(), "{what}: a `data` entry: {self:#?}");
    }
}

/// POSTs `body` as `application/json`, with `Accept: accept`.
async fn post(app: &TestApp, accept: &str, token: Option<&str>, body: &Value) -> Answer {
    post_as(
        app,
        accept,
        token,
        Some(JSON),
        body.to_string().into_bytes(),
    )
    .await
}

/// POSTs `body` with `Content-Type: content_type` (none if `None`).
async fn post_as(
    app: &TestApp,
    accept: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let (status, headers, text) = app
        .send(
            |http, url| {
                let mut request = http.post(url).header("accept", accept).body(body);
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request
            },
            "/graphql",
        )
        .await;
    Answer::new(status, headers, &text)
}

/// GETs `/graphql` with `params` in the query string.
async fn get(app: &TestApp, accept: &str, token: Option<&str>, params: &[(&str, &str)]) -> Answer {
    let url = Url::parse_with_params("http://x/graphql", params).expect("a URL");
    let path = format!("/graphql?{}", url.query().unwrap_or_default());
    let (status, headers, text) = app
        .send(
            |http, url| {
                let request = http.get(url).header("accept", accept);
                match token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            },
            &path,
        )
        .await;
    Answer::new(status, headers, &text)
}

/// A connection to the app, for requests reqwest will not send: one without any `Accept`
/// (reqwest adds `*/*`), a chunked body, a body held back.
fn connect(app: &TestApp) -> TcpStream {
    let address = app.base_url().trim_start_matches("http://");
    let stream = TcpStream::connect(address).expect("connect to the server");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("a read timeout");
    stream
}

/// Reads an HTTP/1.1 response written on a `Connection: close` exchange (after any
/// `100 Continue`).
#[track_caller]
fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the response");
    let text = String::from_utf8(bytes).expect("a UTF-8 response");
    let text = text
        .strip_prefix("HTTP/1.1 100 Continue\r\n\r\n")
        .unwrap_or(&text);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("a status line: {status_line}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("name");
        headers.append(name, value.trim().parse().expect("a header value"));
    }
    Answer::new(status, headers, body)
}

/// Writes `head` (request line and header lines) and `body` on a fresh connection; reads
/// the answer.
async fn raw(app: &TestApp, head: &str, body: Vec<u8>) -> Answer {
    let mut stream = connect(app);
    let head = format!("{head}\r\nHost: strongroom\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        stream.write_all(head.as_bytes()).expect("write the head");
        stream.write_all(&body).expect("write the body");
        read_answer(&mut stream)
    })
    .await
    .expect("the raw exchange")
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graphql_http_audit_fails_no_must_and_no_should() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let url = format!("{}/graphql", app.base_url());
    let output = tokio::task::spawn_blocking(move || node_script("audit.js").arg(url).output())
        .await
        .expect("the audit task")
        .expect("run node tests/node/audit.js");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "audit.js failed:\n{stderr}");
    let results: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit.js printed no JSON ({e}):\n{stdout}\n{stderr}"));
    assert!(results.len() > 40, "too few audits ran: {results:#?}");
    let failed: Vec<String> = results
        .iter()
        .filter(|result| matches!(result["status"].as_str(), Some("error" | "warn")))
        .map(|result| {
            let text = |key: &str| result[key].as_str().unwrap_or_default().to_owned();
            format!(
                "{} {} {}\n    reason: {}\n    response: {}",
                text("status"),
                text("id"),
                text("name"),
                text("reason"),
                result["response"]
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} audits failed a MUST (error) or a SHOULD (warn):\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_accept_header_chooses_the_media_type() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let query = json!({ "query": TYPENAME });
    let cases = [
        (ANYTHING, JSON),
        ("application/*", JSON),
        (JSON, JSON),
        ("application/json; charset=utf-8", JSON),
        (GRAPHIQL, JSON),
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            JSON,
        ),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (APOLLO_CLIENT_4, GRAPHQL_RESPONSE),
        (
            "application/json, application/graphql-response+json",
            GRAPHQL_RESPONSE,
        ),
        (
            "application/graphql-response+json;q=0.5, application/json",
            JSON,
        ),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE),
    ];
    for (accept, media) in cases {
        let answer = post(&app, accept, None, &query).await;
        answer.expect(StatusCode::OK, media, &format!("POST, Accept: {accept}"));
        assert_eq!(answer.body, json!({ "data": { "__typename": "Query" } }));
        let answer = get(&app, accept, None, &[("query", TYPENAME)]).await;
        answer.expect(StatusCode::OK, media, &format!("GET, Accept: {accept}"));
        assert_eq!(answer.body["data"]["__typename"], "Query");
    }

    // No `Accept` at all: `application/json`, as the spec asks while legacy clients are about.
    let body = query.to_string().into_bytes();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let answer = raw(&app, &head, body).await;
    answer.expect(StatusCode::OK, JSON, "POST without Accept");
    assert_eq!(answer.body["data"]["__typename"], "Query");
    let path = Url::parse_with_params("http://x/graphql", [("query", TYPENAME)]).expect("URL");
    let head = format!("GET /graphql?{} HTTP/1.1", path.query().unwrap_or_default());
    let answer = raw(&app, &head, Vec::new()).await;
    answer.expect(StatusCode::OK, JSON, "GET without Accept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_accepts_neither_type_gets_406() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let create = json!({
        "query": "mutation { createSecret(input: { name: \"NEVER\", value: \"v\" }) { secret { id } } }"
    });
    for accept in [
        "text/html",
        "application/xml, text/*",
        "application/json; charset=iso-8859-1",
        "*/*;q=0",
        "application/graphql+json",
    ] {
        let what = format!("Accept: {accept}");
        // The reason, in the default type for whoever reads it; nothing was run.
        let answer = post(&app, accept, token, &create).await;
        answer.expect(StatusCode::NOT_ACCEPTABLE, JSON, &what);
        answer.refused("BAD_REQUEST", &what);
        let answer = get(&app, accept, token, &[("query", TYPENAME)]).await;
        answer.expect(StatusCode::NOT_ACCEPTABLE, JSON, &what);
        answer.refused("BAD_REQUEST", &what);
    }
    assert_eq!(app.secret_count().await, 0, "a refused request ran");
}

/// Requests that fail before execution: `(what, body, code)`. None needs a token: they
/// fail before any field is resolved.
fn request_errors() -> Vec<(&'static str, Value, &'static str)> {
    const SECRET_ID: &str = "query($name: String!) { secret(name: $name) { id } }";
    vec![
        (
            "a document that does not parse",
            json!({ "query": "{ secret(name: \"inline-value-7f3a\") { id " }),
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "an empty document",
            json!({ "query": "" }),
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "a field that does not exist",
            json!({ "query": "{ noSuchField }" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "a variable of the wrong type",
            json!({ "query": SECRET_ID, "variables": { "name": 42 } }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "a required variable given null",
            json!({ "query": SECRET_ID, "variables": { "name": null } }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "a required variable not given",
            json!({ "query": SECRET_ID, "variables": {} }),
            "BAD_USER_INPUT",
        ),
        (
            "a variable with a control character",
            json!({ "query": SECRET_ID, "variables": { "name": "a\u{0}b" } }),
            "BAD_USER_INPUT",
        ),
        (
            "an operation name the document lacks",
            json!({ "query": "query A { __typename } query B { __typename }",
                    "operationName": "C" }),
            "BAD_REQUEST",
        ),
        (
            "several operations and no name",
            json!({ "query": "query A { __typename } query B { __typename }" }),
            "BAD_REQUEST",
        ),
        (
            "a persisted query not known yet",
            json!({ "extensions": persisted(&sha256_hex("{ viewer { role } }")) }),
            "PERSISTED_QUERY_NOT_FOUND",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn request_errors_are_400_without_data_under_graphql_response_json() {
    let app = TestApp::spawn(Store::Sqlite).await;
    for (what, body, code) in request_errors() {
        for accept in [GRAPHQL_RESPONSE, APOLLO_CLIENT_4] {
            let what = format!("{what}, Accept: {accept}");
            let answer = post(&app, accept, None, &body).await;
            answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, &what);
            answer.refused(code, &what);
            assert!(
                !answer.body.to_string().contains("inline-value-7f3a"),
                "{what}: the query text is echoed: {answer:#?}"
            );
        }
    }
    // The same over GET.
    let answer = get(&app, GRAPHQL_RESPONSE, None, &[("query", "{")]).await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "GET, no parse");
    answer.refused("GRAPHQL_PARSE_FAILED", "GET, no parse");
    let answer = get(
        &app,
        GRAPHQL_RESPONSE,
        None,
        &[("query", "{ noSuchField }")],
    )
    .await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "GET, invalid");
    answer.refused("GRAPHQL_VALIDATION_FAILED", "GET, invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_errors_are_200_without_data_under_application_json() {
    let app = TestApp::spawn(Store::Sqlite).await;
    for (what, body, code) in request_errors() {
        for accept in [JSON, GRAPHIQL, ANYTHING] {
            let what = format!("{what}, Accept: {accept}");
            let answer = post(&app, accept, None, &body).await;
            answer.expect(StatusCode::OK, JSON, &what);
            answer.refused(code, &what);
        }
    }
    let answer = get(&app, JSON, None, &[("query", "{")]).await;
    answer.expect(StatusCode::OK, JSON, "GET, no parse");
    answer.refused("GRAPHQL_PARSE_FAILED", "GET, no parse");
}

#[tokio::test(flavor = "multi_thread")]
async fn field_errors_are_200_with_data_under_both_types() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let admin = Some(app.admin_token.as_str());
    for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (GRAPHIQL, JSON)] {
        // A nullable field refused: its siblings stand.
        let body = json!({ "query": "{ secret(name: \"ANY\") { id } __typename }" });
        let answer = post(&app, accept, None, &body).await;
        answer.expect(StatusCode::OK, media, "a refused nullable field");
        assert_eq!(
            answer.body["data"],
            json!({ "secret": null, "__typename": "Query" })
        );
        assert_eq!(answer.body["errors"][0]["path"], json!(["secret"]));
        assert_eq!(error_code(&answer.body).as_deref(), Some("UNAUTHENTICATED"));

        // A non-null root field that fails nulls `data` — which is still there: execution ran.
        let body = json!({ "query": "{ secretValue(name: \"MISSING\") { value } }" });
        let answer = post(&app, accept, admin, &body).await;
        answer.expect(StatusCode::OK, media, "a failed non-null root field");
        assert!(answer.has_data(), "{answer:#?}");
        assert!(answer.body["data"].is_null(), "{answer:#?}");
        assert_eq!(answer.body["errors"][0]["path"], json!(["secretValue"]));
        assert_eq!(error_code(&answer.body).as_deref(), Some("NOT_FOUND"));

        // A mutation refused by its resolver: 200 too.
        let body = json!({ "query": "mutation { deleteSecret(input: { name: \"MISSING\" }) { deletedSecretId } }" });
        let answer = post(&app, accept, admin, &body).await;
        answer.expect(StatusCode::OK, media, "a failed mutation");
        assert!(answer.has_data(), "{answer:#?}");
        assert_eq!(error_code(&answer.body).as_deref(), Some("NOT_FOUND"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_body_is_utf8_json_within_the_limit() {
    let app = TestApp::spawn_with(Store::Sqlite, &[("STRONGROOM_MAX_BODY_BYTES", "1024")]).await;
    let query = json!({ "query": TYPENAME }).to_string().into_bytes();

    for content_type in [
        JSON,
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ] {
        let answer = post_as(
            &app,
            APOLLO_CLIENT_4,
            None,
            Some(content_type),
            query.clone(),
        )
        .await;
        answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, content_type);
    }

    // Anything but JSON in UTF-8, or no type at all: 415, in the negotiated type.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/graphql"),
        Some("application/json; charset=utf-16"),
    ] {
        let what = format!("Content-Type: {content_type:?}");
        for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (ANYTHING, JSON)] {
            let answer = post_as(&app, accept, None, content_type, query.clone()).await;
            answer.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, media, &what);
            answer.refused("BAD_REQUEST", &what);
        }
    }

    // Not a GraphQL request: 400 under both types, quoting nothing of the body.
    for (what, body) in [
        ("not JSON", "{ \"not a JSON".to_owned()),
        ("no body", String::new()),
        (
            "a string for variables",
            json!({ "query": TYPENAME, "variables": "sk_inline_9c1e" }).to_string(),
        ),
        ("a number for query", json!({ "query": 0 }).to_string()),
        ("an empty batch", "[]".to_owned()),
    ] {
        for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (JSON, JSON)] {
            let answer = post_as(&app, accept, None, Some(JSON), body.clone().into_bytes()).await;
            answer.expect(StatusCode::BAD_REQUEST, media, what);
            answer.refused("BAD_REQUEST", what);
            assert!(
                !answer.body.to_string().contains("sk_inline"),
                "{answer:#?}"
            );
        }
    }
    // No `query` (and no persisted query named instead): not a GraphQL request either.
    let answer = post(&app, JSON, None, &json!({ "qeury": TYPENAME })).await;
    answer.expect(StatusCode::BAD_REQUEST, JSON, "no query");
    answer.refused("BAD_REQUEST", "no query");

    // Over the limit: 413, whether the length is declared or the body is chunked.
    let padding = " ".repeat(1024);
    let large = format!("{{\"query\": \"{{ __typename }}\"{padding}}}").into_bytes();
    let answer = post_as(&app, APOLLO_CLIENT_4, None, Some(JSON), large.clone()).await;
    answer.expect(StatusCode::PAYLOAD_TOO_LARGE, GRAPHQL_RESPONSE, "declared");
    answer.refused("BAD_REQUEST", "declared");
    let mut chunked = format!("{:x}\r\n", large.len()).into_bytes();
    chunked.extend_from_slice(&large);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nAccept: {APOLLO_CLIENT_4}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked"
    );
    let answer = raw(&app, &head, chunked).await;
    answer.expect(StatusCode::PAYLOAD_TOO_LARGE, GRAPHQL_RESPONSE, "chunked");
    answer.refused("BAD_REQUEST", "chunked");
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_answer_each_operation_in_the_negotiated_type() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let batch = json!([
        { "query": "{" },
        { "query": TYPENAME },
        { "query": "{ secret(name: \"ANY\") { id } }" },
    ]);
    for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (GRAPHIQL, JSON)] {
        // One status cannot speak for operations that fared differently: 200, and each
        // entry follows the body rules.
        let answer = post(&app, accept, None, &batch).await;
        answer.expect(StatusCode::OK, media, accept);
        let answers = answer.body.as_array().expect("one answer per operation");
        assert_eq!(answers.len(), 3, "{answer:#?}");
        assert!(answers[0].get("data").is_none(), "{answer:#?}");
        assert_eq!(
            error_code(&answers[0]).as_deref(),
            Some("GRAPHQL_PARSE_FAILED")
        );
        assert_eq!(answers[1], json!({ "data": { "__typename": "Query" } }));
        assert_eq!(answers[2]["data"], json!({ "secret": null }));
        assert_eq!(error_code(&answers[2]).as_deref(), Some("UNAUTHENTICATED"));

        let too_many = Value::Array(vec![json!({ "query": TYPENAME }); MAX_BATCH + 1]);
        let answer = post(&app, accept, None, &too_many).await;
        answer.expect(StatusCode::BAD_REQUEST, media, "a batch too large");
        answer.refused("BAD_REQUEST", "a batch too large");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_takes_the_spec_parameters_and_no_mutation() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let two = "query A { __typename } query B { viewer { role } }";

    let answer = get(
        &app,
        APOLLO_CLIENT_4,
        token,
        &[("query", two), ("operationName", "B")],
    )
    .await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "operationName");
    assert_eq!(
        answer.body["data"],
        json!({ "viewer": { "role": "ADMIN" } })
    );
    // The spec spells it `operationName`; another spelling is an unknown parameter.
    let answer = get(
        &app,
        APOLLO_CLIENT_4,
        token,
        &[("query", two), ("operation_name", "B")],
    )
    .await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "operation_name");
    answer.refused("BAD_REQUEST", "operation_name");
    // Empty optional parameters are absent ones; variables and extensions are JSON.
    let answer = get(
        &app,
        APOLLO_CLIENT_4,
        token,
        &[
            (
                "query",
                "query($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name": "Secret"}"#),
            ("operationName", ""),
            ("extensions", ""),
        ],
    )
    .await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "variables");
    assert_eq!(answer.body["data"]["__type"]["name"], "Secret");
    let answer = get(
        &app,
        APOLLO_CLIENT_4,
        token,
        &[("query", TYPENAME), ("variables", "{not json")],
    )
    .await;
    answer.expect(
        StatusCode::BAD_REQUEST,
        GRAPHQL_RESPONSE,
        "variables not JSON",
    );
    answer.refused("BAD_REQUEST", "variables not JSON");
    let answer = get(&app, APOLLO_CLIENT_4, token, &[]).await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "no query");
    answer.refused("BAD_REQUEST", "no query");

    // A mutation over GET: 405 with `Allow`, in the negotiated type; nothing is created.
    let mutation =
        "mutation { createSecret(input: { name: \"VIA_GET\", value: \"v\" }) { secret { id } } }";
    for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (ANYTHING, JSON)] {
        let answer = get(&app, accept, token, &[("query", mutation)]).await;
        answer.expect(StatusCode::METHOD_NOT_ALLOWED, media, "a mutation");
        answer.refused("BAD_REQUEST", "a mutation");
        assert_eq!(
            answer.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("POST")
        );
    }
    assert_eq!(app.secret_count().await, 0, "the GET created a secret");
}

/// Apollo's persisted-query link, as Apollo Client 4 drives it: the hash alone first (400
/// `PERSISTED_QUERY_NOT_FOUND`, which it reads as a GraphQL result), then the query with
/// its hash, then the hash alone again, over POST and GET.
#[tokio::test(flavor = "multi_thread")]
async fn apollo_persisted_queries_work_under_graphql_response_json() {
    let app = TestApp::spawn(Store::Sqlite).await;
    let token = Some(app.admin_token.as_str());
    let query = "query Role { viewer { role } }";
    let hash = sha256_hex(query);
    let extensions = persisted(&hash).to_string();

    let answer = get(&app, APOLLO_CLIENT_4, token, &[("extensions", &extensions)]).await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "unknown, GET");
    answer.refused("PERSISTED_QUERY_NOT_FOUND", "unknown, GET");
    assert_eq!(
        answer.body["errors"][0]["message"],
        "PersistedQueryNotFound"
    );
    let hash_only = json!({ "extensions": persisted(&hash) });
    let answer = post(&app, APOLLO_CLIENT_4, token, &hash_only).await;
    answer.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "unknown, POST");
    answer.refused("PERSISTED_QUERY_NOT_FOUND", "unknown, POST");

    let full = json!({ "query": query, "extensions": persisted(&hash) });
    let answer = post(&app, APOLLO_CLIENT_4, token, &full).await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "registered");
    assert_eq!(answer.body["data"]["viewer"]["role"], "ADMIN");

    let answer = post(&app, APOLLO_CLIENT_4, token, &hash_only).await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "by hash, POST");
    assert_eq!(answer.body["data"]["viewer"]["role"], "ADMIN");
    let answer = get(
        &app,
        APOLLO_CLIENT_4,
        token,
        &[
            ("operationName", "Role"),
            ("variables", "{}"),
            ("extensions", &extensions),
        ],
    )
    .await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "by hash, GET");
    assert_eq!(answer.body["data"]["viewer"]["role"], "ADMIN");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_refusals_carry_the_negotiated_type() {
    let app = TestApp::spawn_with(Store::Sqlite, &[("STRONGROOM_RATE_LIMIT", "1:2")]).await;
    let viewer = app.new_principal_token("VIEWER").await;
    // Three operations never fit a burst of two.
    let batch = Value::Array(vec![json!({ "query": "{ viewer { role } }" }); 3]);
    for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (GRAPHIQL, JSON)] {
        let answer = post(&app, accept, Some(&viewer), &batch).await;
        answer.expect(StatusCode::TOO_MANY_REQUESTS, media, accept);
        answer.refused("RATE_LIMITED", accept);
        assert!(answer.headers.contains_key("retry-after"), "{answer:#?}");
    }
}

/// With one request slot taken (a POST whose body the server is waiting for), the next
/// request is shed: 503 `OVERLOADED` in its negotiated type.
#[tokio::test(flavor = "multi_thread")]
async fn load_shedding_refusals_carry_the_negotiated_type() {
    let app = TestApp::spawn_with(
        Store::Sqlite,
        &[("STRONGROOM_MAX_CONCURRENT_REQUESTS", "1")],
    )
    .await;
    let held_body = json!({ "query": TYPENAME }).to_string().into_bytes();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: strongroom\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        held_body.len()
    );
    let mut held = connect(&app);
    // `100 Continue` comes once the handler asks for the body: the slot is taken.
    let mut held = tokio::task::spawn_blocking(move || {
        held.write_all(head.as_bytes()).expect("write the head");
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            held.read_exact(&mut byte)
                .expect("read the interim response");
            seen.push(byte[0]);
        }
        let seen = String::from_utf8_lossy(&seen).into_owned();
        assert!(seen.starts_with("HTTP/1.1 100"), "{seen}");
        held
    })
    .await
    .expect("hold a request slot");

    let query = json!({ "query": TYPENAME });
    for (accept, media) in [(APOLLO_CLIENT_4, GRAPHQL_RESPONSE), (GRAPHIQL, JSON)] {
        let answer = post(&app, accept, None, &query).await;
        answer.expect(StatusCode::SERVICE_UNAVAILABLE, media, accept);
        answer.refused("OVERLOADED", accept);
        assert!(answer.headers.contains_key("retry-after"), "{answer:#?}");
    }

    // The held request still completes, and frees its slot.
    let answer = tokio::task::spawn_blocking(move || {
        held.write_all(&held_body).expect("write the body");
        read_answer(&mut held)
    })
    .await
    .expect("the held request");
    answer.expect(StatusCode::OK, JSON, "the held request");
    let answer = post(&app, APOLLO_CLIENT_4, None, &query).await;
    answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "after the slot is freed");
}

/// Parsed documents are kept per organization (`graphql::parsed`): a document sent again
/// answers as it did the first time — for each organization its own data, each operation
/// by its name, over POST and GET, sent one by one or 48 at once before it is kept — and a
/// text that does not parse is refused the same way every time. (Documents holding a mutation are never kept: see the unit tests.)
#[tokio::test(flavor = "multi_thread")]
async fn a_document_sent_again_answers_as_the_first_time() {
    let app = TestApp::spawn(Store::Sqlite).await;
    app.create_secret("ACME_ONLY", "a").await;
    let globex = app
        .gql(
            Some(&app.other_admin_token),
            "mutation { createSecret(input: { name: \"GLOBEX_ONLY\", value: \"g\" }) { secret { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        globex["data"]["createSecret"]["secret"]["name"], "GLOBEX_ONLY",
        "{globex}"
    );
    let document = "query Names { secrets(first: 10) { nodes { name } } } \
                    query Role { viewer { role } }";
    let names = |answer: &Answer| -> Vec<String> {
        answer.body["data"]["secrets"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("no page: {answer:#?}"))
            .iter()
            .map(|node| node["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Raced while not yet kept: 48 requests at once, both organizations, both operations.
    let raced = format!("{document} # raced");
    let shared = &app;
    let requests = (0..48).map(|i| {
        let (token, expected) = if i % 2 == 0 {
            (&app.admin_token, "ACME_ONLY")
        } else {
            (&app.other_admin_token, "GLOBEX_ONLY")
        };
        let raced = raced.as_str();
        async move {
            let operation = if i % 3 == 0 { "Role" } else { "Names" };
            let body = json!({ "query": raced, "operationName": operation });
            (
                operation,
                expected,
                post(shared, JSON, Some(token), &body).await,
            )
        }
    });
    for (operation, expected, answer) in futures_util::future::join_all(requests).await {
        answer.expect(StatusCode::OK, JSON, "raced");
        if operation == "Role" {
            assert_eq!(
                answer.body["data"],
                json!({ "viewer": { "role": "ADMIN" } })
            );
        } else {
            assert_eq!(names(&answer), [expected], "raced: {answer:#?}");
        }
    }
    for round in 0..3 {
        for (token, expected) in [
            (&app.admin_token, "ACME_ONLY"),
            (&app.other_admin_token, "GLOBEX_ONLY"),
        ] {
            let body = json!({ "query": document, "operationName": "Names" });
            let answer = post(&app, APOLLO_CLIENT_4, Some(token), &body).await;
            answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "Names over POST");
            assert_eq!(names(&answer), [expected], "round {round}: {answer:#?}");
            let params = [("query", document), ("operationName", "Names")];
            let answer = get(&app, APOLLO_CLIENT_4, Some(token), &params).await;
            answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "Names over GET");
            assert_eq!(names(&answer), [expected], "round {round}: {answer:#?}");
            let params = [("query", document), ("operationName", "Role")];
            let answer = get(&app, APOLLO_CLIENT_4, Some(token), &params).await;
            answer.expect(StatusCode::OK, GRAPHQL_RESPONSE, "Role over GET");
            assert_eq!(
                answer.body["data"],
                json!({ "viewer": { "role": "ADMIN" } })
            );
        }
    }

    let broken = json!({ "query": "{ secrets(first: 1) { nodes { name }" });
    let first = post(&app, APOLLO_CLIENT_4, Some(&app.admin_token), &broken).await;
    first.expect(StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE, "a syntax error");
    first.refused("GRAPHQL_PARSE_FAILED", "a syntax error");
    for _ in 0..2 {
        let again = post(&app, APOLLO_CLIENT_4, Some(&app.admin_token), &broken).await;
        again.expect(
            StatusCode::BAD_REQUEST,
            GRAPHQL_RESPONSE,
            "the same syntax error",
        );
        assert_eq!(again.body, first.body, "the same refusal each time");
    }
}
