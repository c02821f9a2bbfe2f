//! Firmware updates: the daemon's side of RAUC. It reads RAUC's status, hands it a bundle (an
//! upload kept in the data directory, or an http(s) URL RAUC streams) and follows the
//! installation, one at a time; the outcome is an event (`system.update.installed` or
//! `system.update.failed`), so the cloud learns it like any other. RAUC itself writes the free
//! slot and switches the bootloader; the new slot runs after the next reboot, and the image's
//! `appliance-mark-good.service` marks it good (`applianced mark-good`) once the daemon is ready.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use appliance_config::UpdateConfig;
use appliance_model::{EventSource, NewEvent, Severity, Timestamp};
use appliance_store::EventStore;
use appliance_update::{MarkState, Progress, Rauc, UpdateStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::run::APPLIANCE_CAMERA_ID;

/// Why an installation could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("updates are off on this box (update.rauc_bus is empty)")]
    Off,
    #[error("an installation is already running")]
    Busy,
    #[error("cannot reach RAUC: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
}

/// The update state the API and the cloud see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpdateView {
    /// Whether RAUC answered.
    pub available: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// RAUC's view: compatible, booted and primary slot, slots with their bundle versions,
    /// operation and progress.
    #[schema(value_type = Object)]
    pub rauc: Option<UpdateStatus>,
    /// The installation this daemon started last, if any since it started.
    pub job: Option<Job>,
}

/// An installation started through this daemon.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    /// The bundle: a URL, or `upload` for a bundle sent to the API.
    pub source: String,
    pub started: Timestamp,
    /// `running`, `installed` (reboot to run it) or `failed`.
    pub state: JobState,
    /// RAUC's latest step.
    #[schema(value_type = Object)]
    pub progress: Option<Progress>,
    /// RAUC's error, when it failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Installed,
    Failed,
}

/// Handle on the update service; cheap to clone.
#[derive(Clone)]
pub struct Updates {
    inner: Arc<Inner>,
}

struct Inner {
    config: UpdateConfig,
    store: EventStore,
    /// Where uploaded bundles wait for RAUC (the data directory: RAUC reads it as root).
    upload_dir: PathBuf,
    /// Connected on first use and kept; dropped after a bus error so the next call reconnects.
    client: tokio::sync::Mutex<Option<Rauc>>,
    job: Mutex<Option<Job>>,
}

impl Updates {
    pub fn new(config: UpdateConfig, store: EventStore, data_dir: &std::path::Path) -> Updates {
        Updates {
            inner: Arc::new(Inner {
                config,
                store,
                upload_dir: data_dir.join("updates"),
                client: tokio::sync::Mutex::new(None),
                job: Mutex::new(None),
            }),
        }
    }

    pub fn max_bundle_bytes(&self) -> u64 {
        self.inner.config.max_bundle.bytes()
    }

    /// A new file for an upload to be written to before it is installed: one per upload, so an
    /// upload arriving during an installation never touches the bundle RAUC is reading.
    pub fn new_upload_path(&self) -> PathBuf {
        let name = format!("upload-{}.raucb", hex::encode(rand::random::<[u8; 8]>()));
        self.inner.upload_dir.join(name)
    }

    /// Whether an installation started here is still running (an upload is refused before
    /// its body is read).
    pub fn is_busy(&self) -> bool {
        self.job()
            .as_ref()
            .is_some_and(|j| j.state == JobState::Running)
    }

    pub async fn view(&self) -> UpdateView {
        let job = self.job().clone();
        let (rauc, error) = if self.inner.config.rauc_bus.is_empty() {
            (None, Some(StartError::Off.to_string()))
        } else {
            match self.client().await {
                Ok(client) => match client.status().await {
                    Ok(status) => (Some(status), None),
                    Err(e) => {
                        self.forget_client(&e).await;
                        (None, Some(e.to_string()))
                    }
                },
                Err(e) => (None, Some(e.to_string())),
            }
        };
        UpdateView {
            available: rauc.is_some(),
            error,
            rauc,
            job,
        }
    }

