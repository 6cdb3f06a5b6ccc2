//! No N+1 anywhere: every list field of the API, nested or not, costs a constant number of
//! SQL statements per request, whatever the length of its list and of the lists around it.
//!
//! What is measured: `strongroom_db_statements_total` (`/metrics`) just before and just
//! after exactly one GraphQL request, with nothing else talking to the server (each test
//! spawns its own). The server runs with its authentication cache off
//! (`STRONGROOM_AUTH_CACHE_MILLIS=0`), so every request also costs exactly one token
//! lookup; it is the same at both sizes and nothing is subtracted. Background writers
//! (the usage flush, the purge and rotation sweep) run rarely here, so none lands inside
//! a measured request.
//!
//! How: one organization holds two worlds built alike, a small one ([`SMALL`] of
//! everything) and a large one ([`LARGE`]). A world of size n has n admins (service
//! accounts); admin i creates secret i and gives it n versions; n resources of the world's
//! own kind each reference all n secrets, and admin i deploys resource i. So every list
//! of a world holds n items, a list nested in a list n × n, and the principals an item
//! links to are n different ones (a cache by id cannot hide a query per item). Each case
//! runs the same document against both worlds (the global lists — principals, tokens,
//! audit events — at page sizes [`SMALL`] and [`LARGE`]); the two counts must be equal. A
//! field that queries once per item costs more statements in the large world (how many
//! more may vary from run to run: the batched loads below a per-item query can split).
//! Every count is printed (`--nocapture`), and every failing field is named at the end.
//!
//! Separately, the issue's own example: a page of 50 secrets with their dependents, under
//! a fixed bound.
use serde_json::{Value, json};

use crate::helpers::{
    CREATE_SECRET, CREATE_SERVICE_ACCOUNT, DEPLOY_RESOURCE, QUIET, Store, TestApp, UPDATE_SECRET,
    UPSERT_RESOURCE, both_stores, data, id, resource_input,
};

both_stores!(
    every_list_field,
    a_page_of_50_secrets_with_dependents,
    writes_cost_a_fixed_number_of_statements,
);

/// The two sizes every list is measured at.
const SMALL: usize = 2;
const LARGE: usize = 8;

/// The issue's bound, "the page of 50 secrets with dependents costs at most 4 SQL
/// statements", plus the one token lookup every request costs with the auth cache off.
const SECRETS_WITH_DEPENDENTS_MAX_STATEMENTS: u64 = 4 + 1;

const PRINCIPALS_NODES: &str = "query($n: Int!) { principals(first: $n) {
    totalCount pageInfo { hasNextPage } nodes { id kind name role createdAt } } }";
const PRINCIPALS_EDGES: &str = "query($n: Int!) { principals(first: $n) {
    edges { cursor node { id name } } } }";
const API_TOKENS_NODES: &str = "query($n: Int!) { apiTokens(first: $n) {
    totalCount nodes { id prefix createdAt principal { id name } } } }";
const API_TOKENS_EDGES: &str = "query($n: Int!) { apiTokens(first: $n) {
    edges { cursor node { id principal { id name } } } } }";
const AUDIT_EVENTS_NODES: &str = "query($n: Int!) {
    auditEvents(first: $n, filter: { action: \"secret.create\" }) {
        totalCount nodes { id action outcome targetName principal { id name } } } }";
const AUDIT_EVENTS_EDGES: &str = "query($n: Int!) {
    auditEvents(first: $n, filter: { action: \"secret.create\" }) {
        edges { cursor node { targetName principal { id name } } } } }";
const SECRETS_NODES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) {
        totalCount pageInfo { hasNextPage }
        nodes { id name currentVersion createdBy { id name } updatedBy { id name } } } }";
const SECRETS_EDGES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) {
        edges { cursor node { name createdBy { name } updatedBy { name } } } } }";
const SECRETS_LAST: &str = "query($n: Int!, $tag: String!) {
    secrets(last: $n, filter: { nameContains: $tag }) {
        nodes { name createdBy { name } updatedBy { name } } } }";
const SECRET_VERSIONS_NODES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { nodes { name
        versions(first: $n) { nodes { version keyId createdAt createdBy { id name } } } } } }";
const SECRET_VERSIONS_EDGES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { edges { node { name
        versions(first: $n) { edges { cursor node { version createdBy { name } } } } } } } }";
const SECRET_VERSIONS_TOTAL: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { nodes { name
        versions(first: $n) { totalCount nodes { version } } } } }";
const SECRET_DEPENDENTS_NODES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { nodes { name
        dependents { field state deployedVersion deployedAt resource { id kind name }
            lastFetchedAt lastFetchedVersion lastFetchOutcome } } } }";
const SECRET_DEPENDENTS_EDGES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { edges { node { name
        dependents { state resource { name } } } } } }";
const RESOURCES_NODES: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) {
        totalCount pageInfo { hasNextPage }
        nodes { id kind name description createdAt updatedAt } } }";
const RESOURCES_EDGES: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { edges { cursor node { id name } } } }";
const RESOURCE_REFERENCES: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name references { secretName field } } } }";
const RESOURCE_REFERENCE_SECRETS: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name
        references { secretName secret { name currentVersion createdBy { name } } } } } }";
