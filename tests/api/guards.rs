//! Guard coverage: proves, from the schema itself, that no field lets a MEMBER, a VIEWER or
//! a RUNTIME account reach a secret, a value, a dependent list or the audit log (DESIGN.md
//! §3: "no path — `node(id:)`, a nested field, a reference's `secret` — reaches a secret
//! without passing that guard"; §9 for RUNTIME), and that an INSPECTOR reads all of it
//! but values and changes nothing.
//!
//! A hand-written list of fields to check would silently miss the next field someone
//! adds, so the test reads the schema by introspection and probes all of it:
//!
//! 1. **Generate.** For every root field of `Query` and `Mutation`, one operation that
//!    selects everything reachable below it: every field of every object type, interfaces
//!    and unions expanded into an inline fragment per possible type, never re-entering an
//!    object type already on the path (so it ends), `first: 3` wherever a field takes a
//!    `first`. Required arguments and input fields are filled from their introspected
//!    types and a fixture ([`Fixture::fill`]). A root field that returns an abstract type
//!    by id (`node(id:)`) gets one operation per possible type, with an id of that type.
//! 2. **Mark.** A *sensitive position* is a field, or an inline fragment of an abstract
//!    field, whose (unwrapped) type is one of [`SENSITIVE_TYPES`] or a connection or edge
//!    of one (`SecretConnection`, `SecretEdge`...).
//! 3. **Probe.** Each operation runs as the admin, then as a MEMBER and as a VIEWER service
//!    account, with inputs of the same shape (fresh names for each, so that a refusal is
//!    never hidden behind an `ALREADY_EXISTS`). Queries run first, then mutations, the
//!    destructive ones (`delete…`, `revoke…`) last and against objects made for them.
//!    - The admin's answers carry no error, and across all operations every sensitive
//!      position holds data in at least one of them: the probes really reach every guarded
//!      field, so the checks below cannot pass vacuously.
//!    - RUNTIME and INSPECTOR accounts are probed too. The RUNTIME account is bound to the
//!      guarded pipeline, so what it may see (that pipeline) leads the probes into the
//!      guarded fields below it; its `resourceSecrets` answer must be the admin's (its own
//!      pipeline's values), and everything else is checked like the member's. The
//!      INSPECTOR's answers to queries that reach no value must hold data wherever the
//!      admin's did, with no error; queries that reach a value (`secretValue`,
//!      `resourceSecrets`) and every mutation are checked like the member's.
//!    - The member's and viewer's answers hold nothing at any sensitive position (`null`,
//!      or absent under a `null` ancestor); every error is `FORBIDDEN`; wherever the
//!      admin's answer had data at a sensitive position, a `FORBIDDEN` error sits *at
//!      that position or above it*; no secret value of the fixture appears in the body.
//!
//! What each check catches (the `Secret` type carries a guard of its own, so a missing
//! field guard shows mostly in *where* the refusal happens, not in a leaked value):
//! - Guard removed from `SecretReference.secret`: the `Secret` type's own guard still
//!   refuses `Secret.name`, `Secret.id`..., their non-null errors null `secret`, so
//!   `secret` is null — but the errors sit at `…/secret/name`, below the position, and
//!   none at or above `…/secret`: the "refused at or above" check fails.
//! - `Query.secretsForAnyone: [Secret!]!` added without a guard: it is a sensitive position
//!   of a new generated operation. The admin's answer must hold data there (or the
//!   coverage check fails, naming it); the member's errors come from `Secret`'s fields,
//!   below the position, so again no refusal at or above it.
//! - `Query.dependents` left unguarded (`Dependent` has no type guard): the member's
//!   answer holds a list at a sensitive position: the "nothing there" check fails.
//! - `resourceSecrets` left unguarded: the same, and a fixture value is in the body.
//! - `node(id:)` letting a secret id through: the refusal moves from `node` to
//!   `node/id`..., below the `… on Secret` position.
//! - A new sensitive field the fixture cannot give data to: the coverage check fails,
//!   naming it. A new required argument or input field the fixture cannot fill: filling
//!   it panics, naming it.
use std::collections::{BTreeMap, BTreeSet};

use chrono::{SecondsFormat, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use crate::helpers::{
    CREATE_API_TOKEN, FieldDef, Schema, Store, TestApp, TypeKind, TypeRef, UPDATE_SECRET,
    both_stores, data,
};

both_stores!(every_sensitive_field_refuses_members_and_viewers);

/// The object types whose every appearance must be refused to non-admins; their
/// connections and edges are added from the schema ([`sensitive_closure`]).
const SENSITIVE_TYPES: [&str; 8] = [
    "Secret",
    "SecretValue",
    "SecretVersion",
    "Dependent",
    "ResolvedSecret",
    "AuditEvent",
    "WebhookEndpoint",
    "WebhookDelivery",
];

/// The sensitive types that carry values: refused to an INSPECTOR, and to a RUNTIME
/// principal but from `resourceSecrets` of the resource bound to it.
const VALUE_TYPES: [&str; 2] = ["SecretValue", "ResolvedSecret"];

/// `first:` wherever a field takes one: enough to see data, small enough to stay fast.
const PAGE_SIZE: i64 = 3;

/// Limits that let the generated "select everything" operations through validation.
/// And the probes' webhook endpoints may point at a closed loopback port, where each
/// attempt fails at once (a delivery record to read).
const GENEROUS_LIMITS: [(&str, &str); 5] = [
    ("STRONGROOM_MAX_COMPLEXITY", "100000000"),
    ("STRONGROOM_MAX_DEPTH", "64"),
    ("STRONGROOM_MAX_ALIASES", "1000"),
    ("STRONGROOM_MAX_ROOT_FIELDS", "100"),
    ("STRONGROOM_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
];
/// Sensitive positions no answer can hold data at, by construction (each checked for
/// refusals all the same): an endpoint just created has made no delivery yet.
const NEVER_DATA: [&str; 1] = ["mutation › createWebhookEndpoint › endpoint › deliveries"];
/// Where the probes' webhook endpoints post (the discard port: nothing listens).
const PROBE_WEBHOOK_URL: &str = "http://127.0.0.1:9/guard-probe";
const CREATE_WEBHOOK: &str = "mutation($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) { endpoint { id } } }";
const WEBHOOK_DELIVERIES: &str = "query($id: ID!) { node(id: $id) {
    ... on WebhookEndpoint { deliveries { totalCount } } } }";

