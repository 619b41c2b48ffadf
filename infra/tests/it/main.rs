//! infra against a real, migrated PostgreSQL.

mod health;
mod integrity;
mod snapshots;
mod sql_contract;