const RESOURCE_REFERENCE_SECRET_DEPENDENTS: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name
        references { secret { name dependents { state resource { name } } } } } } }";
const RESOURCE_DEPLOYMENTS: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name
        activeDeployment { id state deployedAt deployedBy { id name } } } } }";
const RESOURCE_PINS: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name
        activeDeployment { state pins { secretName field version } } } } }";
const RESOURCE_EDGES_NESTED: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { edges { node { name
        references { secretName field } activeDeployment { deployedBy { name } } } } } }";
const RESOURCE_RUNTIME_PRINCIPALS: &str = "query($n: Int!, $kind: ResourceKind!) {
    resources(kind: $kind, first: $n) { nodes { name runtimePrincipals { name role } } } }";
const SECRET_ALLOWED_RESOURCES: &str = "query($n: Int!, $tag: String!) {
    secrets(first: $n, filter: { nameContains: $tag }) { nodes { name access
        allowedResources { name } } } }";
const BIND_RUNTIME: &str = "mutation($resourceId: ID!, $principalId: ID!) {
    bindRuntime(input: { resourceId: $resourceId, principalId: $principalId }) {
        resource { id } } }";
const SET_ACCESS: &str = "mutation($input: SetSecretAccessInput!) {
    setSecretAccess(input: $input) { secret { access } } }";
const ONE_RESOURCE_REFERENCE_SECRETS: &str = "query($id: ID!) { resource(id: $id) {
    name references { secretName secret { name } } } }";
const ONE_RESOURCE_PINS: &str = "query($id: ID!) { resource(id: $id) {
    name activeDeployment { pins { secretName field version } } } }";
const DEPENDENTS: &str = "query($secret: String!) { dependents(secretName: $secret) {
    field state deployedVersion deployedAt resource { id kind name }
    lastFetchedAt lastFetchedVersion lastFetchOutcome } }";
const DEPENDENTS_REFERENCES: &str = "query($secret: String!) {
    dependents(secretName: $secret) { state resource { name references { secretName field } } } }";
const DEPENDENTS_PINS: &str = "query($secret: String!) { dependents(secretName: $secret) {
    state resource { name
        activeDeployment { deployedBy { name } pins { secretName version } } } } }";
const RESOURCE_SECRETS: &str =
    "query($id: ID!) { resourceSecrets(resourceId: $id) { name field version value } }";
const UPDATE_SECRET_STALE: &str = "mutation($secret: String!, $value: String!) {
    updateSecret(input: { name: $secret, value: $value }) {
        secret { name currentVersion }
        staleDependents { field state deployedVersion resource { id name } } } }";
const DELETE_SECRET_DRY_RUN: &str = "mutation($secret: String!) {
    deleteSecret(input: { name: $secret, dryRun: true }) {
        deletedSecretId
        affectedDependents { field state deployedVersion resource { id name } } } }";
const DELETE_SECRET_FORCE: &str = "mutation($secret: String!) {
    deleteSecret(input: { name: $secret, force: true }) {
        deletedSecretId affectedDependents { field state resource { id name } } } }";
const SECRETS_WITH_DEPENDENTS: &str = "query($n: Int!) {
    secrets(first: $n) { nodes { name dependents { state resource { name } } } } }";

/// One organization's worth of a size: see the module documentation.
struct World {
    size: usize,
    /// Its secrets' names start with it (`SMALL_00`), so `nameContains` lists just them.
    tag: &'static str,
    /// Its resources' kind: `resources(kind:)` lists just them.
    kind: &'static str,
    /// Its admins' names; admin i made secret i and deployed resource i.
    admins: Vec<String>,
    /// Its secrets' names, in name order.
    secrets: Vec<String>,
    /// Its resources, oldest first.
    resource_ids: Vec<String>,
    resource_names: Vec<String>,
    /// Secrets no resource references, each allowing exactly the world's resources
    /// (selected access); their names contain this tag and not the world's.
    acl_tag: &'static str,
    /// The world's RUNTIME accounts, each bound to every resource of the world.
    runtimes: Vec<String>,
}

/// The value of version `version` of `secret`.
fn value(secret: &str, version: usize) -> String {
    format!("value-of-{secret}-v{version}")
}

/// Where every resource uses secret `index`.
fn field(index: usize) -> String {
    format!("sinks.s{index}.key")
}

