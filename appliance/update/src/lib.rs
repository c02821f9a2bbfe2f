//! The appliance's client of RAUC, the updater of its firmware.
//!
//! # What RAUC does
//!
//! RAUC (`rauc service`, on the system bus as `de.pengutronix.rauc`) owns the box's A/B slots,
//! as `system.conf` describes them: for each class (`rootfs`, ...) two slots, one booted and
//! one free. Installing a bundle (a signed squashfs with a manifest; `verity` format on this
//! box) means: check its signature against the keyring and its `compatible` against the
//! system's, mount it, write each image into the free slot of its class, record what was
//! written in the slot status, and make that slot the bootloader's primary. The new system
//! then boots on trial; if it does not mark itself `good` (`rauc status mark-good`, or `Mark`
//! here) the bootloader falls back to the other slot.
//!
//! # What this crate does
//!
//! [`Rauc`] talks to that service over D-Bus (`de.pengutronix.rauc.Installer`, [`proxy`]):
//! [`Rauc::status`] gathers RAUC's properties, `GetSlotStatus` and `GetPrimary` into one
//! serialisable [`UpdateStatus`]; [`Rauc::install`] starts an installation and hands back an
//! [`Installation`] that reports its progress and outcome; [`Rauc::mark`] marks slots;
//! [`Rauc::bundle_info`] checks a bundle before installing it. The mapping from RAUC's
//! dictionaries is in [`status`]'s plain functions. Nothing here decides *when* to update or
//! reboot: that is the daemon's.
//!
//! RAUC's behaviour this client is built around (RAUC 1.8, checked against a running service):
//! - `InstallBundle` returns as soon as the installation thread started; the outcome is the
//!   `Completed(i)` signal, with the reason in `LastError`. A bad bundle (wrong compatible, bad
//!   signature, missing file) is accepted and then fails: the error only comes with
//!   `Completed`.
//! - While it installs, RAUC refuses `GetSlotStatus`, `GetPrimary`, `Mark` and a second
//!   `InstallBundle` ("already processing a different method"). Refusing that second
//!   `InstallBundle` sets `Operation` back to `idle` although the first installation goes on,
//!   so `Operation` alone does not tell whether slot reads will be answered.
//! - `Completed` is emitted before `Operation` goes back to `idle`, in the same main-loop turn,
//!   so any property read sent after `Completed` arrived sees `idle`.

pub mod proxy;
pub mod status;

use std::collections::HashMap;

use tokio::sync::mpsc;
use zbus::{
    MatchRule, MessageStream,
    fdo::{PropertiesChanged, PropertiesProxy},
    message::Type as MessageType,
    names::InterfaceName,
    proxy::CacheProperties,
};

pub use proxy::{Completed, INTERFACE, InstallerProxy, PATH, SERVICE};
pub use status::{BootStatus, MapError, Operation, Progress, SlotState, SlotStatus, UpdateStatus};

/// What can go wrong talking to RAUC.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus itself: no bus at the address, RAUC not on the bus, the connection lost.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// RAUC answered the call with an error (busy, unknown slot, unreadable bundle, ...).
    #[error("RAUC refused {method}: {message}")]
    Refused {
        method: &'static str,
        message: String,
    },
    /// RAUC answered with something that does not have the shape of its 1.8 API.
    #[error("unexpected reply from RAUC: {0}")]
    Reply(#[from] MapError),
    /// RAUC resolves a relative path against its own working directory: never what was meant.
    #[error("{0:?} is not a bundle source: give an absolute path or an http(s) URL")]
    InvalidSource(String),
    /// The installation ran and failed; `message` is RAUC's `LastError`.
    #[error("installation failed (RAUC result {code}): {message}")]
    InstallFailed { code: i32, message: String },
    /// RAUC left the bus (crashed, was stopped) before it reported the end of the installation.
    #[error("RAUC left the bus before the installation completed")]
    ServiceGone,
}

/// How [`Rauc::mark`] marks a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkState {
    /// Keep booting it: what a healthy system does for its booted slot after boot.
    Good,
    /// Stop booting it: the bootloader skips it.
    Bad,
    /// Boot it next: RAUC makes it the bootloader's primary slot.
    Active,
}

impl MarkState {
    fn as_rauc(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Bad => "bad",
            Self::Active => "active",
        }
    }
}

/// What [`Rauc::mark`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The slot marked (`booted` and `other` resolved to a name).
    pub slot: String,
    /// RAUC's message, e.g. "marked slot rootfs.0 as good".
    pub message: String,
}

/// A bundle's manifest, as RAUC read it after checking the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    pub compatible: String,
    /// Empty strings (no version in the manifest) become `None`.
    pub version: Option<String>,
}

