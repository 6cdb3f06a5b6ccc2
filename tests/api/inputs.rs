//! Text input (DESIGN.md §3, "Text input"): one layer checks every string argument and
//! input field before anything runs. On SQLite and PostgreSQL alike, these tests prove:
//!
//! - every text position of the schema — found by introspection, so a new `String` or `ID`
//!   argument or input field is covered without touching this file — refuses control
//!   characters with `BAD_USER_INPUT`, whether the text comes in a variable or as a literal,
//!   with a message that names the position and does not echo the text; a secret value
//!   takes any character, a description takes tab and newline;
//! - a refused request writes nothing, and the requests PostgreSQL used to fail with
//!   `INTERNAL_SERVER_ERROR` (a NUL in a secret or token description, an audit filter, a
//!   resource name or reference field) get the same `BAD_USER_INPUT` and message as on
//!   SQLite, while the same requests without the NUL succeed;
//! - descriptions keep tab and newline, and a secret value keeps every character, byte for
//!   byte, through `secretValue` and `resourceSecrets`;
//! - a crafted pagination cursor (a NUL inside, or no cursor at all) is `BAD_USER_INPUT`.
use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    fmt::Write as _,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::{
    CREATE_API_TOKEN, CREATE_SECRET, SECRET, SECRET_VALUE, Schema, Store, TestApp, TypeKind,
    TypeRef, UPDATE_SECRET, both_stores, data,
};

both_stores!(
    sweep_refuses_control_characters_everywhere,
    refusals_write_nothing_and_read_alike,
    descriptions_keep_tab_and_newline,
    values_keep_every_character,
    crafted_cursors_are_bad_input,
    only_the_operation_that_runs_is_checked,
    unknown_variable_keys_are_not_quoted,
);

const UPSERT_RESOURCE: &str = "mutation($input: UpsertResourceInput!) {
    upsertResource(input: $input) { resource { id name description } } }";
const DEPLOY_RESOURCE: &str = "mutation($id: ID!) {
    deployResource(input: { id: $id }) { deployment { id state } } }";
const RESOURCE: &str = "query($id: ID!) { resource(id: $id) { id description } }";
const RESOURCE_SECRETS: &str = "query($id: ID!) {
    resourceSecrets(resourceId: $id) { name field version value } }";
const API_TOKENS: &str = "query($principalId: ID) {
    apiTokens(principalId: $principalId, first: 50) { nodes { id description } } }";
const AUDIT_EVENTS: &str = "query($filter: AuditFilter) {
    auditEvents(first: 10, filter: $filter) { totalCount nodes { action } } }";
const SECRETS_PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String) {
    secrets(first: $first, after: $after, last: $last, before: $before) {
        nodes { name } pageInfo { endCursor } } }";

/// Every table the migrations create. A refused request must leave each row count as it
/// was; `row_counts` checks that this list is complete.
const TABLES: &[&str] = &[
    "organizations",
    "principals",
    "api_tokens",
    "secrets",
    "secret_versions",
    "audit_events",
    "resources",
    "resource_references",
    "deployments",
    "deployment_pins",
    "secret_usage",
    "event_outbox",
    "runtime_bindings",
    "secret_allowed_resources",
    "workload_identities",
    "webhook_endpoints",
    "webhook_messages",
    "webhook_deliveries",
    "console_sessions",
];

/// Refused in every position but a secret value: C0 (NUL, its neighbour, ESC, the last
/// one, CR), DEL, C1 (the first, NEL, the last), the line and paragraph separators, and
/// the first and last of the bidirectional embedding/override and isolate controls.
const REFUSED_EVERYWHERE: &[char] = &[
    '\0', '\u{1}', '\u{1b}', '\u{1f}', '\r', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{2028}',
    '\u{2029}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}',
];

/// Refused in names, fields, ids and filters; allowed in a description.
const LINE_BREAKS: &[char] = &['\t', '\n'];

/// Input fields that hold a secret's value: the server's list (`SECRET_VALUE_FIELDS`).
const VALUE_FIELDS: &[(&str, &str)] = &[
    ("CreateSecretInput", "value"),
    ("UpdateSecretInput", "value"),
];

/// Text around the character a sweep request puts at a leaf: the character is at index
/// `PROBE_PREFIX.len()`, and the suffix must never come back in an error.
const PROBE_PREFIX: &str = "ok";
const PROBE_SUFFIX: &str = "Zq7-canary";

/// Sweep requests in flight at once.
const CONCURRENCY: usize = 16;

/// What a refused cursor reads, on every list and every store.
const CURSOR_REFUSED: &str = "a cursor (`after` or `before`) that this list did not give out";

/// What a string in one position may hold, as DESIGN.md §3 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// A secret value: anything.
    Value,
    /// Free text: tab and newline, no other control character.
    Description,
    /// Names, fields, ids, filters, cursors: no control character.
    Plain,
}

impl Rule {
    /// The rule of position `name` of `owner` (an input type, or `Type.field` for an
    /// argument), derived as the server derives it.
    fn of(owner: &str, name: &str) -> Self {
        if VALUE_FIELDS.contains(&(owner, name)) {
            Self::Value
        } else if matches!(name, "description" | "reason") {
            Self::Description
        } else {
            Self::Plain
        }
    }

