//! Percentiles and the printed report.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::argon::{self, HashRates};
use crate::checkpoints::POLL_EVERY;
use crate::cpu;
use crate::export::{Export, RSS_EVERY};
use crate::failed_logins::{Kind, WRONG_PASSWORD};
use crate::run::{Cleanup, Failed, Measured, Run, LOGIN_FAILED};
use crate::services::{EXIT_POLL, PASSED_THROUGH};
use crate::verify::{self, Verified};
use crate::verify_latency::{self, VerifyLatency};
use crate::Cli;

pub struct Machine {
    pub nproc: usize,
    pub cpu: Option<String>,
}

impl Machine {
    pub fn detect() -> Self {
        let nproc = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            });
        Self { nproc, cpu }
    }
}

/// Signed milliseconds from `from` to `to` (negative when `to` came first).
fn millis(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

struct Summary {
    count: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    negative: usize,
}

/// Nearest-rank percentiles.
fn summarize(mut values: Vec<f64>) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[index.clamp(1, values.len()) - 1]
    };
    Some(Summary {
        count: values.len(),
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: values[values.len() - 1],
        negative: values.iter().filter(|value| **value < 0.0).count(),
    })
}

fn row(label: &str, values: Vec<f64>) -> (String, usize) {
    match summarize(values) {
        Some(s) => (
            format!(
                "{label:<44}{:>7}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
                s.count, s.p50, s.p95, s.p99, s.max
            ),
            s.negative,
        ),
        None => (format!("{label:<44}{:>7}", 0), 0),
    }
}

fn rate(count: usize, span: Duration) -> f64 {
    count as f64 / span.as_secs_f64()
}