/// A connection to RAUC's service. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct Rauc {
    connection: zbus::Connection,
    installer: InstallerProxy<'static>,
    properties: PropertiesProxy<'static>,
}

impl Rauc {
    /// Connects to RAUC on the system bus, where the firmware runs it.
    pub async fn connect_system() -> Result<Self, Error> {
        Self::on(zbus::Connection::system().await?).await
    }

    /// Connects to RAUC on the bus at `address` (D-Bus address syntax, e.g.
    /// `unix:path=/run/dbus/system_bus_socket`).
    ///
    /// Only the bus is connected to: RAUC need not be running yet, calls fail until it is.
    pub async fn connect(address: &str) -> Result<Self, Error> {
        Self::on(zbus::connection::Builder::address(address)?.build().await?).await
    }

    async fn on(connection: zbus::Connection) -> Result<Self, Error> {
        // No property cache: a cached value can lag behind a signal already received (see
        // `InstallerProxy`), and `status` should show what RAUC says now.
        let installer = InstallerProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let properties = PropertiesProxy::builder(&connection)
            .destination(SERVICE)?
            .path(PATH)?
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Self {
            connection,
            installer,
            properties,
        })
    }

    /// The typed proxy, for what this API does not offer.
    pub fn installer(&self) -> &InstallerProxy<'static> {
        &self.installer
    }

    /// RAUC's status now. While RAUC installs, `slots` and `primary` are `None`: RAUC refuses
    /// those reads then, and the progress is what matters.
    pub async fn status(&self) -> Result<UpdateStatus, Error> {
        // One GetAll: a consistent snapshot of the properties in one round trip.
        let all = self
            .properties
            .get_all(InterfaceName::from_static_str_unchecked(INTERFACE))
            .await
            .map_err(zbus::Error::from)?;
        let properties = status::properties(&all)?;
        if properties.operation == Operation::Installing {
            return Ok(properties.into_status(None, None));
        }
        // RAUC may still refuse these: an installation started after GetAll, or one that runs
        // while `Operation` wrongly says idle (see the crate docs). That, or any other refusal
        // (a bootloader that cannot tell its primary), leaves the field empty rather than
        // failing the whole status: the rest is still true.
        let slots = match self
            .installer
            .get_slot_status()
            .await
            .map_err(refused("GetSlotStatus"))
        {
            Ok(reply) => Some(status::slots(&reply)?),
            Err(Error::Refused { message, .. }) => {
                tracing::warn!(%message, "RAUC did not report the slots");
                None
            }
            Err(e) => return Err(e),
        };
        let primary = match self
            .installer
            .get_primary()
            .await
            .map_err(refused("GetPrimary"))
        {
            Ok(primary) => Some(primary),
            Err(Error::Refused { message, .. }) => {
                tracing::warn!(%message, "RAUC did not report the primary slot");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(properties.into_status(primary, slots))
    }

    /// Starts installing the bundle at `source`: an absolute path on the box, or an http(s) URL
    /// (RAUC streams `verity` bundles from a server). Returns once RAUC accepted the job; the
    /// returned [`Installation`] reports its progress and outcome.
    ///
    /// Fails with [`Error::Refused`] when RAUC does not take the job (another installation
    /// runs). A bad bundle is accepted and fails later, in [`Installation::finish`].
    pub async fn install(&self, source: &str) -> Result<Installation, Error> {
        check_source(source)?;
        // Subscribe before the call: a bundle that fails at once (missing file, bad signature)
        // completes within milliseconds, possibly before a later subscription is in place.
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(SERVICE)?
            .path(PATH)?
            .build();
        let signals = MessageStream::for_match_rule(rule, &self.connection, None).await?;
        let owner = self.installer.inner().receive_owner_changed().await?;
        self.installer
            .install_bundle(source, HashMap::new())
            .await
            .map_err(refused("InstallBundle"))?;
        Ok(Installation::start(signals, owner, self.installer.clone()))
    }

    /// Marks a slot. `slot` is `booted`, `other` (the other bootable slot of the booted one's
    /// class) or a slot name (`rootfs.1`).
    ///
    /// `applianced mark-good` (run by `appliance-mark-good.service` once the daemon is ready)
    /// marks the booted slot [`MarkState::Good`], so the bootloader stops counting boot attempts; [`MarkState::Bad`] makes the
    /// next boot fall back.
    pub async fn mark(&self, state: MarkState, slot: &str) -> Result<Marked, Error> {
        let (slot, message) = self
            .installer
            .mark(state.as_rauc(), slot)
            .await
            .map_err(refused("Mark"))?;
        Ok(Marked { slot, message })
    }

    /// Checks the bundle at `source` (signature against the keyring) and returns its manifest's
    /// compatible and version, without installing it. RAUC 1.8's `Info`.
    pub async fn bundle_info(&self, source: &str) -> Result<BundleInfo, Error> {
        check_source(source)?;
        let (compatible, version) = self.installer.info(source).await.map_err(refused("Info"))?;
        Ok(BundleInfo {
            compatible,
            version: (!version.is_empty()).then_some(version),
        })
    }
}

/// Turns an error reply of RAUC into [`Error::Refused`]; errors of the bus itself (RAUC not on
/// the bus, no such method) stay [`Error::Bus`].
fn refused(method: &'static str) -> impl FnOnce(zbus::Error) -> Error {
    move |e| match e {
        zbus::Error::MethodError(name, message, _)
            if !name.as_str().starts_with("org.freedesktop.DBus.Error.") =>
        {
            Error::Refused {
                method,
                message: message.unwrap_or_else(|| name.to_string()),
            }
        }
        e => Error::Bus(e),
    }
}

/// Accepts what RAUC can install from: an absolute path or an http(s) URL.
fn check_source(source: &str) -> Result<(), Error> {
    let ok = source.starts_with('/')
        || ["http://", "https://"]
            .iter()
            .any(|scheme| source.len() > scheme.len() && source.starts_with(scheme));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSource(source.to_owned()))
    }
}

