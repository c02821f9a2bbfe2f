//! `store-bench`: the appliance's event store against SQLite, the SIGKILL crash test, and what
//! the uplink's durable outbox costs against plain broker clients.
//!
//! `run` starts one child process per engine (this binary, hidden `engine` subcommand) so that
//! each engine's peak RSS is its own, then runs the crash test and prints a markdown table on
//! stdout. `uplink` drains outbox backlogs to local brokers (see [`uplink`]). Progress goes to
//! stderr.

mod crash;
mod report;
mod sled_engine;
mod sqlite_engine;
mod uplink;
mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use appliance_bench::sys;
use clap::{Parser, Subcommand, ValueEnum};

use crate::workload::EngineResult;

/// The daemon's allocator, so the store is measured as it runs there (sled allocates per insert).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "store-bench", about, version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark the store against SQLite, run the crash test, print a markdown report.
    Run {
        /// Events bulk-loaded into each engine (the dataset for the query and disk figures).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// SIGKILL cycles of the crash test.
        #[arg(long, default_value_t = 200)]
        crash_cycles: u32,
        /// Where to put the data (a fresh subdirectory is made); default: the system temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the workload and crash randomness; default: random (printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Drain outbox backlogs to local brokers with the uplink's sender, against plain clients
    /// without a store; print a markdown report.
    Uplink {
        /// Events in each backlog (batch 1 drains fewer, see the report).
        /// Default 100k: the backlog of an hours-long outage that issue 5 asks to drain.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Live events per second offered in the latency runs.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// How long each latency run offers events, in seconds.
        #[arg(long, default_value_t = 10)]
        live_seconds: u32,
        /// Where to put the stores (a fresh subdirectory is made); default: the system temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the events; default: random (printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Kill a durable writer with SIGKILL at random moments; check nothing acknowledged is lost.
    Crash {
        #[arg(long)]
        cycles: u32,
        /// Where to put the stores (a fresh subdirectory is made); default: the system temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
    },
    /// One engine's workload; prints one JSON line (used by `run`).
    #[command(hide = true)]
    Engine {
        engine: EngineKind,
        #[arg(long)]
        events: u64,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
    },
    /// Makes `count` single-event durable commits one after another and reports them; the
    /// durability test runs it under strace to see one fdatasync per commit.
    #[command(hide = true)]
    Commits {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        count: u32,
    },
    /// Appends durably until killed, printing `ready` and then `ok <id>` per acknowledged event.
    #[command(hide = true)]
    CrashWriter {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineKind {
    Sled,
    Sqlite,
}

impl EngineKind {
    fn name(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Sqlite => "sqlite",
        }
    }
}

fn main() -> Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Run {
            events,
            crash_cycles,
            dir,
            seed,
        } => run(events, crash_cycles, dir.as_deref(), seed),
        Cmd::Uplink {
            events,
            rate,
            live_seconds,
            dir,
            seed,
        } => {
            let options = uplink::Options {
                events,
                rate,
                live_seconds,
                seed: seed.unwrap_or_else(rand::random),
            };
            uplink::run(&options, dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Crash { cycles, dir, seed } => {
            let work = sys::work_dir(dir.as_deref())?;
            match crash::run(cycles, work.path(), seed.unwrap_or_else(rand::random)) {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("crash test FAILED: {e:?}");
                    eprintln!("stores kept for inspection in {}", work.keep().display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Engine {
            engine,
            events,
            dir,
            seed,
        } => {
            let result = match engine {
                EngineKind::Sled => {
                    workload::drive(sled_engine::SledEngine::open(&dir)?, events, seed)?
                }
                EngineKind::Sqlite => {
                    workload::drive(sqlite_engine::SqliteEngine::open(&dir)?, events, seed)?
                }
            };
            println!("{}", serde_json::to_string(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Commits { dir, count } => {
            sled_engine::sequential_commits(&dir, count)?;
            println!("committed {count}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CrashWriter { dir, seed } => {
            crash::writer(&dir, seed)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(events: u64, crash_cycles: u32, dir: Option<&Path>, seed: Option<u64>) -> Result<ExitCode> {
    let started = Instant::now();
    let seed = seed.unwrap_or_else(rand::random);
    let work = sys::work_dir(dir)?;
    let filesystem = sys::filesystem(work.path());
    if filesystem == "tmpfs" {
        eprintln!(
            "warning: {} is on tmpfs, where fsync is free: durability costs will look too low",
            work.path().display()
        );
    }
    eprintln!(
        "store-bench: N = {events}, seed {seed}, data in {}",
        work.path().display()
    );
    // The same seed for both engines: they load identical events.
    let store = engine_child(EngineKind::Sled, events, &work.path().join("sled"), seed)?;
    let sqlite = engine_child(
        EngineKind::Sqlite,
        events,
        &work.path().join("sqlite"),
        seed,
    )?;
    let crash = crash::run(crash_cycles, &work.path().join("crash"), seed);
    let crashed = crash.is_err();
    let ctx = report::Context {
        machine: sys::machine(),
        data_dir: format!("{} ({filesystem})", work.path().display()),
        events,
        crash: match crash {
            Ok(summary) => summary.to_string(),
            Err(e) => {
                // The evidence spans many lines: stderr gets it whole, the table its headline.
                eprintln!("crash test FAILED: {e:?}");
                format!("**crash test FAILED**: {e} (evidence on stderr)")
            }
        },
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    print!("{}", report::render(&ctx, &store, &sqlite));
    if crashed {
        eprintln!("crash test stores kept in {}", work.keep().display());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one engine's workload in its own process and reads its JSON result.
fn engine_child(engine: EngineKind, events: u64, dir: &Path, seed: u64) -> Result<EngineResult> {
    let name = engine.name();
    eprintln!("{name}: loading {events} events");
    let output = Command::new(std::env::current_exe()?)
        .args([
            "engine",
            name,
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting the {name} engine process"))?;
    if !output.status.success() {
        bail!("the {name} engine process failed: {}", output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().last().context("no result line")?;
    let result =
        serde_json::from_str(line).with_context(|| format!("{name} engine result `{line}`"))?;
    // Its data is no longer needed; free the disk before the next engine fills it.
    std::fs::remove_dir_all(dir)?;
    Ok(result)
}