/// Builds a world of `size` (see the module documentation) in the admin's organization.
async fn seed(app: &TestApp, size: usize, tag: &'static str, kind: &'static str) -> World {
    let lower = tag.to_lowercase();
    let admins: Vec<String> = (0..size).map(|i| format!("{lower}-admin-{i}")).collect();
    // One request at a time, here and below: the operations of a batch run concurrently,
    // and the tests rely on the order things were made in (the newest token, say).
    let mut tokens = Vec::with_capacity(size);
    for name in &admins {
        let input = json!({ "name": name, "role": "ADMIN" });
        let response = app
            .admin(CREATE_SERVICE_ACCOUNT, json!({ "input": input }))
            .await;
        let token = data(&response)["createServiceAccount"]["token"].as_str();
        tokens.push(token.expect("a token").to_owned());
    }

    // Admin i creates secret i and updates it to version `size`.
    let secrets: Vec<String> = (0..size).map(|i| format!("{tag}_{i:02}")).collect();
    for version in 1..=size {
        let document = if version == 1 {
            CREATE_SECRET
        } else {
            UPDATE_SECRET
        };
        for (token, secret) in tokens.iter().zip(&secrets) {
            let input = json!({ "name": secret, "value": value(secret, version) });
            let response = app
                .gql(Some(token), document, json!({ "input": input }))
                .await;
            let payload = data(&response)
                .as_object()
                .and_then(|root| root.values().next());
            let current = payload.map(|payload| &payload["secret"]["currentVersion"]);
            assert_eq!(current, Some(&json!(version)), "{response:#}");
        }
    }

    // Every resource references every secret of its world...
    let references: Vec<(String, String)> = secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| (secret.clone(), field(index)))
        .collect();
    let references: Vec<(&str, &str)> = references
        .iter()
        .map(|(secret, field)| (secret.as_str(), field.as_str()))
        .collect();
    let resource_names: Vec<String> = (0..size).map(|i| format!("{lower}-{i:02}")).collect();
    let mut resource_ids = Vec::with_capacity(size);
    for name in &resource_names {
        let input = resource_input(kind, name, &references);
        let response = app.admin(UPSERT_RESOURCE, json!({ "input": input })).await;
        resource_ids.push(id(&data(&response)["upsertResource"]["resource"]));
    }

    // n RUNTIME accounts, each bound to every resource; n secrets no resource uses, each
    // allowing every resource.
    let acl_tag = if tag == "SMALL" { "ACLS" } else { "ACLL" };
    let runtimes: Vec<String> = (0..size).map(|i| format!("{lower}-runtime-{i}")).collect();
    for name in &runtimes {
        let input = json!({ "name": name, "role": "RUNTIME" });
        let response = app
            .admin(CREATE_SERVICE_ACCOUNT, json!({ "input": input }))
            .await;
        let account = id(&data(&response)["createServiceAccount"]["serviceAccount"]);
        for resource_id in &resource_ids {
            let binding = json!({ "resourceId": resource_id, "principalId": account });
            data(&app.admin(BIND_RUNTIME, binding).await);
        }
    }
    // Admin i makes ACL secret i and then (after all are made) sets its access: the
    // newest n audit events are n different admins'.
    let acl_secrets: Vec<String> = (0..size).map(|i| format!("{acl_tag}_{i:02}")).collect();
    for (token, name) in tokens.iter().zip(&acl_secrets) {
        let input = json!({ "name": name, "value": value(name, 1) });
        data(
            &app.gql(Some(token), CREATE_SECRET, json!({ "input": input }))
                .await,
        );
    }
    for (token, name) in tokens.iter().zip(&acl_secrets) {
        let input = json!({ "input": { "name": name, "access": "SELECTED_RESOURCES",
                                        "resourceIds": resource_ids } });
        data(&app.gql(Some(token), SET_ACCESS, input).await);
    }

    // ...and admin i deploys resource i.
    for (token, resource_id) in tokens.iter().zip(&resource_ids) {
        let response = app
            .gql(Some(token), DEPLOY_RESOURCE, json!({ "id": resource_id }))
            .await;
        let pins = &data(&response)["deployResource"]["deployment"]["pins"];
        assert_eq!(pins.as_array().map(Vec::len), Some(size), "{response:#}");
    }

    World {
        size,
        tag,
        kind,
        admins,
        secrets,
        resource_ids,
        resource_names,
        acl_tag,
        runtimes,
    }
}

/// One request to measure, and what its response must hold.
struct Case {
    /// The list field measured, as a path from the root; also names the case.
    field: &'static str,
    document: &'static str,
    variables: Value,
    /// Paths into `data` that must all resolve: a `[]` segment is a list of exactly the
    /// world's size, each of whose items holds the rest of the path; the last segment
    /// must not be null. What keeps an error or an empty list from passing.
    shapes: &'static [&'static str],
    /// JSON pointers into `data`, and the values expected there. A `*` segment maps over
    /// a list whose order is unspecified: the values found are compared sorted.
    facts: Vec<(String, Value)>,
}

impl Case {
    fn new(field: &'static str, document: &'static str, variables: Value) -> Self {
        Self {
            field,
            document,
            variables,
            shapes: &[],
            facts: Vec::new(),
        }
    }

    fn shapes(self, shapes: &'static [&'static str]) -> Self {
        Self { shapes, ..self }
    }

    fn fact(mut self, pointer: impl Into<String>, expected: impl Into<Value>) -> Self {
        self.facts.push((pointer.into(), expected.into()));
        self
    }
}

