//! The markdown report `just bench uplink` prints.

use std::collections::HashSet;
use std::fmt::Write;
use std::time::Duration;

use appliance_uplink::Outgoing;

use super::{ARRIVAL_QUIET, BACKLOG_COMMIT, CURSOR_PROBES, LIVE_BATCH, MAX_BATCHES, WARM_UP};
use crate::workload::Latency;
use appliance_bench::thousands;

/// Everything the report shows besides the rows.
pub struct Context {
    pub machine: String,
    pub data_dir: String,
    pub events: usize,
    pub build: Build,
    pub rate: u32,
    pub live_seconds: u32,
    pub mosquitto: String,
    /// `None`: not installed, no Kafka rows.
    pub tansu: Option<String>,
    /// One cursor commit on a store holding a backlog.
    pub cursor_commit: Latency,
    pub elapsed_s: f64,
}

/// The messages of a backlog, as the sender builds them.
pub struct Build {
    /// Mean length of an `appliance.event.v1` message.
    bytes: f64,
    /// Reading the outbox and the events and serialising the messages, per event.
    us_per_event: f64,
}

impl Build {
    pub fn of(messages: &[Outgoing], took: Duration) -> Build {
        let n = messages.len() as f64;
        Build {
            bytes: messages.iter().map(|m| m.payload.len()).sum::<usize>() as f64 / n,
            us_per_event: took.as_secs_f64() * 1e6 / n,
        }
    }
}

/// What a sender's drain measured.
pub struct Drain {
    pub batch: usize,
    pub seconds: f64,
    /// Of which inside the publisher's `publish`: sending and waiting for acknowledgements.
    pub publishing: f64,
    /// What a subscriber (MQTT) or a consumer (Kafka) received of the backlog.
    pub arrivals: Option<Tally>,
}

/// A drain's backlog against what reached the other side, counted by event id.
#[derive(Debug, Clone, Copy)]
pub struct Tally {
    /// Events of the backlog that never arrived.
    pub lost: usize,
    /// Arrivals of an event already received (at-least-once allows them).
    pub duplicates: usize,
}

impl Tally {
    pub fn of(expected: &[String], arrived: &[String]) -> Tally {
        let expected: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        for id in arrived {
            if expected.contains(id.as_str()) && !seen.insert(id.as_str()) {
                duplicates += 1;
            }
        }
        Tally {
            lost: expected.len() - seen.len(),
            duplicates,
        }
    }
}

/// A live run's latencies, nearest-rank percentiles in ms.
#[derive(Debug, Clone, Copy)]
pub struct LiveLatency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl LiveLatency {
    pub fn of(samples: Vec<Duration>) -> LiveLatency {
        let mut sorted = samples;
        sorted.sort_unstable();
        let p95 = (0.95 * sorted.len() as f64).ceil() as usize;
        let p95_ms = sorted[p95.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3;
        let latency = Latency::of(sorted);
        LiveLatency {
            p50_ms: latency.p50_ms,
            p95_ms,
            p99_ms: latency.p99_ms,
        }
    }
}

/// What a live row is compared with.
pub enum Versus {
    /// It is the baseline.
    IsBaseline,
    /// The baseline's p50 in ms.
    Baseline(f64),
    /// There is no baseline to compare it with.
    None,
}

/// One line of the table.
pub struct Row {
    scenario: String,
    /// The sender's batch; `None` for a plain client, which has none.
    batch: Option<usize>,
    events: usize,
    seconds: f64,
    /// End-to-end latency, for the live runs.
    latency: Option<LiveLatency>,
    /// Against the baseline of the same group, already in words.
    versus: String,
    /// Per batch, for a sender's drain: (all, publishing) in ms.
    per_batch: Option<(f64, f64)>,
    arrivals: Option<Tally>,
}

impl Row {
    /// A baseline's drain.
    pub fn baseline(scenario: &str, events: usize, seconds: f64) -> Row {
        Row {
            scenario: scenario.to_owned(),
            batch: None,
            events,
            seconds,
            latency: None,
            versus: "1.00× events/s".to_owned(),
            per_batch: None,
            arrivals: None,
        }
    }

    /// A sender's drain, against the baseline's events/s.
    pub fn sender(scenario: &str, events: usize, drain: &Drain, baseline_rate: f64) -> Row {
        let batches = events.div_ceil(drain.batch) as f64;
        Row {
            scenario: scenario.to_owned(),
            batch: Some(drain.batch),
            events,
            seconds: drain.seconds,
            latency: None,
            versus: format!(
                "{} events/s",
                times(events as f64 / drain.seconds / baseline_rate)
            ),
            per_batch: Some((
                drain.seconds * 1e3 / batches,
                drain.publishing * 1e3 / batches,
            )),
            arrivals: drain.arrivals,
        }
    }

