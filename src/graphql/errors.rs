//! Error codes. Domain errors carry their code ([`crate::Error::code`]); errors raised
//! by async-graphql itself get one here, so every error a client sees has a stable
//! `extensions.code`, and none echoes a value the client sent or an internal cause.
use crate::error::Code;
use async_graphql::{ErrorExtensions, Pos, ServerError, Value};

impl ErrorExtensions for crate::Error {
    fn extend(&self) -> async_graphql::Error {
        if self.is_internal() {
            // The cause stays here; the client gets `public_message`.
            tracing::error!(code = self.code().as_str(), error = %self, "request failed");
        }
        async_graphql::Error::new(self.public_message()).extend_with(|_, ext| {
            ext.set("code", self.code().as_str());
            match self {
                crate::Error::VersionConflict { expected, current } => {
                    ext.set("expectedVersion", *expected);
                    ext.set("currentVersion", *current);
                }
                crate::Error::MissingSecrets(names) => {
                    ext.set("missingSecrets", names.clone());
                }
                crate::Error::SecretDisabled(names) => {
                    ext.set("disabledSecrets", names.clone());
                }
                crate::Error::HasDependents(dependents) => {
                    let listed: Vec<async_graphql::Value> =
                        dependents.iter().map(dependent_summary).collect();
                    ext.set("dependents", listed);
                }
                _ => {}
            }
            if self.is_retryable() {
                ext.set("retryable", true);
            }
        })
    }
}

/// A dependent as listed in a `HAS_DEPENDENTS` error: names and states, never values.
fn dependent_summary(d: &crate::error::Blocker) -> async_graphql::Value {
    let json = serde_json::json!({
        "resourceId": super::ids::encode(super::ids::RESOURCE, d.resource_id).0,
        "kind": d.kind,
        "name": d.name,
        "field": d.field,
        "state": d.state,
        "deployedVersion": d.deployed_version,
    });
    async_graphql::Value::from_json(json).unwrap_or(async_graphql::Value::Null)
}

/// A GraphQL-shaped error body for refusals made before GraphQL runs (HTTP layer).
pub fn error_response(code: Code, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] })
}

/// The `extensions.code` of an error, if it has one.
fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        Value::String(code) => Some(code),
        _ => None,
    }
}

/// An error with `code`, for refusals made outside a resolver.
pub fn coded(message: impl Into<String>, code: Code, at: Option<Pos>) -> ServerError {
    let mut error = ServerError::new(message, at);
    set_code(&mut error, code);
    error
}

fn set_code(error: &mut ServerError, code: Code) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
}

/// A query that does not parse. The parser's message quotes the offending source line,
/// which may hold a value written inline: only the position and what was expected there
/// are kept.
pub fn parse_failed(mut error: ServerError) -> ServerError {
    let expected = error
        .message
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .map(|expected| format!(": {}", scrub(expected)));
    error.message = match (error.locations.first(), error.message.contains("-->")) {
        (Some(at), true) => format!(
            "the query is not valid GraphQL: syntax error at line {}, column {}{}",
            at.line,
            at.column,
            expected.unwrap_or_default()
        ),
        _ => format!("the query is not valid GraphQL: {}", scrub(&error.message)),
    };
    set_code(&mut error, Code::GraphqlParseFailed);
    error
}

/// An operation that fails validation (unknown fields, wrong argument types, the depth
/// and complexity limits). Names stay in the message; values a client sent do not.
pub fn validation_failed(mut error: ServerError) -> ServerError {
    error.message = scrub(&error.message);
    if code_of(&error).is_none() {
        set_code(&mut error, Code::GraphqlValidationFailed);
    }
    error
}

/// Gives every error a code. What async-graphql reports uncoded while executing is an
/// argument its scalar could not parse (the caller's) or a fault of ours: the latter is
/// logged and reaches the client only as `internal server error`.
pub fn finish(errors: &mut [ServerError]) {
    for error in errors {
        if code_of(error).is_some() {
            continue;
        }
        if error.message.starts_with("Failed to parse \"") {
            error.message = scrub(&error.message);
            set_code(error, Code::BadUserInput);
        } else {
            tracing::error!(error = %error.message, path = ?error.path, "request failed");
            error.message = "internal server error".to_owned();
            set_code(error, Code::InternalServerError);
        }
    }
}

