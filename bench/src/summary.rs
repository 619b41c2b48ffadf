//! The measured run as the one table of figures (see `bench::catalogue`).

use bench::catalogue as spec;

use crate::argon::HashRates;
use crate::figures::{Figure, Table};
use crate::hot_paths::HotPaths;
use crate::rebuild::Rebuilt;
use crate::relay_backlog;
use crate::report::Machine;
use crate::run::{Measured, RelayPhase, Run, StreamPhase};
use crate::traffic::{percentile_ms, Driven};
use crate::verify_latency::{self, VerifyLatency};
use crate::Cli;

const MIB: f64 = 1024.0;

pub fn table(
    cli: &Cli,
    run: &Run,
    machine: &Machine,
    hashing: &HashRates,
    measured: &Measured,
) -> Table {
    let mut figures = Vec::new();
    if let Some(stream) = &measured.stream {
        figures.push(stream_figure(cli, stream));
    }
    if let Some(hot) = &measured.hot {
        figures.extend(hot_figures(hot, machine.nproc));
    }
    if let Some(logins) = measured.logins.per_second() {
        figures.push(Figure::against(
            spec::LOGINS,
            logins,
            hashing.parallel.per_second(),
            format!(
                "{} logins by {} clients; argon2id (the api's parameters) on {} threads in the \
                 bench's process, same run",
                measured.logins.attempts.len(),
                cli.concurrency,
                hashing.parallel.threads
            ),
        ));
    }
    if let Some(relay) = &measured.relay {
        figures.push(relay_figure(relay));
    }
    if let Some(rebuilt) = &measured.rebuild {
        figures.push(rebuild_figure(rebuilt));
    }
    figures.extend(audit_figures(measured));
    if let Some(latency) = &measured.verify_latency {
        figures.extend(verify_latency_figures(latency, machine.nproc));
    }
    figures.extend(memory_figures(measured));
    Table {
        run: run.id.clone(),
        quick: cli.quick,
        cores: machine.nproc,
        cpu: machine.cpu.clone(),
        figures,
    }
}

fn stream_figure(cli: &Cli, stream: &StreamPhase) -> Figure {
    let (short, long) = stream.timed.median_ms();
    Figure::against(
        spec::COMMAND_COST,
        long,
        short,
        format!(
            "PATCH display name as the administrator, {} times on each stream, alternating, \
             after a warm-up; long stream {} events{}; p99 {:.1} ms (long) vs {:.1} ms (short)",
            stream.timed.long.len(),
            stream.seeded.long_events,
            if cli.long_stream < 10_000 {
                " (fewer than the issue's 10,000)"
            } else {
                ""
            },
            percentile_ms(&stream.timed.long, 99.0),
            percentile_ms(&stream.timed.short, 99.0),
        ),
    )
}

fn spread(driven: &Driven) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, {} requests in {:.1} s",
        driven.percentile_ms(50.0),
        driven.percentile_ms(99.0),
        driven.latencies.len(),
        driven.wall.as_secs_f64()
    )
}

