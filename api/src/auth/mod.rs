//! Authentication: passwords to sessions, sessions to access tokens, and
//! the extractors that authorize every route.

pub mod keys;
pub mod principal;
pub mod refresh_token;
pub mod sign_in;
pub mod tokens;

pub use principal::{Allowed, Principal, SelfOr};