/// `message` with every double-quoted part that is not a GraphQL name, variable, path or
/// type reference replaced by `"…"`, and enum-value echoes dropped: what a client sent as
/// a value never comes back in an error.
pub fn scrub(message: &str) -> String {
    const ENUM_ECHO: &str = "does not contain the value \"";
    let message = match message.find(ENUM_ECHO) {
        Some(at) => {
            let rest = &message[at + ENUM_ECHO.len()..];
            let end = rest.find('"').map_or(rest.len(), |quote| quote + 1);
            format!(
                "{}does not contain that value{}",
                &message[..at],
                &rest[end..]
            )
        }
        None => message.to_owned(),
    };
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut quoted = true;
    for part in parts {
        if quoted {
            out.push('"');
            out.push_str(if is_reference(part) { part } else { "…" });
            out.push('"');
        } else {
            out.push_str(part);
        }
        quoted = !quoted;
    }
    out
}

/// A name (`secretValue`), variable (`$input`), path (`input.references.0.field`) or type
/// reference (`[SecretReferenceInput!]!`) — but not a word that could be a value: only
/// names that the schema itself could hold are kept, at most 64 characters.
fn is_reference(text: &str) -> bool {
    let body = text
        .trim_start_matches('$')
        .trim_matches(|c| matches!(c, '[' | ']' | '!'));
    !body.is_empty()
        && text.len() <= 64
        && body.split('.').all(|segment| {
            segment.bytes().all(|b| b.is_ascii_digit())
                || segment
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_keep_the_position_not_the_source() {
        let doc =
            async_graphql::parser::parse_query(r#"{ secretValue(name: "hunter2) { value } }"#);
        let error: ServerError = match doc {
            Err(e) => {
                let positions: Vec<_> = e.positions().collect();
                ServerError::new(e.to_string(), positions.first().copied())
            }
            Ok(_) => panic!("must not parse"),
        };
        assert!(
            error.message.contains("hunter2"),
            "the raw message echoes the source"
        );
        let error = parse_failed(error);
        assert!(!error.message.contains("hunter2"), "{}", error.message);
        assert!(
            error
                .message
                .starts_with("the query is not valid GraphQL: syntax error at line 1"),
            "{}",
            error.message
        );
    }

    #[test]
    fn scrub_keeps_names_and_drops_values() {
        let message = r#"Invalid value for argument "input.kind", enumeration type "ResourceKind" does not contain the value "sk_live_very secret""#;
        let scrubbed = scrub(message);
        assert!(!scrubbed.contains("sk_live"), "{scrubbed}");
        assert!(
            scrubbed.contains(r#""input.kind""#) && scrubbed.contains(r#""ResourceKind""#),
            "{scrubbed}"
        );
        let message = r#"Variable "$input" of type "CreateSecretInput" used in position expecting type "[String!]!""#;
        assert_eq!(scrub(message), message);
        assert_eq!(
            scrub(r#"unknown field "hunter2 was here" of type "X""#),
            r#"unknown field "…" of type "X""#
        );
    }

    #[test]
    fn every_error_leaves_with_a_code_and_no_internal_cause() {
        let mut errors = vec![
            // What async-graphql reports when a scalar argument does not parse.
            ServerError::new(
                r#"Failed to parse "DateTime": input contains invalid characters"#,
                None,
            ),
            // Anything else uncoded is ours: a missing context entry, say.
            ServerError::new("Data `AppData` does not exist.", None),
            coded("refused", Code::Forbidden, None),
        ];
        finish(&mut errors);
        let seen: Vec<(&str, Option<&str>)> = errors
            .iter()
            .map(|e| (e.message.as_str(), code_of(e)))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    r#"Failed to parse "DateTime": input contains invalid characters"#,
                    Some("BAD_USER_INPUT")
                ),
                ("internal server error", Some("INTERNAL_SERVER_ERROR")),
                ("refused", Some("FORBIDDEN")),
            ]
        );
    }
}
