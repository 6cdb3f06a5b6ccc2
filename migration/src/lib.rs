//! Schema migrations for strongroom. The migrations are the source of truth for the
//! schema; the entities in `entity/` mirror them by hand.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_init;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261126_000001_init::Migration)]
    }
}