    /// Starts installing `bundle` (an absolute path or an http(s) URL); `label` is what the
    /// job and its event show as the source. Returns once RAUC accepted the job.
    pub async fn install(&self, bundle: &str, label: &str) -> Result<Job, StartError> {
        if self.inner.config.rauc_bus.is_empty() {
            return Err(StartError::Off);
        }
        {
            let mut job = self.job();
            if job.as_ref().is_some_and(|j| j.state == JobState::Running) {
                return Err(StartError::Busy);
            }
            // The check and the claim under one lock: two requests cannot both start.
            *job = Some(Job {
                source: label.to_owned(),
                started: Timestamp::now(),
                state: JobState::Running,
                progress: None,
                error: None,
            });
        }
        let started = match self.client().await {
            Ok(client) => client.install(bundle).await.map_err(|e| match e {
                appliance_update::Error::Refused { message, .. } => StartError::Refused(message),
                appliance_update::Error::InvalidSource(_) => StartError::Refused(e.to_string()),
                e => StartError::Unreachable(e.to_string()),
            }),
            Err(e) => Err(e),
        };
        let installation = match started {
            Ok(installation) => installation,
            Err(e) => {
                *self.job() = None;
                return Err(e);
            }
        };
        tracing::info!(source = label, "update: RAUC is installing a bundle");
        let job = self.job().clone().expect("the job was just set");
        tokio::spawn(self.clone().follow(installation, bundle.to_owned()));
        Ok(job)
    }

    /// Follows an installation to its end: progress into the job, the outcome into an event.
    async fn follow(self, mut installation: appliance_update::Installation, bundle: String) {
        let outcome = loop {
            match installation.next_progress().await {
                Ok(Some(progress)) => self.update_job(|job| job.progress = Some(progress)),
                Ok(None) => break installation.finish().await,
                Err(e) => break Err(e),
            }
        };
        if std::path::Path::new(&bundle).starts_with(&self.inner.upload_dir) {
            let _ = tokio::fs::remove_file(&bundle).await;
        }
        let (state, error) = match &outcome {
            Ok(()) => (JobState::Installed, None),
            Err(e) => (JobState::Failed, Some(e.to_string())),
        };
        self.update_job(|job| {
            job.state = state;
            job.error = error.clone();
        });
        let Some(job) = self.job().clone() else {
            return;
        };
        match &error {
            None => tracing::info!(source = job.source, "update installed; reboot to run it"),
            Some(e) => tracing::error!(source = job.source, error = e, "update failed"),
        }
        if let Err(e) = self.inner.store.append(update_event(&job)).await {
            tracing::error!(error = %e, "cannot record the update's outcome");
        }
    }

    fn update_job(&self, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.job().as_mut() {
            change(job);
        }
    }

    fn job(&self) -> std::sync::MutexGuard<'_, Option<Job>> {
        self.inner
            .job
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn client(&self) -> Result<Rauc, StartError> {
        let mut client = self.inner.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let connected = connect(&self.inner.config).await?;
        *client = Some(connected.clone());
        Ok(connected)
    }

    /// After a bus error the connection may be dead; the next call connects again.
    async fn forget_client(&self, error: &appliance_update::Error) {
        if matches!(
            error,
            appliance_update::Error::Bus(_) | appliance_update::Error::ServiceGone
        ) {
            *self.inner.client.lock().await = None;
        }
    }
}

/// A bundle URL from the API or the cloud must be http(s): RAUC would also take a path on the
/// box, which is not theirs to name.
pub fn check_bundle_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err("url must be http:// or https://".to_owned())
    }
}

/// Connects to RAUC on the configured bus.
async fn connect(config: &UpdateConfig) -> Result<Rauc, StartError> {
    match config.rauc_bus.as_str() {
        "" => return Err(StartError::Off),
        "system" => Rauc::connect_system().await,
        address => Rauc::connect(address).await,
    }
    .map_err(|e| StartError::Unreachable(e.to_string()))
}

/// Marks the booted slot good: the running firmware started healthy (`applianced mark-good`).
pub async fn mark_booted_good(config: &UpdateConfig) -> anyhow::Result<String> {
    let client = connect(config).await?;
    let marked = client.mark(MarkState::Good, "booted").await?;
    Ok(marked.message)
}

fn update_event(job: &Job) -> NewEvent {
    let mut attributes = serde_json::Map::new();
    attributes.insert("source".into(), job.source.clone().into());
    if let Some(error) = &job.error {
        attributes.insert("error".into(), error.clone().into());
    }
    let (kind, severity) = match job.state {
        JobState::Failed => ("system.update.failed", Severity::Major),
        _ => ("system.update.installed", Severity::Info),
    };
    NewEvent {
        camera_id: APPLIANCE_CAMERA_ID.into(),
        channel_id: None,
        source: EventSource::System,
        kind: kind.into(),
        severity,
        start_time: Some(job.started),
        end_time: Some(Timestamp::now()),
        attributes,
        media: vec![],
    }
}