/// The guarded secret: two versions, then a deployment, then a third (so it is stale).
const GUARDED_SECRET: &str = "GUARDED_SECRET";
const GUARDED_PIPELINE: &str = "guarded-pipeline";
/// Where resources use the secrets they reference.
const REFERENCE_FIELD: &str = "sink.key";
/// What `redeployStale` is given: its dependents `redeploy-stale` and `redeploy-failing`
/// are stale on it, and the second also references a secret that never exists, so the
/// admin's call both deploys and fails one (earlier probes deploy and update
/// `GUARDED_SECRET`, which would leave nothing stale by then).
const REDEPLOY_SECRET: &str = "REDEPLOY_SECRET";
const NEVER_CREATED: &str = "NEVER_CREATED";

const CREATE_WORKLOAD_IDENTITY: &str = "mutation($input: CreateWorkloadIdentityInput!) {
    createWorkloadIdentity(input: $input) { workloadIdentity { id } } }";
/// The issuer of the workload identities the probes make (never contacted).
const PROBE_ISSUER: &str = "https://issuer.example.test";
const BIND_RUNTIME: &str = "mutation($input: RuntimeBindingInput!) {
    bindRuntime(input: $input) { resource { id } } }";
const UPSERT_RESOURCE: &str = "mutation($input: UpsertResourceInput!) {
    upsertResource(input: $input) { resource { id } } }";
const DEPLOY_RESOURCE: &str = "mutation($id: ID!) {
    deployResource(input: { id: $id }) { deployment { state } } }";

async fn every_sensitive_field_refuses_members_and_viewers(store: Store) {
    let app = TestApp::spawn_with(store, &GENEROUS_LIMITS).await;
    let schema = Schema::introspect(&app).await;
    let sensitive = sensitive_closure(&schema);
    let operations = Operation::generate_all(&schema, &sensitive);
    let mut fixture = Fixture::create(&app).await;

    // Every sensitive position of every operation, by key, with whether an admin answer
    // held data there.
    let mut reached: BTreeMap<&str, bool> = operations
        .iter()
        .flat_map(|operation| operation.positions())
        .map(|position| (position.key.as_str(), false))
        .collect();
    let mut failures = Vec::new();
    let mut admin_saw_a_value = false;

    for operation in &operations {
        let variables = fixture.variables(&schema, operation, Role::Admin);
        let response = app.admin(&operation.document, variables).await;
        assert!(
            response.get("errors").is_none() && response["data"].is_object(),
            "{} failed as the admin, so the probe itself is wrong: {}\n{}",
            operation.label,
            brief(&response["errors"]),
            operation.document
        );
        let with_data = operation.positions_with_data(&response["data"]);
        for key in with_data.keys() {
            reached.insert(key, true);
        }
        admin_saw_a_value |= response.to_string().contains(&fixture.issued.value_marker);

        for role in [Role::Member, Role::Viewer, Role::Runtime, Role::Inspector] {
            let variables = fixture.variables(&schema, operation, role);
            let answer = app
                .gql(Some(fixture.token(role)), &operation.document, variables)
                .await;
            let marker = &fixture.issued.value_marker;
            let found = match role {
                // Its own pipeline's pinned values, exactly as the admin gets them.
                Role::Runtime if operation.root == "resourceSecrets" => {
                    if answer == response {
                        Vec::new()
                    } else {
                        vec![format!(
                            "the bound pipeline's values differ from the admin's: {}",
                            brief(&answer)
                        )]
                    }
                }
                Role::Inspector if !operation.reaches_values() && !operation.is_mutation() => {
                    inspection_failures(operation, &answer, &with_data, marker)
                }
                _ => refusal_failures(operation, &answer, &with_data, marker),
            };
            failures.extend(
                found
                    .into_iter()
                    .map(|failure| format!("{} as {role:?}: {failure}", operation.label)),
            );
        }
    }

    assert!(
        admin_saw_a_value,
        "no admin answer held a fixture value: the leak check below would look for a \
         needle that is never there"
    );
    let unreached: Vec<&str> = reached
        .iter()
        .filter(|(_, reached)| !**reached)
        .filter(|(key, _)| !NEVER_DATA.iter().any(|prefix| key.starts_with(prefix)))
        .map(|(key, _)| *key)
        .collect();
    assert!(
        unreached.is_empty(),
        "these sensitive positions held no data in any admin answer, so nothing proves \
         that their guards refuse members and viewers; extend the fixture:\n  {}",
        unreached.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{} guard failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "guard coverage: {} operations × 5 roles, {} sensitive positions, all guarded",
        operations.len(),
        reached.len()
    );
}

