//! SIGKILL crash test: a writer process appends durably as fast as it can and reports every
//! acknowledged id; the parent kills it at a random moment, reopens the store and checks that
//! nothing acknowledged was lost and that the store is consistent.
//!
//! A process kill is not a power cut (the page cache survives it), but it does stop the store at
//! any instruction: in the middle of a sled batch, a flush, a media write or an fsync. What it
//! proves is that every state the store can be left in reopens, and that an acknowledgement is
//! only ever given for data that is already in sled's log.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use appliance_model::{EventId, MediaKind, NewEvent, Timestamp};
use appliance_store::{EventStore, StoreMetrics};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::sled_engine::{edge_options, open_store};
use crate::workload::EventGen;

/// Cycles that share one store before it is replaced by a fresh one, to bound its size (and the
/// time `verify` takes) while still reopening a store that many crashes have written to.
const CYCLES_PER_STORE: u32 = 50;
const WRITER_THREADS: u64 = 4;
/// How long the writer may take to open the store (sled recovery after the previous kill).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 50..=400;
/// Share of commits that are an `append_many` group instead of a single event.
const GROUP_SHARE: f64 = 0.05;
const GROUP_SIZES: std::ops::RangeInclusive<usize> = 1..=50;
/// Share of events that carry a snapshot, and its size range.
const MEDIA_SHARE: f64 = 0.2;
const MEDIA_BYTES: std::ops::RangeInclusive<usize> = 1024..=20 * 1024;
/// Most ids or problems quoted when a check fails.
const EVIDENCE_LINES: usize = 20;

pub struct CrashSummary {
    pub cycles: u32,
    pub acknowledged: u64,
    pub written: u64,
}

impl std::fmt::Display for CrashSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "crash test: {} cycles, {} acknowledged events all present, {} events written in total, 0 problems",
            self.cycles, self.acknowledged, self.written
        )
    }
}

/// Runs `cycles` kill-and-check cycles with stores under `root`.
pub fn run(cycles: u32, root: &Path, seed: u64) -> Result<CrashSummary> {
    eprintln!(
        "crash test: {cycles} cycles in {}, seed {seed}",
        root.display()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut summary = CrashSummary {
        cycles: 0,
        acknowledged: 0,
        written: 0,
    };
    // Every id acknowledged since the current store was created: all must survive every later
    // crash too, not only the one right after they were written.
    let mut acknowledged = HashSet::new();
    let mut store_dir = PathBuf::new();
    let mut events_in_store = 0;
    let mut orphans_swept = 0;
    for cycle in 0..cycles {
        if cycle % CYCLES_PER_STORE == 0 {
            if cycle > 0 {
                std::fs::remove_dir_all(&store_dir)?;
            }
            summary.written += events_in_store;
            acknowledged.clear();
            store_dir = root.join(format!("store-{}", cycle / CYCLES_PER_STORE));
        }
        let started = Instant::now();
        let writer_seed = rng.next_u64();
        let delay = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let context = || {
            format!(
                "cycle {}: writer seed {writer_seed}, killed after {} ms, store {}",
                cycle + 1,
                delay.as_millis(),
                store_dir.display()
            )
        };
        let acked = kill_writer(&store_dir, writer_seed, delay).with_context(context)?;
        let new = acked.len();
        for id in acked {
            ensure!(
                acknowledged.insert(id),
                "{}: id {id} was acknowledged twice",
                context()
            );
        }
        let checked = check_store(&store_dir, &acknowledged).with_context(context)?;
        events_in_store = checked.events;
        orphans_swept += checked.orphans_swept;
        summary.acknowledged += new as u64;
        summary.cycles += 1;
        eprintln!(
            "  cycle {}/{cycles}: killed after {} ms, {new} acknowledged, store holds {events_in_store} events, {} orphan media swept, ok ({:.1} s)",
            cycle + 1,
            delay.as_millis(),
            checked.orphans_swept,
            started.elapsed().as_secs_f64()
        );
    }
    summary.written += events_in_store;
    eprintln!(
        "  {orphans_swept} orphan media files swept at reopen (kills between a media write and its commit)"
    );
    Ok(summary)
}

/// What the writer prints on stdout.
enum Line {
    Ready,
    Committed(EventId),
}

/// Starts a writer on `dir`, SIGKILLs it `delay` after it is ready and returns every id it
/// acknowledged before it died.
fn kill_writer(dir: &Path, seed: u64, delay: Duration) -> Result<Vec<EventId>> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("crash-writer")
        .arg("--dir")
        .arg(dir)
        .arg("--seed")
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the writer")?;
    let stdout = child.stdout.take().context("writer stdout")?;
    let (tx, rx) = mpsc::channel();
    // Reads continuously, so that a full pipe never stalls the writer before the kill.
    let reader = thread::spawn(move || read_lines(stdout, &tx));
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    let waited = wait_ready(&rx);
    if waited.is_ok() {
        thread::sleep(delay);
    }
    // Killed in every case, so that no writer outlives a failed cycle. The child is not reaped
    // yet, so its pid cannot have been reused; should the kill fail all the same, the exit status
    // check below reports it.
    let killed = signal::kill(pid, Signal::SIGKILL);
    let status = child.wait()?;
    let lines = reader
        .join()
        .map_err(|_| anyhow!("stdout reader panicked"))?;
    if status.signal() != Some(Signal::SIGKILL as i32) {
        bail!("the writer was not killed by SIGKILL (kill: {killed:?}) but ended with {status}");
    }
    waited?;
    lines?;
    Ok(rx
        .into_iter()
        .filter_map(|line| match line {
            Line::Committed(id) => Some(id),
            Line::Ready => None,
        })
        .collect())
}