    /// A live run.
    pub fn live(
        scenario: &str,
        batch: Option<usize>,
        events: usize,
        seconds: f64,
        latency: LiveLatency,
        versus: Versus,
    ) -> Row {
        let versus = match versus {
            Versus::IsBaseline => format!("{} p50 latency", times(1.0)),
            Versus::Baseline(p50) => format!("{} p50 latency", times(latency.p50_ms / p50)),
            Versus::None => "–".to_owned(),
        };
        Row {
            scenario: scenario.to_owned(),
            batch,
            events,
            seconds,
            versus,
            latency: Some(latency),
            per_batch: None,
            arrivals: None,
        }
    }

    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// A ratio with enough digits that a small one does not read as zero.
fn times(ratio: f64) -> String {
    if ratio < 0.1 {
        format!("{ratio:.3}×")
    } else {
        format!("{ratio:.2}×")
    }
}

pub fn render(ctx: &Context, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Uplink: the durable outbox against plain clients, same brokers, same run\n"
    );
    let _ = writeln!(out, "- machine: {}", ctx.machine);
    let _ = writeln!(out, "- data directory: {}", ctx.data_dir);
    let _ = writeln!(
        out,
        "- brokers on loopback: {}; {}",
        ctx.mosquitto,
        ctx.tansu.as_deref().map_or_else(
            || "no Kafka rows: tansu is not installed (`just setup-test` builds it)".to_owned(),
            |v| format!("{v} (memory storage)")
        )
    );
    let _ = writeln!(
        out,
        "- N = {} events per backlog; a message (`appliance.event.v1` JSON) is {:.0} B on average",
        thousands(ctx.events as f64),
        ctx.build.bytes
    );
    let _ = writeln!(
        out,
        "- reading the outbox and the events and building their messages (`build_batch` over the backlog): {:.1} µs per event",
        ctx.build.us_per_event
    );
    let _ = writeln!(
        out,
        "- one cursor commit (a state change, sled flush + fdatasync, timed {} times on a store holding the backlog): p50 {:.3} ms, p99 {:.3} ms\n",
        CURSOR_PROBES, ctx.cursor_commit.p50_ms, ctx.cursor_commit.p99_ms
    );
    let _ = writeln!(
        out,
        "| scenario | batch | events | seconds | events/s | latency p50 / p95 / p99 | vs baseline | ms per batch ⁵ | publishing | the rest | lost / dup ⁶ |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    );
    for row in rows {
        let [all, publishing, rest] = row.per_batch.map_or_else(Default::default, |(all, p)| {
            [all, p, all - p].map(|ms| format!("{ms:.2}"))
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {all} | {publishing} | {rest} | {} |",
            row.scenario,
            row.batch
                .map_or_else(|| "–".to_owned(), |b| thousands(b as f64)),
            thousands(row.events as f64),
            row.seconds,
            thousands(row.events_per_s()),
            row.latency.map_or_else(String::new, |l| format!(
                "{:.2} / {:.2} / {:.2} ms",
                l.p50_ms, l.p95_ms, l.p99_ms
            )),
            row.versus,
            row.arrivals.map_or_else(String::new, |t| format!(
                "{} / {}",
                thousands(t.lost as f64),
                thousands(t.duplicates as f64)
            )),
        );
    }
    let _ = writeln!(
        out,
        "
¹ The real `Sender` and `MqttPublisher` with the daemon's options but the batch, on a fresh store \
holding the backlog, committed {commit} events per commit before the clock starts. The publisher \
is connected first; the clock runs from the sender's start until its status shows the cursor at \
the backlog's last outbox sequence, i.e. every message acknowledged and the cursor durable. A \
drain makes at most {batches} batches, hence fewer events at the small batches. Each mosquitto \
runs twice: as installed (`default config`) and with `set_tcp_nodelay true`, as the README \
recommends for deployments; the default configuration skips batches 1 and 10.
² The same payloads and MQTT 5 properties, QoS 1, the publisher's limits (100 unacknowledged, a \
request queue of 64), published back to back from memory on a connected client: no store read, \
no cursor, no wait between batches. The clock runs from the first publish to the last PUBACK. An \
unreported warm-up of {warm} messages goes first, on the same connection.
³ {rate} events/s for {secs} s on an absolute schedule, sender at batch {live}. Latency runs from \
the moment an event is raised (the `append` call, its own durable commit included; for the \
baseline, the publish call) to its arrival at an MQTT 5 QoS 1 subscriber (Kafka: a consumer of \
the topic, `fetch.wait.max.ms` 10) in this process. The subscriber, the producer and the sender \
share this machine's cores.
⁴ Kafka (tansu, one broker): the real `KafkaPublisher` against a plain `FutureProducer` with its \
settings (idempotent, acks=all, 5 requests in flight, murmur2 partitioner), the same keyed \
messages produced back to back after a warm-up of {warm} on the same producer; the topic is \
created before the clock starts.
⁵ The drain's seconds ÷ its batches, split into the time inside the publisher (submitting \
batches and settling them: waiting for every acknowledgement) and the rest: the sender's own \
work between batches, i.e. reading the outbox and the events, building the messages and \
committing the cursor. The sender keeps up to 4 batches in flight and settles them in order, \
so `publishing` adds up overlapping waits. Against a broker with Nagle's algorithm on \
(mosquitto's `set_tcp_nodelay` is off by default) the later PUBACKs of a batch wait until the \
box's next data or its delayed ACK (40 ms); with several batches in flight the next batch is \
that data, so the 40 ms show only when the sender runs out of batches, in the live runs. \
The Kafka publisher sets \
`linger.ms` to 0 (the outbox batches already); the plain producer keeps librdkafka's default.
⁶ Events of the backlog that never reached the other side, and arrivals of an event already \
received, counted by event id: an MQTT 5 QoS 1 subscriber in this process listens during the \
drain (sharing its cores), a Kafka consumer reads the drain's own topic after it. It waits until \
every event arrived or none came for {quiet} s.

Run took {elapsed:.0} s.",
        commit = BACKLOG_COMMIT,
        batches = thousands(MAX_BATCHES as f64),
        warm = thousands(WARM_UP as f64),
        rate = ctx.rate,
        secs = ctx.live_seconds,
        live = LIVE_BATCH,
        quiet = ARRIVAL_QUIET.as_secs(),
        elapsed = ctx.elapsed_s,
    );
    out
}
