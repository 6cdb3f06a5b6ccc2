//! End-to-end tests: the real `strongroom` binary, spawned per test, spoken to over HTTP,
//! each test once on SQLite and once on PostgreSQL.
mod helpers;
mod moto;

mod auth;
mod dependents;
mod kms;
mod leaks;
mod limits;
mod secrets;