pub fn print(
    cli: &Cli,
    run: &Run,
    machine: &Machine,
    hashing: &HashRates,
    measured: &Measured,
    cleanup: &Cleanup,
) {
    let registrations = &measured.registrations;
    let created: Vec<f64> = registrations
        .iter()
        .map(|r| millis(r.sent, r.created))
        .collect();
    let to_tap: Vec<f64> = registrations
        .iter()
        .zip(&measured.seen)
        .filter_map(|(r, seen)| seen.map(|at| millis(r.created, at)))
        .collect();
    let to_view: Vec<f64> = registrations
        .iter()
        .zip(&measured.applied)
        .filter_map(|(r, applied)| applied.map(|advance| millis(r.created, advance.at)))
        .collect();
    let end_to_end: Vec<f64> = registrations
        .iter()
        .zip(&measured.applied)
        .filter_map(|(r, applied)| applied.map(|advance| millis(r.sent, advance.at)))
        .collect();

    eprintln!();
    eprintln!(
        "bench run {}: {} users, {} concurrent clients, {} login(s) per user, {} failed login(s) \
         of each kind, {} export event(s) (api and projector from {} and {})",
        run.id,
        cli.users,
        cli.concurrency,
        cli.logins_per_user,
        cli.failed_logins,
        cli.export_events,
        cli.api_bin.display(),
        cli.projector_bin.display()
    );
    eprintln!();
    eprintln!(
        "{:<44}{:>7}{:>10}{:>10}{:>10}{:>10}",
        "latency in ms", "count", "p50", "p95", "p99", "max"
    );
    let (a, _) = row("(a) POST /v1/users: send -> 201", created);
    let (b, early) = row("(b) 201 -> event on the tap queue", to_tap);
    let (c, _) = row("(c) 201 -> applied to users_view", to_view);
    let (d, _) = row("    send -> applied to users_view (a+c)", end_to_end);
    eprintln!("{a}\n{b}\n{c}\n{d}");
    let attempts = &measured.logins.attempts;
    let login_latency = |ok: bool| -> Vec<f64> {
        attempts
            .iter()
            .filter(|login| login.ok() == ok)
            .map(|login| millis(login.sent, login.answered))
            .collect()
    };
    let (l, _) = row("(l) POST /v1/auth/login: send -> 200", login_latency(true));
    eprintln!("{l}");
    let refused = login_latency(false);
    if !refused.is_empty() {
        let (r, _) = row("    refused logins: send -> 429 or 503", refused);
        eprintln!("{r}");
    }
    let success_p50 = summarize(login_latency(true)).map(|s| s.p50);
    if let Some(failed) = &measured.failed {
        print_failed(failed, success_p50);
    }
    eprintln!();

    let first_sent = registrations.iter().map(|r| r.sent).min();
    let last_created = registrations.iter().map(|r| r.created).max();
    let last_applied = measured.applied.iter().flatten().map(|a| a.at).max();
    let registration_rate = first_sent
        .zip(last_created)
        .map(|(first, last)| rate(registrations.len(), last - first));
    if let (Some(first), Some(last), Some(per_second)) =
        (first_sent, last_created, registration_rate)
    {
        eprintln!(
            "throughput: {per_second:.1} registrations/s ({} in {:.2} s, first send -> last 201)",
            registrations.len(),
            (last - first).as_secs_f64()
        );
    }
    if let (Some(first), Some(last)) = (first_sent, last_applied) {
        eprintln!(
            "            {:.1} registrations/s through users_view (first send -> last applied, {:.2} s)",
            rate(registrations.len(), last - first),
            (last - first).as_secs_f64()
        );
    }
    let logged_in = measured.logins.succeeded();
    let login_span = measured.logins.span();
    let login_rate = measured.logins.per_second();
    if let (Some(span), Some(per_second)) = (login_span, login_rate) {
        eprintln!(
            "            {per_second:.1} logins/s ({logged_in} answered 200 of {} sent in {:.2} s, \
             first send -> last answer)",
            attempts.len(),
            span.as_secs_f64()
        );
    }
    let count = |status: StatusCode| attempts.iter().filter(|l| l.status == status).count();
    eprintln!(
        "refused logins (not retried): {} x 503 (password hashing queue full), {} x 429 (rate \
         limited){}",
        count(StatusCode::SERVICE_UNAVAILABLE),
        count(StatusCode::TOO_MANY_REQUESTS),
        if measured.caught_up > 0 {
            format!(
                "; {} user(s) with no 200 logged in untimed before the read-back",
                measured.caught_up
            )
        } else {
            String::new()
        }
    );
    if let Some(export) = &measured.export {
        print_export(export);
    }
    if let Some(verified) = &measured.verify {
        print_verify(verified);
    }
    if let Some(latency) = &measured.verify_latency {
        print_verify_latency(latency, machine);
    }
    eprintln!();

    eprintln!(
        "machine: nproc {}{}",
        machine.nproc,
        machine
            .cpu
            .as_deref()
            .map(|cpu| format!(", {cpu}"))
            .unwrap_or_default()
    );
    eprintln!(
        "argon2id m={} KiB ({} MiB), t={}, p={} (the API's parameters), `argon2` crate in this process:",
        argon::COST.memory_kib,
        argon::COST.memory_kib / 1024,
        argon::COST.passes,
        argon::COST.lanes
    );
    eprintln!(
        "    1 thread:  {:.1} hashes/s ({} hashes in {:.2} s)",
        hashing.single.per_second(),
        hashing.single.hashes,
        hashing.single.elapsed.as_secs_f64()
    );
    eprintln!(
        "    {} threads: {:.1} hashes/s ({} hashes in {:.2} s)",
        hashing.parallel.threads,
        hashing.parallel.per_second(),
        hashing.parallel.hashes,
        hashing.parallel.elapsed.as_secs_f64()
    );
    if let Some(per_second) = registration_rate {
        eprintln!(
            "    registrations/s = {per_second:.1}, i.e. {:.0}% of the {}-thread hash rate \
             (each registration hashes once on the API's blocking pool)",
            100.0 * per_second / hashing.parallel.per_second(),
            hashing.parallel.threads
        );
    }
    if let Some(per_second) = login_rate {
        eprintln!(
            "    logins/s = {per_second:.1}; logins/s / hashes/s on {} threads = {:.2} \
             (each login verifies exactly one argon2id hash on the API's blocking pool)",
            hashing.parallel.threads,
            per_second / hashing.parallel.per_second(),
        );
    }
    print_cpu(
        "registering",
        &measured.cpu,
        measured.load_before.as_deref(),
        machine,
    );
    print_cpu(
        "logging in",
        &measured.login_cpu,
        measured.load_before_logins.as_deref(),
        machine,
    );
    print_api_cpu(
        "the logins",
        &measured.login_cpu,
        logged_in,
        "200",
        machine,
        hashing,
    );
    if let Some(failed) = &measured.failed {
        print_cpu(
            "failing logins",
            &failed.cpu,
            failed.load_before.as_deref(),
            machine,
        );
        print_api_cpu(
            "the failed logins",
            &failed.cpu,
            failed.logins.attempts.len(),
            "401",
            machine,
            hashing,
        );
    }
    if let Some(export) = &measured.export {
        let download = &export.download;
        print_cpu(
            "exporting",
            &download.cpu,
            download.load_before.as_deref(),
            machine,
        );
        if let Some(api) = download.cpu.api {
            eprintln!(
                "    api during the export: {api:.2} core-s = {:.0}% of {} cores over {:.2} s, \
                 {:.1} us of CPU per event",
                100.0 * api
                    / (download.cpu.wall_seconds * machine.nproc as f64).max(f64::MIN_POSITIVE),
                machine.nproc,
                download.cpu.wall_seconds,
                1e6 * api / download.events.max(1) as f64,
            );
        }
    }
    let passed: Vec<String> = PASSED_THROUGH
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| format!("{name}={value}"))
        })
        .collect();
    eprintln!(
        "service settings from the environment: {}",
        if passed.is_empty() {
            "none (defaults)".to_string()
        } else {
            passed.join(" ")
        }
    );
    eprintln!(
        "set by the bench for the api: {} (the per-IP login limit and address lockout \
         are set out of reach: the bench measures password hashing, not the limiters; the \
         relay signs a due checkpoint within a second, not 60, for the verify phase)",
        run.api_settings()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!();

    let checkpoints = &measured.checkpoints;
    let windows: Vec<f64> = measured
        .applied
        .iter()
        .flatten()
        .map(|advance| advance.window.as_secs_f64() * 1e3)
        .collect();
    let mean_window = windows.iter().sum::<f64>() / windows.len().max(1) as f64;
    let max_window = windows.iter().copied().fold(0.0, f64::max);
    eprintln!("how it was measured:");
    eprintln!("  (a) client side, from just before the request is sent to the 201's body read.");
    eprintln!(
        "  (b) arrival on the bench's own quorum queue {} (bound \"#\", auto-ack), matched by \
         global_position == the 201's position;{} message(s) arrived before the client had read the 201{}.",
        run.topology.queue_name(&crate::tap::group()),
        if early > 0 { format!(" {early}") } else { " no".into() },
        if early > 0 { " (negative values)" } else { "" },
    );
    eprintln!(
        "  (c) projection_checkpoints polled every {} ms on a connection of its own ({} polls, \
         mean query {:.2} ms): the time is the end of the first poll at or past the event's \
         (transaction_id, global_position); the event was applied at most that window earlier \
         (mean {:.2} ms, max {:.2} ms). Chosen over timing GET ?min_position, which adds an HTTP \
         round trip and the API's own wake-up and loads the API under test.",
        POLL_EVERY.as_millis(),
        checkpoints.polls,
        checkpoints.poll_time.as_secs_f64() * 1e3 / checkpoints.polls.max(1) as f64,
        mean_window,
        max_window
    );
    eprintln!(
        "  (l) client side likewise, to the 200's body read; the logins start once users_view \
         has every registration, round by round over the users; the rate counts the 200s over \
         the first send -> the last answer."
    );
    if let Some(failed) = &measured.failed {
        let wrong = failed.logins.of(Kind::WrongPassword).count();
        eprintln!(
            "  (w), (u) client side likewise, to the 401's body read, after the login phase: the \
             two kinds alternate in the order sent (wrong password, unknown email, ...) over the \
             same clients, so the load of the machine falls on both alike. (w) tries the \
             registered users in turn (the first {} of them) with the password {WRONG_PASSWORD:?}; \
             (u) sends the same password for bench-<run>-<n>@example.com numbered past the \
             registered users. The difference is the (u) p50 minus the (w) p50, in ms and as a \
             share of the (w) p50.",
            wrong.min(measured.registrations.len())
        );
    }
    eprintln!(
        "  checks: {} messages on the tap queue ({}), {} duplicate(s), {} undecodable, \
         {} with another aggregate id; every user read themself back with ?min_position, \
         authenticated by their own access token: ok.",
        measured.tap.messages,
        measured
            .tap
            .event_types
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        measured.tap.duplicates,
        measured.tap.undecodable,
        measured.mismatched_ids
    );
    if let Some(failed) = &measured.failed {
        let wrong = failed.logins.of(Kind::WrongPassword).count() as u64;
        eprintln!(
            "  checks, failed logins: all {} answered 401 application/problem+json, \
             WWW-Authenticate: Bearer, type .../invalid-credentials, and the same body byte for \
             byte, both kinds: ok ({}). {} {LOGIN_FAILED} on the tap queue within {:.2} s of the \
             phase for {wrong} wrong passwords{}.",
            failed.logins.attempts.len(),
            failed.logins.body,
            failed.recorded,
            failed.waited.as_secs_f64(),
            if failed.recorded == wrong {
                ": ok".to_string()
            } else {
                format!(": MISMATCH (expected {wrong})")
            }
        );
    }
    if let Some(export) = &measured.export {
        print_export_checks(export);
    }
    if let Some(verified) = &measured.verify {
        print_verify_checks(verified);
    }
    if let Some(latency) = &measured.verify_latency {
        eprintln!(
            "  (m) verify latency, last: the api restarted with AUDIT_VERIFY_INTERVAL_MS={} (a \
             requested pass starts within that), {} of the users logged in again; once GET \
             /v1/audit/verify had a completed pass over every event ({:.2} s after the restart), \
             each user reads GET /v1/users/me back to back (client side, send -> 200 body read) \
             for --phase-secs idle, then again while {} auditors each POST /v1/audit/verify and \
             poll GET every {} ms until the pass has started, and again; that window lasts at \
             least --phase-secs and until a pass that started in it has completed. Passes are \
             read from the answers: pass_started_at at or after the window's start, the first \
             answer with pass_completed_at gives verified_at and events_checked.",
            verify_latency::INTERVAL_MS,
            latency.clients,
            latency.caught_up.as_secs_f64(),
            verify_latency::CLIENTS,
            verify_latency::POLL.as_millis(),
        );
        eprintln!(
            "  checks, verify latency: {} full pass(es) started and completed in the window, \
             each over at least the store's {} events, none broken: ok.",
            latency.passes.len(),
            latency.store_events,
        );
    }
    if cleanup.problems.is_empty() {
        eprintln!(
            "  cleanup: {}; database {} dropped, queues and exchanges deleted.",
            cleanup.stopped.join(", "),
            run.db_name
        );
    } else {
        eprintln!(
            "  cleanup: {}; PROBLEMS: {}",
            cleanup.stopped.join(", "),
            cleanup.problems.join("; ")
        );
    }
    eprintln!(
        "  logs: {} {}",
        run.api_log.display(),
        run.projector_log.display()
    );
}