/// What is wrong with a member's or viewer's `response` to `operation`, given the
/// sensitive positions at which the admin's answer had data (`admin_data`).
fn refusal_failures(
    operation: &Operation,
    response: &Value,
    admin_data: &BTreeMap<&str, &Position>,
    value_marker: &str,
) -> Vec<String> {
    let mut failures: Vec<String> = value_leak(response, value_marker).into_iter().collect();
    let errors = response["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // The admin's identical request succeeded: the only acceptable difference is a refusal.
    for error in errors {
        if error["extensions"]["code"] != "FORBIDDEN" {
            failures.push(format!("an error that is not FORBIDDEN: {error}"));
        }
    }
    if response["data"].is_object() {
        let answer = operation.root_answer(&response["data"]);
        operation.selected.visit(answer, &mut |position, value| {
            if !value.is_null() {
                failures.push(format!("{} holds data: {}", position.key, brief(value)));
            }
        });
    }
    let refusals: Vec<Vec<&str>> = errors
        .iter()
        .filter(|error| error["extensions"]["code"] == "FORBIDDEN")
        .map(field_path)
        .filter(|path| !path.is_empty())
        .collect();
    for position in admin_data.values() {
        let refused_here = refusals.iter().any(|refusal| {
            refusal.len() <= position.path.len()
                && refusal.iter().zip(&position.path).all(|(a, b)| a == b)
        });
        if !refused_here {
            failures.push(format!(
                "{}: the admin's answer had data here, but no FORBIDDEN error sits at \
                 /{} or above; errors: {}",
                position.key,
                position.path.join("/"),
                brief(&response["errors"])
            ));
        }
    }
    failures
}

/// A failure if `response` carries a fixture value.
fn value_leak(response: &Value, value_marker: &str) -> Option<String> {
    response
        .to_string()
        .contains(value_marker)
        .then(|| format!("a secret value is in the response: {}", brief(response)))
}

/// What is wrong with an INSPECTOR's `response` to a read that reaches no value: it must
/// read everything the admin read (`admin_data`), with no error and no value.
fn inspection_failures(
    operation: &Operation,
    response: &Value,
    admin_data: &BTreeMap<&str, &Position>,
    value_marker: &str,
) -> Vec<String> {
    let mut failures: Vec<String> = value_leak(response, value_marker).into_iter().collect();
    if let Some(errors) = response.get("errors") {
        failures.push(format!("a read refused or failed: {}", brief(errors)));
    }
    let seen = match response["data"].is_object() {
        true => operation.positions_with_data(&response["data"]),
        false => BTreeMap::new(),
    };
    for key in admin_data.keys() {
        if !seen.contains_key(key) {
            failures.push(format!(
                "{key}: the admin's answer had data here, this none"
            ));
        }
    }
    failures
}

/// Whether a value at a sensitive position shows anything: not `null`, and not a list
/// without one non-null element (an empty list proves no guard ran on its elements).
fn has_data(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => items.iter().any(has_data),
        _ => true,
    }
}

