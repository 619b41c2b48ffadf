//! Resident memory (VmRSS) of the services, sampled on a task of its own for
//! the whole run: each process's RSS when idle (after its start, before any
//! load) and its peak.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::export::rss_kib;
use crate::run::AbortOnDrop;

const EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct State {
    pids: BTreeMap<&'static str, u32>,
    idle_kib: BTreeMap<&'static str, u64>,
    peak_kib: BTreeMap<&'static str, u64>,
}

impl State {
    fn sample(&mut self) {
        for (name, pid) in &self.pids {
            if let Some(rss) = rss_kib(*pid) {
                let peak = self.peak_kib.entry(name).or_default();
                *peak = (*peak).max(rss);
            }
        }
    }
}

pub struct Memory {
    state: Arc<Mutex<State>>,
    _sampler: AbortOnDrop,
}

/// Idle and peak RSS of one process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub idle_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                shared.lock().expect("memory").sample();
            }
        });
        Self {
            state,
            _sampler: AbortOnDrop(sampler),
        }
    }

    /// Samples `pid` as `name` from now on (a restarted process replaces its pid).
    pub fn watch(&self, name: &'static str, pid: u32) {
        self.state.lock().expect("memory").pids.insert(name, pid);
    }

    /// Takes each watched process's RSS now as its idle RSS.
    pub fn mark_idle(&self) {
        let mut state = self.state.lock().expect("memory");
        let now: Vec<(&'static str, u64)> = state
            .pids
            .iter()
            .filter_map(|(name, pid)| Some((*name, rss_kib(*pid)?)))
            .collect();
        state.idle_kib.extend(now);
        state.sample();
    }

    pub fn of(&self, name: &str) -> Rss {
        let mut state = self.state.lock().expect("memory");
        state.sample();
        Rss {
            idle_kib: state.idle_kib.get(name).copied().unwrap_or_default(),
            peak_kib: state.peak_kib.get(name).copied().unwrap_or_default(),
        }
    }
}
