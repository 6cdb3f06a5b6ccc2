//! Opaque global ids: base64url of `Kind:uuid`. Clients must not parse them.
use async_graphql::ID;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::Error;

pub const SECRET: &str = "Secret";
pub const PRINCIPAL: &str = "Principal";
pub const API_TOKEN: &str = "ApiToken";
pub const ORGANIZATION: &str = "Organization";
pub const AUDIT_EVENT: &str = "AuditEvent";
pub const RESOURCE: &str = "Resource";
pub const DEPLOYMENT: &str = "Deployment";
pub const WORKLOAD_IDENTITY: &str = "WorkloadIdentity";
pub const WEBHOOK_ENDPOINT: &str = "WebhookEndpoint";

pub fn encode(kind: &str, id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{kind}:{id}")))
}

/// The kind and uuid of a global id, if it is one.
pub fn decode(id: &str) -> Option<(String, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, uuid) = text.split_once(':')?;
    Some((kind.to_owned(), Uuid::parse_str(uuid).ok()?))
}

/// The uuid of a global id of `kind`, or `BAD_USER_INPUT`.
pub fn decode_as(id: &str, kind: &str) -> Result<Uuid, Error> {
    match decode(id) {
        Some((found, uuid)) if found == kind => Ok(uuid),
        _ => Err(Error::bad_input(format!("not a valid {kind} id"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kind_check() {
        let uuid = Uuid::now_v7();
        let id = encode(SECRET, uuid);
        assert_eq!(decode(&id), Some((SECRET.to_owned(), uuid)));
        assert_eq!(decode_as(&id, SECRET).ok(), Some(uuid));
        assert!(decode_as(&id, PRINCIPAL).is_err());
        assert!(decode("not-an-id").is_none());
    }
}
