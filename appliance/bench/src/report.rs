//! The markdown report `just bench store` prints.

use appliance_bench::thousands;
use std::fmt::Write;

use crate::workload::{BATCH, EngineResult, PACED_COMMITS};

/// Everything the report shows besides the two engines' numbers.
pub struct Context {
    pub machine: String,
    pub data_dir: String,
    pub events: u64,
    pub crash: String,
    pub elapsed_s: f64,
}

/// Which way a metric is better, and so which quotient the ratio column shows.
#[derive(Clone, Copy)]
enum Better {
    Lower,
    Higher,
}

struct Target {
    text: &'static str,
    met: bool,
}

fn row(
    out: &mut String,
    metric: &str,
    cells: [String; 2],
    values: [f64; 2],
    better: Better,
    target: Option<Target>,
) {
    let [store, sqlite] = values;
    // Always the quotient where > 1 means the store is better.
    let ratio = match better {
        Better::Lower => format!("SQLite ÷ store = {:.2}×", sqlite / store),
        Better::Higher => format!("store ÷ SQLite = {:.2}×", store / sqlite),
    };
    let target = target.map_or(String::new(), |t| {
        format!("{}: {}", t.text, if t.met { "met" } else { "**missed**" })
    });
    let [a, b] = cells;
    let _ = writeln!(out, "| {metric} | {a} | {b} | {ratio} | {target} |");
}

fn ms(value: f64) -> String {
    format!("{value:.3} ms")
}

fn per_event(r: &EngineResult) -> f64 {
    r.disk_bytes as f64 / r.events_stored as f64
}

fn amplification(r: &EngineResult) -> f64 {
    r.disk_bytes as f64 / r.logical_bytes as f64
}

fn rss_mib(r: &EngineResult) -> f64 {
    r.peak_rss_kib as f64 / 1024.0
}

pub fn render(ctx: &Context, store: &EngineResult, sqlite: &EngineResult) -> String {
    let mut out = String::new();
    let both = |f: &dyn Fn(&EngineResult) -> f64| [f(store), f(sqlite)];
    let _ = writeln!(out, "## Event store: sled store vs SQLite (WAL)\n");
    let _ = writeln!(out, "- machine: {}", ctx.machine);
    let _ = writeln!(out, "- data directory: {}", ctx.data_dir);
    let _ = writeln!(
        out,
        "- N = {} events bulk-loaded, {} stored at the end (N + {} paced commits); logical size {:.0} B per event (mean JSON of a stored event)\n",
        thousands(ctx.events as f64),
        thousands(store.events_stored as f64),
        thousands(PACED_COMMITS as f64),
        store.logical_bytes as f64 / store.events_stored as f64,
    );
    let _ = writeln!(
        out,
        "| metric | sled store | SQLite (WAL) | ratio (> 1: store better) | target (store) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|");

    let commit = [store.commit, sqlite.commit];
    row(
        &mut out,
        "durable commit p50 at 1,000 events/s ¹",
        commit.map(|l| ms(l.p50_ms)),
        commit.map(|l| l.p50_ms),
        Better::Lower,
        None,
    );
    row(
        &mut out,
        "durable commit p99",
        commit.map(|l| ms(l.p99_ms)),
        commit.map(|l| l.p99_ms),
        Better::Lower,
        Some(Target {
            text: "≤ 1 ms",
            met: store.commit.p99_ms <= 1.0,
        }),
    );
    row(
        &mut out,
        "durable commit max",
        commit.map(|l| ms(l.max_ms)),
        commit.map(|l| l.max_ms),
        Better::Lower,
        None,
    );
    let throughput = both(&|r| r.batched_events_per_s);
    row(
        &mut out,
        &format!(
            "batched throughput, {} events per commit ²",
            thousands(BATCH as f64)
        ),
        throughput.map(|t| format!("{} events/s", thousands(t))),
        throughput,
        Better::Higher,
        Some(Target {
            text: "≥ 50,000 events/s",
            met: store.batched_events_per_s >= 50_000.0,
        }),
    );
    let query = [store.query, sqlite.query];
    row(
        &mut out,
        "query: newest 100 of one camera, p50 ³",
        query.map(|l| ms(l.p50_ms)),
        query.map(|l| l.p50_ms),
        Better::Lower,
        None,
    );
    row(
        &mut out,
        "query p99",
        query.map(|l| ms(l.p99_ms)),
        query.map(|l| l.p99_ms),
        Better::Lower,
        Some(Target {
            text: "≤ 5 ms",
            met: store.query.p99_ms <= 5.0,
        }),
    );
    row(
        &mut out,
        "bytes on disk per event ⁴",
        [store, sqlite]
            .map(|r| format!("{:.0} B = {:.2}× logical", per_event(r), amplification(r))),
        both(&per_event),
        Better::Lower,
        Some(Target {
            text: "≤ 3× logical",
            met: amplification(store) <= 3.0,
        }),
    );
    row(
        &mut out,
        "peak RSS of the engine process ⁵",
        both(&rss_mib).map(|m| format!("{m:.1} MiB")),
        both(&rss_mib),
        Better::Lower,
        None,
    );

    let _ = writeln!(
        out,
        "
{crash}

¹ {paced} single-event commits on the loaded store, one per millisecond on an absolute schedule \
(a slow commit does not delay the ones after it), each timed around `append(..).wait()` / one \
transaction. Durable means it survives a power cut: the store applies the sled batch, flushes sled \
and `fdatasync`s its data file; SQLite runs `journal_mode=WAL` with `synchronous=FULL`, the level \
that fsyncs the WAL on every commit in WAL mode (`NORMAL` syncs only at checkpoints). SQLite has \
the store's secondary indexes — (camera_id, start_ms, id), (type, start_ms, id), unacknowledged \
(start_ms) WHERE acked = 0 — writes an outbox row in the same transaction, allocates ids like the \
store and gets the same 64 MiB cache.
² {n} events in commits of {batch} (`append_many(..).wait()` / one transaction with a prepared \
statement); event generation is not timed.
³ 1,000 queries, random camera of 16, with the N events stored; each returns 100 fully decoded events.
⁴ Store: all files under its directory after close; SQLite: db + wal + shm after \
`wal_checkpoint(TRUNCATE)`. Logical size: mean length of `serde_json::to_string(&Event)`.
⁵ `VmHWM` of a process that ran only that engine's workload.

Run took {elapsed:.0} s.",
        crash = ctx.crash,
        n = thousands(ctx.events as f64),
        paced = thousands(PACED_COMMITS as f64),
        batch = thousands(BATCH as f64),
        elapsed = ctx.elapsed_s,
    );
    out
}