fn hot_figures(hot: &HotPaths, cores: usize) -> Vec<Figure> {
    let clients = hot.clients;
    let rotations = hot.refresh.per_second();
    let me_requests = hot.me.latencies.len().max(1) as f64;
    let me_cpu_ms = hot.me_cpu.api.unwrap_or(f64::NAN) * 1e3 / me_requests;
    vec![
        Figure::value(
            spec::REFRESH_PER_CORE,
            rotations / cores as f64,
            format!(
                "{rotations:.0} rotations/s on {cores} cores; {clients} clients, one session \
                 each, chains of about {} rotations; {}",
                hot.refresh.latencies.len() / clients.max(1),
                spread(&hot.refresh)
            ),
        ),
        Figure::value(
            spec::REFRESH_CPU,
            hot.refresh_cpu.service_ms_per(hot.refresh.latencies.len()),
            format!(
                "ms per rotation: {}",
                hot.refresh_cpu.describe_per(hot.refresh.latencies.len())
            ),
        ),
        Figure::against(
            spec::CHEAP_COMMANDS,
            hot.commands.per_second(),
            hot.inserts.per_second(),
            format!(
                "{clients} clients each renaming its own user: {}; the newest event's row ({} \
                 bytes of JSON and hashes) appended to a stream of its own by each of \
                 {clients} connections: {}",
                spread(&hot.commands),
                hot.insert_bytes,
                spread(&hot.inserts)
            ),
        ),
        Figure::value(
            spec::CHEAP_COMMAND_CPU,
            hot.commands_cpu
                .service_ms_per(hot.commands.latencies.len()),
            format!(
                "ms per command: {}",
                hot.commands_cpu.describe_per(hot.commands.latencies.len())
            ),
        ),
        Figure::value(
            spec::WRITE_READ_IDLE,
            hot.idle.percentile_ms(99.0),
            format!(
                "one client, a rename every {} ms, then GET ?min_position: the rename's 200 -> \
                 the read's 200; {}",
                crate::hot_paths::IDLE_SPACING.as_millis(),
                spread(&hot.idle)
            ),
        ),
        Figure::value(
            spec::WRITE_READ_LOADED,
            hot.loaded.percentile_ms(99.0),
            format!(
                "{clients} clients paced to {:.0} renames/s in all (half of {:.0}), each read \
                 back; achieved {:.0}/s; {}",
                hot.loaded_rate,
                hot.commands.per_second(),
                hot.loaded.per_second(),
                spread(&hot.loaded)
            ),
        ),
        Figure::value(
            spec::ME_RATE,
            hot.me.per_second(),
            format!("{clients} clients; {}", spread(&hot.me)),
        ),
        Figure::against(
            spec::API_KEY_READS,
            hot.read_by_key.per_second(),
            hot.read_by_token.per_second(),
            format!(
                "{clients} clients each reading one user: with an API key (looked up, with its \
                 account's grants, on every request) {}; with access tokens (verified, then \
                 the session and grants looked up) {}",
                spread(&hot.read_by_key),
                spread(&hot.read_by_token)
            ),
        ),
        Figure::value(
            spec::ME_P99,
            hot.me.percentile_ms(99.0),
            format!("p50 {:.1} ms", hot.me.percentile_ms(50.0)),
        ),
        Figure::value(
            spec::ME_CPU,
            me_cpu_ms,
            format!(
                "the api's utime + stime over the phase / requests; the api used {:.0}% of {cores} \
                 cores",
                100.0 * hot.me_cpu.api.unwrap_or(f64::NAN)
                    / (hot.me_cpu.wall_seconds * cores as f64)
            ),
        ),
    ]
}

fn relay_figure(relay: &RelayPhase) -> Figure {
    let drained = &relay.drained;
    let bare = &relay.bare;
    Figure::against(
        spec::RELAY,
        drained.per_second(),
        bare.per_second(),
        format!(
            "a backlog of {} events seeded while the api was stopped: {} events from the relay \
             checkpoint's first advance to the last in {:.2} s ({:.2} s from the api's start; \
             its signer had checked and folded them all {:.2} s after the start); the \
             projection had them all {:.2} s after the start. Limit: {} copies of one of \
             those messages ({} bytes) published with confirms to {} quorum queues of their \
             own (as many as the relayed event reaches), {} sends of {} unconfirmed at most, \
             in {:.2} s once the projection was done",
            relay.seeded,
            drained.events,
            drained.publishing.as_secs_f64(),
            drained.since_start.as_secs_f64(),
            drained.folded_since_start.as_secs_f64(),
            relay.projected.as_secs_f64(),
            bare.events,
            bare.bytes,
            bare.queues,
            relay_backlog::BARE_WINDOW,
            relay_backlog::BARE_BATCH,
            bare.elapsed.as_secs_f64(),
        ),
    )
}

fn rebuild_figure(rebuilt: &Rebuilt) -> Figure {
    let how = if rebuilt.finished {
        format!(
            "all {} events in {:.2} s (spawn -> exit)",
            rebuilt.events,
            rebuilt.wall.as_secs_f64()
        )
    } else {
        format!(
            "stopped at --rebuild-secs: {} of the store's {} events replayed in {:.2} s \
             (rows of audit_log_next)",
            rebuilt.events,
            rebuilt.store_events,
            rebuilt.wall.as_secs_f64()
        )
    };
    let raw = &rebuilt.raw;
    Figure::against(
        spec::REBUILD,
        rebuilt.per_second(),
        raw.per_second(),
        format!(
            "`projector rebuild --exit`, while the live projector runs: {how}. Limit: the \
             rebuild's SELECT of every committed event in publishing order as one query, \
             streamed and not decoded, once it finished: {} rows in {:.2} s",
            raw.rows,
            raw.wall.as_secs_f64()
        ),
    )
}

