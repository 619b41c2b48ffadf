//! infra against a real, migrated PostgreSQL.

mod health;
mod integrity;
mod sql_contract;
