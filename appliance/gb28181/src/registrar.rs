//! The registrar: decides what to answer a REGISTER, without sockets.
//!
//! GB28181 devices register with digest authentication (realm = the SIP domain). The decision
//! table, in order: a source that failed too often recently gets 403 without any hashing; no
//! `Expires` → 400; no `Authorization` → 401 with a fresh nonce; a nonce we did not issue → 401; an
//! expired nonce → 401 `stale=true` (the device retries without asking its user); unknown device
//! with no default password → 403; wrong response → 403; a replayed nonce count → 401; `Expires: 0`
//! → 200 and unregister; an expiry below the minimum → 423 with `Min-Expires`; otherwise 200 with
//! the GB `Date` header and the granted expiry.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use appliance_sip::digest::{
    Algorithm, Challenge, Credentials, NonceCounts, NonceIssuer, NonceState,
};
use appliance_sip::message::Message;

/// How long an issued nonce stays fresh.
const NONCE_TTL_SECS: u64 = 300;
/// Failed authentications one source may make per window before it is refused outright.
const MAX_FAILURES_PER_WINDOW: usize = 10;
const FAILURE_WINDOW_MS: i64 = 60_000;
/// Sources whose failures are remembered (oldest forgotten first).
const MAX_TRACKED_SOURCES: usize = 4096;
/// Nonces whose counts are remembered for replay detection.
const MAX_TRACKED_NONCES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// The SIP domain (10 digits); the digest realm.
    pub realm: String,
    /// Password for devices without one of their own; `None`: such devices are refused.
    pub default_password: Option<String>,
    pub device_passwords: HashMap<String, String>,
    /// Algorithm offered in challenges (devices may answer with either).
    pub algorithm: Algorithm,
    pub min_expires: u32,
    pub max_expires: u32,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// 400 with a reason.
    BadRequest(String),
    /// 403 with a reason (logged, not sent in detail).
    Forbidden(&'static str),
    /// 423 Interval Too Brief.
    TooBrief { min_expires: u32 },
    /// 200: the device is registered until `expires` seconds from now.
    Registered { device_id: String, expires: u32 },
    /// 200 to `Expires: 0`.
    Unregistered { device_id: String },
}

pub struct Registrar {
    config: RegistrarConfig,
    nonces: NonceIssuer,
    counts: NonceCounts,
    failures: HashMap<IpAddr, VecDeque<i64>>,
    failure_order: VecDeque<IpAddr>,
}

impl Registrar {
    /// `secret` keys the nonces; generate it per boot (nonces do not need to survive restarts:
    /// a device with an old nonce is simply challenged again).
    pub fn new(config: RegistrarConfig, secret: [u8; 32]) -> Registrar {
        Registrar {
            config,
            nonces: NonceIssuer::new(secret, NONCE_TTL_SECS),
            counts: NonceCounts::new(MAX_TRACKED_NONCES, NONCE_TTL_SECS),
            failures: HashMap::new(),
            failure_order: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    fn challenge(&self, now_ms: i64, stale: bool) -> Decision {
        let challenge = Challenge {
            realm: self.config.realm.clone(),
            nonce: self.nonces.issue(&self.config.realm, secs(now_ms)),
            algorithm: self.config.algorithm,
            qop_auth: true,
            stale,
            opaque: None,
        };
        Decision::Challenge(challenge.to_header_value())
    }

    fn recent_failures(&mut self, source: IpAddr, now_ms: i64) -> usize {
        let Some(times) = self.failures.get_mut(&source) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now_ms - t > FAILURE_WINDOW_MS)
        {
            times.pop_front();
        }
        times.len()
    }

    fn fail(&mut self, source: IpAddr, now_ms: i64, reason: &'static str) -> Decision {
        if !self.failures.contains_key(&source) {
            if self.failure_order.len() == MAX_TRACKED_SOURCES
                && let Some(oldest) = self.failure_order.pop_front()
            {
                self.failures.remove(&oldest);
            }
            self.failure_order.push_back(source);
        }
        self.failures.entry(source).or_default().push_back(now_ms);
        Decision::Forbidden(reason)
    }

    /// Decides the answer to one REGISTER from `source` (its IP address, for rate limiting).
    pub fn decide(&mut self, request: &Message, source: IpAddr, now_ms: i64) -> Decision {
        if self.recent_failures(source, now_ms) >= MAX_FAILURES_PER_WINDOW {
            return Decision::Forbidden("too many failed authentications from this address");
        }
        let Some(device_id) = request.from_user().filter(|id| !id.is_empty()) else {
            return Decision::BadRequest("From has no user part (the device id)".into());
        };
        let expires = match request.expires() {
            None => return Decision::BadRequest("missing Expires".into()),
            Some(Err(e)) => return Decision::BadRequest(format!("bad Expires: {e}")),
            Some(Ok(expires)) => expires,
        };
        let Some(authorization) = request.header("Authorization") else {
            return self.challenge(now_ms, false);
        };
        let credentials = match Credentials::parse(authorization) {
            Ok(credentials) => credentials,
            Err(e) => return Decision::BadRequest(format!("bad Authorization: {e}")),
        };
        if credentials.realm != self.config.realm {
            return self.challenge(now_ms, false);
        }
        match self
            .nonces
            .check(&credentials.nonce, &self.config.realm, secs(now_ms))
        {
            NonceState::Fresh => {}
            NonceState::Stale => return self.challenge(now_ms, true),
            NonceState::Invalid => return self.challenge(now_ms, false),
        }
        let password = self
            .config
            .device_passwords
            .get(&device_id)
            .or(self.config.default_password.as_ref())
            .cloned();
        let Some(password) = password else {
            return self.fail(source, now_ms, "unknown device and no default password");
        };
        // The digest user is normally the device id; a device that authenticates as another
        // device's name must not borrow that device's password.
        if credentials.username != device_id {
            return self.fail(source, now_ms, "digest username differs from the From user");
        }
        if !credentials.verify("REGISTER", &password) {
            return self.fail(source, now_ms, "wrong password");
        }
        if !self
            .counts
            .accept(&credentials.nonce, credentials.nc.as_deref(), secs(now_ms))
        {
            return self.challenge(now_ms, false);
        }
        if expires == 0 {
            return Decision::Unregistered { device_id };
        }
        if expires < self.config.min_expires {
            return Decision::TooBrief {
                min_expires: self.config.min_expires,
            };
        }
        Decision::Registered {
            device_id,
            expires: expires.min(self.config.max_expires),
        }
    }
}

fn secs(now_ms: i64) -> u64 {
    u64::try_from(now_ms / 1000).unwrap_or(0)
}