/// An installation RAUC accepted. Read its progress with [`Self::next_progress`], its outcome
/// with [`Self::finish`]; dropping it stops following the installation (RAUC goes on).
///
/// A task reads RAUC's signals as they come: zbus stops reading the whole connection while a
/// subscription's queue is full, so an unread subscription would stall every other call on it
/// (e.g. a `status` from the HTTP API during the installation).
#[derive(Debug)]
pub struct Installation {
    events: mpsc::UnboundedReceiver<Event>,
    installer: InstallerProxy<'static>,
    /// The `Completed` result, once it came.
    completed: Option<i32>,
}

#[derive(Debug)]
enum Event {
    Progress(Progress),
    Completed(i32),
    Failed(Error),
}

impl Installation {
    fn start(
        mut signals: MessageStream,
        mut owner: zbus::proxy::OwnerChangedStream<'static>,
        installer: InstallerProxy<'static>,
    ) -> Self {
        use futures_lite::StreamExt;

        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Signals before `Operation` went to `installing` are the last ones of an
            // installation that ended just as we subscribed (RAUC emits them before it handles
            // our call): its `Completed` is not ours.
            let mut started = false;
            loop {
                let signal = tokio::select! {
                    // Signals first: a `Completed` already queued wins over a later owner loss.
                    biased;
                    () = tx.closed() => return,
                    message = signals.next() => match message {
                        Some(Ok(message)) => read_signal(&message),
                        Some(Err(e)) => Err(e.into()),
                        None => Err(Error::Bus(zbus::Error::InputOutput(
                            std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "the bus connection closed",
                            )
                            .into(),
                        ))),
                    },
                    // The stream first reports the current owner; only its loss matters.
                    new_owner = owner.next() => match new_owner {
                        Some(Some(_)) => continue,
                        Some(None) | None => Err(Error::ServiceGone),
                    },
                };
                let signal = match signal {
                    Ok(signal) => signal,
                    Err(e) => {
                        let _ = tx.send(Event::Failed(e));
                        return;
                    }
                };
                started |= signal.started;
                if !started {
                    continue;
                }
                if let Some(progress) = signal.progress
                    && tx.send(Event::Progress(progress)).is_err()
                {
                    return;
                }
                if let Some(result) = signal.completed {
                    let _ = tx.send(Event::Completed(result));
                    return;
                }
            }
        });
        Self {
            events,
            installer,
            completed: None,
        }
    }

    /// The next progress step, in RAUC's order; `None` once RAUC reported the end (then
    /// [`Self::finish`] returns at once).
    pub async fn next_progress(&mut self) -> Result<Option<Progress>, Error> {
        if self.completed.is_some() {
            return Ok(None);
        }
        match self.events.recv().await {
            Some(Event::Progress(progress)) => Ok(Some(progress)),
            Some(Event::Completed(result)) => {
                self.completed = Some(result);
                Ok(None)
            }
            Some(Event::Failed(e)) => Err(e),
            // The task only ends after sending a last event, so this means it panicked.
            None => Err(Error::ServiceGone),
        }
    }

    /// Waits for the end of the installation (skipping progress not read yet): `Ok` when RAUC
    /// reported success, [`Error::InstallFailed`] with RAUC's `LastError` otherwise.
    pub async fn finish(mut self) -> Result<(), Error> {
        while self.next_progress().await?.is_some() {}
        match self.completed {
            Some(0) => Ok(()),
            Some(code) => {
                // Read after `Completed` arrived, so this is this installation's error (RAUC
                // sets it before it emits `Completed`).
                let message = self
                    .installer
                    .last_error()
                    .await
                    .map_err(refused("Get LastError"))?;
                Err(Error::InstallFailed { code, message })
            }
            None => Err(Error::ServiceGone),
        }
    }
}

