//! One bench run: its database and broker names, the two service processes,
//! the measurement, and the cleanup that always follows it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use sqlx::migrate::MigrateDatabase;
use sqlx::Postgres;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::checkpoints::{self, CheckpointLog, LogPosition};
use crate::cpu;
use crate::load::{self, Registration};
use crate::services::{Service, Stopped};
use crate::tap::{self, TapLog};
use crate::Cli;

const CLEANUP_STEP: Duration = Duration::from_secs(15);

/// Aborts a spawned task when dropped (also when a timeout drops the run).
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the run is doing, for the message of a timeout or an interrupt.
#[derive(Clone, Default)]
pub struct Phase(Arc<Mutex<String>>);

impl Phase {
    pub fn set(&self, phase: impl Into<String>) {
        let phase = phase.into();
        eprintln!("bench: {phase}");
        *self.0.lock().expect("phase") = phase;
    }

    pub fn get(&self) -> String {
        self.0.lock().expect("phase").clone()
    }
}

pub struct Run {
    pub id: String,
    pub db_name: String,
    pub db_url: String,
    pub amqp_url: String,
    pub topology: bus::Topology,
    pub log_dir: PathBuf,
    pub api_log: PathBuf,
    pub projector_log: PathBuf,
    pub phase: Phase,
    api_bin: PathBuf,
    projector_bin: PathBuf,
    api: Option<Service>,
    projector: Option<Service>,
    db_created: bool,
    broker_declared: bool,
}

/// Everything measured, for the report.
pub struct Measured {
    pub registrations: Vec<Registration>,
    pub tap: TapLog,
    pub checkpoints: CheckpointLog,
    /// Tap arrival and users_view application per registration, in the same order.
    pub seen: Vec<Option<Instant>>,
    pub applied: Vec<Option<checkpoints::Advance>>,
    /// Registrations whose tap message carried another aggregate id.
    pub mismatched_ids: usize,
    /// CPU used from the first send to the last 201.
    pub cpu: cpu::Usage,
    /// /proc/loadavg just before the registrations.
    pub load_before: Option<String>,
}

/// How the cleanup went, for the report.
#[derive(Default)]
pub struct Cleanup {
    pub stopped: Vec<String>,
    pub problems: Vec<String>,
}

