//! `applianced run`: start every subsystem, serve until a signal, shut down in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use appliance_config::Config;
use appliance_model::{EventSource, NewEvent, Severity};
use appliance_store::{EventStore, RetentionPolicy, StoreMetrics, StoreOptions};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::device::{Device, factory_reset};
use crate::lifecycle::{Exit, ExitRequests};
use crate::update::Updates;
use crate::vision::Vision;
use crate::{logging, settings, sip, systemd, tls, uplink};

/// How long in-flight HTTP requests may take to finish after a stop signal.
const HTTP_DRAIN: Duration = Duration::from_secs(3);

/// `applianced mark-good`: marks the booted slot good through RAUC.
pub fn mark_good(config: Config) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(crate::update::mark_booted_good(&config.update))
}

pub fn run(config: Config) -> anyhow::Result<Exit> {
    logging::init(&config.log.filter);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("applianced")
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<Exit> {
    let started = Instant::now();
    // Handlers first: a stop signal during start-up must still shut down cleanly.
    let stop_signal = stop_signal()?;
    let data_dir = config.store.data_dir.clone();
    let wipe_dir = data_dir.clone();
    if tokio::task::spawn_blocking(move || factory_reset::wipe_if_requested(&wipe_dir))
        .await?
        .with_context(|| format!("factory reset: cannot wipe {}", data_dir.display()))?
    {
        tracing::warn!(dir = %data_dir.display(), "factory reset: data directory wiped");
    }
    let data_dir = &data_dir;
    let metrics = Arc::new(StoreMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let options = StoreOptions {
        dir: data_dir.clone(),
        cache_capacity: config.store.cache_capacity.bytes(),
        max_commit_group: config.store.max_commit_group,
    };
    let store = tokio::task::spawn_blocking(move || EventStore::open(&options, metrics))
        .await?
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    tracing::info!(dir = %data_dir.display(), "store open");
    // Records the start (the cloud sees every reboot) and proves the store can write before
    // systemd is told the daemon is ready.
    store
        .append(start_event())
        .await
        .context("cannot write to the store")?;

    let exits = ExitRequests::default();
    let mut config = config;
    let device = Device::open(&mut config, &store, &mut registry, exits.clone()).await?;
    // The file's configuration (with a provisioned upstream) stays the base the cloud's
    // settings are checked against; the settings go over it.
    let base_config = Arc::new(config.clone());
    let config = settings::apply_stored(config, &store)?;

    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    tracing::info!(tls = config.http.tls, %http_addr, "HTTP API listening");

    let shutdown = CancellationToken::new();
    let sip = sip::start(
        &config.sip,
        &config.media,
        store.clone(),
        &mut registry,
        shutdown.clone(),
    )
    .await?;
    let vision = Vision::new(
        config.vision.clone(),
        store.clone(),
        data_dir.clone(),
        &mut registry,
    );
    // Cameras start in the background: loading models takes seconds and must not hold up
    // readiness; a camera that cannot start says why in its status.
    let vision_start = tokio::task::spawn_blocking({
        let vision = vision.clone();
        move || {
            if let Err(e) = vision.start() {
                tracing::error!(error = %e, "cannot read the cameras");
            }
        }
    });
    let updates = Updates::new(config.update.clone(), store.clone(), data_dir);
    let uplinks = uplink::start(
        &config.uplink,
        uplink::Context {
            device_id: device.id(),
            store: &store,
            sip: &sip,
            vision: &vision,
            updates: &updates,
            exits: &exits,
            base_config,
            data_dir: data_dir.clone(),
            started,
        },
        &mut registry,
        &shutdown,
    )?;
    let sip_for_stop = sip.clone();
    let listener = if config.http.tls {
        ApiListener::Tls(tls::TlsListener::new(listener, device.tls())?)
    } else {
        ApiListener::Plain(listener)
    };
    let state = AppState::new(
        store.clone(),
        device,
        Some(sip),
        uplinks,
        vision.clone(),
        updates,
        exits.clone(),
        registry,
        http_addr,
        started,
    );
    let policy = RetentionPolicy {
        max_age: config.retention.max_age.get(),
        max_disk_bytes: config.retention.max_disk.bytes(),
        min_free_disk_bytes: config.retention.min_free_disk.bytes(),
    };
    let retention = tokio::spawn(retention_loop(
        store.clone(),
        policy,
        config.retention.interval.get(),
        shutdown.clone(),
    ));
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        let app = api::router(state);
        async move {
            match listener {
                ApiListener::Tls(tls) => {
                    axum::serve(tls, app)
                        .with_graceful_shutdown(shutdown.cancelled_owned())
                        .await
                }
                ApiListener::Plain(listener) => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown.cancelled_owned())
                        .await
                }
            }
            .context("HTTP server failed")
        }
    });

    systemd::ready();
    let watchdog = systemd::watchdog_interval().map(|interval| {
        let store = store.clone();
        tokio::spawn(systemd::watchdog(interval, move || store.is_writable()))
    });

    let exit = tokio::select! {
        signal_name = stop_signal => {
            tracing::info!(signal = signal_name, "stopping");
            Exit::Stopped
        }
        exit = exits.requested() => {
            tracing::info!(?exit, "stopping");
            exit
        }
    };
    systemd::stopping();
    sip_for_stop.hang_up_all().await;
    shutdown.cancel();
    match tokio::time::timeout(HTTP_DRAIN, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("HTTP requests still open after {HTTP_DRAIN:?}; closing anyway"),
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    retention.await?;
    vision_start.await?;
    tokio::task::spawn_blocking(move || vision.shutdown()).await?;
    // Waits for queued writes to become durable, then stops the writer.
    tokio::task::spawn_blocking(move || store.close()).await?;
    tracing::info!("stopped");
    Ok(exit)
}

/// The API's socket: plain HTTP, or HTTPS with the box's certificate (`http.tls`).
enum ApiListener {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// Camera id of events about the appliance itself.
pub const APPLIANCE_CAMERA_ID: &str = "appliance";

fn start_event() -> NewEvent {
    let mut attributes = serde_json::Map::new();
    attributes.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    NewEvent {
        camera_id: APPLIANCE_CAMERA_ID.into(),
        channel_id: None,
        source: EventSource::System,
        kind: "system.start".into(),
        severity: Severity::Info,
        start_time: None,
        end_time: None,
        attributes,
        media: vec![],
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves with the first signal.
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Runs retention every `retention.interval`, and again at once while a pass reports more to do.
async fn retention_loop(
    store: EventStore,
    policy: RetentionPolicy,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        loop {
            match store.enforce_retention(policy).await {
                Ok(report) => {
                    if report.deleted() > 0 {
                        tracing::info!(?report, "retention deleted events");
                    }
                    if !report.more || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention pass failed");
                    break;
                }
            }
        }
    }
}