/// What one of RAUC's signals says about an installation.
#[derive(Debug, Default, PartialEq)]
struct Signal {
    /// `Operation` became `installing`.
    started: bool,
    progress: Option<Progress>,
    /// The result `Completed` carries.
    completed: Option<i32>,
}

fn read_signal(message: &zbus::Message) -> Result<Signal, Error> {
    let mut signal = Signal::default();
    if let Some(completed) = Completed::from_message(message.clone()) {
        signal.completed = Some(completed.args()?.result);
    } else if let Some(changed) = PropertiesChanged::from_message(message.clone()) {
        let args = changed.args()?;
        if args.interface_name.as_str() == INTERFACE {
            if let Some(value) = args.changed_properties.get("Operation") {
                signal.started = status::operation_of(value)? == Operation::Installing;
            }
            if let Some(value) = args.changed_properties.get("Progress") {
                signal.progress = Some(status::progress(value)?);
            }
        }
    }
    Ok(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rauc_can_use() {
        for ok in [
            "/data/update.raucb",
            "http://10.0.0.2/u.raucb",
            "https://example.com/u.raucb",
        ] {
            assert!(check_source(ok).is_ok(), "{ok}");
        }
        for bad in [
            "update.raucb",
            "./update.raucb",
            "",
            "https://",
            "ftp://host/u.raucb",
        ] {
            assert!(
                matches!(check_source(bad), Err(Error::InvalidSource(s)) if s == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn rauc_errors_are_refusals_bus_errors_are_not() {
        let rauc = zbus::Error::MethodError(
            "org.gtk.GDBus.UnmappedGError.Quark._g_2dio_2derror_2dquark.Code30"
                .try_into()
                .unwrap(),
            Some("Already processing a different method".into()),
            // A reply is needed for the variant only; its content is not read.
            error_reply(),
        );
        assert!(matches!(
            refused("InstallBundle")(rauc),
            Error::Refused { method: "InstallBundle", message }
                if message == "Already processing a different method"
        ));
        let bus = zbus::Error::MethodError(
            "org.freedesktop.DBus.Error.ServiceUnknown"
                .try_into()
                .unwrap(),
            Some("The name de.pengutronix.rauc was not provided by any .service files".into()),
            error_reply(),
        );
        assert!(matches!(refused("GetSlotStatus")(bus), Error::Bus(_)));
    }

    fn properties_changed(changed: HashMap<&str, zbus::zvariant::Value<'_>>) -> zbus::Message {
        zbus::Message::signal(PATH, "org.freedesktop.DBus.Properties", "PropertiesChanged")
            .unwrap()
            .build(&(INTERFACE, changed, Vec::<String>::new()))
            .unwrap()
    }

    #[test]
    fn signals_read() {
        use zbus::zvariant::{StructureBuilder, Value};

        let completed = zbus::Message::signal(PATH, INTERFACE, "Completed")
            .unwrap()
            .build(&(1i32,))
            .unwrap();
        assert_eq!(
            read_signal(&completed).unwrap(),
            Signal {
                completed: Some(1),
                ..Signal::default()
            }
        );

        let step = StructureBuilder::new()
            .add_field(40i32)
            .add_field("Checking bundle done.".to_owned())
            .add_field(2i32)
            .build()
            .unwrap();
        let changed = properties_changed(HashMap::from([
            ("Operation", Value::from("installing")),
            ("Progress", Value::Structure(step)),
        ]));
        assert_eq!(
            read_signal(&changed).unwrap(),
            Signal {
                started: true,
                progress: Some(Progress {
                    percent: 40,
                    message: "Checking bundle done.".into(),
                    depth: 2
                }),
                completed: None
            }
        );

        let idle = properties_changed(HashMap::from([("Operation", Value::from("idle"))]));
        assert_eq!(read_signal(&idle).unwrap(), Signal::default());
        let other = properties_changed(HashMap::from([("LastError", Value::from("x"))]));
        assert_eq!(read_signal(&other).unwrap(), Signal::default());

        let mistyped = properties_changed(HashMap::from([("Progress", Value::I32(40))]));
        assert!(matches!(
            read_signal(&mistyped),
            Err(Error::Reply(MapError::WrongType {
                expected: "(isi)",
                ..
            }))
        ));
    }

    fn error_reply() -> zbus::Message {
        let call = zbus::Message::method_call(PATH, "GetPrimary")
            .unwrap()
            .build(&())
            .unwrap();
        zbus::Message::error(&call.header(), "org.example.Error")
            .unwrap()
            .build(&())
            .unwrap()
    }
}