const MIB: f64 = 1024.0;

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The audit-export phase's figures, beside PostgreSQL's raw read.
fn print_export(export: &Export) {
    let (seeded, auditor, download) = (&export.seeded, &export.auditor, &export.download);
    let wall = download.wall.as_secs_f64();
    let export_rate = download.events as f64 / wall;
    eprintln!();
    eprintln!(
        "audit export: GET /v1/audit/export (NDJSON, chunked), {} events of which {} seeded",
        download.events, seeded.events
    );
    eprintln!(
        "    seed: {} users x (1 registration + {} renames) = {} events in transactions of at most 100,000, each with \
         the relay's and the projection's checkpoints moved past them, {:.2} s (then VACUUM (ANALYZE) events {:.2} s), \
         before the services started",
        seeded.users,
        seeded.renames,
        seeded.events,
        seeded.took.as_secs_f64(),
        seeded.vacuum.as_secs_f64()
    );
    eprintln!(
        "    auditor: `api admin bootstrap` {:.2} s ({}); audit:read in the token after {} \
         login(s), {:.2} s",
        auditor.bootstrap_wall.as_secs_f64(),
        auditor.bootstrap_line,
        auditor.logins,
        auditor.waited.as_secs_f64()
    );
    eprintln!(
        "    download: {} events, {:.1} MB in {wall:.2} s (headers after {:.1} ms, {} chunks): \
         {export_rate:.0} events/s, {:.1} MB/s",
        download.events,
        megabytes(download.bytes),
        download.first_byte.as_secs_f64() * 1e3,
        download.chunks,
        megabytes(download.bytes) / wall,
    );
    let rss = &download.rss;
    eprintln!(
        "    api RSS (VmRSS every {} ms, {} samples): baseline {:.1} MiB, peak {:.1} MiB, \
         peak - baseline {:+.1} MiB",
        RSS_EVERY.as_millis(),
        rss.samples,
        rss.baseline_kib as f64 / MIB,
        rss.peak_kib as f64 / MIB,
        (rss.peak_kib as f64 - rss.baseline_kib as f64) / MIB,
    );
    let raw = export.raw_best();
    let raw_wall = raw.wall.as_secs_f64();
    eprintln!(
        "    raw read, PostgreSQL alone (the same rows and columns in one query, streamed): {} \
         rows, {:.1} MB of values in {raw_wall:.2} s: {:.0} rows/s, {:.1} MB/s (the faster of \
         {:.2} s before and {:.2} s after the download)",
        raw.rows,
        megabytes(raw.bytes),
        raw.per_second(),
        megabytes(raw.bytes) / raw_wall,
        export.raw[0].wall.as_secs_f64(),
        export.raw[1].wall.as_secs_f64(),
    );
    eprintln!(
        "    export / raw read = {:.2} (events/s over rows/s: the API delivers {:.0}% of the \
         rate at which PostgreSQL hands the rows over)",
        export_rate / raw.per_second(),
        100.0 * export_rate / raw.per_second(),
    );
    let cli = &export.cli;
    eprintln!(
        "    api audit export --output {}: {} events, {:.1} MB file in {:.2} s (spawn -> exit): \
         {:.0} events/s; export (CLI) / raw read = {:.2}",
        cli.output.display(),
        cli.events,
        megabytes(cli.file_bytes),
        cli.wall.as_secs_f64(),
        cli.per_second(),
        cli.per_second() / raw.per_second(),
    );
    eprintln!("        it printed: {}", cli.summary);
}