/// An error's path without its list indices: `["resource", "references", "secret"]`.
fn field_path(error: &Value) -> Vec<&str> {
    error["path"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A JSON value for a failure message, cut short.
fn brief(value: &Value) -> String {
    const MAX: usize = 600;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------
// The sensitive types.

/// [`SENSITIVE_TYPES`] (each must exist: a rename must not silently empty the test) and
/// every object type that wraps one as a connection or edge does: a `node`, `nodes` or
/// `edges` field of a sensitive type.
fn sensitive_closure(schema: &Schema) -> BTreeSet<String> {
    let mut sensitive: BTreeSet<String> = SENSITIVE_TYPES
        .iter()
        .map(|&name| {
            let ty = schema
                .types
                .get(name)
                .unwrap_or_else(|| panic!("sensitive type {name} is not in the schema"));
            assert_eq!(ty.kind, TypeKind::Object, "{name} is an object type");
            name.to_owned()
        })
        .collect();
    loop {
        let wrappers: Vec<String> = schema
            .types
            .values()
            .filter(|ty| ty.kind == TypeKind::Object && !sensitive.contains(&ty.name))
            .filter(|ty| {
                ty.fields().iter().any(|field| {
                    matches!(field.name.as_str(), "node" | "nodes" | "edges")
                        && sensitive.contains(field.ty.named())
                })
            })
            .map(|ty| ty.name.clone())
            .collect();
        if wrappers.is_empty() {
            return sensitive;
        }
        sensitive.extend(wrappers);
    }
}

// ---------------------------------------------------------------------------------------
// The generated operations.

/// Where a sensitive value may appear in an answer.
#[derive(Debug)]
struct Position {
    /// Unique across operations: `query node › … on Secret › versions › nodes`.
    key: String,
    /// The response path without list indices: `["node", "versions", "nodes"]`.
    path: Vec<String>,
    /// The type found there: `SecretConnection`, `Secret`...
    on: String,
}

/// A selected field with everything selected below it.
struct Selected {
    name: String,
    /// `(first: 3)`, `(input: $input)` or empty.
    arguments: String,
    /// Set when the field's type is sensitive.
    position: Option<Position>,
    below: Below,
}

enum Below {
    /// A scalar or an enum.
    Leaf,
    /// The fields of an object type.
    Fields(Vec<Selected>),
    /// An interface or union: `__typename` and a fragment per possible type.
    Fragments(Vec<Fragment>),
}

/// `... on Secret { … }` under a field of an abstract type.
struct Fragment {
    on: String,
    /// Set when the fragment's type is sensitive.
    position: Option<Position>,
    fields: Vec<Selected>,
}

impl Selected {
    /// Calls `visit` with each sensitive position in `value` (this field's answer) and the
    /// value there: for a field, its whole value (a list is one value); for a fragment,
    /// each object of that type. Nothing below a `null` is visited.
    fn visit<'s>(&'s self, value: &Value, visit: &mut impl FnMut(&'s Position, &Value)) {
        if let Some(position) = &self.position {
            visit(position, value);
        }
        self.below.visit(value, visit);
    }

    /// Every sensitive position at or below this field.
    fn positions<'s>(&'s self, into: &mut Vec<&'s Position>) {
        into.extend(&self.position);
        match &self.below {
            Below::Leaf => {}
            Below::Fields(fields) => fields.iter().for_each(|field| field.positions(into)),
            Below::Fragments(fragments) => {
                for fragment in fragments {
                    into.extend(&fragment.position);
                    fragment
                        .fields
                        .iter()
                        .for_each(|field| field.positions(into));
                }
            }
        }
    }

    /// Appends this field and its selection set to a document.
    fn render(&self, out: &mut String) {
        out.push_str(&self.name);
        out.push_str(&self.arguments);
        let render_fields = |out: &mut String, fields: &[Selected]| {
            for field in fields {
                out.push(' ');
                field.render(out);
            }
        };
        match &self.below {
            Below::Leaf => {}
            Below::Fields(fields) => {
                out.push_str(" {");
                render_fields(out, fields);
                out.push_str(" }");
            }
            Below::Fragments(fragments) => {
                out.push_str(" { __typename");
                for fragment in fragments {
                    out.push_str(" ... on ");
                    out.push_str(&fragment.on);
                    out.push_str(" {");
                    render_fields(out, &fragment.fields);
                    out.push_str(" }");
                }
                out.push_str(" }");
            }
        }
    }
}

impl Below {
    fn visit<'s>(&'s self, value: &Value, visit: &mut impl FnMut(&'s Position, &Value)) {
        match (value, self) {
            (Value::Array(items), _) => items.iter().for_each(|item| self.visit(item, visit)),
            (Value::Object(object), Below::Fields(fields)) => {
                for field in fields {
                    field.visit(object.get(&field.name).unwrap_or(&Value::Null), visit);
                }
            }
            (Value::Object(object), Below::Fragments(fragments)) => {
                let typename = object.get("__typename").and_then(Value::as_str);
                let Some(fragment) = fragments.iter().find(|f| Some(f.on.as_str()) == typename)
                else {
                    return;
                };
                if let Some(position) = &fragment.position {
                    visit(position, value);
                }
                for field in &fragment.fields {
                    field.visit(object.get(&field.name).unwrap_or(&Value::Null), visit);
                }
            }
            // Null, a scalar, or a JSON scalar's object under a leaf.
            _ => {}
        }
    }
}

/// A variable of a generated operation: a required argument to fill.
struct Variable {
    name: String,
    ty: TypeRef,
    /// The field that takes the argument, e.g. `createSecret`.
    field: String,
    argument: String,
    /// For `node(id:)`: the possible type whose id to give.
    target: Option<String>,
}

/// One generated operation: a root field with everything reachable below it.
struct Operation {
    /// `query node (a Secret)`, `mutation createSecret`...
    label: String,
    /// The root field.
    root: String,
    document: String,
    variables: Vec<Variable>,
    selected: Selected,
}

impl Operation {
    /// An operation per root field of `Query` and `Mutation` (per possible type for an
    /// abstract field taking an id), queries first, destructive mutations last.
    fn generate_all(schema: &Schema, sensitive: &BTreeSet<String>) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (operation_type, root_type) in schema.roots() {
            for field in schema.ty(root_type).fields() {
                let returned = schema.ty(field.ty.named());
                let by_id = field
                    .args
                    .iter()
                    .any(|arg| arg.is_required() && arg.ty.named() == "ID");
                let targets: Vec<Option<String>> = match (&returned.possible_types, by_id) {
                    (Some(possible), true) => {
                        possible.iter().map(|ty| Some(ty.name.clone())).collect()
                    }
                    _ => vec![None],
                };
                for target in targets {
                    operations.push(Generator::operation(
                        schema,
                        sensitive,
                        operation_type,
                        root_type,
                        field,
                        target,
                    ));
                }
            }
        }
        // A stable sort: schema order otherwise.
        operations.sort_by_key(|operation| is_destructive(&operation.root));
        operations
    }

    /// Every sensitive position of the operation.
    fn positions(&self) -> Vec<&Position> {
        let mut positions = Vec::new();
        self.selected.positions(&mut positions);
        positions
    }

    /// The sensitive positions at which a response's `data` holds data, by key.
    fn positions_with_data(&self, data: &Value) -> BTreeMap<&str, &Position> {
        let mut with_data = BTreeMap::new();
        self.selected
            .visit(self.root_answer(data), &mut |position, value| {
                if has_data(value) {
                    with_data.insert(position.key.as_str(), position);
                }
            });
        with_data
    }

    /// Whether a position of the operation is of a type that carries values.
    fn reaches_values(&self) -> bool {
        self.positions()
            .iter()
            .any(|position| VALUE_TYPES.contains(&position.on.as_str()))
    }

    fn is_mutation(&self) -> bool {
        self.label.starts_with("mutation")
    }

    /// The root field's answer in a response's `data`.
    fn root_answer<'v>(&self, data: &'v Value) -> &'v Value {
        data.get(&self.root).unwrap_or(&Value::Null)
    }
}

/// Builds one operation's selection tree and the variables it declares.
struct Generator<'s> {
    schema: &'s Schema,
    /// The sensitive types ([`sensitive_closure`]).
    sensitive: &'s BTreeSet<String>,
    target: Option<String>,
    variables: Vec<Variable>,
}

impl<'s> Generator<'s> {
    fn operation(
        schema: &'s Schema,
        sensitive: &'s BTreeSet<String>,
        operation_type: &'static str,
        root_type: &'s str,
        field: &'s FieldDef,
        target: Option<String>,
    ) -> Operation {
        let mut generator = Generator {
            schema,
            sensitive,
            target: target.clone(),
            variables: Vec::new(),
        };
        let selected = generator
            .field(field, &[root_type], operation_type, &[])
            .unwrap_or_else(|| panic!("{operation_type} {} selects nothing", field.name));
        let declarations: Vec<String> = generator
            .variables
            .iter()
            .map(|variable| format!("${}: {}", variable.name, variable.ty.render()))
            .collect();
        let declarations = match declarations.is_empty() {
            true => String::new(),
            false => format!("({})", declarations.join(", ")),
        };
        let name = match &target {
            Some(target) => format!("GuardProbe_{}_{target}", field.name),
            None => format!("GuardProbe_{}", field.name),
        };
        let mut document = format!("{operation_type} {name}{declarations} {{ ");
        selected.render(&mut document);
        document.push_str(" }");
        let label = match &target {
            Some(target) => format!("{operation_type} {} (a {target})", field.name),
            None => format!("{operation_type} {}", field.name),
        };
        Operation {
            label,
            root: field.name.clone(),
            document,
            variables: generator.variables,
            selected,
        }
    }