/// Every case, for `world`; `worlds` is every world, in the order they were seeded (the
/// global lists hold them all). Reads first; the mutations, last, change `world` only.
fn cases(world: &World, worlds: &[&World]) -> Vec<Case> {
    let n = world.size;
    let first = json!({ "n": n });
    let in_world = json!({ "n": n, "tag": world.tag });
    let of_kind = json!({ "n": n, "kind": world.kind });
    let secret = |index: usize| json!({ "secret": world.secrets[index] });
    let resource = json!({ "id": world.resource_ids[0] });
    let oldest_admins: Vec<&String> = worlds.iter().flat_map(|w| &w.admins).collect();
    let newest_admin = oldest_admins.last().expect("an admin").as_str();
    // The newest tokens are the last world's runtime accounts'.
    let newest_account = worlds
        .last()
        .and_then(|w| w.runtimes.last())
        .expect("a runtime account")
        .as_str();
    // The newest audit event: the last world's last admin setting its ACL secret's access.
    let newest_secret = &format!(
        "{}_{:02}",
        worlds.last().expect("a world").acl_tag,
        worlds.last().expect("a world").size - 1
    );
    let (first_secret, last_admin) = (&world.secrets[0], &world.admins[n - 1]);
    let (first_resource, last_resource) = (&world.resource_names[0], &world.resource_names[n - 1]);
    let pinned_values: Vec<String> = world.secrets.iter().map(|s| value(s, n)).collect();
    let mut redeployed_versions = vec![n; n];
    redeployed_versions[0] = n + 1;
    let late_references: Vec<(String, String)> = (0..n)
        .map(|i| (world.secrets[i].clone(), field(i)))
        .collect();
    let late_references: Vec<(&str, &str)> = late_references
        .iter()
        .map(|(secret, field)| (secret.as_str(), field.as_str()))
        .collect();
    let late_name = format!("{}-late", world.tag.to_lowercase());
    let late = resource_input(world.kind, &late_name, &late_references);

    vec![
        Case::new("principals.nodes", PRINCIPALS_NODES, first.clone())
            .shapes(&["principals.nodes[].name"])
            // The bootstrap admin, then the admins of each world.
            .fact(
                "/principals/totalCount",
                1 + oldest_admins.len() + worlds.iter().map(|w| w.runtimes.len()).sum::<usize>(),
            )
            .fact("/principals/pageInfo/hasNextPage", true)
            .fact("/principals/nodes/1/name", oldest_admins[0].as_str()),
        Case::new("principals.edges", PRINCIPALS_EDGES, first.clone())
            .shapes(&["principals.edges[].node.name"])
            .fact("/principals/edges/1/node/name", oldest_admins[0].as_str()),
        Case::new("apiTokens.nodes.principal", API_TOKENS_NODES, first.clone())
            .shapes(&["apiTokens.nodes[].principal.name"])
            .fact("/apiTokens/nodes/0/principal/name", newest_account),
        Case::new(
            "apiTokens.edges.node.principal",
            API_TOKENS_EDGES,
            first.clone(),
        )
        .shapes(&["apiTokens.edges[].node.principal.name"])
        .fact("/apiTokens/edges/0/node/principal/name", newest_account),
        Case::new(
            "auditEvents.nodes.principal",
            AUDIT_EVENTS_NODES,
            first.clone(),
        )
        .shapes(&["auditEvents.nodes[].principal.name"])
        .fact("/auditEvents/nodes/0/principal/name", newest_admin)
        .fact("/auditEvents/nodes/0/targetName", newest_secret.as_str()),
        Case::new(
            "auditEvents.edges.node.principal",
            AUDIT_EVENTS_EDGES,
            first,
        )
        .shapes(&["auditEvents.edges[].node.principal.name"])
        .fact("/auditEvents/edges/0/node/principal/name", newest_admin),
        Case::new(
            "secrets.nodes.{createdBy,updatedBy}",
            SECRETS_NODES,
            in_world.clone(),
        )
        .shapes(&[
            "secrets.nodes[].createdBy.name",
            "secrets.nodes[].updatedBy.name",
        ])
        .fact("/secrets/totalCount", n)
        .fact("/secrets/nodes/0/name", first_secret.as_str())
        .fact("/secrets/nodes/0/currentVersion", n)
        .fact("/secrets/nodes/0/createdBy/name", world.admins[0].as_str())
        .fact(
            format!("/secrets/nodes/{}/updatedBy/name", n - 1),
            last_admin.as_str(),
        ),
        Case::new(
            "secrets.edges.node.{createdBy,updatedBy}",
            SECRETS_EDGES,
            in_world.clone(),
        )
        .shapes(&["secrets.edges[].node.updatedBy.name"])
        .fact("/secrets/edges/0/node/name", first_secret.as_str()),
        Case::new(
            "secrets(last:).nodes.{createdBy,updatedBy}",
            SECRETS_LAST,
            in_world.clone(),
        )
        .shapes(&["secrets.nodes[].createdBy.name"])
        .fact("/secrets/nodes/0/name", first_secret.as_str()),
        Case::new(
            "secrets.nodes.versions.nodes.createdBy",
            SECRET_VERSIONS_NODES,
            in_world.clone(),
        )
        .shapes(&["secrets.nodes[].versions.nodes[].createdBy.name"])
        .fact("/secrets/nodes/0/versions/nodes/0/version", n)
        .fact(
            format!("/secrets/nodes/0/versions/nodes/{}/version", n - 1),
            1,
        )
        .fact(
            "/secrets/nodes/1/versions/nodes/0/createdBy/name",
            world.admins[1].as_str(),
        ),
        Case::new(
            "secrets.edges.node.versions.edges.node.createdBy",
            SECRET_VERSIONS_EDGES,
            in_world.clone(),
        )
        .shapes(&["secrets.edges[].node.versions.edges[].node.createdBy.name"])
        .fact("/secrets/edges/0/node/versions/edges/0/node/version", n),
        Case::new(
            "secrets.nodes.versions.totalCount",
            SECRET_VERSIONS_TOTAL,
            in_world.clone(),
        )
        .shapes(&["secrets.nodes[].versions.nodes[].version"])
        .fact("/secrets/nodes/0/versions/totalCount", n)
        .fact(format!("/secrets/nodes/{}/versions/totalCount", n - 1), n),
        Case::new(
            "secrets.nodes.dependents.resource",
            SECRET_DEPENDENTS_NODES,
            in_world.clone(),
        )
        .shapes(&["secrets.nodes[].dependents[].resource.name"])
        .fact(
            "/secrets/nodes/0/dependents/0/resource/name",
            first_resource.as_str(),
        )
        .fact("/secrets/nodes/0/dependents/0/field", field(0))
        .fact("/secrets/nodes/0/dependents/0/state", "UP_TO_DATE")
        .fact("/secrets/nodes/0/dependents/0/deployedVersion", n),
        Case::new(
            "secrets.edges.node.dependents.resource",
            SECRET_DEPENDENTS_EDGES,
            in_world,
        )
        .shapes(&["secrets.edges[].node.dependents[].resource.name"])
        .fact("/secrets/edges/1/node/dependents/1/state", "UP_TO_DATE"),
        Case::new("resources.nodes", RESOURCES_NODES, of_kind.clone())
            .shapes(&["resources.nodes[].name"])
            .fact("/resources/totalCount", n)
            .fact("/resources/pageInfo/hasNextPage", false)
            .fact("/resources/nodes/0/name", first_resource.as_str())
            .fact("/resources/nodes/0/kind", world.kind),
        Case::new("resources.edges", RESOURCES_EDGES, of_kind.clone())
            .shapes(&["resources.edges[].node.name"])
            .fact("/resources/edges/0/node/id", world.resource_ids[0].as_str()),
        Case::new(
            "resources.nodes.runtimePrincipals",
            RESOURCE_RUNTIME_PRINCIPALS,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].runtimePrincipals[].name"])
        .fact(
            "/resources/nodes/0/runtimePrincipals/*/name",
            world.runtimes.clone(),
        ),
        Case::new(
            "secrets.nodes.allowedResources",
            SECRET_ALLOWED_RESOURCES,
            json!({ "n": n, "tag": world.acl_tag }),
        )
        .shapes(&["secrets.nodes[].allowedResources[].name"])
        .fact(
            "/secrets/nodes/0/allowedResources/*/name",
            world.resource_names.clone(),
        ),
        Case::new(
            "resources.nodes.references",
            RESOURCE_REFERENCES,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].references[].field"])
        .fact(
            "/resources/nodes/0/references/*/secretName",
            world.secrets.clone(),
        ),
        Case::new(
            "resources.nodes.references.secret",
            RESOURCE_REFERENCE_SECRETS,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].references[].secret.createdBy.name"])
        .fact(
            "/resources/nodes/0/references/*/secret/name",
            world.secrets.clone(),
        ),
        Case::new(
            "resources.nodes.references.secret.dependents",
            RESOURCE_REFERENCE_SECRET_DEPENDENTS,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].references[].secret.dependents[].resource.name"])
        .fact(
            "/resources/nodes/0/references/0/secret/dependents/*/resource/name",
            world.resource_names.clone(),
        ),
        Case::new(
            "resources.nodes.activeDeployment.deployedBy",
            RESOURCE_DEPLOYMENTS,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].activeDeployment.deployedBy.name"])
        .fact("/resources/nodes/0/activeDeployment/state", "ACTIVE")
        .fact(
            "/resources/nodes/0/activeDeployment/deployedBy/name",
            world.admins[0].as_str(),
        )
        .fact(
            format!(
                "/resources/nodes/{}/activeDeployment/deployedBy/name",
                n - 1
            ),
            last_admin.as_str(),
        ),
        Case::new(
            "resources.nodes.activeDeployment.pins",
            RESOURCE_PINS,
            of_kind.clone(),
        )
        .shapes(&["resources.nodes[].activeDeployment.pins[].version"])
        .fact(
            "/resources/nodes/0/activeDeployment/pins/*/secretName",
            world.secrets.clone(),
        )
        .fact(
            "/resources/nodes/0/activeDeployment/pins/*/version",
            vec![n; n],
        ),
        Case::new(
            "resources.edges.node.{references,activeDeployment}",
            RESOURCE_EDGES_NESTED,
            of_kind,
        )
        .shapes(&[
            "resources.edges[].node.references[].secretName",
            "resources.edges[].node.activeDeployment.deployedBy.name",
        ])
        .fact(
            format!("/resources/edges/{}/node/name", n - 1),
            last_resource.as_str(),
        ),
        Case::new(
            "resource.references.secret",
            ONE_RESOURCE_REFERENCE_SECRETS,
            resource.clone(),
        )
        .shapes(&["resource.references[].secret.name"])
        .fact("/resource/name", first_resource.as_str())
        .fact("/resource/references/*/secret/name", world.secrets.clone()),
        Case::new(
            "resource.activeDeployment.pins",
            ONE_RESOURCE_PINS,
            resource.clone(),
        )
        .shapes(&["resource.activeDeployment.pins[].version"])
        .fact(
            "/resource/activeDeployment/pins/*/field",
            (0..n).map(field).collect::<Vec<_>>(),
        ),
        Case::new("dependents.resource", DEPENDENTS, secret(0))
            .shapes(&["dependents[].resource.name"])
            .fact("/dependents/0/resource/name", first_resource.as_str())
            .fact("/dependents/0/state", "UP_TO_DATE")
            .fact("/dependents/0/deployedVersion", n),
        Case::new(
            "dependents.resource.references",
            DEPENDENTS_REFERENCES,
            secret(0),
        )
        .shapes(&["dependents[].resource.references[].secretName"])
        .fact(
            "/dependents/0/resource/references/*/secretName",
            world.secrets.clone(),
        ),
        Case::new(
            "dependents.resource.activeDeployment.pins",
            DEPENDENTS_PINS,
            secret(0),
        )
        .shapes(&["dependents[].resource.activeDeployment.pins[].version"])
        .fact(
            "/dependents/0/resource/activeDeployment/deployedBy/name",
            world.admins[0].as_str(),
        )
        .fact(
            "/dependents/0/resource/activeDeployment/pins/*/version",
            vec![n; n],
        ),
        // Reveals the values and writes an audit event: counted all the same.
        Case::new("resourceSecrets", RESOURCE_SECRETS, resource.clone())
            .shapes(&["resourceSecrets[].value"])
            .fact("/resourceSecrets/*/value", pinned_values)
            .fact("/resourceSecrets/*/version", vec![n; n]),
        // The mutations: each changes this world only, and none undoes what a later case
        // relies on.
        Case::new(
            "updateSecret.staleDependents",
            UPDATE_SECRET_STALE,
            json!({ "secret": first_secret, "value": value(first_secret, n + 1) }),
        )
        .shapes(&["updateSecret.staleDependents[].resource.name"])
        .fact("/updateSecret/secret/currentVersion", n + 1)
        .fact("/updateSecret/staleDependents/0/state", "STALE")
        .fact("/updateSecret/staleDependents/0/deployedVersion", n),
        Case::new(
            "deleteSecret(dryRun).affectedDependents",
            DELETE_SECRET_DRY_RUN,
            secret(1),
        )
        .shapes(&["deleteSecret.affectedDependents[].resource.name"])
        .fact("/deleteSecret/deletedSecretId", Value::Null)
        .fact("/deleteSecret/affectedDependents/0/state", "UP_TO_DATE")
        .fact(
            "/deleteSecret/affectedDependents/*/resource/name",
            world.resource_names.clone(),
        ),
        Case::new("deployResource.deployment.pins", DEPLOY_RESOURCE, resource)
            .shapes(&["deployResource.deployment.pins[].version"])
            .fact("/deployResource/deployment/state", "ACTIVE")
            .fact(
                "/deployResource/deployment/pins/*/version",
                redeployed_versions,
            ),
        Case::new(
            "deleteSecret(force).affectedDependents",
            DELETE_SECRET_FORCE,
            secret(0),
        )
        .shapes(&[
            "deleteSecret.deletedSecretId",
            "deleteSecret.affectedDependents[].resource.name",
        ])
        .fact(
            "/deleteSecret/affectedDependents/*/state",
            vec!["BROKEN"; n],
        ),
        Case::new(
            "upsertResource.resource.references",
            UPSERT_RESOURCE,
            json!({ "input": late }),
        )
        .shapes(&["upsertResource.resource.references[].secretName"])
        .fact("/upsertResource/resource/name", late_name)
        .fact(
            "/upsertResource/resource/references/*/field",
            (0..n).map(field).collect::<Vec<_>>(),
        ),
    ]
}