fn audit_figures(measured: &Measured) -> Vec<Figure> {
    let mut figures = Vec::new();
    if let Some(verified) = &measured.verify {
        let command = &verified.command;
        let sha = &verified.sha;
        figures.push(Figure::against(
            spec::VERIFY,
            command.per_second(),
            sha.events_per_second(sha.per_event),
            format!(
                "{} events, {} checkpoints in {:.2} s, peak RSS {:.1} MiB; SHA-256 over the same \
                 {:.1} MB in memory, one message per event ({:.0} MB/s as one stream)",
                command.report.events_checked,
                command.report.checkpoints_checked,
                command.wall.as_secs_f64(),
                command.peak_kib as f64 / MIB,
                sha.bytes as f64 / 1e6,
                sha.megabytes_per_second(sha.stream)
            ),
        ));
    }
    if let Some(export) = &measured.export {
        let download = &export.download;
        let wall = download.wall.as_secs_f64().max(f64::EPSILON);
        let per_second = download.events as f64 / wall;
        figures.push(Figure::value(
            spec::EXPORT_RATE,
            download.bytes as f64 / 1e6 / wall,
            format!(
                "{} events, {:.1} MB in {:.2} s ({per_second:.0} events/s, {:.2} of PostgreSQL \
                 alone reading the same rows)",
                download.events,
                download.bytes as f64 / 1e6,
                wall,
                per_second / export.raw_best().per_second()
            ),
        ));
        let rss = &download.rss;
        figures.push(Figure::value(
            spec::EXPORT_RSS,
            rss.peak_kib.saturating_sub(rss.baseline_kib) as f64 / MIB,
            format!(
                "api VmRSS {:.1} MiB before the download, peak {:.1} MiB ({} samples)",
                rss.baseline_kib as f64 / MIB,
                rss.peak_kib as f64 / MIB,
                rss.samples
            ),
        ));
    }
    figures
}

fn verify_latency_figures(latency: &VerifyLatency, cores: usize) -> Vec<Figure> {
    let share = |usage: &crate::cpu::Usage| {
        100.0 * usage.api.unwrap_or(f64::NAN) / (usage.wall_seconds * cores as f64)
    };
    let passes = &latency.passes;
    let events: Vec<String> = passes.iter().map(|p| p.events.to_string()).collect();
    let took: Vec<String> = passes
        .iter()
        .map(|p| format!("{:.2}", p.took().as_secs_f64()))
        .collect();
    vec![
        Figure::against(
            spec::VERIFY_LATENCY,
            latency.during.percentile_ms(99.0),
            latency.idle.percentile_ms(99.0),
            format!(
                "{} clients on a store of {} events; idle: {} (api {:.0}% of {cores} cores); \
                 during: {} (api {:.0}%), while {} auditors asked for {} full passes and polled \
                 {} times (every {} ms each; the api restarted with AUDIT_VERIFY_INTERVAL_MS={})",
                latency.clients,
                latency.store_events,
                spread(&latency.idle),
                share(&latency.idle_cpu),
                spread(&latency.during),
                share(&latency.during_cpu),
                verify_latency::CLIENTS,
                latency.posts,
                latency.polls,
                verify_latency::POLL.as_millis(),
                verify_latency::INTERVAL_MS,
            ),
        ),
        Figure::value(
            spec::VERIFY_PASS_RATE,
            latency.pass_rate(),
            format!(
                "{} full pass(es) started and completed in the window of the row above, over \
                 [{}] events in [{}] s (pass_started_at -> verified_at, events_checked of GET \
                 /v1/audit/verify)",
                passes.len(),
                events.join(", "),
                took.join(", "),
            ),
        ),
    ]
}

fn memory_figures(measured: &Measured) -> Vec<Figure> {
    let rows = [
        ("api", spec::API_IDLE, spec::API_PEAK),
        ("projector", spec::PROJECTOR_IDLE, spec::PROJECTOR_PEAK),
        ("worker", spec::WORKER_IDLE, spec::WORKER_PEAK),
    ];
    let mut figures = Vec::new();
    for (name, idle, peak) in rows {
        let Some(rss) = measured.memory.get(name) else {
            continue;
        };
        figures.push(Figure::value(
            idle,
            rss.idle_kib as f64 / MIB,
            format!(
                "VmRSS after the start and the relay's fold of the seed ({:.1} s), before any \
                 request",
                measured.settled.as_secs_f64()
            ),
        ));
        figures.push(Figure::value(
            peak,
            rss.peak_kib as f64 / MIB,
            format!(
                "the highest VmRSS sampled every 50 ms over the run{}",
                if name == "api" {
                    " (every api process: the relay and verify-latency phases restart it)"
                } else {
                    ""
                }
            ),
        ));
    }
    figures
}
