//! This box as a device: its identity (id, key pair, certificate), whether it is claimed, its
//! admin sessions, provisioning on the first start, and factory reset.
//!
//! A box starts *unclaimed*: the API refuses everything but claiming (setting the admin
//! password) until then, so no box ever runs with a default password. An installer can instead
//! put a provisioning file on the boot partition with the password's hash, and the box starts
//! claimed. The id, the password hash and the provisioned upstream are state in the store; the
//! key and certificate are files beside it (see [`identity`]).

pub mod admin;
pub mod factory_reset;
pub mod identity;
pub mod provisioning;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use appliance_config::Config;
use appliance_store::{EventStore, StateChange};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use admin::{LoginThrottle, Sessions};

use crate::lifecycle::{Exit, ExitRequests};
pub use identity::TlsIdentity;

/// Store namespace of the box's identity and admin state.
const NAMESPACE: &str = "appliance.identity";
const KEY_DEVICE_ID: &str = "device_id";
const KEY_PASSWORD_HASH: &str = "admin_password_hash";
const KEY_PROVISIONED_UPLINK: &str = "provisioned_uplink";

/// What went wrong with a claim, sign-in or password change.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("this box is already claimed; sign in with its admin password")]
    AlreadyClaimed,
    #[error("this box is not claimed yet: claim it by setting an admin password")]
    Unclaimed,
    #[error("{0}")]
    WeakPassword(String),
    #[error("wrong password")]
    WrongPassword,
    #[error("too many wrong passwords: try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A session token and how long it is valid.
pub struct Session {
    pub token: String,
    pub expires_in: Duration,
}

/// Shared handle on the device state.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    tls: TlsIdentity,
    data_dir: PathBuf,
    store: EventStore,
    /// The password hash and the guessing brake; async because a sign-in holds it while
    /// argon2 runs, which also serialises guesses.
    password: tokio::sync::Mutex<Password>,
    /// Whether a password is set, readable without that lock: the admin gate asks on every
    /// request and must not wait behind a sign-in's argon2. Only ever goes from false to true
    /// (a factory reset restarts the daemon).
    claimed: AtomicBool,
    sessions: Mutex<Sessions>,
    /// Where a factory reset asks the daemon to exit for systemd to start it again.
    exits: ExitRequests,
}

struct Password {
    hash: Option<String>,
    throttle: LoginThrottle,
}

impl Password {
    /// Checks `password` against the admin's, behind the guessing brake.
    async fn verify(&mut self, password: &str) -> Result<(), AdminError> {
        let hash = self.hash.clone().ok_or(AdminError::Unclaimed)?;
        self.throttle
            .check(Instant::now())
            .map_err(AdminError::Throttled)?;
        if verify_off_thread(hash, password).await? {
            self.throttle.succeeded();
            Ok(())
        } else {
            self.throttle.failed(Instant::now());
            tracing::warn!("wrong admin password");
            Err(AdminError::WrongPassword)
        }
    }
}

impl Device {
    /// Reads this box's identity, making it on the first start of a data directory (applying
    /// the provisioning file if there is a valid one). Applies a provisioned upstream to
    /// `config.uplink` when the configuration names none.
    pub async fn open(
        config: &mut Config,
        store: &EventStore,
        registry: &mut Registry,
        exits: ExitRequests,
    ) -> anyhow::Result<Device> {
        let rejected = Counter::<u64>::default();
        registry.register(
            "appliance_provisioning_rejected",
            "Provisioning files refused at a first start (the log says why)",
            rejected.clone(),
        );
        let stored_id = read_text(store, KEY_DEVICE_ID)?;
        if stored_id.is_none() {
            first_start(config, store, &rejected).await?;
        }
        let stored_id = read_text(store, KEY_DEVICE_ID)?.context("the device id was not stored")?;
        // A device id in the configuration overrides the stored one (it was there before
        // provisioning existed, and an installer may still pin it that way).
        let id = if config.uplink.device_id.is_empty() {
            stored_id
        } else {
            config.uplink.device_id.clone()
        };
        if config.uplink.mqtt.is_none()
            && config.uplink.kafka.is_none()
            && let Some(text) = read_text(store, KEY_PROVISIONED_UPLINK)?
        {
            let device_id = std::mem::take(&mut config.uplink.device_id);
            config.uplink = provisioning::uplink_from_toml(&text)
                .map_err(|e| anyhow::anyhow!("the provisioned [uplink] no longer loads: {e}"))?;
            config.uplink.device_id = device_id;
            tracing::info!("upstream from the provisioning file");
        }
        let data_dir = config.store.data_dir.clone();
        let tls = tokio::task::spawn_blocking({
            let (dir, id) = (data_dir.clone(), id.clone());
            move || identity::ensure(&dir, &id)
        })
        .await??;
        let hash = read_text(store, KEY_PASSWORD_HASH)?;
        tracing::info!(device_id = id, claimed = hash.is_some(), "device identity");
        Ok(Device {
            inner: Arc::new(Inner {
                id,
                tls,
                data_dir,
                store: store.clone(),
                claimed: AtomicBool::new(hash.is_some()),
                password: tokio::sync::Mutex::new(Password {
                    hash,
                    throttle: LoginThrottle::default(),
                }),
                sessions: Mutex::new(Sessions::default()),
                exits,
            }),
        })
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn tls(&self) -> &TlsIdentity {
        &self.inner.tls
    }

    pub fn is_claimed(&self) -> bool {
        self.inner.claimed.load(Ordering::Acquire)
    }

    /// Sets the first admin password; signs in.
    pub async fn claim(&self, password: &str) -> Result<Session, AdminError> {
        admin::check_new_password(password).map_err(AdminError::WeakPassword)?;
        let mut state = self.inner.password.lock().await;
        if state.hash.is_some() {
            return Err(AdminError::AlreadyClaimed);
        }
        let hash = hash_off_thread(password).await?;
        self.store_hash(&hash).await?;
        state.hash = Some(hash);
        self.inner.claimed.store(true, Ordering::Release);
        tracing::info!("box claimed");
        Ok(self.new_session())
    }

    /// Checks the admin password; signs in.
    pub async fn login(&self, password: &str) -> Result<Session, AdminError> {
        let mut state = self.inner.password.lock().await;
        state.verify(password).await?;
        Ok(self.new_session())
    }

    /// Whether `token` is a live session.
    pub fn authorize(&self, token: &str) -> bool {
        self.sessions().is_valid(token, Instant::now())
    }

    pub fn logout(&self, token: &str) {
        self.sessions().revoke(token);
    }

    /// Replaces the admin password (the current one is asked again); ends every session.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), AdminError> {
        admin::check_new_password(new).map_err(AdminError::WeakPassword)?;
        let mut state = self.inner.password.lock().await;
        state.verify(current).await?;
        let hash = hash_off_thread(new).await?;
        self.store_hash(&hash).await?;
        state.hash = Some(hash);
        self.sessions().revoke_all();
        tracing::info!("admin password changed; every session ended");
        Ok(())
    }