/// Checks that `path` resolves in `value` (see [`Case::shapes`]).
#[track_caller]
fn check_shape(field: &str, value: &Value, path: &str, size: usize) {
    let (segment, rest) = match path.split_once('.') {
        Some((segment, rest)) => (segment, Some(rest)),
        None => (path, None),
    };
    let Some(list) = segment.strip_suffix("[]") else {
        let next = &value[segment];
        assert!(
            !next.is_null(),
            "{field}: `{segment}` is null or missing in {value:#}"
        );
        if let Some(rest) = rest {
            check_shape(field, next, rest, size);
        }
        return;
    };
    let items = value[list]
        .as_array()
        .unwrap_or_else(|| panic!("{field}: no list `{list}` in {value:#}"));
    assert_eq!(
        items.len(),
        size,
        "{field}: `{list}` holds {} items, not {size}: {value:#}",
        items.len()
    );
    for item in items {
        match rest {
            Some(rest) => check_shape(field, item, rest, size),
            None => assert!(!item.is_null(), "{field}: a null in `{list}`: {value:#}"),
        }
    }
}

/// The value at `pointer` in `data`; with a `*` segment, the values at the rest of the
/// pointer in each item of the list before it, sorted.
fn at(data: &Value, pointer: &str) -> Value {
    let Some((list, item)) = pointer.split_once("/*") else {
        return data.pointer(pointer).cloned().unwrap_or(Value::Null);
    };
    let items = data.pointer(list).and_then(Value::as_array);
    let found = items.into_iter().flatten();
    sorted(
        found
            .map(|i| i.pointer(item).cloned().unwrap_or(Value::Null))
            .collect(),
    )
}

