//! What every resolver may find in a request's data: who is asking ([`Auth`]), with which
//! credential, under which request id, and the refusals its guards noted
//! ([`RequestCtx`]); and whether it came over HTTP ([`OverHttp`]). Shared by the HTTP and
//! WebSocket layers, the guards and the resolvers.
use std::sync::Arc;

use super::Denials;
use crate::domain::Principal;

/// Who is asking, per request.
#[derive(Clone, Debug)]
pub enum Auth {
    /// No `Authorization` header.
    Anonymous,
    /// A header with an unknown, revoked or expired token.
    Invalid,
    Principal(Principal),
}

impl Auth {
    /// The caller's organization; `None` without a principal.
    pub fn org(&self) -> Option<uuid::Uuid> {
        match self {
            Auth::Principal(principal) => Some(principal.org_id),
            Auth::Anonymous | Auth::Invalid => None,
        }
    }
}

/// Per-request data: the caller, the request id (for the audit log) and the fields its
/// guards refused (shared by the operations of a batch).
#[derive(Clone, Debug)]
pub struct RequestCtx {
    pub auth: Auth,
    pub request_id: Option<String>,
    pub denials: Arc<Denials>,
    /// What the principal authenticated with (for the audit log).
    pub credential: Option<crate::domain::Credential>,
}

impl RequestCtx {
    /// The authenticated caller as a domain actor; `None` without a principal.
    pub fn actor(&self) -> Option<crate::domain::Actor> {
        match &self.auth {
            Auth::Principal(principal) => Some(crate::domain::Actor {
                principal: principal.clone(),
                request_id: self.request_id.clone(),
                credential: self.credential.clone(),
            }),
            Auth::Anonymous | Auth::Invalid => None,
        }
    }
}

/// Marks a request that came over HTTP (`/graphql`) rather than the WebSocket.
pub struct OverHttp;