    /// The characters the layer must refuse in this position.
    fn refused(self) -> Vec<char> {
        match self {
            Self::Value => Vec::new(),
            Self::Description => REFUSED_EVERYWHERE.to_vec(),
            Self::Plain => [REFUSED_EVERYWHERE, LINE_BREAKS].concat(),
        }
    }

    /// The characters the layer must let through in this position.
    fn accepted(self) -> Vec<char> {
        match self {
            Self::Value => [REFUSED_EVERYWHERE, LINE_BREAKS].concat(),
            Self::Description => LINE_BREAKS.to_vec(),
            Self::Plain => Vec::new(),
        }
    }

    /// The explanation that ends the layer's message for this rule.
    fn explanation(self) -> &'static str {
        match self {
            Self::Description => {
                "this text may hold tab and newline, but no other control character"
            }
            Self::Value | Self::Plain => {
                "names, fields, ids and filters may hold no control character \
                 (only descriptions may hold tab and newline)"
            }
        }
    }
}

/// The exact message the layer gives for `c` at character `at` of the text at `leaf`
/// (`createSecret(input.description)`): the same on every store.
fn refusal_message(leaf: &str, c: char, at: usize, rule: Rule) -> String {
    format!(
        "`{leaf}` holds the control character U+{:04X} at character {at}; remove it: {}",
        u32::from(c),
        rule.explanation()
    )
}

/// `c` as `U+XXXX`, for assertion messages.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

// ---------------------------------------------------------------------------------------
// The text leaves of the schema, by introspection
// ---------------------------------------------------------------------------------------

/// One step from an argument down to a string inside it.
#[derive(Clone, Debug)]
enum Step {
    /// An input object's field.
    Field(String),
    /// The (first) item of a list.
    Item,
}

/// A text leaf: a position of type `String` or `ID` that a request can fill, with what it
/// may hold and how to reach it.
#[derive(Clone, Debug)]
struct Leaf {
    /// `query` or `mutation`.
    operation: &'static str,
    /// The selections that lead from the root to the field's parent: `secret`, or
    /// `... on Secret` through an interface.
    reach: Vec<String>,
    field: String,
    argument: String,
    /// The argument's type, for a variable definition.
    argument_type: String,
    /// From the argument down to the string.
    steps: Vec<Step>,
    /// Whether the field needs a selection set.
    composite: bool,
    rule: Rule,
}

impl Leaf {
    /// The position as the layer names it: `createSecret(input.references[0].field)`.
    fn name(&self) -> String {
        let mut path = self.argument.clone();
        for step in &self.steps {
            match step {
                Step::Field(name) => {
                    let _ = write!(path, ".{name}");
                }
                Step::Item => path.push_str("[0]"),
            }
        }
        format!("{}({path})", self.field)
    }

    /// The argument's value with `text` at the leaf, as JSON (a variable).
    fn variable(&self, text: &str) -> Value {
        self.steps
            .iter()
            .rev()
            .fold(Value::from(text), |inner, step| match step {
                Step::Field(name) => json!({ name.as_str(): inner }),
                Step::Item => json!([inner]),
            })
    }

    /// The argument's value with `text` at the leaf, as a GraphQL literal.
    fn literal(&self, text: &str) -> String {
        self.steps
            .iter()
            .rev()
            .fold(graphql_string(text), |inner, step| match step {
                Step::Field(name) => format!("{{ {name}: {inner} }}"),
                Step::Item => format!("[{inner}]"),
            })
    }

    /// A document that passes `argument` (a variable, or a literal) to the leaf's field,
    /// and nothing else: the layer runs before validation, so other required arguments
    /// may stay out.
    fn document(&self, argument: &str, variables: &str) -> String {
        let selection = if self.composite {
            " { __typename }"
        } else {
            ""
        };
        let call = format!("{}({}: {argument}){selection}", self.field, self.argument);
        let body = self
            .reach
            .iter()
            .rev()
            .fold(call, |inner, outer| format!("{outer} {{ {inner} }}"));
        format!("{}{variables} {{ {body} }}", self.operation)
    }

    /// The requests that put `c` at this leaf: once in a variable, once as a literal.
    fn probes(&self, c: char, expect_refusal: bool) -> [Probe; 2] {
        let text = format!("{PROBE_PREFIX}{c}{PROBE_SUFFIX}");
        let probe = |delivery, query, variables| Probe {
            leaf: self.name(),
            character: c,
            delivery,
            expect_refusal,
            query,
            variables,
            text: text.clone(),
        };
        let definition = format!("($v: {})", self.argument_type);
        [
            probe(
                "a variable",
                self.document("$v", &definition),
                json!({ "v": self.variable(&text) }),
            ),
            probe(
                "a literal",
                self.document(&self.literal(&text), ""),
                json!({}),
            ),
        ]
    }
}