fn sorted(mut values: Vec<Value>) -> Value {
    values.sort_by_key(|v| (v.as_i64(), v.to_string()));
    Value::Array(values)
}

/// Runs `case` as the admin: the statements it cost, its payload checked.
async fn measure(app: &TestApp, case: &Case, size: usize) -> u64 {
    let before = app.db_statements().await;
    let response = app.admin(case.document, case.variables.clone()).await;
    let after = app.db_statements().await;
    let field = case.field;
    assert!(
        response.get("errors").is_none(),
        "{field} at size {size}: {response:#}"
    );
    let data = data(&response);
    for shape in case.shapes {
        check_shape(field, data, shape, size);
    }
    for (pointer, expected) in &case.facts {
        let expected = match (pointer.contains("/*"), expected) {
            (true, Value::Array(values)) => sorted(values.clone()),
            _ => expected.clone(),
        };
        assert_eq!(
            at(data, pointer),
            expected,
            "{field} at size {size}: {pointer}"
        );
    }
    after - before
}

/// The fewest statements a query costs over three runs (a mutation runs once: it
/// changes what it measures). DataLoader batches the keys that arrive within its window
/// (1 ms); on a loaded machine one batch can split in two and cost a statement more, at
/// either size, on some run. A query per item costs more on every run.
async fn fewest(app: &TestApp, case: &Case, size: usize) -> u64 {
    const RUNS: usize = 3;
    let runs = if case.document.trim_start().starts_with("mutation") {
        1
    } else {
        RUNS
    };
    let mut fewest = u64::MAX;
    for _ in 0..runs {
        fewest = fewest.min(measure(app, case, size).await);
    }
    fewest
}

