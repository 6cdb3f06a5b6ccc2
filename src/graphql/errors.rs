//! Error codes. Domain errors carry their code ([`crate::Error::code`]); errors raised
//! by async-graphql itself get one here, so every error a client sees has a stable
//! `extensions.code`.
use std::sync::Arc;

use async_graphql::{
    ErrorExtensions, Name, PathSegment, Response, ServerError, ServerResult, ValidationResult,
    Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation,
    },
    parser::types::ExecutableDocument,
};

impl ErrorExtensions for crate::Error {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            // The cause stays here; the client gets `public_message`.
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        async_graphql::Error::new(self.public_message()).extend_with(|_, ext| {
            ext.set("code", self.code());
            match self {
                crate::Error::VersionConflict { expected, current } => {
                    ext.set("expectedVersion", *expected);
                    ext.set("currentVersion", *current);
                }
                crate::Error::MissingSecrets(names) => {
                    ext.set("missingSecrets", names.clone());
                }
                crate::Error::HasDependents(dependents) => {
                    let listed: Vec<async_graphql::Value> =
                        dependents.iter().map(dependent_summary).collect();
                    ext.set("dependents", listed);
                }
                _ => {}
            }
        })
    }
}

/// A dependent as listed in a `HAS_DEPENDENTS` error: names and states, never values.
fn dependent_summary(d: &crate::domain::resources::Dependent) -> async_graphql::Value {
    let json = serde_json::json!({
        "resourceId": super::ids::encode(super::ids::RESOURCE, d.resource.id).0,
        "kind": d.resource.kind,
        "name": d.resource.name,
        "field": d.field,
        "state": d.state.as_str(),
        "deployedVersion": d.deployed_version,
    });
    async_graphql::Value::from_json(json).unwrap_or(async_graphql::Value::Null)
}

/// A GraphQL-shaped error body for refusals made before GraphQL runs (HTTP layer).
pub fn error_response(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

fn set_code_if_missing(error: &mut ServerError, code: &'static str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// async-graphql leaves a field that errored out of its parent object; GraphQL clients
/// (Apollo's cache among them) expect it present as `null`, next to its siblings.
fn null_errored_fields(data: &mut Value, errors: &[ServerError]) {
    'errors: for error in errors {
        let Some((PathSegment::Field(name), parents)) = error.path.split_last() else {
            continue;
        };
        let mut node = &mut *data;
        for segment in parents {
            node = match (segment, node) {
                (PathSegment::Field(key), Value::Object(fields)) => {
                    match fields.get_mut(key.as_str()) {
                        Some(child) => child,
                        None => continue 'errors,
                    }
                }
                (PathSegment::Index(i), Value::List(items)) => match items.get_mut(*i) {
                    Some(child) => child,
                    None => continue 'errors,
                },
                _ => continue 'errors,
            };
        }
        if let Value::Object(fields) = node {
            fields.entry(Name::new(name)).or_insert(Value::Null);
        }
    }
}

/// Gives every error without a code one: parse errors, validation errors (including the
/// depth and complexity limits) and input coercion errors.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            // What remains uncoded comes from async-graphql's argument handling.
            set_code_if_missing(error, "BAD_USER_INPUT");
        }
        null_errored_fields(&mut response.data, &response.errors);
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            set_code_if_missing(&mut error, "GRAPHQL_PARSE_FAILED");
            error
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                set_code_if_missing(error, "GRAPHQL_VALIDATION_FAILED");
            }
            errors
        })
    }
}