/// Every text leaf of the schema: the `String` and `ID` arguments of every field reachable
/// from the roots (root fields first; nested fields such as `Secret.versions` through the
/// shortest selection that reaches their type), and the `String` and `ID` fields of the
/// input objects those arguments take, through lists and nested input objects.
fn text_leaves(schema: &Schema) -> Vec<Leaf> {
    let mut leaves = Vec::new();
    let roots = schema.roots();
    let mut seen: HashSet<String> = roots.iter().map(|&(_, root)| root.to_owned()).collect();
    let mut queue: VecDeque<(&'static str, String, Vec<String>)> = roots
        .into_iter()
        .map(|(operation, root)| (operation, root.to_owned(), Vec::new()))
        .collect();
    while let Some((operation, type_name, reach)) = queue.pop_front() {
        let mut next = |name: &str, selection: String| {
            if seen.insert(name.to_owned()) {
                let mut reach = reach.clone();
                reach.push(selection);
                queue.push_back((operation, name.to_owned(), reach));
            }
        };
        let ty = schema.ty(&type_name);
        for field in ty.fields() {
            let returns = field.ty.named();
            let composite = schema.ty(returns).kind.is_composite();
            for arg in &field.args {
                let mut found = Vec::new();
                text_positions(
                    schema,
                    &format!("{type_name}.{}", field.name),
                    &arg.name,
                    &arg.ty,
                    Vec::new(),
                    &mut Vec::new(),
                    &mut found,
                );
                leaves.extend(found.into_iter().map(|(steps, rule)| Leaf {
                    operation,
                    reach: reach.clone(),
                    field: field.name.clone(),
                    argument: arg.name.clone(),
                    argument_type: arg.ty.render(),
                    steps,
                    composite,
                    rule,
                }));
            }
            if composite {
                next(returns, field.name.clone());
            }
        }
        for possible in ty.possible_types() {
            next(&possible.name, format!("... on {}", possible.name));
        }
    }
    leaves
}

/// Collects into `found` the text positions under `name` (of type `ty`) of `owner`, with
/// the steps to each and its rule. `open` holds the input objects being walked, so a
/// recursive input type ends the walk.
fn text_positions(
    schema: &Schema,
    owner: &str,
    name: &str,
    ty: &TypeRef,
    mut steps: Vec<Step>,
    open: &mut Vec<String>,
    found: &mut Vec<(Vec<Step>, Rule)>,
) {
    let named = ty.named();
    steps.extend(std::iter::repeat_n(Step::Item, ty.lists()));
    let def = schema.ty(named);
    match def.kind {
        TypeKind::Scalar if matches!(named, "String" | "ID") => {
            found.push((steps, Rule::of(owner, name)))
        }
        TypeKind::InputObject if !open.iter().any(|o| o == named) => {
            open.push(named.to_owned());
            for field in def.input_fields() {
                let mut inner = steps.clone();
                inner.push(Step::Field(field.name.clone()));
                text_positions(schema, named, &field.name, &field.ty, inner, open, found);
            }
            open.pop();
        }
        _ => {}
    }
}

/// Checks the walk against positions the contract names: it must find them, and the
/// value positions must be exactly those `values_keep_every_character` round-trips.
fn assert_known_leaves(leaves: &[Leaf]) {
    let named = |rule: Rule| -> BTreeSet<String> {
        leaves
            .iter()
            .filter(|leaf| leaf.rule == rule)
            .map(Leaf::name)
            .collect()
    };
    let values = named(Rule::Value);
    let expected_values = BTreeSet::from([
        "createSecret(input.value)".to_owned(),
        "updateSecret(input.value)".to_owned(),
    ]);
    assert_eq!(
        values, expected_values,
        "the positions that take any text: each needs a round trip in \
         values_keep_every_character"
    );
    let descriptions = named(Rule::Description);
    for leaf in [
        "createSecret(input.description)",
        "updateSecret(input.description)",
        "upsertResource(input.description)",
        "createApiToken(input.description)",
    ] {
        assert!(
            descriptions.contains(leaf),
            "the sweep found no description leaf {leaf}; it found {descriptions:?}"
        );
    }
    let plain = named(Rule::Plain);
    for leaf in [
        "createSecret(input.name)",
        "upsertResource(input.name)",
        "upsertResource(input.references[0].field)",
        "upsertResource(input.references[0].secretName)",
        "createApiToken(input.principalId)",
        "auditEvents(filter.action)",
        "auditEvents(filter.targetName)",
        "secrets(filter.nameContains)",
        "secrets(after)",
        "secrets(before)",
        "versions(after)",
        "node(id)",
    ] {
        assert!(
            plain.contains(leaf),
            "the sweep found no plain-text leaf {leaf}; it found {plain:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sending the sweep
// ---------------------------------------------------------------------------------------

/// One sweep request: a character at a leaf, sent one way.
struct Probe {
    leaf: String,
    character: char,
    /// `a variable` or `a literal`.
    delivery: &'static str,
    /// Whether the layer must refuse it (or let it through).
    expect_refusal: bool,
    query: String,
    variables: Value,
    /// The text put at the leaf.
    text: String,
}

impl Probe {
    /// What it sent, for assertion messages.
    fn describe(&self) -> String {
        format!(
            "{} at {} in {}",
            code_point(self.character),
            self.leaf,
            self.delivery
        )
    }

    /// What is wrong with `response`, if anything, for a probe the layer must refuse:
    /// HTTP 200, exactly one error, `BAD_USER_INPUT`, naming the leaf, the character and
    /// its place, echoing none of the text, and no data.
    fn refusal_fault(&self, status: StatusCode, response: &Value) -> Option<String> {
        let errors = response["errors"].as_array().map_or(&[][..], Vec::as_slice);
        let message = errors
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default();
        let code = errors
            .first()
            .and_then(|e| e["extensions"]["code"].as_str());
        let at = format!(
            "{} at character {}",
            code_point(self.character),
            PROBE_PREFIX.len()
        );
        let fault = if status != StatusCode::OK {
            format!("HTTP {status}")
        } else if errors.len() != 1 {
            format!("{} errors instead of one", errors.len())
        } else if code != Some("BAD_USER_INPUT") {
            let hint = if code == Some("GRAPHQL_VALIDATION_FAILED") {
                " (the layer let the text through)"
            } else {
                ""
            };
            format!("code {code:?} instead of BAD_USER_INPUT{hint}")
        } else if !message.contains(&format!("`{}`", self.leaf)) {
            "a message that does not name the leaf".to_owned()
        } else if !message.contains(&at) {
            format!("a message that does not say {at:?}")
        } else if message.contains(&self.text)
            || message.contains(PROBE_SUFFIX)
            || message.contains(self.character)
        {
            "a message that echoes the text sent".to_owned()
        } else if !response["data"].is_null() {
            "data beside the refusal".to_owned()
        } else {
            return None;
        };
        Some(format!(
            "{} must be refused; got {fault}: {response}",
            self.describe()
        ))
    }

    /// What is wrong with `response`, if anything, for a probe the layer must let
    /// through (validation may still refuse the incomplete request).
    fn acceptance_fault(&self, status: StatusCode, response: &Value) -> Option<String> {
        let refused = response["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .any(|m| m.contains("control character") || m.contains(&format!("`{}`", self.leaf)));
        let fault = if status != StatusCode::OK {
            format!("HTTP {status}")
        } else if refused {
            "a refusal by it".to_owned()
        } else {
            return None;
        };
        Some(format!(
            "{} must pass the text layer; got {fault}: {response}",
            self.describe()
        ))
    }
}

/// Sends every probe, at most [`CONCURRENCY`] at a time, and lists what was answered
/// wrongly. A probe that must be refused goes as the admin (were it let through and
/// complete, it would run and write); one that must be let through goes without a token,
/// so it cannot run.
async fn sweep(app: &TestApp, probes: Vec<Probe>) -> Vec<String> {
    let mut faults = Vec::new();
    let mut running = JoinSet::new();
    let mut check = |joined: Result<(Probe, StatusCode, Value), tokio::task::JoinError>| {
        let (probe, status, response) = joined.expect("a sweep request task");
        let fault = if probe.expect_refusal {
            probe.refusal_fault(status, &response)
        } else {
            probe.acceptance_fault(status, &response)
        };
        faults.extend(fault);
    };
    for probe in probes {
        if running.len() >= CONCURRENCY
            && let Some(joined) = running.join_next().await
        {
            check(joined);
        }
        let api = app.api.clone();
        let token = probe.expect_refusal.then(|| app.admin_token.clone());
        running.spawn(async move {
            let body = json!({ "query": probe.query, "variables": probe.variables });
            let (status, response) = api.post_raw(token.as_deref(), body).await;
            (probe, status, response)
        });
    }
    while let Some(joined) = running.join_next().await {
        check(joined);
    }
    faults
}

// ---------------------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------------------

/// The row count of every table, in [`TABLES`] order; first checks that [`TABLES`] names
/// every table the migrations made.
async fn row_counts(app: &TestApp, store: Store) -> Vec<(&'static str, i64)> {
    let all_tables = match store {
        Store::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
        }
        Store::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name <> 'seaql_migrations'"
        }
    };
    let tables = app.sql_query_one_i64(all_tables).await;
    assert_eq!(
        usize::try_from(tables).ok(),
        Some(TABLES.len()),
        "the database has {tables} tables; TABLES lists {TABLES:?}"
    );
    let mut counts = Vec::with_capacity(TABLES.len());
    for &table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        counts.push((table, app.sql_query_one_i64(&sql).await));
    }
    counts
}

/// The one error of `response`, which must hold exactly one.
#[track_caller]
fn only_error<'a>(response: &'a Value, what: &str) -> &'a Value {
    let errors = response["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected an error; response: {response:#}"));
    assert_eq!(
        errors.len(),
        1,
        "{what}: expected exactly one error; response: {response:#}"
    );
    &errors[0]
}

