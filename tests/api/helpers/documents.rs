//! GraphQL documents that several test files share.

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