/// Every list field, nested or not, at two sizes: the same number of statements.
async fn every_list_field(store: Store) {
    let app = TestApp::spawn_with(store, &QUIET).await;
    let small = seed(&app, SMALL, "SMALL", "INTEGRATION").await;
    let large = seed(&app, LARGE, "LARGE", "PIPELINE").await;
    let worlds = [&small, &large];
    let small_cases = cases(&small, &worlds);
    let large_cases = cases(&large, &worlds);

    println!("SQL statements per request on {store:?}, token lookup included:");
    println!("{:<55} {SMALL:>5} {LARGE:>5}", "list field (size)");
    let mut growing = Vec::new();
    for (small_case, large_case) in small_cases.iter().zip(&large_cases) {
        assert_eq!(small_case.field, large_case.field);
        let field = small_case.field;
        let at_small = fewest(&app, small_case, SMALL).await;
        let at_large = fewest(&app, large_case, LARGE).await;
        let verdict = if at_small == at_large { "" } else { "  N+1" };
        println!("{field:<55} {at_small:>5} {at_large:>5}{verdict}");
        if at_small != at_large {
            growing.push(format!(
                "{field}: {at_small} statements at size {SMALL}, {at_large} at size {LARGE}"
            ));
        }
    }
    assert!(
        growing.is_empty(),
        "on {store:?}, these list fields cost more SQL statements as their lists grow \
         (a query per item):\n{}",
        growing.join("\n")
    );
}