/// Asserts that `response` failed with exactly one error, `BAD_USER_INPUT`, reading
/// `message`.
#[track_caller]
fn assert_bad_input(response: &Value, message: &str, what: &str) {
    let error = only_error(response, what);
    assert_eq!(
        error["extensions"]["code"], "BAD_USER_INPUT",
        "{what}: error code; response: {response:#}"
    );
    assert_eq!(
        error["message"], message,
        "{what}: message; response: {response:#}"
    );
}

/// Asserts that `got` is the string `sent`, byte for byte.
#[track_caller]
fn assert_same_text(got: &Value, sent: &str, what: &str) {
    let got = got
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {got}"));
    assert!(
        got.as_bytes() == sent.as_bytes(),
        "{what}: read back {got:?}, sent {sent:?}"
    );
}

/// `text` as a GraphQL string literal: ASCII as is (quote and backslash escaped), other
/// characters of the Basic Multilingual Plane as `\uXXXX`, and characters beyond it as
/// UTF-8 (async-graphql's parser takes neither surrogate pairs nor `\u{...}`).
fn graphql_string(text: &str) -> String {
    let mut literal = String::from('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                literal.push('\\');
                literal.push(c);
            }
            ' '..='~' => literal.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(literal, "\\u{:04X}", u32::from(c));
            }
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