/// The verify phase's figures, beside SHA-256 over the same bytes in memory.
fn print_verify(verified: &Verified) {
    let (command, store, sha) = (&verified.command, &verified.store, &verified.sha);
    let wall = command.wall.as_secs_f64();
    let verify_rate = command.per_second();
    eprintln!();
    eprintln!(
        "audit verify: `api audit verify --public-key <run>/audit-signing.pem.pub` over the \
         same store, {} events, {} signed checkpoints",
        command.report.events_checked, command.report.checkpoints_checked
    );
    eprintln!(
        "    running hash: audit_chain_head and the newest checkpoint counted all {} events \
         {:.2} s after the export phase",
        verified.folded,
        verified.head_wait.as_secs_f64()
    );
    eprintln!(
        "    verify: {} events in {wall:.2} s (spawn -> exit): {verify_rate:.0} events/s, \
         {:.1} us per event",
        command.report.events_checked,
        1e6 * wall / command.report.events_checked.max(1) as f64,
    );
    eprintln!(
        "    verify peak RSS: {:.1} MiB (VmHWM; highest VmRSS read {:.1} MiB, {} samples every \
         {} ms)",
        command.peak_kib as f64 / MIB,
        command.sampled_rss_kib as f64 / MIB,
        command.samples,
        verify::RSS_EVERY.as_millis(),
    );
    let cpu = (command.user + command.system).as_secs_f64();
    eprintln!(
        "    verify CPU: {cpu:.2} core-s (user {:.2}, system {:.2}) = {:.0}% of its wall time, \
         {:.1} us per event; the rest it waits (PostgreSQL, or the machine's other load)",
        command.user.as_secs_f64(),
        command.system.as_secs_f64(),
        100.0 * cpu / wall.max(f64::EPSILON),
        1e6 * cpu / command.report.events_checked.max(1) as f64,
    );
    eprintln!(
        "    bytes verification hashes at least: {:.1} MB = sealed text {:.1} MB + {} B x {} \
         events {:.1} MB + payload and metadata text (for salt + value) {:.1} MB; {:.0} B per event",
        megabytes(store.total()),
        megabytes(store.sealed),
        verify::OTHER_BYTES_PER_EVENT,
        store.events,
        megabytes(store.other()),
        megabytes(store.commitments),
        store.total() as f64 / store.events.max(1) as f64,
    );
    let sha_rate = sha.events_per_second(sha.stream);
    eprintln!(
        "    SHA-256 over the same bytes in memory: {:.0} MB/s = {sha_rate:.0} events/s \
         ({:.2} s, sha2, 1 thread, one stream)",
        sha.megabytes_per_second(sha.stream),
        sha.stream.as_secs_f64(),
    );
    eprintln!(
        "        as one message per event ({} messages of {:.0} B): {:.0} MB/s = {:.0} events/s \
         ({:.2} s)",
        sha.events,
        sha.bytes as f64 / sha.events.max(1) as f64,
        sha.megabytes_per_second(sha.per_event),
        sha.events_per_second(sha.per_event),
        sha.per_event.as_secs_f64(),
    );
    eprintln!(
        "    verify / SHA-256 = {:.3} (events/s over events/s: hashing the bytes alone would \
         take {:.1}% of the verify's wall time)",
        verify_rate / sha_rate,
        100.0 * sha.stream.as_secs_f64() / wall.max(f64::EPSILON),
    );
}

