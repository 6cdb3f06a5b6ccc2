//! strongroom: a GraphQL secrets service for data pipelines.
//!
//! Data flows one way: [`http`] (axum) → [`graphql`] (schema, guards, loaders, error
//! codes) → [`domain`] (plain async functions on a database handle) → `entity` rows and
//! [`crypto`] (envelope encryption behind a key provider).
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod oidc;
pub mod run;
pub mod sso;
pub mod telemetry;
pub mod webhooks;

pub use error::{Error, Result};