    /// `field` with everything below it, or `None` when its type is an object already on
    /// the path (`on_path`) or nothing below it can be selected. `key` and `path` are the
    /// parent's position key and response path.
    fn field(
        &mut self,
        field: &'s FieldDef,
        on_path: &[&'s str],
        key: &str,
        path: &[String],
    ) -> Option<Selected> {
        let schema = self.schema;
        let key = format!("{key} › {}", field.name);
        let path: Vec<String> = path.iter().cloned().chain([field.name.clone()]).collect();
        let named = field.ty.named();
        let ty = schema.ty(named);
        let position = |sensitive: bool| {
            sensitive.then(|| Position {
                key: key.clone(),
                path: path.clone(),
                on: named.to_owned(),
            })
        };
        let (position, below) = match ty.kind {
            TypeKind::Scalar | TypeKind::Enum => (None, Below::Leaf),
            TypeKind::Object => {
                if on_path.contains(&named) {
                    return None;
                }
                let fields = self.fields(named, on_path, &key, &path)?;
                (
                    position(self.sensitive.contains(named)),
                    Below::Fields(fields),
                )
            }
            TypeKind::Interface | TypeKind::Union => {
                let possible = ty.possible_types();
                let fragments: Vec<Fragment> = possible
                    .iter()
                    .map(|possible| possible.name.as_str())
                    .filter(|on| !on_path.contains(on))
                    .filter_map(|on| {
                        let key = format!("{key} › … on {on}");
                        let fields = self.fields(on, on_path, &key, &path)?;
                        let position = self.sensitive.contains(on).then(|| Position {
                            key,
                            path: path.clone(),
                            on: on.to_owned(),
                        });
                        Some(Fragment {
                            on: on.to_owned(),
                            position,
                            fields,
                        })
                    })
                    .collect();
                if fragments.is_empty() {
                    return None;
                }
                (None, Below::Fragments(fragments))
            }
            other => panic!("output field {key} has a type of kind {other:?}"),
        };
        Some(Selected {
            name: field.name.clone(),
            // Only now that the field is kept: a variable declared for a field left out
            // would be an unused variable, which fails validation.
            arguments: self.arguments(field, on_path.len() == 1),
            position,
            below,
        })
    }

    /// Every selectable field of the object type `type_name`, or `None` if there is none.
    fn fields(
        &mut self,
        type_name: &'s str,
        on_path: &[&'s str],
        key: &str,
        path: &[String],
    ) -> Option<Vec<Selected>> {
        let on_path: Vec<&str> = on_path.iter().copied().chain([type_name]).collect();
        let fields: Vec<Selected> = self
            .schema
            .ty(type_name)
            .fields()
            .iter()
            .filter_map(|field| self.field(field, &on_path, key, path))
            .collect();
        (!fields.is_empty()).then_some(fields)
    }

    /// The argument list of `field`: `first: 3`, and a variable per required argument.
    fn arguments(&mut self, field: &FieldDef, at_root: bool) -> String {
        let mut arguments = Vec::new();
        for argument in &field.args {
            if argument.name == "first" && argument.ty.named() == "Int" {
                arguments.push(format!("first: {PAGE_SIZE}"));
            } else if argument.is_required() {
                let mut name = match at_root {
                    true => argument.name.clone(),
                    false => format!("{}_{}", field.name, argument.name),
                };
                while self.variables.iter().any(|variable| variable.name == name) {
                    name.push('_');
                }
                arguments.push(format!("{}: ${name}", argument.name));
                self.variables.push(Variable {
                    name,
                    ty: argument.ty.clone(),
                    field: field.name.clone(),
                    argument: argument.name.clone(),
                    target: self.target.clone().filter(|_| at_root),
                });
            }
        }
        match arguments.is_empty() {
            true => String::new(),
            false => format!("({})", arguments.join(", ")),
        }
    }
}

/// Whether a root field destroys what it names (it runs last, against objects made for it).
fn is_destructive(root: &str) -> bool {
    ["delete", "revoke", "remove", "destroy", "purge"]
        .iter()
        .any(|verb| root.starts_with(verb))
}

// ---------------------------------------------------------------------------------------
// The fixture, and how it fills arguments.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Admin,
    Member,
    Viewer,
    Runtime,
    Inspector,
}

impl Role {
    const ALL: [Role; 5] = [
        Role::Admin,
        Role::Member,
        Role::Viewer,
        Role::Runtime,
        Role::Inspector,
    ];

    fn word(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Runtime => "runtime",
            Role::Inspector => "inspector",
        }
    }
}

/// The kinds of object an argument can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Secret,
    Resource,
    Principal,
    ApiToken,
    WorkloadIdentity,
    WebhookEndpoint,
}

/// The kind an identifier (`secretName`, `DeleteResourceInput`, `createApiToken`) is about.
fn kind_in(identifier: &str) -> Option<Kind> {
    let identifier = identifier.to_lowercase();
    [
        // First: `rotateWebhookSecret` is about an endpoint, not a secret.
        ("webhook", Kind::WebhookEndpoint),
        ("token", Kind::ApiToken),
        ("workload", Kind::WorkloadIdentity),
        ("serviceaccount", Kind::Principal),
        ("principal", Kind::Principal),
        ("resource", Kind::Resource),
        ("secret", Kind::Secret),
    ]
    .into_iter()
    .find(|(word, _)| identifier.contains(word))
    .map(|(_, kind)| kind)
}

/// What a root field does to the object it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// Makes it: give a name nobody has used.
    Fresh,
    /// Reads or changes it: give the fixture's.
    Existing,
    /// Destroys it: give one made for this call.
    Doomed,
}

/// Where a value is needed: the argument or input field (`owner`), the field or input
/// type it belongs to (`container`), the root field of the operation, and the role that
/// will send it.
#[derive(Clone, Copy)]
struct Site<'a> {
    role: Role,
    root: &'a str,
    container: &'a str,
    owner: &'a str,
    target: Option<&'a str>,
}