/// `GET /v1/users/me` idle and while full verification passes run.
fn print_verify_latency(latency: &VerifyLatency, machine: &Machine) {
    let line = |label: &str, driven: &crate::traffic::Driven, usage: &cpu::Usage| {
        eprintln!(
            "    {label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} requests in {:.1} s ({:.0}/s); \
             api {:.0}% of {} cores, machine busy {:.0}%",
            driven.percentile_ms(50.0),
            driven.percentile_ms(99.0),
            driven.percentile_ms(100.0),
            driven.latencies.len(),
            driven.wall.as_secs_f64(),
            driven.per_second(),
            100.0 * usage.api.unwrap_or(f64::NAN) / (usage.wall_seconds * machine.nproc as f64),
            machine.nproc,
            100.0 * usage.machine_busy.unwrap_or(f64::NAN)
                / usage.machine_total.unwrap_or(f64::NAN),
        );
    };
    eprintln!();
    eprintln!(
        "verify latency: GET /v1/users/me by {} clients, store of {} events",
        latency.clients, latency.store_events
    );
    line("idle  ", &latency.idle, &latency.idle_cpu);
    line("during", &latency.during, &latency.during_cpu);
    eprintln!(
        "    p99 during / p99 idle = {:.2}; p50 {:.2}",
        latency.ratio(),
        latency.during.percentile_ms(50.0) / latency.idle.percentile_ms(50.0)
    );
    for pass in &latency.passes {
        eprintln!(
            "    full pass started {}: {} events in {:.2} s = {:.0} events/s",
            pass.started.format("%H:%M:%S%.3f"),
            pass.events,
            pass.took().as_secs_f64(),
            pass.events as f64 / pass.took().as_secs_f64().max(f64::EPSILON)
        );
    }
    eprintln!(
        "    {} POST and {} GET /v1/audit/verify by {} auditors",
        latency.posts,
        latency.polls,
        verify_latency::CLIENTS
    );
}

