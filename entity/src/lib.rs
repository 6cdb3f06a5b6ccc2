//! SeaORM entities: the rows as stored. The GraphQL types in the server are separate
//! structs, because the row and the API contract change for different reasons.
#![forbid(unsafe_code)]

pub mod api_token;
pub mod audit_event;
pub mod console_session;
pub mod deployment;
pub mod deployment_pin;
pub mod event_outbox;
pub mod organization;
pub mod principal;
pub mod resource;
pub mod resource_reference;
pub mod runtime_binding;
pub mod secret;
pub mod secret_allowed_resource;
pub mod secret_usage;
pub mod secret_version;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_message;
pub mod workload_identity;
