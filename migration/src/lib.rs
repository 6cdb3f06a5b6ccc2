//! Schema migrations for strongroom. The migrations are the source of truth for the
//! schema; the entities in `entity/` mirror them by hand.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_init;
mod m20261127_000002_dependents;
mod m20261128_000003_one_current_deployment;
mod m20261129_000004_name_key_collation;
mod m20261130_000005_lifecycle;
mod m20261203_000006_event_outbox;
mod m20261203_000007_least_privilege;
mod m20261204_000008_webhooks;
mod m20261210_000009_sessions;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_init::Migration),
            Box::new(m20261127_000002_dependents::Migration),
            Box::new(m20261128_000003_one_current_deployment::Migration),
            Box::new(m20261129_000004_name_key_collation::Migration),
            Box::new(m20261130_000005_lifecycle::Migration),
            Box::new(m20261203_000006_event_outbox::Migration),
            Box::new(m20261203_000007_least_privilege::Migration),
            Box::new(m20261204_000008_webhooks::Migration),
            Box::new(m20261210_000009_sessions::Migration),
        ]
    }
}
