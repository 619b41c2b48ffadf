//! Produces events the way the API does: real commands executed by cqrs-es
//! on the postgres-es event store.

use std::fmt::Debug;

use cqrs_es::Aggregate;
use domain::{
    DisplayName, Email, PasswordHash, Role, RoleCommand, Session, SessionCommand, SessionServices,
    User, UserCommand,
};
use futures_util::StreamExt;
use infra::commands::StoreServices;
use infra::testing::request_metadata;
use postgres_es::{postgres_cqrs, PostgresCqrs};
use sqlx::PgPool;
use uuid::Uuid;

/// Commands run concurrently (on different users) to fill the store quickly.
const CONCURRENCY: usize = 4;

/// A user of a test, driven through [`step`] one command at a time.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    /// Makes the user's emails and names unique.
    index: usize,
    /// Commands executed so far, the registration included.
    steps: usize,
}

pub struct Writer {
    cqrs: PostgresCqrs<User>,
    roles: PostgresCqrs<Role>,
    sessions: PostgresCqrs<Session>,
    registered: std::sync::atomic::AtomicUsize,
}

impl Writer {
    pub fn new(pool: &PgPool) -> Self {
        Self {
            cqrs: postgres_cqrs(pool.clone(), Vec::new(), ()),
            roles: postgres_cqrs(pool.clone(), Vec::new(), ()),
            sessions: postgres_cqrs(pool.clone(), Vec::new(), SessionServices::for_store(pool)),
            registered: Default::default(),
        }
    }

    /// Executes one command with request metadata, as the API would.
    pub async fn execute(&self, user_id: Uuid, command: UserCommand) {
        execute(&self.cqrs, user_id, command).await;
    }

    pub async fn execute_role(&self, role_id: Uuid, command: RoleCommand) {
        execute(&self.roles, role_id, command).await;
    }

    pub async fn execute_session(&self, session_id: Uuid, command: SessionCommand) {
        execute(&self.sessions, session_id, command).await;
    }

    /// Registers `count` new users.
    pub async fn register(&self, count: usize) -> Vec<TestUser> {
        use std::sync::atomic::Ordering::Relaxed;
        let first = self.registered.fetch_add(count, Relaxed);
        let mut users: Vec<TestUser> = (first..first + count)
            .map(|index| TestUser {
                id: Uuid::now_v7(),
                index,
                steps: 0,
            })
            .collect();
        self.advance(&mut users, |_| 1).await;
        users
    }

    /// Executes the next `steps_of(position in users)` commands of each user,
    /// round-robin over the users so that their events interleave in the log.
    pub async fn advance(&self, users: &mut [TestUser], steps_of: impl Fn(usize) -> usize) {
        let targets: Vec<usize> = users
            .iter()
            .enumerate()
            .map(|(position, user)| user.steps + steps_of(position))
            .collect();
        loop {
            let due: Vec<usize> = (0..users.len())
                .filter(|&position| users[position].steps < targets[position])
                .collect();
            if due.is_empty() {
                return;
            }
            let commands: Vec<(Uuid, UserCommand)> = due
                .iter()
                .map(|&position| {
                    let user = &users[position];
                    (user.id, step(user, user.steps))
                })
                .collect();
            futures_util::stream::iter(commands)
                .for_each_concurrent(CONCURRENCY, |(id, command)| self.execute(id, command))
                .await;
            for position in due {
                users[position].steps += 1;
            }
        }
    }
}

async fn execute<A>(cqrs: &PostgresCqrs<A>, id: Uuid, command: A::Command)
where
    A: Aggregate,
    A::Command: Debug,
{
    let metadata = request_metadata(Some(id), "projector-tests");
    let description = format!("{command:?}");
    cqrs.execute_with_metadata(&id.to_string(), command, metadata.to_map())
        .await
        .unwrap_or_else(|error| panic!("{description} on {} {id}: {error:?}", A::TYPE));
}

/// The `number`th command of a user's scripted life: registration, then a
/// cycle of every kind of change that leaves the user active at its end.
/// Each command changes something, so each writes at least one event.
fn step(user: &TestUser, number: usize) -> UserCommand {
    let index = user.index;
    let email = || {
        // Mixed case: the view keeps the address and a lowercased key.
        Email::parse(&format!("User{index}.Step{number}@Example.COM")).expect("valid email")
    };
    let name = || DisplayName::parse(&format!("User {index} (step {number})")).expect("name");
    let hash = || PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1$u{index}s{number}"));
    if number == 0 {
        return UserCommand::Register {
            user_id: user.id,
            email: email(),
            display_name: name(),
            password_hash: hash(),
        };
    }
    match (number - 1) % 8 {
        // Two events: EmailChanged, DisplayNameChanged.
        0 => UserCommand::UpdateProfile {
            email: Some(email()),
            display_name: Some(name()),
        },
        1 => UserCommand::ChangePassword {
            password_hash: hash(),
        },
        2 | 6 => UserCommand::Deactivate,
        3 | 7 => UserCommand::Reactivate,
        4 => UserCommand::ChangeDisplayName {
            display_name: name(),
        },
        _ => UserCommand::ChangeEmail { email: email() },
    }
}