fn print_verify_checks(verified: &Verified) {
    let command = &verified.command;
    eprintln!(
        "  (v) the verify: the api runs with its audit signing key in the run's directory and \
         AUDIT_CHECKPOINT_EVERY_SECONDS={}; after the export phase, audit_chain_head and the \
         newest row of audit_checkpoints are polled every 50 ms until both count every event in \
         the store (the seed, never published, is folded by the relay's idle sealing once it is \
         elected). Then `api audit verify --public-key` with the public half the api wrote \
         beside its key, spawned with the api's environment (stdout and stderr to {}), is \
         timed from spawn to its reaping by wait4(2) (polled every {} ms), which gives its CPU \
         time; its peak RSS is the last VmHWM of /proc/<pid>/status, read with VmRSS every {} ms \
         (not ru_maxrss, which on Linux carries the bench's own high-water mark over the \
         exec). The bytes are summed afterwards \
         (sum(octet_length(sealed::text)) + {} x count(*) + sum(octet_length(payload::text) + \
         octet_length(metadata::text))) and hashed in this process with sha2 on one thread, \
         from a 1 MiB buffer: once as one stream, once as one message per event.",
        crate::run::AUDIT_CHECKPOINT_EVERY_SECONDS,
        command.log.display(),
        EXIT_POLL.as_millis(),
        verify::RSS_EVERY.as_millis(),
        verify::OTHER_BYTES_PER_EVENT,
    );
    eprintln!(
        "  checks, verify: ok true, first_broken null, events_checked {} = count(*) events {} = \
         audit_chain_head.event_count {}, checkpoints_checked {} = rows of audit_checkpoints {}: ok.",
        command.report.events_checked,
        verified.store.events,
        verified.folded,
        command.report.checkpoints_checked,
        verified.checkpoints,
    );
}

