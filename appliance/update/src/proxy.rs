//! The typed proxy of `de.pengutronix.rauc.Installer` as RAUC 1.8 exports it.
//!
//! Checked against a running `rauc service` 1.8 (`gdbus introspect --dest de.pengutronix.rauc
//! --object-path /`): 1.8 has `Info` but not yet `InspectBundle` (added in a later release), and
//! no `GetArtifactStatus`. Calling a method 1.8 lacks would fail with `UnknownMethod`, so only
//! what 1.8 exports is declared here.

use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

/// The well-known bus name RAUC's service owns.
pub const SERVICE: &str = "de.pengutronix.rauc";
/// The one object RAUC exports.
pub const PATH: &str = "/";
/// The installer interface on [`PATH`].
pub const INTERFACE: &str = "de.pengutronix.rauc.Installer";

/// `de.pengutronix.rauc.Installer`. [`crate::Rauc`] wraps it; use it directly only for what
/// `Rauc` does not offer.
///
/// Build it with property caching off (`InstallerProxy::builder(&conn).cache_properties(
/// zbus::proxy::CacheProperties::No)`), as `Rauc` does: a cached `Operation` or `LastError` is
/// updated from `PropertiesChanged` in the background and can lag behind a `Completed` signal
/// that was already received.
#[zbus::proxy(
    interface = "de.pengutronix.rauc.Installer",
    default_service = "de.pengutronix.rauc",
    default_path = "/",
    gen_blocking = false
)]
pub trait Installer {
    /// Starts installing the bundle at `source` (an absolute path or a URL). Returns once RAUC
    /// has started the installation thread; the outcome comes with the `Completed` signal.
    ///
    /// `args` keys RAUC 1.8 accepts: `ignore-compatible` (b), `tls-cert`, `tls-key`, `tls-ca`
    /// (s), `tls-no-verify` (b), `http-headers` (as). Any other key is refused with
    /// "Unsupported key: ...".
    fn install_bundle(&self, source: &str, args: HashMap<&str, Value<'_>>) -> zbus::Result<()>;

    /// Deprecated by RAUC in favour of [`InstallerProxy::install_bundle`]; the same without
    /// arguments.
    fn install(&self, source: &str) -> zbus::Result<()>;

    /// Checks a bundle's signature against the keyring and returns its manifest's
    /// `(compatible, version)`.
    fn info(&self, bundle: &str) -> zbus::Result<(String, String)>;

    /// Marks a slot: `state` is `good`, `bad` or `active`; `slot_identifier` is `booted`,
    /// `other` or a slot name (`rootfs.1`). Returns `(slot name, message)`.
    fn mark(&self, state: &str, slot_identifier: &str) -> zbus::Result<(String, String)>;

    /// Every slot of the system configuration with its status dictionary.
    fn get_slot_status(&self) -> zbus::Result<Vec<(String, HashMap<String, OwnedValue>)>>;

    /// The name of the slot the bootloader will boot next (asks the bootloader).
    fn get_primary(&self) -> zbus::Result<String>;

    /// `idle` or `installing`.
    #[zbus(property)]
    fn operation(&self) -> zbus::Result<String>;

    /// The message of the last failed installation; empty after a successful one.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    /// `(percentage, message, nesting depth)` of the current or last installation.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<(i32, String, i32)>;

    /// The system's `compatible` from `system.conf`.
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<String>;

    /// The system's variant (empty without one).
    #[zbus(property)]
    fn variant(&self) -> zbus::Result<String>;

    /// What RAUC detected as booted: the booted slot's `bootname` (from `rauc.slot=` on the
    /// kernel command line, `--override-boot-slot`, ...) or the root device.
    #[zbus(property)]
    fn boot_slot(&self) -> zbus::Result<String>;

    /// Emitted when an installation ends: 0 on success, non-zero on failure (the reason is in
    /// `LastError` by then).
    #[zbus(signal)]
    fn completed(&self, result: i32) -> zbus::Result<()>;
}