fn wait_ready(rx: &Receiver<Line>) -> Result<()> {
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Line::Ready) => Ok(()),
        Ok(Line::Committed(id)) => bail!("the writer acknowledged {id} before it was ready"),
        Err(RecvTimeoutError::Timeout) => {
            bail!("the writer was not ready within {READY_TIMEOUT:?}")
        }
        Err(RecvTimeoutError::Disconnected) => bail!("the writer closed stdout before `ready`"),
    }
}

fn read_lines(stdout: impl Read, tx: &Sender<Line>) -> Result<()> {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // A line cut short by the kill was never fully acknowledged. (Each line is one write to a
        // pipe, which POSIX makes atomic, so this should not happen.)
        let Some(text) = line.strip_suffix('\n') else {
            return Ok(());
        };
        let parsed = match text.split_once(' ') {
            None if text == "ready" => Line::Ready,
            Some(("ok", id)) => Line::Committed(
                id.parse()
                    .with_context(|| format!("writer line `{text}`"))?,
            ),
            _ => bail!("unexpected writer line `{text}`"),
        };
        // The receiver only goes away when the cycle has already failed.
        let _ = tx.send(parsed);
    }
}

/// What a reopened store looked like.
struct Checked {
    events: u64,
    /// Media files the kill left without an event, removed by `open`.
    orphans_swept: u64,
}

/// Reopens the store and checks it.
fn check_store(dir: &Path, acknowledged: &HashSet<EventId>) -> Result<Checked> {
    let metrics = Arc::new(StoreMetrics::default());
    let store = EventStore::open(&edge_options(dir), Arc::clone(&metrics))
        .context("the store did not reopen after SIGKILL")?;
    let mut lost = Vec::new();
    for &id in acknowledged {
        match store.get(id) {
            Ok(Some(_)) => {}
            Ok(None) => lost.push(format!("{id} missing")),
            Err(e) => lost.push(format!("{id} unreadable: {e}")),
        }
    }
    let report = store.verify().context("verify failed to run")?;
    store.close();
    drop(store);
    if lost.is_empty() && report.problems.is_empty() {
        return Ok(Checked {
            events: report.events,
            orphans_swept: metrics.orphan_media_removed.get(),
        });
    }
    lost.sort();
    bail!(
        "{} of {} acknowledged events lost; verify found {} problems ({} events, {} media files)\n{}\n{}",
        lost.len(),
        acknowledged.len(),
        report.problems.len(),
        report.events,
        report.media_files,
        quote("lost", &lost),
        quote("problem", &report.problems),
    )
}

fn quote(what: &str, items: &[String]) -> String {
    let mut text: Vec<String> = items
        .iter()
        .take(EVIDENCE_LINES)
        .map(|item| format!("  {what}: {item}"))
        .collect();
    if items.len() > EVIDENCE_LINES {
        text.push(format!("  … and {} more", items.len() - EVIDENCE_LINES));
    }
    text.join("\n")
}

/// What writer threads send to the one thread that owns stdout.
enum Report {
    Committed(Vec<EventId>),
    Failed(anyhow::Error),
}

/// The child side: writes until it is killed. Returns only if a write fails.
pub fn writer(dir: &Path, seed: u64) -> Result<()> {
    let store = open_store(dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let (tx, rx) = mpsc::channel();
    for thread in 0..WRITER_THREADS {
        let store = store.clone();
        let tx = tx.clone();
        let rng = StdRng::seed_from_u64(seed.wrapping_add(thread));
        thread::spawn(move || {
            let error = write_forever(&store, rng, &tx);
            let _ = tx.send(Report::Failed(error));
        });
    }
    drop(tx);
    // One printer, so that lines from different threads never interleave; an id is printed only
    // after the commit that holds it has returned.
    for report in rx {
        match report {
            Report::Committed(ids) => {
                for id in ids {
                    writeln!(out, "ok {id}")?;
                }
                out.flush()?;
            }
            Report::Failed(error) => return Err(error.context("a writer thread failed")),
        }
    }
    bail!("every writer thread stopped")
}

/// Appends durably until a write fails (or the printer is gone); returns why it stopped.
fn write_forever(store: &EventStore, mut rng: StdRng, tx: &Sender<Report>) -> anyhow::Error {
    let mut events = EventGen::new(rng.next_u64(), Timestamp::now().as_millis());
    loop {
        let committed = if rng.gen_bool(GROUP_SHARE) {
            let n = rng.gen_range(GROUP_SIZES);
            (0..n)
                .map(|_| with_media(store, &mut events, &mut rng))
                .collect::<Result<Vec<_>>>()
                .and_then(|group| Ok(store.append_many(group).wait()?))
                .map(|stored| stored.into_iter().map(|e| e.id).collect())
        } else {
            with_media(store, &mut events, &mut rng)
                .and_then(|event| Ok(store.append(event).wait()?))
                .map(|stored| vec![stored.id])
        };
        match committed {
            Ok(ids) => {
                if tx.send(Report::Committed(ids)).is_err() {
                    return anyhow!("the printer thread is gone");
                }
            }
            Err(e) => return e,
        }
    }
}

/// The next event, with a snapshot written to the store first for a share of them.
fn with_media(store: &EventStore, events: &mut EventGen, rng: &mut StdRng) -> Result<NewEvent> {
    let mut event = events.next_event();
    if rng.gen_bool(MEDIA_SHARE) {
        // Random bytes: every snapshot is a distinct file, none is deduplicated away.
        let mut jpeg = vec![0; rng.gen_range(MEDIA_BYTES)];
        rng.fill_bytes(&mut jpeg);
        event
            .media
            .push(store.put_media(MediaKind::Snapshot, "image/jpeg", &jpeg)?);
    }
    Ok(event)
}