/// The `id` of an object as returned.
#[track_caller]
fn id_of(object: &Value) -> String {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {object:#}"))
        .to_owned()
}

/// Asserts that `response` carries no error, saying `what` it was.
#[track_caller]
fn assert_ok(response: &Value, what: &str) {
    assert!(
        response.get("errors").is_none() && response["data"].is_object(),
        "{what} must succeed; response: {response:#}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. The sweep
// ---------------------------------------------------------------------------------------

/// Every text leaf the schema has refuses every representative control character its
/// rule forbids — in a variable and as a literal — and lets through what its rule allows;
/// not one row is written.
async fn sweep_refuses_control_characters_everywhere(store: Store) {
    let app = TestApp::spawn(store).await;
    let schema = Schema::introspect(&app).await;
    let leaves = text_leaves(&schema);
    assert_known_leaves(&leaves);

    let probes: Vec<Probe> = leaves
        .iter()
        .flat_map(|leaf| {
            let refused = leaf.rule.refused().into_iter().map(|c| (c, true));
            let accepted = leaf.rule.accepted().into_iter().map(|c| (c, false));
            refused
                .chain(accepted)
                .flat_map(|(c, expect_refusal)| leaf.probes(c, expect_refusal))
        })
        .collect();
    let sent = probes.len();

    let before = row_counts(&app, store).await;
    let faults = sweep(&app, probes).await;
    assert!(
        faults.is_empty(),
        "{} of {sent} requests over {} text leaves were answered wrongly:\n{}",
        faults.len(),
        leaves.len(),
        faults.join("\n")
    );
    assert_eq!(
        row_counts(&app, store).await,
        before,
        "row counts after {sent} requests with control characters"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Complete requests with one NUL: refused alike, nothing written
// ---------------------------------------------------------------------------------------

/// A complete, valid request but for the NUL at `leaf`, character `at`.
struct NulCase {
    what: &'static str,
    query: &'static str,
    variables: Value,
    leaf: &'static str,
    at: usize,
    rule: Rule,
}

/// The requests that PostgreSQL used to answer with `INTERNAL_SERVER_ERROR` (SQLite
/// accepted them), each with a NUL (`with_nul`) or without it (then each must succeed).
/// `EXISTING` is a secret, `principal_id` a principal.
fn nul_cases(principal_id: &str, with_nul: bool) -> Vec<NulCase> {
    let nul = if with_nul { "\0" } else { "" };
    let text = |before: &str, after: &str| format!("{before}{nul}{after}");
    let reference = |field: String| json!([{ "secretName": "EXISTING", "field": field }]);
    vec![
        NulCase {
            what: "createSecret with a NUL in its description",
            query: CREATE_SECRET,
            variables: json!({ "input": {
                "name": "NUL_IN_DESCRIPTION", "value": "v1", "description": text("payments", "team"),
            } }),
            leaf: "createSecret(input.description)",
            at: 8,
            rule: Rule::Description,
        },
        NulCase {
            what: "updateSecret with a new value and a NUL in its description",
            query: UPDATE_SECRET,
            variables: json!({ "input": {
                "name": "EXISTING", "value": "v2", "description": text("rotated", " monthly"),
            } }),
            leaf: "updateSecret(input.description)",
            at: 7,
            rule: Rule::Description,
        },
        NulCase {
            what: "createApiToken with a NUL in its description",
            query: CREATE_API_TOKEN,
            variables: json!({ "input": {
                "principalId": principal_id, "description": text("ci", " token"),
            } }),
            leaf: "createApiToken(input.description)",
            at: 2,
            rule: Rule::Description,
        },
        NulCase {
            what: "auditEvents filtered by an action holding a NUL",
            query: AUDIT_EVENTS,
            variables: json!({ "filter": { "action": text("a", "b") } }),
            leaf: "auditEvents(filter.action)",
            at: 1,
            rule: Rule::Plain,
        },
        NulCase {
            what: "auditEvents filtered by a target name holding a NUL",
            query: AUDIT_EVENTS,
            variables: json!({ "filter": { "targetName": text("EXIST", "ING") } }),
            leaf: "auditEvents(filter.targetName)",
            at: 5,
            rule: Rule::Plain,
        },
        NulCase {
            what: "upsertResource with a NUL in a reference field",
            query: UPSERT_RESOURCE,
            variables: json!({ "input": {
                "kind": "PIPELINE", "name": "billing", "description": "bills",
                "references": reference(text("env.", "KEY")),
            } }),
            leaf: "upsertResource(input.references[0].field)",
            at: 4,
            rule: Rule::Plain,
        },
        NulCase {
            what: "upsertResource with a NUL in its name",
            query: UPSERT_RESOURCE,
            variables: json!({ "input": {
                "kind": "PIPELINE", "name": text("bill", "ing"), "description": "bills",
                "references": reference("env.KEY".to_owned()),
            } }),
            leaf: "upsertResource(input.name)",
            at: 4,
            rule: Rule::Plain,
        },
    ]
}

/// Each complete request with one NUL is `BAD_USER_INPUT` with the same message on
/// every store, and writes nothing; without the NUL, each succeeds (and writes).
async fn refusals_write_nothing_and_read_alike(store: Store) {
    let app = TestApp::spawn(store).await;
    let account = app.create_service_account("MEMBER").await;
    app.create_secret("EXISTING", "v1").await;

    let before = row_counts(&app, store).await;
    for case in nul_cases(&account.id, true) {
        let response = app.admin(case.query, case.variables.clone()).await;
        let message = refusal_message(case.leaf, '\0', case.at, case.rule);
        assert_bad_input(&response, &message, case.what);
        assert!(
            response["data"].is_null(),
            "{}: data beside the refusal: {response:#}",
            case.what
        );
    }
    assert_eq!(
        row_counts(&app, store).await,
        before,
        "row counts after the refused requests"
    );

    // The same requests without the NUL: complete and valid, so each succeeds — and the
    // counts above do see what a request writes.
    for case in nul_cases(&account.id, false) {
        let response = app.admin(case.query, case.variables).await;
        assert_ok(&response, &format!("{} (without the NUL)", case.what));
    }
    let after: HashMap<_, _> = row_counts(&app, store).await.into_iter().collect();
    let before: HashMap<_, _> = before.into_iter().collect();
    for (table, written) in [
        ("secrets", 1),
        ("secret_versions", 2),
        ("api_tokens", 1),
        ("resources", 1),
        ("resource_references", 1),
    ] {
        assert_eq!(
            after[table] - before[table],
            written,
            "rows the requests without a NUL wrote to {table}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. What text may hold
// ---------------------------------------------------------------------------------------

/// A description with newline and tab.
const TABBED: &str = "line one\n\tline two";

/// Descriptions take tab and newline (in a variable and as a literal) and read back
/// exactly: secrets (created and updated), resources and API tokens.
async fn descriptions_keep_tab_and_newline(store: Store) {
    let app = TestApp::spawn(store).await;
    let read_secret = |name: &'static str| {
        let app = &app;
        async move {
            let response = app.admin(SECRET, json!({ "name": name })).await;
            data(&response)["secret"]["description"].clone()
        }
    };

    let input = json!({ "input": { "name": "DESCRIBED", "value": "v", "description": TABBED } });
    let created = app.admin(CREATE_SECRET, input).await;
    assert_ok(
        &created,
        "createSecret with a tab and newline in its description",
    );
    let returned = &data(&created)["createSecret"]["secret"]["description"];
    assert_same_text(returned, TABBED, "createSecret's description as returned");
    let stored = read_secret("DESCRIBED").await;
    assert_same_text(&stored, TABBED, "createSecret's description read back");

    let literal = format!(
        "mutation {{ createSecret(input: {{ name: \"DESCRIBED_LITERAL\", value: \"v\",
            description: {} }}) {{ secret {{ name }} }} }}",
        graphql_string(TABBED)
    );
    let created = app.admin(&literal, json!({})).await;
    assert_ok(
        &created,
        "createSecret with a tab and newline in a literal description",
    );
    let stored = read_secret("DESCRIBED_LITERAL").await;
    assert_same_text(&stored, TABBED, "a literal description read back");

    let updated_text = "rotated monthly\n\tby the CI job\n";
    let input = json!({ "input": { "name": "DESCRIBED", "description": updated_text } });
    let updated = app.admin(UPDATE_SECRET, input).await;
    assert_ok(
        &updated,
        "updateSecret with a tab and newline in its description",
    );
    let stored = read_secret("DESCRIBED").await;
    assert_same_text(
        &stored,
        updated_text,
        "updateSecret's description read back",
    );

    let resource_text = "nightly billing run\n\t(owned by payments)";
    let input = json!({ "input": {
        "kind": "PIPELINE", "name": "described", "description": resource_text, "references": [],
    } });
    let upserted = app.admin(UPSERT_RESOURCE, input).await;
    assert_ok(
        &upserted,
        "upsertResource with a tab and newline in its description",
    );
    let resource_id = id_of(&data(&upserted)["upsertResource"]["resource"]);
    let read = app.admin(RESOURCE, json!({ "id": resource_id })).await;
    let stored = &data(&read)["resource"]["description"];
    assert_same_text(
        stored,
        resource_text,
        "upsertResource's description read back",
    );

    let account = app.create_service_account("MEMBER").await;
    let token_text = "deploy job\n\tfor staging\n";
    let input = json!({ "input": { "principalId": account.id, "description": token_text } });
    let created = app.admin(CREATE_API_TOKEN, input).await;
    assert_ok(
        &created,
        "createApiToken with a tab and newline in its description",
    );
    let token_id = id_of(&data(&created)["createApiToken"]["apiToken"]);
    let listed = app
        .admin(API_TOKENS, json!({ "principalId": account.id }))
        .await;
    let nodes = data(&listed)["apiTokens"]["nodes"]
        .as_array()
        .expect("apiTokens.nodes is a list");
    let token = nodes
        .iter()
        .find(|node| node["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("apiTokens lists no token {token_id}: {listed:#}"));
    assert_same_text(
        &token["description"],
        token_text,
        "createApiToken's description read back",
    );
}

/// A value holding what a value must keep: every C0 control (NUL first), DEL, every C1
/// control, the separators and bidirectional controls, quotes and backslashes, accented
/// and symbol characters, an emoji with a joiner sequence, and characters beyond the
/// Basic Multilingual Plane.
fn every_character() -> String {
    let mut value: String = ('\0'..='\u{1f}')
        .chain(['\u{7f}'])
        .chain('\u{80}'..='\u{9f}')
        .collect();
    value.extend('\u{2028}'..='\u{202e}');
    value.extend('\u{2066}'..='\u{2069}');
    value.push_str(" \"quoted\" back\\slash é ✓ \u{feff} 🔑 🏳️‍🌈 𝄞 \u{10ffff}");
    value
}

/// `createSecret` as a literal document.
fn create_secret_literal(name: &str, value: &str) -> String {
    format!(
        "mutation {{ createSecret(input: {{ name: \"{name}\", value: {} }}) {{ secret {{ name }} }} }}",
        graphql_string(value)
    )
}

/// `updateSecret` (a new value) as a literal document.
fn update_secret_literal(name: &str, value: &str) -> String {
    format!(
        "mutation {{ updateSecret(input: {{ name: \"{name}\", value: {} }}) {{ secret {{ name }} }} }}",
        graphql_string(value)
    )
}

/// A secret value keeps every character, byte for byte — created and updated, in a
/// variable and as a literal, read through `secretValue` (current and older version) and
/// through `resourceSecrets` after a deployment pins it.
async fn values_keep_every_character(store: Store) {
    let app = TestApp::spawn(store).await;
    let first = every_character();
    let second: String = format!("v2 {}", first.chars().rev().collect::<String>());
    let reveal = |name: &'static str, version: i64| {
        let app = &app;
        async move {
            let variables = json!({ "name": name, "version": version });
            let response = app.admin(SECRET_VALUE, variables).await;
            data(&response)["secretValue"]["value"].clone()
        }
    };

    let input = json!({ "input": { "name": "EVERY_CHARACTER", "value": first } });
    let created = app.admin(CREATE_SECRET, input).await;
    assert_ok(&created, "createSecret with every character in a variable");
    let literal = create_secret_literal("EVERY_CHARACTER_LITERAL", &first);
    let created = app.admin(&literal, json!({})).await;
    assert_ok(&created, "createSecret with every character in a literal");
    for name in ["EVERY_CHARACTER", "EVERY_CHARACTER_LITERAL"] {
        let value = reveal(name, 1).await;
        assert_same_text(&value, &first, &format!("secretValue of {name}, version 1"));
    }

    let input = json!({ "input": { "name": "EVERY_CHARACTER", "value": second } });
    let updated = app.admin(UPDATE_SECRET, input).await;
    assert_ok(&updated, "updateSecret with every character in a variable");
    let literal = update_secret_literal("EVERY_CHARACTER_LITERAL", &second);
    let updated = app.admin(&literal, json!({})).await;
    assert_ok(&updated, "updateSecret with every character in a literal");
    for name in ["EVERY_CHARACTER", "EVERY_CHARACTER_LITERAL"] {
        let value = reveal(name, 2).await;
        assert_same_text(
            &value,
            &second,
            &format!("secretValue of {name}, version 2"),
        );
        let value = reveal(name, 1).await;
        assert_same_text(&value, &first, &format!("secretValue of {name}, version 1"));
    }

    let input = json!({ "input": {
        "kind": "INTEGRATION", "name": "runtime", "references": [
            { "secretName": "EVERY_CHARACTER", "field": "env.EVERY" },
            { "secretName": "EVERY_CHARACTER_LITERAL", "field": "env.LITERAL" },
        ],
    } });
    let upserted = app.admin(UPSERT_RESOURCE, input).await;
    assert_ok(&upserted, "upsertResource referencing both secrets");
    let resource_id = id_of(&data(&upserted)["upsertResource"]["resource"]);
    let deployed = app
        .admin(DEPLOY_RESOURCE, json!({ "id": resource_id }))
        .await;
    assert_ok(&deployed, "deployResource");
    let served = app
        .admin(RESOURCE_SECRETS, json!({ "id": resource_id }))
        .await;
    let served = data(&served)["resourceSecrets"]
        .as_array()
        .expect("resourceSecrets is a list");
    assert_eq!(served.len(), 2, "resourceSecrets: {served:#?}");
    for name in ["EVERY_CHARACTER", "EVERY_CHARACTER_LITERAL"] {
        let entry = served
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("resourceSecrets serves no {name}: {served:#?}"));
        assert_eq!(entry["version"], 2, "the version pinned for {name}");
        let what = format!("resourceSecrets value of {name}");
        assert_same_text(&entry["value"], &second, &what);
    }
}

// ---------------------------------------------------------------------------------------
// 4. Cursors
// ---------------------------------------------------------------------------------------

/// A cursor as async-graphql's `OpaqueCursor` makes one: base64url, without padding, of
/// the key's JSON.
fn cursor_of(key: &Value) -> String {
    URL_SAFE_NO_PAD.encode(key.to_string())
}

/// A cursor that decodes to a key holding a NUL, and one that is no cursor at all, are
/// `BAD_USER_INPUT` with the same message on every list that pages; a cursor the list
/// gave out still works.
async fn crafted_cursors_are_bad_input(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("ALPHA", "a").await;
    app.create_secret("BRAVO", "b").await;

    let page = |variables: Value| {
        let app = &app;
        async move { app.admin(SECRETS_PAGE, variables).await }
    };
    let first_page = page(json!({ "first": 1 })).await;
    let end_cursor = data(&first_page)["secrets"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("an endCursor")
        .to_owned();
    // What the list gives out is what `cursor_of` makes: base64url of a JSON string.
    let decoded = URL_SAFE_NO_PAD
        .decode(&end_cursor)
        .unwrap_or_else(|e| panic!("endCursor {end_cursor:?} is not base64url: {e}"));
    let key: Value = serde_json::from_slice(&decoded)
        .unwrap_or_else(|e| panic!("endCursor {end_cursor:?} is not JSON: {e}"));
    assert!(key.is_string(), "the secrets cursor's key: {key}");
    assert_eq!(cursor_of(&key), end_cursor, "re-encoding the cursor's key");
    let second_page = page(json!({ "first": 1, "after": end_cursor })).await;
    assert_eq!(
        data(&second_page)["secrets"]["nodes"],
        json!([{ "name": "BRAVO" }]),
        "the page after a cursor the list gave out"
    );

    let nul_key = json!(format!("{}\0", key.as_str().expect("a string key")));
    let crafted = [
        ("a cursor whose key holds a NUL", cursor_of(&nul_key)),
        ("a cursor whose key is only a NUL", cursor_of(&json!("\0"))),
        ("not a cursor", "not-a-cursor".to_owned()),
    ];
    for (what, cursor) in &crafted {
        for variables in [
            json!({ "first": 1, "after": cursor }),
            json!({ "last": 1, "before": cursor }),
        ] {
            let response = page(variables.clone()).await;
            let what = format!("secrets with {what} ({variables})");
            assert_bad_input(&response, CURSOR_REFUSED, &what);
        }
    }

    let other_lists = [
        "query($after: String) { principals(first: 1, after: $after) { totalCount } }",
        "query($after: String) { apiTokens(first: 1, after: $after) { totalCount } }",
        "query($after: String) { resources(first: 1, after: $after) { totalCount } }",
        "query($after: String) { auditEvents(first: 1, after: $after) { totalCount } }",
        "query($after: String) { secret(name: \"ALPHA\") {
            versions(first: 1, after: $after) { totalCount } } }",
    ];
    for query in other_lists {
        for (what, cursor) in &crafted {
            let response = app.admin(query, json!({ "after": cursor })).await;
            let what = format!("{what} in {query}");
            assert_bad_input(&response, CURSOR_REFUSED, &what);
        }
    }
}

/// The layer checks what reaches a resolver: the selected operation and its own variable
/// defaults, not another operation of the document.
async fn only_the_operation_that_runs_is_checked(store: Store) {
    let app = TestApp::spawn(store).await;
    app.create_secret("ALPHA", "alpha-value").await;
    let token = Some(app.admin_token.as_str());
    let document = r#"query A($v: String = "a\u0000") { secret(name: $v) { name } }
        query B($v: String = "ALPHA") { secret(name: $v) { name } }"#;
    let (status, body) = app
        .post_raw(token, json!({ "query": document, "operationName": "B" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(data(&body)["secret"]["name"], "ALPHA");
    // The other operation, with its own default, is refused.
    let (_, body) = app
        .post_raw(token, json!({ "query": document, "operationName": "A" }))
        .await;
    let error = only_error(&body, "operation A's default");
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
    let document = r#"query A { secret(name: "a\u0000") { name } } query B { viewer { role } }"#;
    let (_, body) = app
        .post_raw(token, json!({ "query": document, "operationName": "B" }))
        .await;
    assert_eq!(data(&body)["viewer"]["role"], "ADMIN");
    let (_, body) = app
        .post_raw(token, json!({ "query": document, "operationName": "A" }))
        .await;
    let error = only_error(&body, "operation A");
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body:#}");
}

/// A variable's object key that the input type does not have is refused by validation,
/// and no error quotes it (a client may put anything there).
async fn unknown_variable_keys_are_not_quoted(store: Store) {
    const KEY: &str = "sk_live_4242 my password";
    let app = TestApp::spawn(store).await;
    for key_holder in [
        json!({ "name": "KEYED", "value": "v", KEY: "a\0" }),
        json!({ "name": "KEYED", "value": "v", KEY: "plain" }),
    ] {
        let response = app
            .admin(CREATE_SECRET, json!({ "input": key_holder }))
            .await;
        let error = only_error(&response, "an unknown key");
        assert_eq!(
            error["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{response:#}"
        );
        assert!(!response.to_string().contains("sk_live"), "{response:#}");
    }
    assert_eq!(app.secret_count().await, 0);
}