/// SQL statements per write (the token lookup included, the auth cache being off), counted
/// around one request with nothing else running; `BEGIN`, `SAVEPOINT`, `RELEASE` and
/// `COMMIT` are not statements here (the driver's transaction manager runs them). These are
/// what the speed work measures (benches/load): a create is the name check, the secret,
/// its first version, its audit row, the dependents of the name (references made before
/// the secret existed) and the outbox row with its notification; an update is the name
/// check, the locked re-read, the conditional write, the new version, the dependents, the
/// audit row and the outbox row, plus — once a version falls out of the retention (2 here)
/// — one delete of it that reads the deployments' pins itself. A page of 50 secrets is one
/// statement, as is a page of 2.
async fn writes_cost_a_fixed_number_of_statements(store: Store) {
    const CREATE: u64 = 1 + 6;
    const UPDATE: u64 = 1 + 7;
    const UPDATE_AND_PRUNE: u64 = UPDATE + 1;
    const PAGE: u64 = 1 + 1;
    const SAMPLES: usize = 5;
    let mut settings = QUIET.to_vec();
    settings.push(("STRONGROOM_VERSION_RETENTION", "2"));
    let app = TestApp::spawn_with(store, &settings).await;
    let counted = async |document: &str, variables: Value| {
        let before = app.db_statements().await;
        let response = app.admin(document, variables).await;
        let after = app.db_statements().await;
        (data(&response).clone(), after - before)
    };
    // A background task of the server (a sweep, a flush) may land a statement or two inside
    // a measured request on a busy machine: it only ever adds. So each cost is measured on
    // five requests alike, none may cost less, and the cheapest must cost exactly this.
    let cost = |samples: &[u64]| samples.iter().copied().min();
    let mut creates = Vec::new();
    for i in 0..SAMPLES {
        let input = json!({ "name": format!("COUNTED_{i}"), "value": format!("v-{i}") });
        let (created, statements) = counted(CREATE_SECRET, json!({ "input": input })).await;
        assert_eq!(created["createSecret"]["secret"]["currentVersion"], 1);
        creates.push(statements);
    }
    // Each secret to version 2: nothing old enough to prune yet.
    let mut updates = Vec::new();
    for i in 0..SAMPLES {
        let input = json!({ "name": format!("COUNTED_{i}"), "value": "v-2" });
        let (updated, statements) = counted(UPDATE_SECRET, json!({ "input": input })).await;
        assert_eq!(updated["updateSecret"]["secret"]["currentVersion"], 2);
        updates.push(statements);
    }
    // One secret on to version 7: each update prunes the version that fell out.
    let mut pruning = Vec::new();
    for version in 3..3 + SAMPLES as i64 {
        let input = json!({ "name": "COUNTED_0", "value": format!("v-{version}") });
        let (updated, statements) = counted(UPDATE_SECRET, json!({ "input": input })).await;
        assert_eq!(updated["updateSecret"]["secret"]["currentVersion"], version);
        pruning.push(statements);
    }
    let page = "query($n: Int!) { secrets(first: $n) { nodes { name currentVersion updatedAt } } }";
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let (two, at_2) = counted(page, json!({ "n": 2 })).await;
        let (all, at_50) = counted(page, json!({ "n": 50 })).await;
        assert_eq!(two["secrets"]["nodes"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            all["secrets"]["nodes"].as_array().map(Vec::len),
            Some(SAMPLES)
        );
        small.push(at_2);
        large.push(at_50);
    }
    println!(
        "SQL statements on {store:?}, token lookup included: creates {creates:?}, updates \
         {updates:?}, pruning updates {pruning:?}, pages of 2 {small:?}, of 50 {large:?}"
    );
    for (what, samples, expected) in [
        ("createSecret", &creates, CREATE),
        ("updateSecret", &updates, UPDATE),
        ("updateSecret that prunes", &pruning, UPDATE_AND_PRUNE),
        ("secrets(first: 2)", &small, PAGE),
        ("secrets(first: 50)", &large, PAGE),
    ] {
        assert_eq!(
            cost(samples),
            Some(expected),
            "{what} on {store:?}: {samples:?}"
        );
    }
    let kept = app
        .sql_query_one_i64(
            "SELECT COUNT(*) FROM secret_versions WHERE secret_id = \
             (SELECT id FROM secrets WHERE name = 'COUNTED_0')",
        )
        .await;
    assert_eq!(kept, 2, "versions 6 and 7 kept, 1 to 5 pruned");
}

/// The example: a page of 50 secrets with their dependents (two each, deployed)
/// costs at most [`SECRETS_WITH_DEPENDENTS_MAX_STATEMENTS`], as many as a page of 2.
async fn a_page_of_50_secrets_with_dependents(store: Store) {
    const PAGE: usize = 50;
    let app = TestApp::spawn_with(store, &QUIET).await;
    let names: Vec<String> = (0..PAGE).map(|i| format!("PAGED_{i:02}")).collect();
    let creates = names
        .iter()
        .map(|name| {
            let input = json!({ "name": name, "value": value(name, 1) });
            (CREATE_SECRET, json!({ "input": input }))
        })
        .collect();
    app.admin_batches(creates).await;
    // Pipeline i uses secrets i and i + 1: every secret has two dependents.
    let upserts = (0..PAGE)
        .map(|i| {
            let next = &names[(i + 1) % PAGE];
            let references = [(names[i].as_str(), "source.key"), (next, "sink.key")];
            let input = resource_input("PIPELINE", &format!("pipeline-{i:02}"), &references);
            (UPSERT_RESOURCE, json!({ "input": input }))
        })
        .collect();
    let upserted = app.admin_batches(upserts).await;
    app.deploy_upserted(&upserted).await;

    let page = async |n: usize| {
        let before = app.db_statements().await;
        let response = app.admin(SECRETS_WITH_DEPENDENTS, json!({ "n": n })).await;
        let after = app.db_statements().await;
        let nodes = data(&response)["secrets"]["nodes"]
            .as_array()
            .expect("secrets")
            .clone();
        assert_eq!(nodes.len(), n, "{response:#}");
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(node["name"], names[i], "{node:#}");
            let dependents = node["dependents"].as_array().expect("dependents");
            assert_eq!(dependents.len(), 2, "{node:#}");
            assert!(
                dependents.iter().all(|d| d["state"] == "UP_TO_DATE"),
                "{node:#}"
            );
        }
        after - before
    };
    let (at_2, at_50) = (page(2).await, page(PAGE).await);
    println!(
        "SQL statements for a page of secrets with dependents on {store:?}, token lookup \
         included: {at_2} for 2, {at_50} for {PAGE}"
    );
    assert!(
        at_50 <= SECRETS_WITH_DEPENDENTS_MAX_STATEMENTS,
        "secrets(first: {PAGE}).nodes.dependents.resource costs {at_50} SQL statements on \
         {store:?}; at most {SECRETS_WITH_DEPENDENTS_MAX_STATEMENTS} allowed (4 + the token \
         lookup)"
    );
    assert_eq!(
        at_2, at_50,
        "secrets.nodes.dependents.resource on {store:?}: {at_2} statements for 2 secrets, \
         {at_50} for {PAGE}"
    );
}