fn print_export_checks(export: &Export) {
    let download = &export.download;
    eprintln!(
        "  (x) the export: client side, from just before GET /v1/audit/export is sent to its \
         last chunk read (reqwest chunk(), every byte counted, lines split on \\n, nothing \
         parsed but the first and last line), one request by an auditor made with the real \
         `api admin bootstrap`; the api's VmRSS (/proc/<pid>/status) is read just before the \
         request and every {} ms on a task of its own until the last chunk. The raw read is \
         one SELECT of the export's columns (infra::event_log::columns_of) up to the export's \
         newest position ORDER BY transaction_id, global_position, streamed with sqlx fetch \
         on a connection of its own, counting rows and the values' bytes without decoding; \
         the export reads the same rows a page of 1000 at a time and writes JSON. The seed is \
         written before the services start because the relay keeps its checkpoint in memory \
         from its election: a checkpoint moved while it runs would not stop it publishing. \
         The projection checkpoint moves past the seed as well: it is the end of the applied \
         prefix of the log, which never-delivered events would hold back for good.",
        RSS_EVERY.as_millis()
    );
    eprintln!(
        "  checks, export: header line, {} signed checkpoint lines, {} event lines, end line \
         {{\"end\":{{\"events\":{}}}}} = lines - 2 - checkpoint lines = the event store's {} events \
         up to global position {}, >= the {} seeded: ok; raw read after the download {} rows: ok; \
         the CLI's file ends with {} events: ok; seeded events on the tap queue (published by the \
         relay): {}{}.",
        download.checkpoints,
        download.events,
        download.events,
        export.expected,
        download.newest.global_position,
        export.seeded.events,
        export.raw[1].rows,
        export.cli.events,
        export.seeded_published,
        if export.seeded_published == 0 {
            ": ok"
        } else {
            ": MISMATCH (the relay published seeded events during the run)"
        }
    );
}