    /// Marks the data directory for wiping and asks the daemon to exit for a restart; the next
    /// start wipes it (see [`factory_reset`]).
    pub async fn factory_reset(&self) -> anyhow::Result<()> {
        let dir = self.inner.data_dir.clone();
        tokio::task::spawn_blocking(move || factory_reset::request(&dir))
            .await?
            .context("cannot mark the data directory for a factory reset")?;
        tracing::warn!("factory reset requested: restarting to wipe the data directory");
        self.inner.exits.request(Exit::Restart);
        Ok(())
    }

    fn new_session(&self) -> Session {
        Session {
            token: self.sessions().issue(Instant::now()),
            expires_in: admin::SESSION_TTL,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn store_hash(&self, hash: &str) -> anyhow::Result<()> {
        let change = StateChange {
            namespace: NAMESPACE,
            key: KEY_PASSWORD_HASH.into(),
            value: Some(hash.as_bytes().to_vec()),
        };
        self.inner
            .store
            .commit(Vec::new(), vec![change])
            .await
            .context("cannot store the admin password")?;
        Ok(())
    }
}

/// The first start of a data directory: the provisioning file if there is a valid one, else a
/// generated id; stored in one commit.
async fn first_start(
    config: &Config,
    store: &EventStore,
    rejected: &Counter,
) -> anyhow::Result<()> {
    let provisioned = read_provisioning(&config.device.provisioning_file).unwrap_or_else(|e| {
        rejected.inc();
        tracing::error!(error = %e, "provisioning file refused; starting unclaimed");
        None
    });
    let mut changes = Vec::new();
    let mut put = |key: &str, value: String| {
        changes.push(StateChange {
            namespace: NAMESPACE,
            key: key.into(),
            value: Some(value.into_bytes()),
        })
    };
    let provisioned = provisioned.unwrap_or(provisioning::Provisioning {
        device_id: None,
        admin_password_hash: None,
        uplink_toml: None,
    });
    let id = provisioned
        .device_id
        .unwrap_or_else(|| format!("box-{}", hex::encode(rand::random::<[u8; 8]>())));
    tracing::info!(device_id = id, "first start of this data directory");
    put(KEY_DEVICE_ID, id);
    if let Some(hash) = provisioned.admin_password_hash {
        put(KEY_PASSWORD_HASH, hash);
    }
    if let Some(uplink) = provisioned.uplink_toml {
        put(KEY_PROVISIONED_UPLINK, uplink);
    }
    store
        .commit(Vec::new(), changes)
        .await
        .context("cannot store this box's identity")?;
    Ok(())
}

/// `Ok(None)` when there is no provisioning file.
fn read_provisioning(path: &Path) -> Result<Option<provisioning::Provisioning>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let origin = path.display().to_string();
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{origin}: {e}")),
        Ok(meta) if meta.len() > provisioning::MAX_PROVISIONING_BYTES as u64 => {
            return Err(format!("{origin}: too large ({} bytes)", meta.len()));
        }
        Ok(_) => std::fs::read(path).map_err(|e| format!("{origin}: {e}"))?,
    };
    let parsed = provisioning::parse(&bytes, &origin)?;
    tracing::info!(file = origin, "provisioning file accepted");
    Ok(Some(parsed))
}

fn read_text(store: &EventStore, key: &str) -> anyhow::Result<Option<String>> {
    store
        .state(NAMESPACE, key)?
        .map(|bytes| String::from_utf8(bytes).with_context(|| format!("stored {key} is not text")))
        .transpose()
}

async fn hash_off_thread(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    Ok(tokio::task::spawn_blocking(move || admin::hash_password(&password)).await?)
}

async fn verify_off_thread(hash: String, password: &str) -> anyhow::Result<bool> {
    let password = password.to_owned();
    Ok(tokio::task::spawn_blocking(move || admin::verify_password(&hash, &password)).await?)
}
