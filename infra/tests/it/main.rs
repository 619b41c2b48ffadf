//! infra against a real, migrated PostgreSQL.

mod integrity;
mod sql_contract;
