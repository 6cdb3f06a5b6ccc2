//! The request pipeline around async-graphql's own, as one extension (a fresh instance per
//! request):
//!
//! 1. *prepare*: resolve a persisted query ([`super::persisted`]); parse once (or reuse the
//!    document kept from an earlier request, [`super::parsed`]); refuse an
//!    operation over the shape limits, text with control characters, or an ambiguous
//!    operation name — before any resolver runs;
//! 2. *validate*: async-graphql's rules, with coded messages that echo no value; then the
//!    one variable rule it leaves to execution (a required variable must be given);
//! 3. *resolve*: a field error becomes a `null` placeholder (the error is kept);
//! 4. *execute*: the data is shaped as the spec says ([`super::shape`]);
//! 5. every error leaves with a code ([`super::errors::finish`]).
use crate::error::Code;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{
    PathSegment, QueryPathSegment, Request, Response, ServerError, ServerResult, ValidationResult,
    Value,
    context::QueryPathNode,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
        NextRequest, NextResolve, NextValidation, ResolveInfo,
    },
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};

use super::{
    errors, inputs,
    limits::{self, OperationLimits},
    parsed::ParsedDocuments,
    shape,
};

/// Installs the pipeline with the operation limits.
pub struct Pipeline {
    limits: OperationLimits,
}

impl Pipeline {
    pub fn new(limits: OperationLimits) -> Self {
        Self { limits }
    }
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PipelineRun {
            limits: self.limits,
            document: Mutex::new(None),
            missing_variables: Mutex::new(Vec::new()),
            field_errors: Mutex::new(Vec::new()),
        })
    }
}

struct PipelineRun {
    limits: OperationLimits,
    /// The parsed document, for shaping the response.
    document: Mutex<Option<Arc<ExecutableDocument>>>,
    /// Required variables the request did not give, reported after validation.
    missing_variables: Mutex<Vec<ServerError>>,
    /// Field errors taken out of async-graphql's hands (see `resolve`).
    field_errors: Mutex<Vec<ServerError>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here holds an invariant a panic could break half-way.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait::async_trait]
impl Extension for PipelineRun {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        errors::finish(&mut response.errors);
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // After authentication, under the caller's organization.
        // (The request's own data is not the context's until after this hook; a
        // WebSocket connection's is the session's.)
        let own = request
            .data
            .get(&std::any::TypeId::of::<super::RequestCtx>())
            .and_then(|data| data.downcast_ref::<super::RequestCtx>());
        let org = own
            .or_else(|| ctx.data::<super::RequestCtx>().ok())
            .and_then(|own| own.auth.org());
        let data = ctx.data::<super::AppData>().ok();
        if let Some(data) = data {
            data.persisted.resolve(org, &mut request)?;
        }
        // Parsed once (or kept from an earlier request of the organization); async-graphql
        // executes its own copy, this one shapes the response.
        let document = match data {
            Some(data) => data.parsed.parse(org, &request.query),
            None => ParsedDocuments::parse_fresh(&request.query),
        }
        .map_err(errors::parse_failed)?;
        request.set_parsed_query(ExecutableDocument::clone(&document));
        limits::check(&document, &self.limits)?;
        let operation = find_operation(&document, request.operation_name.as_deref())
            .ok_or_else(|| unknown_operation(request.operation_name.as_deref()))?;
        inputs::check(
            &ctx.schema_env.registry,
            &document,
            operation,
            &request.variables,
        )?;
        *lock(&self.missing_variables) = missing_variables(operation, &request.variables);
        *lock(&self.document) = Some(document);
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|errors| -> Vec<ServerError> {
            errors.into_iter().map(errors::validation_failed).collect()
        })?;
        let missing = std::mem::take(&mut *lock(&self.missing_variables));
        if missing.is_empty() {
            Ok(result)
        } else {
            Err(missing)
        }
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let path = info.path_node;
        match next.run(ctx, info).await {
            Ok(value) => Ok(value),
            Err(mut error) => {
                if error.path.is_empty() {
                    error.path = path_of(path);
                }
                lock(&self.field_errors).push(error);
                Ok(Some(Value::Null))
            }
        }
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // `/graphql/ws` runs subscriptions; one sent over HTTP is the client's mistake.
        let subscription = lock(&self.document)
            .as_ref()
            .and_then(|document| find_operation(document, operation_name))
            .is_some_and(|operation| operation.ty == OperationType::Subscription);
        if subscription && ctx.data_opt::<super::OverHttp>().is_some() {
            return Response::from_errors(vec![errors::coded(
                "subscriptions are served over WebSocket at /graphql/ws (protocol \
                 graphql-transport-ws), not over HTTP",
                Code::BadRequest,
                None,
            )]);
        }
        let mut response = next.run(ctx, operation_name).await;
        let field_errors = std::mem::take(&mut *lock(&self.field_errors));
        response.errors.extend(field_errors);
        if let Some(document) = lock(&self.document).as_ref()
            && let Some(operation) = find_operation(document, operation_name)
        {
            let data = std::mem::take(&mut response.data);
            let selection = (&operation.ty, &operation.selection_set.node);
            response.data = shape::shape(
                data,
                &ctx.schema_env.registry,
                document,
                selection,
                &response.errors,
            );
        }
        response
    }
}

fn find_operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a async_graphql::parser::types::OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|o| &o.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|o| &o.node)
        }
        _ => None,
    }
}

/// Variable coercion's rule for absent values: a variable of a non-null type without a
/// default must be given. async-graphql's validation checks the values given (a `null`
/// for a `String!` fails there) but leaves an absent one to the resolver, which then fails
/// uncoded, as if the server were at fault; this is the caller's, before anything runs.
fn missing_variables(
    operation: &async_graphql::parser::types::OperationDefinition,
    variables: &async_graphql::Variables,
) -> Vec<ServerError> {
    operation
        .variable_definitions
        .iter()
        .filter(|definition| {
            let definition = &definition.node;
            !definition.var_type.node.nullable
                && definition.default_value.is_none()
                && !variables.contains_key(&definition.name.node)
        })
        .map(|definition| {
            let message = format!(
                "variable `${}` of type `{}` was not given a value",
                definition.node.name.node, definition.node.var_type.node
            );
            errors::coded(message, Code::BadUserInput, Some(definition.pos))
        })
        .collect()
}

/// The refusal, with `BAD_REQUEST`, of a request whose operation cannot be chosen — without
/// echoing the name asked for, which is the client's free text.
fn unknown_operation(name: Option<&str>) -> ServerError {
    let message = match name {
        Some(_) => "the document has no operation of the name given in `operationName`",
        None => "the document holds several operations: name the one to run in `operationName`",
    };
    errors::coded(message, Code::BadRequest, None)
}

/// The response path of a field being resolved.
fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path: Vec<PathSegment> = std::iter::once(node)
        .chain(node.parents())
        .map(|node| match node.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(i) => PathSegment::Index(i),
        })
        .collect();
    path.reverse();
    path
}
