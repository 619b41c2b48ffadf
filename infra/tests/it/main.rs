//! infra against a real, migrated PostgreSQL.

mod command_metrics;
mod erased;
mod health;
mod integrity;
mod ops;
mod snapshots;
mod sql_contract;
mod vectors;
