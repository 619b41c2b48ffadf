//! Closed sets of values that the OpenAPI document states as enums, built
//! from the code that decides them, so a generated client knows them and
//! the document cannot drift from what the api accepts.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

fn strings(values: impl IntoIterator<Item = String>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

macro_rules! closed_set {
    ($($(#[$doc:meta])* $name:ident => $values:expr;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                strings($values)
            }
        }

        impl ToSchema for $name {}
    )*};
}

closed_set! {
    /// An aggregate type of the event contract (`user`, `role`, …).
    AggregateTypeName => domain::aggregate_types().into_iter().map(str::to_owned);
    /// What `GET /v1/users` filters on.
    UserStatusName => domain::UserStatus::ALL.iter().map(|status| status.as_str().to_owned());
    /// Which end of the audit log a page starts from.
    AuditOrderName => app::audit::Order::NAMES.iter().map(|name| (*name).to_owned());
    /// What a webhook receives: `*`, every type of one aggregate
    /// (`user.*`), or one event type (`session.revoked`).
    EventTypeSelector => domain::webhook::EventTypePattern::every();
}
