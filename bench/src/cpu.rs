//! Where the CPU went during the registrations (Linux /proc): the whole
//! machine, the two services and the bench itself; the rest is PostgreSQL,
//! RabbitMQ and whatever else runs on the machine.

use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    /// Busy and total CPU time of the machine, in clock ticks.
    machine: Option<(u64, u64)>,
    api: Option<u64>,
    projector: Option<u64>,
    bench: Option<u64>,
}

/// CPU seconds used between two samples.
#[derive(Clone, Debug)]
pub struct Usage {
    pub wall_seconds: f64,
    pub machine_busy: Option<f64>,
    pub machine_total: Option<f64>,
    pub api: Option<f64>,
    pub projector: Option<f64>,
    pub bench: Option<f64>,
}

impl Usage {
    /// Busy CPU seconds not used by the api, the projector or the bench.
    pub fn others(&self) -> Option<f64> {
        Some(self.machine_busy? - self.api? - self.projector? - self.bench?)
    }
}

pub fn sample(api_pid: u32, projector_pid: u32) -> Sample {
    Sample {
        at: Instant::now(),
        machine: machine_ticks(),
        api: process_ticks(&api_pid.to_string()),
        projector: process_ticks(&projector_pid.to_string()),
        bench: process_ticks("self"),
    }
}

pub fn usage(from: &Sample, to: &Sample) -> Usage {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let seconds = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / ticks);
    Usage {
        wall_seconds: (to.at - from.at).as_secs_f64(),
        machine_busy: seconds(from.machine.map(|m| m.0), to.machine.map(|m| m.0)),
        machine_total: seconds(from.machine.map(|m| m.1), to.machine.map(|m| m.1)),
        api: seconds(from.api, to.api),
        projector: seconds(from.projector, to.projector),
        bench: seconds(from.bench, to.bench),
    }
}

/// (busy, total) from the first line of /proc/stat; iowait counts as idle and
/// guest time is already part of user time.
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub fn load_average() -> Option<String> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