impl Run {
    pub fn new(cli: &Cli, root: &Path, api_bin: PathBuf, projector_bin: PathBuf) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("identity_bench_{id}");
        let server = cli.postgres_url.trim_end_matches('/');
        let log_dir = root.join("target").join("bench-logs");
        Self {
            api_log: log_dir.join(format!("{id}-api.log")),
            projector_log: log_dir.join(format!("{id}-projector.log")),
            db_url: format!("{server}/{db_name}"),
            db_name,
            amqp_url: cli.amqp_url.clone(),
            topology: bus::Topology {
                exchange: format!("bench.{id}.events"),
                queue_prefix: format!("bench.{id}."),
            },
            log_dir,
            phase: Phase::default(),
            api_bin,
            projector_bin,
            api: None,
            projector: None,
            db_created: false,
            broker_declared: false,
            id,
        }
    }

    fn projector_group() -> bus::ConsumerGroup {
        // Only the name matters here: the projector declares its own queue.
        bus::ConsumerGroup {
            name: "projector.read_models".into(),
            binding_keys: vec![],
            delivery_limit: 0,
        }
    }

    pub async fn measure(&mut self, cli: &Cli) -> anyhow::Result<Measured> {
        let phase = self.phase.clone();

        phase.set(format!("creating and migrating database {}", self.db_name));
        self.db_created = true;
        let pool = infra::db::connect(&self.db_url, 2)
            .await
            .with_context(|| format!("create database {}", self.db_name))?;
        infra::db::migrate(&pool).await.context("migrate")?;
        pool.close().await;

        phase.set("declaring the exchange and the tap queue");
        self.broker_declared = true;
        let connection = bus::connect(&self.amqp_url)
            .await
            .context("connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        self.topology.declare_exchange(&channel).await?;
        self.topology.declare_group(&channel, &tap::group()).await?;
        let (tap_log, tap_task) =
            tap::start(&connection, &self.topology.queue_name(&tap::group())).await?;
        let (checkpoint_log, checkpoint_task) = checkpoints::start(&self.db_url).await?;

        phase.set("starting api and projector");
        std::fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("create {}", self.log_dir.display()))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(cli.concurrency as usize * 2)
            .build()?;
        self.projector = Some(Service::start(
            "projector",
            &self.projector_bin,
            &self.service_env("PROJECTOR_ADDR"),
            self.projector_log.clone(),
        )?);
        self.api = Some(Service::start(
            "api",
            &self.api_bin,
            &self.service_env("API_ADDR"),
            self.api_log.clone(),
        )?);
        let projector = self.projector.as_mut().expect("started");
        let projector_port = projector.wait_for_port("projector running").await?;
        let api = self.api.as_mut().expect("started");
        let api_port = api.wait_for_port("api listening").await?;
        eprintln!(
            "bench: api pid {} on 127.0.0.1:{api_port}, projector pid {} on 127.0.0.1:{projector_port}",
            api.pid(),
            self.projector.as_ref().expect("started").pid()
        );
        phase.set("waiting for /health/ready of api and projector");
        self.api
            .as_mut()
            .expect("started")
            .wait_ready(&client)
            .await?;
        self.projector
            .as_mut()
            .expect("started")
            .wait_ready(&client)
            .await?;
        phase.set("waiting for the projector's queue");
        self.wait_for_queue(
            &connection,
            &self.topology.queue_name(&Self::projector_group()),
        )
        .await?;

        phase.set(format!(
            "registering {} users with {} concurrent clients",
            cli.users, cli.concurrency
        ));
        let base_url = format!("http://127.0.0.1:{api_port}");
        let run_tag = &self.id[..12];
        let pids = (
            self.api.as_ref().expect("started").pid(),
            self.projector.as_ref().expect("started").pid(),
        );
        let load_before = cpu::load_average();
        let cpu_before = cpu::sample(pids.0, pids.1);
        let registrations =
            load::register_all(&client, &base_url, run_tag, cli.users, cli.concurrency).await?;
        let cpu_usage = cpu::usage(&cpu_before, &cpu::sample(pids.0, pids.1));

        phase.set("waiting for every event on the tap queue and in users_view");
        self.wait_until_through(&registrations, &tap_log, &checkpoint_log)
            .await?;

        phase.set("reading every user back with ?min_position (not timed)");
        load::verify_all(&client, &base_url, &registrations, cli.concurrency).await?;

        drop(tap_task);
        drop(checkpoint_task);
        let _ = connection.close(200, "bench done".into()).await;
        let tap = std::mem::take(&mut *tap_log.lock().expect("tap log"));
        let checkpoints = std::mem::take(&mut *checkpoint_log.lock().expect("checkpoints"));
        let mut measured = correlate(registrations, tap, checkpoints, cpu_usage);
        measured.load_before = load_before;
        Ok(measured)
    }

    fn service_env(&self, addr_var: &'static str) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db_url.clone()),
            ("AMQP_URL", self.amqp_url.clone()),
            ("AMQP_EXCHANGE", self.topology.exchange.clone()),
            ("AMQP_QUEUE_PREFIX", self.topology.queue_prefix.clone()),
            ("LOG_FORMAT", "json".into()),
            (addr_var, "127.0.0.1:0".into()),
        ]
    }

    /// A passive declare succeeds once the queue exists (a failed one closes
    /// its channel, hence a channel per attempt).
    async fn wait_for_queue(
        &mut self,
        connection: &lapin::Connection,
        queue: &str,
    ) -> anyhow::Result<()> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        loop {
            for service in [&mut self.api, &mut self.projector].into_iter().flatten() {
                service.check_running()?;
            }
            let channel = connection.create_channel().await?;
            if channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await
                .is_ok()
            {
                let _ = channel.close(200, "ok".into()).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every registration's event has arrived on the tap queue and
    /// the users_view checkpoint has reached the last of them.
    async fn wait_until_through(
        &mut self,
        registrations: &[Registration],
        tap: &tap::SharedTap,
        checkpoints: &checkpoints::SharedCheckpoints,
    ) -> anyhow::Result<()> {
        let mut target: Option<LogPosition> = None;
        loop {
            for service in [&mut self.api, &mut self.projector].into_iter().flatten() {
                service.check_running()?;
            }
            if target.is_none() {
                let tap = tap.lock().expect("tap log");
                if let Some(ended) = &tap.ended {
                    anyhow::bail!("{ended}");
                }
                target = registrations
                    .iter()
                    .map(|registration| {
                        tap.by_position
                            .get(&registration.position)
                            .map(|seen| (seen.transaction_id, registration.position))
                    })
                    .collect::<Option<Vec<_>>>()
                    .and_then(|positions| positions.into_iter().max());
            }
            if let Some(target) = target {
                let checkpoints = checkpoints.lock().expect("checkpoints");
                if let Some(error) = &checkpoints.error {
                    anyhow::bail!("{error}");
                }
                if checkpoints.latest().is_some_and(|latest| latest >= target) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the processes (api first, so no new events arrive while the
    /// projector finishes), deletes the queues and exchanges, drops the database.
    pub async fn cleanup(&mut self) -> Cleanup {
        let mut cleanup = Cleanup::default();
        for service in [self.api.take(), self.projector.take()]
            .into_iter()
            .flatten()
        {
            stop(service, &mut cleanup).await;
        }
        if self.broker_declared {
            let deleted = tokio::time::timeout(CLEANUP_STEP, self.delete_broker_objects()).await;
            match deleted {
                Ok(Ok(())) => {}
                Ok(Err(error)) => cleanup
                    .problems
                    .push(format!("deleting queues and exchanges: {error:#}")),
                Err(_) => cleanup
                    .problems
                    .push("deleting queues and exchanges timed out".into()),
            }
        }
        if self.db_created {
            match tokio::time::timeout(CLEANUP_STEP, Postgres::force_drop_database(&self.db_url))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => cleanup
                    .problems
                    .push(format!("dropping database {}: {error}", self.db_name)),
                Err(_) => cleanup
                    .problems
                    .push(format!("dropping database {} timed out", self.db_name)),
            }
        }
        for problem in &cleanup.problems {
            eprintln!("bench: cleanup: {problem}");
        }
        cleanup
    }

    async fn delete_broker_objects(&self) -> anyhow::Result<()> {
        let connection = bus::connect(&self.amqp_url).await?;
        let mut result = Ok(());
        for group in [tap::group(), Self::projector_group()] {
            let channel = connection.create_channel().await?;
            if let Err(error) = self.topology.delete_group(&channel, &group).await {
                result = Err(error).with_context(|| format!("delete queues of {}", group.name));
            }
        }
        let channel = connection.create_channel().await?;
        if let Err(error) = self.topology.delete_exchange(&channel).await {
            result = Err(error).context("delete exchanges");
        }
        let _ = connection.close(200, "bench cleanup".into()).await;
        result
    }
}

async fn stop(mut service: Service, cleanup: &mut Cleanup) {
    match service.stop().await {
        Ok(stopped) => {
            let clean = match &stopped {
                Stopped::Terminated(status, _) | Stopped::AlreadyExited(status) => status.success(),
                Stopped::Killed(_) => false,
            };
            if !clean {
                cleanup.problems.push(format!(
                    "{} {stopped}; see {}",
                    service.name,
                    service.log.display()
                ));
            }
            cleanup.stopped.push(format!("{} {stopped}", service.name));
        }
        Err(error) => cleanup
            .problems
            .push(format!("stopping {}: {error:#}", service.name)),
    }
}

fn correlate(
    registrations: Vec<Registration>,
    tap: TapLog,
    checkpoints: CheckpointLog,
    cpu: cpu::Usage,
) -> Measured {
    let mut mismatched_ids = 0;
    let mut seen = Vec::with_capacity(registrations.len());
    let mut applied = Vec::with_capacity(registrations.len());
    for registration in &registrations {
        let arrival = tap.by_position.get(&registration.position);
        if arrival.is_some_and(|arrival| arrival.aggregate_id != registration.id.to_string()) {
            mismatched_ids += 1;
        }
        seen.push(arrival.map(|arrival| arrival.at));
        applied.push(arrival.and_then(|arrival| {
            checkpoints.applied((arrival.transaction_id, registration.position))
        }));
    }
    Measured {
        registrations,
        tap,
        checkpoints,
        seen,
        applied,
        mismatched_ids,
        cpu,
        load_before: None,
    }
}
