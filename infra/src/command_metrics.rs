//! `commands_total{aggregate, command, outcome}`: every command
//! [`CommandBus`](crate::commands::CommandBus) runs, by how it ended. Every
//! label is bounded: aggregate types, their commands' names
//! ([`domain::CommandName`]) and four outcomes.

use cqrs_es::{Aggregate, AggregateError};
use domain::{CommandName, Role, Session, User, Webhook};
use metrics::{describe_counter, Unit};

/// Commands run, by aggregate type, command and outcome.
pub const COMMANDS: &str = "commands_total";

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Its events were appended (or it decided there was nothing to do).
    Ok,
    /// The aggregate refused it (a domain rule).
    Rejected,
    /// Another writer appended to the aggregate first.
    Conflict,
    /// Storage or decoding failed.
    Error,
}

impl CommandOutcome {
    pub const ALL: [Self; 4] = [Self::Ok, Self::Rejected, Self::Conflict, Self::Error];

    pub fn of<T, E: std::error::Error>(result: &Result<T, AggregateError<E>>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(AggregateError::UserError(_)) => Self::Rejected,
            Err(AggregateError::AggregateConflict) => Self::Conflict,
            Err(_) => Self::Error,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
            Self::Error => "error",
        }
    }
}

/// Describes the counter and starts every aggregate's every command and
/// outcome at zero.
pub fn register() {
    describe_counter!(
        COMMANDS,
        Unit::Count,
        "Commands run, by aggregate type, command and outcome (ok, rejected, conflict, error)."
    );
    register_aggregate::<User>();
    register_aggregate::<Role>();
    register_aggregate::<Session>();
    register_aggregate::<Webhook>();
}

fn register_aggregate<A: Aggregate>()
where
    A::Command: CommandName,
{
    for command in <A::Command as CommandName>::NAMES {
        for outcome in CommandOutcome::ALL {
            counter(A::TYPE, command, outcome).increment(0);
        }
    }
}

/// Counts one command of aggregate type `aggregate` named `command`.
pub fn record(aggregate: &'static str, command: &'static str, outcome: CommandOutcome) {
    counter(aggregate, command, outcome).increment(1);
}

fn counter(
    aggregate: &'static str,
    command: &'static str,
    outcome: CommandOutcome,
) -> metrics::Counter {
    metrics::counter!(
        COMMANDS,
        "aggregate" => aggregate,
        "command" => command,
        "outcome" => outcome.label()
    )
}
