//! `applianced`: the edge video-AI appliance daemon.
//!
//! This crate only wires things together: it loads the configuration, opens the store, serves
//! the HTTP API, talks to systemd and runs periodic tasks. Protocol and business logic live in the
//! library crates under `appliance/`.

mod api;
mod commands;
mod device;
mod lifecycle;
mod logging;
mod media;
mod run;
mod settings;
mod sim;
mod sip;
mod systemd;
mod tls;
mod update;
mod uplink;
mod vision;

use std::path::PathBuf;
use std::process::ExitCode;

use appliance_config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use clap::{Parser, Subcommand};

/// sled allocates on every insert; glibc's allocator spent a third of the writer's time in malloc
/// and arena locks in `just bench store` (16k → 25k events/s batched with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "applianced", about = "Edge video-AI appliance daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance until SIGTERM or SIGINT.
    Run {
        /// Configuration file. Without it, /etc/appliance/appliance.toml is read if it exists,
        /// otherwise the embedded defaults are used. APPLIANCE_<SECTION>__<KEY> variables
        /// override either.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory (store, media); overrides `store.data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Check a configuration file (with environment overrides applied): exit 0 when valid,
    /// 2 with the problem printed otherwise.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a complete configuration file with every key at its default.
    DefaultConfig,
    /// Simulate GB28181 cameras that register to a platform (this box or another).
    SimDevice(Box<sim::SimOptions>),
    /// Skills offline: `skill test` runs a skill on a recorded clip.
    #[command(subcommand)]
    Skill(SkillCommand),
    /// Ask for a factory reset: the next start of the daemon wipes its data directory (events,
    /// media, cameras, keys, the admin password) and comes back unclaimed. For a reset button's
    /// handler, which then restarts the daemon; the firmware is untouched.
    FactoryReset {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Mark the booted firmware slot good through RAUC (D-Bus), so the bootloader keeps booting
    /// it: `appliance-mark-good.service` runs it once the daemon reported ready.
    MarkGood {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read an admin password on standard input and print its argon2id hash: the
    /// `admin_password_hash` of a provisioning file (the password itself never goes on the box).
    HashPassword,
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum SkillCommand {
    /// Run a skill on a video file and print the events it would raise.
    Test(vision::dry_run::SkillTestOptions),
}

/// Exit status for an invalid configuration (also used by `check-config`).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit status asking systemd to start the daemon again (`RestartForceExitStatus=75` in
/// applianced.service; EX_TEMPFAIL).
const EXIT_RESTART: u8 = 75;
/// Exit status asking for a reboot of the box (applianced.service's `ExecStopPost` reboots on
/// it, as root; the daemon has no privilege to).
const EXIT_REBOOT: u8 = 76;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, data_dir } => {
            let mut config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            if let Some(dir) = data_dir {
                config.store.data_dir = dir;
            }
            match run::run(config) {
                Ok(lifecycle::Exit::Stopped) => ExitCode::SUCCESS,
                Ok(lifecycle::Exit::Restart) => ExitCode::from(EXIT_RESTART),
                Ok(lifecycle::Exit::Reboot) => ExitCode::from(EXIT_REBOOT),
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("applianced: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file, std::env::vars()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::SimDevice(options) => {
            logging::init("info");
            match sim::run(*options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("applianced sim-device: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Skill(SkillCommand::Test(options)) => {
            logging::init("warn");
            let config = match config_or_exit(options.config.as_deref()) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            match vision::dry_run::run(options, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("applianced skill test: {e:#}");
                    if e.downcast_ref::<vision::dry_run::BadInput>().is_some() {
                        ExitCode::from(vision::dry_run::EXIT_BAD_SKILL)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
        Command::DefaultConfig => {
            print!("{}", Config::default().to_toml_string());
            ExitCode::SUCCESS
        }
        Command::FactoryReset { config, data_dir } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            let dir = data_dir.unwrap_or(config.store.data_dir);
            match device::factory_reset::request(&dir) {
                Ok(()) => {
                    println!(
                        "factory reset requested: {} is wiped when applianced starts next",
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("applianced factory-reset: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::MarkGood { config } => {
            let config = match config_or_exit(config.as_deref()) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            match run::mark_good(config) {
                Ok(message) => {
                    println!("{message}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("applianced mark-good: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::HashPassword => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("applianced hash-password: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            let password = password.trim_end_matches(['\r', '\n']);
            match device::admin::check_new_password(password) {
                Ok(()) => {
                    println!("{}", device::admin::hash_password(password));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("applianced hash-password: {e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Version => {
            println!("applianced {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// The configuration, or the exit status after saying what is wrong with it.
fn config_or_exit(explicit: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    load_config(explicit).map_err(|e| {
        eprintln!("applianced: {e}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn load_config(explicit: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    let default = std::path::Path::new(DEFAULT_CONFIG_PATH);
    match explicit {
        Some(path) => Config::load(path, std::env::vars()),
        None if default.exists() => Config::load(default, std::env::vars()),
        None => Config::from_env_only(std::env::vars()),
    }
}
