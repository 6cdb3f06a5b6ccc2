//! GraphQL documents (and their inputs) that several test files share.
use serde_json::{Value, json};

pub const VIEWER: &str =
    "query { viewer { role principal { id kind name role } organization { id name } } }";
pub const CREATE_SECRET: &str = "mutation($input: CreateSecretInput!) {
    createSecret(input: $input) { secret { id name description currentVersion } } }";
pub const UPDATE_SECRET: &str = "mutation($input: UpdateSecretInput!) {
    updateSecret(input: $input) { secret { id name currentVersion } } }";
pub const DELETE_SECRET: &str = "mutation($input: DeleteSecretInput!) {
    deleteSecret(input: $input) { deletedSecretId } }";
pub const SECRET: &str =
    "query($name: String!) { secret(name: $name) { id name description currentVersion } }";
pub const SECRET_VALUE: &str = "query($name: String!, $version: Int) {
    secretValue(name: $name, version: $version) { name version value } }";
pub const SECRET_COUNT: &str = "query { secrets { totalCount } }";
pub const CREATE_SERVICE_ACCOUNT: &str = "mutation($input: CreateServiceAccountInput!) {
    createServiceAccount(input: $input) { serviceAccount { id kind name role } token } }";
pub const CREATE_API_TOKEN: &str = "mutation($input: CreateApiTokenInput!) {
    createApiToken(input: $input) {
        apiToken { id prefix description expiresAt revokedAt } token } }";
pub const UPSERT_RESOURCE: &str = "mutation($input: UpsertResourceInput!) {
    upsertResource(input: $input) {
        resource { id kind name description references { secretName field } } } }";
pub const DEPLOY_RESOURCE: &str = "mutation($id: ID!) { deployResource(input: { id: $id }) {
    resource { id activeDeployment { id } }
    deployment { id state deployedAt deployedBy { id } pins { secretName version } } } }";

/// An `UpsertResourceInput` with `(secretName, field)` references.
pub fn resource_input(kind: &str, name: &str, references: &[(&str, &str)]) -> Value {
    let references: Vec<Value> = references
        .iter()
        .map(|(secret_name, field)| json!({ "secretName": secret_name, "field": field }))
        .collect();
    json!({ "kind": kind, "name": name, "references": references })
}

/// The `id` of a resource, deployment or secret as returned.
pub fn id(object: &Value) -> String {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {object:#}"))
        .to_owned()
}
