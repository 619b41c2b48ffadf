//! Authentication: passwords to sessions, sessions to access tokens, and
//! the extractors that authorize every route.

pub mod cookies;
pub mod csrf;
pub mod machine;
pub mod principal;

pub use principal::{Allowed, Principal, SelfOr};
