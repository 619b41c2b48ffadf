//! CPU per operation, per process, PostgreSQL and RabbitMQ included: what
//! one command costs the whole machine, not only the api.
//!
//! PostgreSQL is the backends connected to the bench's database (from
//! `pg_stat_activity`) plus the server's own processes (WAL writer,
//! checkpointer, autovacuum, ...) and, through the postmaster's
//! `cutime`/`cstime`, every process of the server that ended between the
//! samples. RabbitMQ is every `beam.smp` and its helpers. Other databases
//! and other users of the broker on the machine count too when they run at
//! the same time: the figures are exact only on an otherwise idle machine,
//! which is why the machine's busy time is printed beside them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};

/// The bench's own processes, by name.
#[derive(Clone, Copy, Debug)]
pub struct Processes {
    pub api: u32,
    pub projector: u32,
    pub worker: u32,
}

/// The groups a breakdown has, in the order they are printed.
pub const GROUPS: [&str; 6] = [
    "PostgreSQL",
    "api",
    "RabbitMQ",
    "projector",
    "worker",
    "bench",
];

/// Processes whose CPU is RabbitMQ's (the Erlang VM and its port helpers).
const RABBITMQ_COMMANDS: [&str; 4] = ["beam.smp", "erl_child_setup", "inet_gethost", "epmd"];

/// Busy CPU ticks of every group at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    at: Instant,
    ticks: BTreeMap<&'static str, u64>,
    machine_busy: Option<u64>,
}

/// CPU seconds of each group between two samples.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    pub wall_seconds: f64,
    pub seconds: BTreeMap<&'static str, f64>,
    /// The whole machine's busy CPU seconds, whoever used them.
    pub machine_busy: Option<f64>,
}

impl Breakdown {
    /// CPU seconds of every group but the bench: what the service cost.
    pub fn service_seconds(&self) -> f64 {
        self.seconds
            .iter()
            .filter(|(group, _)| **group != "bench")
            .map(|(_, seconds)| seconds)
            .sum()
    }

    /// Milliseconds of the service's CPU per operation.
    pub fn service_ms_per(&self, operations: usize) -> f64 {
        1e3 * self.service_seconds() / operations.max(1) as f64
    }

    /// "PostgreSQL 3.20, api 1.50, ... (over 10.0 s)" in ms per operation.
    pub fn describe_per(&self, operations: usize) -> String {
        let per = |seconds: f64| 1e3 * seconds / operations.max(1) as f64;
        let mut parts: Vec<String> = GROUPS
            .iter()
            .filter_map(|group| {
                let seconds = self.seconds.get(group)?;
                Some(format!("{group} {:.2}", per(*seconds)))
            })
            .collect();
        if let Some(busy) = self.machine_busy {
            parts.push(format!("whole machine {:.2}", per(busy)));
        }
        format!("{} (over {:.1} s)", parts.join(", "), self.wall_seconds)
    }
}

/// Samples the groups' CPU; reads `pg_stat_activity` over `db` for the
/// server's processes.
pub async fn sample(processes: Processes, db_url: &SecretString) -> anyhow::Result<Sample> {
    let postgres = postgres_pids(db_url).await?;
    let mut ticks = BTreeMap::new();
    ticks.insert("api", process_ticks(processes.api).unwrap_or(0));
    ticks.insert("projector", process_ticks(processes.projector).unwrap_or(0));
    ticks.insert("worker", process_ticks(processes.worker).unwrap_or(0));
    ticks.insert("bench", process_ticks(std::process::id()).unwrap_or(0));
    ticks.insert("PostgreSQL", postgres_ticks(&postgres));
    ticks.insert("RabbitMQ", rabbitmq_ticks());
    Ok(Sample {
        at: Instant::now(),
        ticks,
        machine_busy: crate::cpu::machine_ticks().map(|(busy, _)| busy),
    })
}

pub fn between(from: &Sample, to: &Sample) -> Breakdown {
    let per_second = ticks_per_second();
    let seconds = to
        .ticks
        .iter()
        .map(|(group, after)| {
            let before = from.ticks.get(group).copied().unwrap_or(0);
            (*group, after.saturating_sub(before) as f64 / per_second)
        })
        .collect();
    Breakdown {
        wall_seconds: (to.at - from.at).as_secs_f64(),
        seconds,
        machine_busy: from
            .machine_busy
            .zip(to.machine_busy)
            .map(|(before, after)| after.saturating_sub(before) as f64 / per_second),
    }
}

/// The postmaster, the server's own processes and the bench database's backends.
struct PostgresPids {
    postmaster: Option<u32>,
    others: Vec<u32>,
}

async fn postgres_pids(db_url: &SecretString) -> anyhow::Result<PostgresPids> {
    let mut db = PgConnection::connect(db_url.expose_secret())
        .await
        .context("connecting to read pg_stat_activity")?;
    let others: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() OR backend_type <> 'client backend'",
    )
    .fetch_all(&mut db)
    .await
    .context("the server's processes from pg_stat_activity")?;
    db.close().await.context("closing")?;
    let others: Vec<u32> = others
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect();
    // The postmaster is the parent of every backend.
    let postmaster = others.iter().find_map(|pid| parent_pid(*pid));
    Ok(PostgresPids { postmaster, others })
}

fn postgres_ticks(pids: &PostgresPids) -> u64 {
    let reaped = pids.postmaster.and_then(|pid| {
        let fields = stat_fields(pid)?;
        Some(field(&fields, 11)? + field(&fields, 12)? + field(&fields, 13)? + field(&fields, 14)?)
    });
    let live: u64 = pids
        .others
        .iter()
        .filter_map(|pid| process_ticks(*pid))
        .sum();
    reaped.unwrap_or(0) + live
}

fn rabbitmq_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| RABBITMQ_COMMANDS.contains(&comm.trim()))
        })
        .filter_map(process_ticks)
        .sum()
}

/// The fields of /proc/<pid>/stat after the command name (field 3 onward).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

fn field(fields: &[String], index: usize) -> Option<u64> {
    fields.get(index)?.parse().ok()
}

/// utime + stime (fields 14 and 15).
fn process_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    Some(field(&fields, 11)? + field(&fields, 12)?)
}

fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakdown(pairs: &[(&'static str, f64)]) -> Breakdown {
        Breakdown {
            wall_seconds: 1.0,
            seconds: pairs.iter().copied().collect(),
            machine_busy: Some(2.0),
        }
    }

    #[test]
    fn the_service_is_every_group_but_the_bench() {
        let usage = breakdown(&[("PostgreSQL", 0.6), ("api", 0.3), ("bench", 0.5)]);
        assert!((usage.service_seconds() - 0.9).abs() < 1e-9);
        assert!((usage.service_ms_per(300) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_description_is_per_operation_in_the_groups_order() {
        let usage = breakdown(&[("api", 0.2), ("PostgreSQL", 0.4)]);
        assert_eq!(
            usage.describe_per(200),
            "PostgreSQL 2.00, api 1.00, whole machine 10.00 (over 1.0 s)"
        );
    }
}
