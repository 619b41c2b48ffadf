//! The HTTP hot paths under load, one phase after another with the same
//! clients for the same time: the cheap command and, beside it, the
//! database's raw insert rate; write -> read idle and at half the command
//! rate; refresh-token rotation; `GET /v1/users/me` with the api's CPU;
//! the same read authenticated by access tokens and by an API key.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use uuid::Uuid;

use crate::cpu;
use crate::cpu_breakdown::{self, Breakdown, Processes};
use crate::profile::Actor;
use crate::raw_insert;
use crate::refresh::Chain;
use crate::run::Phase;
use crate::traffic::{self, drive, Driven};

/// The pause between one idle write -> read and the next: the services
/// have nothing else to do.
pub const IDLE_SPACING: Duration = Duration::from_millis(25);

/// A registered user with the access token of its own login.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

pub struct Setting<'a> {
    pub base_url: &'a str,
    pub db_url: &'a SecretString,
    pub users: &'a [User],
    pub duration: Duration,
    pub phase: &'a Phase,
    /// api and projector, for the CPU they use.
    pub pids: (u32, u32),
    /// Every process of the service, for the CPU per operation.
    pub processes: Processes,
    /// A service account's API key allowed `users:read`.
    pub api_key: &'a str,
}

pub struct HotPaths {
    pub clients: usize,
    pub commands: Driven,
    /// The service's CPU over the command phase, every process.
    pub commands_cpu: Breakdown,
    pub inserts: Driven,
    pub insert_bytes: usize,
    pub idle: Driven,
    pub loaded: Driven,
    /// The write -> read pairs per second the loaded phase was paced to.
    pub loaded_rate: f64,
    pub refresh: Driven,
    pub refresh_cpu: Breakdown,
    pub me: Driven,
    pub me_cpu: cpu::Usage,
    pub read_by_token: Driven,
    pub read_by_key: Driven,
}

impl Setting<'_> {
    async fn cpu_sample(&self) -> anyhow::Result<cpu_breakdown::Sample> {
        cpu_breakdown::sample(self.processes, self.db_url).await
    }

    fn actors(&self, count: usize) -> anyhow::Result<Vec<Actor>> {
        actors(self.base_url, &self.users[..count.min(self.users.len())])
    }
}

pub async fn measure(setting: &Setting<'_>) -> anyhow::Result<HotPaths> {
    let clients = setting.users.len();
    let duration = setting.duration;
    let secs = duration.as_secs_f64();
    let phase = setting.phase;

    phase.set(format!(
        "{clients} clients renaming themselves (PATCH /v1/users/{{id}}) for {secs} s"
    ));
    let actors = setting.actors(clients)?;
    let before = setting.cpu_sample().await?;
    let commands = drive(actors, duration, None, Actor::rename_self).await?;
    let commands_cpu = cpu_breakdown::between(&before, &setting.cpu_sample().await?);

    phase.set(format!(
        "{clients} clients appending the newest event's row to streams of their own in a \
         copy of events (same indexes, no trigger) for {secs} s"
    ));
    let inserters = raw_insert::prepare(setting.db_url, clients).await?;
    let insert_bytes = inserters.first().map_or(0, raw_insert::Inserter::row_bytes);
    let inserts = drive(inserters, duration, None, raw_insert::Inserter::insert).await?;

    phase.set(format!(
        "write -> read idle: 1 client, a rename then GET ?min_position every {} ms, for {secs} s",
        IDLE_SPACING.as_millis()
    ));
    let idle = drive(
        setting.actors(1)?,
        duration,
        Some(IDLE_SPACING),
        Actor::write_then_read,
    )
    .await?;

    let loaded_rate = commands.per_second() / 2.0;
    anyhow::ensure!(
        loaded_rate > 0.0,
        "no command completed, so there is no rate to halve"
    );
    let every = Duration::from_secs_f64(clients as f64 / loaded_rate);
    phase.set(format!(
        "write -> read loaded: {clients} clients, {loaded_rate:.0} renames/s in all \
         (half the command rate), each read back, for {secs} s"
    ));
    let loaded = drive(
        setting.actors(clients)?,
        duration,
        Some(every),
        Actor::write_then_read,
    )
    .await?;

    phase.set(format!(
        "{clients} clients logging in once, then rotating their refresh tokens for {secs} s"
    ));
    let base_url: Arc<str> = setting.base_url.into();
    let mut chains = Vec::with_capacity(clients);
    for user in setting.users {
        chains.push(Chain::start(traffic::http_client()?, base_url.clone(), &user.email).await?);
    }
    let before = setting.cpu_sample().await?;
    let refresh = drive(chains, duration, None, Chain::rotate).await?;
    let refresh_cpu = cpu_breakdown::between(&before, &setting.cpu_sample().await?);

    phase.set(format!(
        "{clients} clients reading GET /v1/users/me for {secs} s"
    ));
    let actors = setting.actors(clients)?;
    let before = cpu::sample(setting.pids.0, setting.pids.1);
    let me = drive(actors, duration, None, Actor::read_me).await?;
    let me_cpu = cpu::usage(&before, &cpu::sample(setting.pids.0, setting.pids.1));
    me_cpu
        .api
        .context("the api's CPU time (/proc/<pid>/stat)")?;

    phase.set(format!(
        "{clients} clients reading their user (GET /v1/users/{{id}}) with their access \
         tokens for {secs} s"
    ));
    let read_by_token = drive(setting.actors(clients)?, duration, None, Actor::read_user).await?;
    phase.set(format!(
        "{clients} clients reading the same users with one service account's API key for {secs} s"
    ));
    let mut machines = setting.actors(clients)?;
    for machine in &mut machines {
        machine.token = setting.api_key.to_owned();
    }
    let read_by_key = drive(machines, duration, None, Actor::read_user).await?;

    Ok(HotPaths {
        clients,
        commands,
        commands_cpu,
        inserts,
        insert_bytes,
        idle,
        loaded,
        loaded_rate,
        refresh,
        refresh_cpu,
        me,
        me_cpu,
        read_by_token,
        read_by_key,
    })
}

/// One actor per user, each with its own HTTP client.
pub fn actors(base_url: &str, users: &[User]) -> anyhow::Result<Vec<Actor>> {
    let base_url: Arc<str> = base_url.into();
    users
        .iter()
        .map(|user| {
            Ok(Actor {
                http: traffic::http_client()?,
                base_url: base_url.clone(),
                user_id: user.id,
                token: user.token.clone(),
                renames: 0,
            })
        })
        .collect()
}