impl Site<'_> {
    /// The kind of object this value names, if it names one.
    fn kind(&self) -> Option<Kind> {
        self.target
            .and_then(kind_in)
            .or_else(|| kind_in(self.owner))
            .or_else(|| kind_in(self.container))
            .or_else(|| kind_in(self.root))
    }

    /// A root field makes, reads or destroys objects of its own kind; every other object
    /// it names (a `createApiToken`'s principal, an `upsertResource`'s secrets) it reads.
    fn purpose(&self, kind: Kind) -> Purpose {
        if kind_in(self.root) != Some(kind) {
            Purpose::Existing
        } else if ["create", "upsert"]
            .iter()
            .any(|verb| self.root.starts_with(verb))
        {
            Purpose::Fresh
        } else if is_destructive(self.root) {
            Purpose::Doomed
        } else {
            Purpose::Existing
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}.{}` (in {}, as {:?})",
            self.container, self.owner, self.root, self.role
        )
    }
}

/// A secret, resource... of the fixture.
struct Made {
    name: String,
    id: String,
}

/// What one role's creating and destroying calls act on, made for that role alone, so
/// that no call can fail for a reason other than a refusal (already exists, already gone):
/// such an error could null the very answer that would have shown a leak.
struct RoleTargets {
    token: String,
    /// The name its `createSecret` gives. A resource references it already, so the
    /// created secret has a dependent to show.
    awaited_secret: String,
    /// Referenced by a resource, so that deleting it affects a dependent.
    doomed_secret: Made,
    doomed_resource: Made,
    doomed_token_id: String,
    doomed_workload_id: String,
    doomed_webhook_id: String,
}

/// Secret values and names, each new.
struct Issued {
    /// In every secret value of the fixture and in no name: a body that contains it
    /// carries a value.
    value_marker: String,
    count: u32,
}

impl Issued {
    /// A secret value nobody else could have written.
    fn value(&mut self) -> String {
        self.count += 1;
        format!("guarded-value-{}-{}", self.value_marker, self.count)
    }

    /// A resource or principal name nobody has used: `probe-member-7`.
    fn name(&mut self, role: Role) -> String {
        self.count += 1;
        format!("probe-{}-{}", role.word(), self.count)
    }
}

/// The objects the probes read, and the per-role objects they create or destroy.
struct Fixture {
    issued: Issued,
    guarded_secret_id: String,
    pipeline_id: String,
    member_id: String,
    /// The RUNTIME account, bound to the guarded pipeline.
    runtime_id: String,
    /// A webhook endpoint with a failed delivery.
    webhook_id: String,
    roles: BTreeMap<Role, RoleTargets>,
}

impl Fixture {
    /// Creates, as the admin: `GUARDED_SECRET` (two versions), `guarded-pipeline`
    /// referencing it and deployed, a third version (so the pipeline is stale), what
    /// `redeployStale` acts on ([`REDEPLOY_SECRET`]), a MEMBER and a VIEWER service account, and for each role a doomed secret, resource and token
    /// and an awaited secret name. Audit events exist by then.
    async fn create(app: &TestApp) -> Self {
        let mut issued = Issued {
            value_marker: uuid::Uuid::now_v7().simple().to_string(),
            count: 0,
        };
        // First, so that the changes below are posted to it (and fail: a delivery record).
        let webhook_id = create_webhook(app).await;
        let secret = app.create_secret(GUARDED_SECRET, &issued.value()).await;
        update_secret(app, GUARDED_SECRET, &issued.value()).await;
        let pipeline_id =
            upsert_resource(app, GUARDED_PIPELINE, &[GUARDED_SECRET.to_owned()]).await;
        let response = app
            .admin(DEPLOY_RESOURCE, json!({ "id": pipeline_id }))
            .await;
        assert_eq!(
            data(&response)["deployResource"]["deployment"]["state"],
            "ACTIVE"
        );
        update_secret(app, GUARDED_SECRET, &issued.value()).await;

        app.create_secret(REDEPLOY_SECRET, &issued.value()).await;
        let redeployed = [REDEPLOY_SECRET.to_owned()];
        for name in ["redeploy-stale", "redeploy-failing"] {
            let id = upsert_resource(app, name, &redeployed).await;
            let response = app.admin(DEPLOY_RESOURCE, json!({ "id": id })).await;
            data(&response);
        }
        update_secret(app, REDEPLOY_SECRET, &issued.value()).await;
        let failing = [REDEPLOY_SECRET.to_owned(), NEVER_CREATED.to_owned()];
        upsert_resource(app, "redeploy-failing", &failing).await;

        let member = app.create_service_account("MEMBER").await;
        let viewer = app.create_service_account("VIEWER").await;
        let inspector = app.create_service_account("INSPECTOR").await;
        // The runtime of the guarded pipeline: it may see that pipeline and fetch its
        // pinned values, and nothing else.
        let runtime = app.create_service_account("RUNTIME").await;
        let input = json!({ "input": { "resourceId": pipeline_id, "principalId": runtime.id } });
        data(&app.admin(BIND_RUNTIME, input).await);
        let mut roles = BTreeMap::new();
        for role in Role::ALL {
            let token = match role {
                Role::Admin => app.admin_token.clone(),
                Role::Member => member.token.clone(),
                Role::Viewer => viewer.token.clone(),
                Role::Runtime => runtime.token.clone(),
                Role::Inspector => inspector.token.clone(),
            };
            let name = format!("DOOMED_{}", role.word().to_uppercase());
            let doomed = app.create_secret(&name, &issued.value()).await;
            let doomed_secret = Made {
                id: text(&doomed["id"]),
                name,
            };
            for prefix in ["TOGGLED", "RESTORABLE", "PURGEABLE"] {
                let name = format!("{prefix}_{}", role.word().to_uppercase());
                app.create_secret(&name, &issued.value()).await;
                if prefix != "TOGGLED" {
                    let input = json!({ "input": { "name": name } });
                    data(&app.admin(crate::helpers::DELETE_SECRET, input).await);
                }
            }
            let name = format!("doomed-{}", role.word());
            let doomed_resource = Made {
                id: upsert_resource(app, &name, &[]).await,
                name,
            };
            let input = json!({ "input": { "principalId": member.id } });
            let response = app.admin(CREATE_API_TOKEN, input).await;
            let doomed_token_id = text(&data(&response)["createApiToken"]["apiToken"]["id"]);
            let input = json!({ "input": { "issuer": PROBE_ISSUER, "audience": role.word(),
                                           "principalId": member.id } });
            let response = app.admin(CREATE_WORKLOAD_IDENTITY, input).await;
            let doomed_workload_id =
                text(&data(&response)["createWorkloadIdentity"]["workloadIdentity"]["id"]);
            let doomed_webhook_id = create_webhook(app).await;
            let targets = RoleTargets {
                token,
                awaited_secret: format!("AWAITED_{}", role.word().to_uppercase()),
                doomed_secret,
                doomed_resource,
                doomed_token_id,
                doomed_workload_id,
                doomed_webhook_id,
            };
            roles.insert(role, targets);
        }
        // The dependent of the doomed secrets, with a reference that survives their
        // delete (so the dependent's `references { secret }` still shows a secret), and
        // the dependent of the secrets each role's `createSecret` makes.
        let doomed_dependent: Vec<String> = [GUARDED_SECRET.to_owned()]
            .into_iter()
            .chain(
                roles
                    .values()
                    .map(|targets| targets.doomed_secret.name.clone()),
            )
            .collect();
        upsert_resource(app, "doomed-dependent", &doomed_dependent).await;
        // The dependent of the secrets the lifecycle mutations act on.
        let lifecycle: Vec<String> = ["TOGGLED", "RESTORABLE", "PURGEABLE"]
            .iter()
            .flat_map(|prefix| {
                Role::ALL
                    .iter()
                    .map(move |role| format!("{prefix}_{}", role.word().to_uppercase()))
            })
            .collect();
        upsert_resource(app, "lifecycle-dependent", &lifecycle).await;
        let awaited: Vec<String> = roles
            .values()
            .map(|targets| targets.awaited_secret.clone())
            .collect();
        upsert_resource(app, "awaiting-pipeline", &awaited).await;
        // An attempt to post one of the changes above has been recorded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let response = app
                .admin(WEBHOOK_DELIVERIES, json!({ "id": webhook_id }))
                .await;
            if data(&response)["node"]["deliveries"]["totalCount"].as_i64() > Some(0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no webhook delivery was recorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        Fixture {
            issued,
            guarded_secret_id: text(&secret["id"]),
            pipeline_id,
            member_id: member.id,
            runtime_id: runtime.id,
            webhook_id,
            roles,
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.targets(role).token
    }

    fn targets(&self, role: Role) -> &RoleTargets {
        self.roles
            .get(&role)
            .expect("the fixture has targets for every role")
    }

    /// The variables of `operation` when `role` sends it.
    fn variables(&mut self, schema: &Schema, operation: &Operation, role: Role) -> Value {
        let mut variables = Map::new();
        for variable in &operation.variables {
            let site = Site {
                role,
                root: &operation.root,
                container: &variable.field,
                owner: &variable.argument,
                target: variable.target.as_deref(),
            };
            let value = self.fill(schema, &variable.ty, site);
            variables.insert(variable.name.clone(), value);
        }
        Value::Object(variables)
    }

    /// A valid value of type `ty` for `site`: input objects get their required fields and
    /// their optional texts and times; enums their first value; lists one element.
    fn fill(&mut self, schema: &Schema, ty: &TypeRef, site: Site<'_>) -> Value {
        match ty.kind {
            TypeKind::NonNull => return self.fill(schema, ty.inner(), site),
            TypeKind::List => return json!([self.fill(schema, ty.inner(), site)]),
            _ => {}
        }
        let name = ty.named();
        let def = schema.ty(name);
        match def.kind {
            // Narrowing access (as a dry run, below) is what shows affected dependents.
            TypeKind::Enum if site.root == "setSecretAccess" && site.owner == "access" => {
                json!("SELECTED_RESOURCES")
            }
            TypeKind::Enum => {
                let values = def.enum_values();
                let first = values
                    .first()
                    .unwrap_or_else(|| panic!("enum {name} has values"));
                json!(first.name)
            }
            TypeKind::InputObject => {
                let mut object = Map::new();
                for field in def.input_fields() {
                    let site = Site {
                        container: name,
                        owner: &field.name,
                        ..site
                    };
                    if field.is_required() {
                        let value = self.fill(schema, &field.ty, site);
                        object.insert(field.name.clone(), value);
                    } else if let Some(value) = self.optional(&field.ty, site) {
                        object.insert(field.name.clone(), value);
                    }
                }
                Value::Object(object)
            }
            TypeKind::Scalar => match name {
                "String" => json!(self.text(site).unwrap_or_else(|| no_rule(site, name))),
                "ID" => json!(self.id(site).unwrap_or_else(|| no_rule(site, name))),
                "Int" => json!(1),
                "Float" => json!(1.0),
                "Boolean" => json!(false),
                "DateTime" => json!(in_a_month()),
                _ => no_rule(site, name),
            },
            other => panic!("input {} has a type of kind {other:?}", site.describe()),
        }
    }

    /// An optional input field worth giving (a description, a new value, an expiry), or
    /// `None` to leave it out: other optional inputs (an `expectedVersion`, a filter) could
    /// only make a call fail or find less.
    fn optional(&mut self, ty: &TypeRef, site: Site<'_>) -> Option<Value> {
        // What a narrowing would affect, changing nothing (it would otherwise be refused:
        // the guarded pipeline is deployed with the guarded secret). `Boolean!` with a
        // default.
        if site.root == "setSecretAccess" && site.owner == "dryRun" {
            return Some(json!(true));
        }
        if ty.kind != TypeKind::Scalar {
            return None;
        }
        match ty.named() {
            // What a narrowing would affect, changing nothing (it would otherwise be
            // refused: the guarded pipeline is deployed with the guarded secret).
            "String" => self.text(site).map(Value::from),
            "DateTime" => Some(json!(in_a_month())),
            _ => None,
        }
    }

    /// A string for `site`, if the fixture knows what it should be.
    fn text(&mut self, site: Site<'_>) -> Option<String> {
        match site.owner {
            "value" => Some(self.issued.value()),
            "description" | "reason" => Some("probed by the guard-coverage test".to_owned()),
            "field" => Some(REFERENCE_FIELD.to_owned()),
            "issuer" => Some(PROBE_ISSUER.to_owned()),
            "audience" => Some("strongroom".to_owned()),
            "claim" => Some("repository".to_owned()),
            "pattern" => Some("acme/*".to_owned()),
            "url" => Some(PROBE_WEBHOOK_URL.to_owned()),
            owner if owner == "name" || owner.ends_with("Name") => {
                let kind = site.kind()?;
                let role = site.role;
                if kind == Kind::Secret && site.root.starts_with("redeploy") {
                    return Some(REDEPLOY_SECRET.to_owned());
                }
                if kind == Kind::Secret
                    && let Some(prefix) = lifecycle_target(site.root)
                {
                    return Some(format!("{prefix}_{}", role.word().to_uppercase()));
                }
                Some(match (kind, site.purpose(kind)) {
                    (Kind::Secret, Purpose::Fresh) => self.targets(role).awaited_secret.clone(),
                    (Kind::Secret, Purpose::Existing) => GUARDED_SECRET.to_owned(),
                    (Kind::Secret, Purpose::Doomed) => {
                        self.targets(role).doomed_secret.name.clone()
                    }
                    (Kind::Resource, Purpose::Existing) => GUARDED_PIPELINE.to_owned(),
                    (Kind::Resource, Purpose::Doomed) => {
                        self.targets(role).doomed_resource.name.clone()
                    }
                    (Kind::Resource | Kind::Principal, Purpose::Fresh) => self.issued.name(role),
                    (
                        Kind::Principal
                        | Kind::ApiToken
                        | Kind::WorkloadIdentity
                        | Kind::WebhookEndpoint,
                        _,
                    ) => return None,
                })
            }
            _ => None,
        }
    }

    /// An id for `site`, if the fixture has one of the right kind.
    fn id(&self, site: Site<'_>) -> Option<String> {
        let kind = site.kind()?;
        let targets = self.targets(site.role);
        Some(match (kind, site.purpose(kind)) {
            (Kind::Secret, Purpose::Doomed) => targets.doomed_secret.id.clone(),
            (Kind::Secret, _) => self.guarded_secret_id.clone(),
            (Kind::Resource, Purpose::Doomed) => targets.doomed_resource.id.clone(),
            (Kind::Resource, _) => self.pipeline_id.clone(),
            (Kind::Principal, Purpose::Doomed) => return None,
            // Only a RUNTIME account can be bound to a resource.
            (Kind::Principal, _) if site.root.contains("Runtime") => self.runtime_id.clone(),
            (Kind::Principal, _) => self.member_id.clone(),
            (Kind::ApiToken, Purpose::Doomed) => targets.doomed_token_id.clone(),
            (Kind::ApiToken, _) => return None,
            (Kind::WorkloadIdentity, Purpose::Doomed) => targets.doomed_workload_id.clone(),
            (Kind::WorkloadIdentity, _) => return None,
            (Kind::WebhookEndpoint, Purpose::Doomed) => targets.doomed_webhook_id.clone(),
            (Kind::WebhookEndpoint, _) => self.webhook_id.clone(),
        })
    }
}

/// The secret a lifecycle mutation acts on, per role: one to disable and enable, and one
/// deleted secret each to restore and to purge (made by [`Fixture::create`]).
fn lifecycle_target(root: &str) -> Option<&'static str> {
    [
        ("disable", "TOGGLED"),
        ("enable", "TOGGLED"),
        ("restore", "RESTORABLE"),
        ("purge", "PURGEABLE"),
    ]
    .into_iter()
    .find(|(verb, _)| root.starts_with(verb))
    .map(|(_, prefix)| prefix)
}

/// A generated operation needs a value the fixture has no rule for: say which.
fn no_rule(site: Site<'_>, type_name: &str) -> ! {
    panic!(
        "no fixture rule gives a {type_name} for {}: teach `Fixture::fill` (and the \
         fixture) what a valid value is",
        site.describe()
    )
}

/// A webhook endpoint posting every secret's creations and updates to
/// [`PROBE_WEBHOOK_URL`]; returns its id.
async fn create_webhook(app: &TestApp) -> String {
    let input = json!({ "input": { "url": PROBE_WEBHOOK_URL,
                                   "events": ["SECRET_CREATED", "SECRET_UPDATED"] } });
    let response = app.admin(CREATE_WEBHOOK, input).await;
    text(&data(&response)["createWebhookEndpoint"]["endpoint"]["id"])
}

/// Upserts a PIPELINE `name` referencing `secrets` at [`REFERENCE_FIELD`]; returns its id.
async fn upsert_resource(app: &TestApp, name: &str, secrets: &[String]) -> String {
    let references: Vec<Value> = secrets
        .iter()
        .map(|secret| json!({ "secretName": secret, "field": REFERENCE_FIELD }))
        .collect();
    let input = json!({ "input": { "kind": "PIPELINE", "name": name, "references": references } });
    let response = app.admin(UPSERT_RESOURCE, input).await;
    text(&data(&response)["upsertResource"]["resource"]["id"])
}

/// Updates a secret's value as the admin.
async fn update_secret(app: &TestApp, name: &str, value: &str) {
    let input = json!({ "input": { "name": name, "value": value } });
    let response = app.admin(UPDATE_SECRET, input).await;
    data(&response);
}

/// A string field of an answer.
fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

/// An RFC 3339 time a month from now: a valid expiry.
fn in_a_month() -> String {
    (Utc::now() + TimeDelta::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true)
}
