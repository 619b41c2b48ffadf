//! Aggregates, commands, events and rules of the identity service. No I/O.

pub mod audit_signer;
pub mod command_name;
pub mod contract;
pub mod erasure;
pub mod rbac;
pub mod redaction;
pub mod role;
pub mod second_factor;
pub mod service_account;
pub mod session;
pub mod snapshot;
pub mod user;
pub mod validation;
pub mod webhook;

pub use audit_signer::{
    AcknowledgementReason, AuditSigner, AuditSignerCommand, AuditSignerError, AuditSignerEvent,
    SignedPoint,
};
pub use command_name::CommandName;
pub use contract::{
    aggregate_types, all_event_types, decode, ClaimScope, ContractEvent, DecodeError, EventType,
    PayloadField,
};
pub use erasure::{PersonalMetadata, ERASED, PERSONAL_PAYLOAD_FIELDS};
pub use redaction::{redact_event_payload, RedactionError, REDACTED, SECRET_PAYLOAD_FIELDS};
pub use role::{Permission, Role, RoleCommand, RoleDescription, RoleError, RoleEvent, RoleName};
pub use second_factor::{
    ProofMethod, SecondFactorCommand, SecondFactorError, SecondFactorEvent, SecondFactors,
    TotpCode, TotpSecret,
};
pub use service_account::{
    ApiKeyHash, IssuedKey, NewKey, ServiceAccount, ServiceAccountCommand,
    ServiceAccountDescription, ServiceAccountError, ServiceAccountEvent, ServiceAccountName,
    ServiceAccountStatus,
};
pub use session::{
    ExpiryReason, HistoryUnavailable, RefreshTokenHash, RefreshTokenHistory, RevocationReason,
    Session, SessionCommand, SessionEnd, SessionError, SessionEvent, SessionServices,
};
pub use snapshot::Snapshotted;
pub use user::{
    DisplayName, Email, HashingCost, Password, PasswordHash, User, UserCommand, UserError,
    UserEvent, UserStatus,
};
pub use validation::ValidationError;
pub use webhook::{Webhook, WebhookCommand, WebhookError, WebhookEvent};
