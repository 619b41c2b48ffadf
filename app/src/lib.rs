//! The use cases of the identity service: what a request or an operator's
//! command does, independent of HTTP. Each returns [`AppError`].

pub mod api_key;
pub mod audit;
pub mod bootstrap;
pub mod claims;
pub mod command_rate;
pub mod context;
pub mod erasure;
pub mod error;
pub mod failed_logins;
pub mod integrity;
pub mod keys;
pub mod metrics;
pub mod password;
pub mod power;
pub mod refresh_token;
pub mod roles;
pub mod second_factors;
pub mod service_accounts;
pub mod sign_in;
pub mod tokens;
pub mod users;
pub mod webhooks;

pub use context::RequestContext;
pub use error::AppError;
