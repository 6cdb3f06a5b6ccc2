//! End-to-end tests: the real `strongroom` binary, spawned per test, spoken to over HTTP,
//! each test once on SQLite and once on PostgreSQL (the replica tests: PostgreSQL only;
//! the CORS, persisted-query and GraphQL-over-HTTP conformance tests, which touch no
//! store: SQLite only).
mod helpers;
mod moto;

mod abuse;
mod access;
mod apq;
mod attribution;
mod auth;
mod browser;
mod conformance;
mod connections;
mod console;
mod cors;
mod dependents;
mod events;
mod faults;
mod guards;
mod inputs;
mod kms;
mod leaks;
mod lifecycle;
mod limits;
mod outbox;
mod races;
mod redeploy;
mod replicas;
mod run;
mod secrets;
mod shape;
mod shredding;
mod sockets;
mod sso;
mod statements;
mod usage;
mod v1;
mod webhooks;
mod workload;