/// The (w) and (u) rows, their medians' difference and the lockout note.
fn print_failed(failed: &Failed, success_p50: Option<f64>) {
    let latency = |kind: Kind| -> Vec<f64> {
        failed
            .logins
            .of(kind)
            .map(|login| millis(login.sent, login.answered))
            .collect()
    };
    let (wrong, unknown) = (latency(Kind::WrongPassword), latency(Kind::UnknownEmail));
    let (wrong_p50, unknown_p50) = (
        summarize(wrong.clone()).map(|s| s.p50),
        summarize(unknown.clone()).map(|s| s.p50),
    );
    let (w, _) = row("(w) login, wrong password: send -> 401", wrong);
    let (u, _) = row("(u) login, unknown email: send -> 401", unknown);
    eprintln!("{w}\n{u}");
    if let (Some(wrong_p50), Some(unknown_p50)) = (wrong_p50, unknown_p50) {
        let difference = unknown_p50 - wrong_p50;
        eprintln!(
            "    p50 (u) - p50 (w) = {difference:+.1} ms ({:+.1}% of the (w) p50); \
             (l) p50 (a 200) = {}",
            100.0 * difference / wrong_p50.max(f64::MIN_POSITIVE),
            success_p50.map_or("-".to_string(), |p50| format!("{p50:.1} ms")),
        );
    }
    eprintln!(
        "    the bench runs no worker: no lockout policy reads the {LOGIN_FAILED} events, so \
         the wrong passwords lock no user and block no address"
    );
}

/// The API's CPU over a phase, per answer of `status`.
fn print_api_cpu(
    during: &str,
    usage: &cpu::Usage,
    answers: usize,
    status: &str,
    machine: &Machine,
    hashing: &HashRates,
) {
    if let Some(api) = usage.api {
        let wall = usage.wall_seconds;
        eprintln!(
            "    api during {during}: {api:.2} core-s = {:.0}% of {} cores over {wall:.2} s, \
             {:.1} ms of CPU per {status} (one argon2id hash takes {:.1} ms on 1 thread above)",
            100.0 * api / (wall * machine.nproc as f64).max(f64::MIN_POSITIVE),
            machine.nproc,
            1e3 * api / answers.max(1) as f64,
            1e3 / hashing.single.per_second(),
        );
    }
}

fn print_cpu(doing: &str, usage: &cpu::Usage, load_before: Option<&str>, machine: &Machine) {
    let seconds = |value: Option<f64>| value.map_or("?".to_string(), |v| format!("{v:.2}"));
    let busy = match (usage.machine_busy, usage.machine_total) {
        (Some(busy), Some(total)) if total > 0.0 => format!("{:.0}% busy", 100.0 * busy / total),
        _ => "busy ?".to_string(),
    };
    eprintln!(
        "CPU while {doing} ({:.2} s wall, {} cores = {:.2} core-s): machine {busy}; \
         core-s used by api {}, projector {}, bench {}, everything else (PostgreSQL, RabbitMQ, \
         other processes) {}",
        usage.wall_seconds,
        machine.nproc,
        usage.wall_seconds * machine.nproc as f64,
        seconds(usage.api),
        seconds(usage.projector),
        seconds(usage.bench),
        seconds(usage.others()),
    );
    if let Some(load) = load_before {
        eprintln!("    load average before: {load}");
    }
}

/// One row per registration, times in ms from the first send.
pub fn write_csv(path: &std::path::Path, measured: &Measured) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let Some(start) = measured.registrations.iter().map(|r| r.sent).min() else {
        return Ok(());
    };
    let at = |instant: Option<Instant>| {
        instant.map_or(String::new(), |i| format!("{:.3}", millis(start, i)))
    };
    let mut csv = String::from(
        "id,position,sent_ms,created_ms,tap_ms,applied_ms,applied_window_ms,checkpoint_position\n",
    );
    for ((r, seen), applied) in measured
        .registrations
        .iter()
        .zip(&measured.seen)
        .zip(&measured.applied)
    {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            r.id,
            r.position,
            at(Some(r.sent)),
            at(Some(r.created)),
            at(*seen),
            at(applied.map(|a| a.at)),
            applied.map_or(String::new(), |a| format!(
                "{:.3}",
                a.window.as_secs_f64() * 1e3
            )),
            applied.map_or(String::new(), |a| a.position.global_position.to_string()),
        );
    }
    std::fs::write(path, csv)?;
    Ok(())
}
