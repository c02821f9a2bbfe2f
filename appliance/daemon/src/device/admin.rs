//! The box's one administrator: the password set when the box is claimed, the sessions signed in
//! with it, and the brake on guessing. No IO and no clock of its own (the caller passes `now`),
//! so every rule here is unit-tested.
//!
//! Passwords are kept as argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), the
//! format a provisioning file may also carry. Session tokens are 256 random bits handed to the
//! client once; only their SHA-256 is kept, so a memory dump does not yield a usable token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// Shortest admin password accepted, in characters (NIST SP 800-63B asks for at least 8; the box
/// faces a LAN with cameras on it, so a little more).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest, in bytes: argon2 takes any length, but a request body should not make it work on
/// megabytes.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// How long a session token is valid after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; signing in beyond this ends the oldest one.
pub const MAX_SESSIONS: usize = 32;

/// Consecutive failed sign-ins allowed before each further attempt waits.
const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts once the brake is on.
const MAX_LOCKOUT: Duration = Duration::from_secs(300);

/// Upper bounds on the cost parameters of a provisioned hash: the hash comes from an untrusted
/// file, and a huge `m` would make every sign-in allocate gigabytes.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_LANES: u32 = 8;

/// Whether `password` is acceptable as a new admin password; the error says why not.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters (it has {chars})"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password
        .chars()
        .all(|c| c == password.chars().next().unwrap_or(c))
    {
        return Err("the password must not be one character repeated".into());
    }
    Ok(())
}

/// argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1: OWASP's recommended minimum),
/// as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password of bounded length")
        .to_string()
}

/// Whether `password` matches `phc`. A hash that does not parse matches nothing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a hash from outside (a provisioning file): argon2id, version 19, cost parameters within
/// bounds, a salt and an output. The error names the problem.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash: {e}"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!(
            "the hash is {}, only argon2id is accepted",
            hash.algorithm
        ));
    }
    if hash.version != Some(Version::V0x13 as u32) {
        return Err("the hash must be argon2 version 19 (v=19)".into());
    }
    let params = Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_ITERATIONS {
        return Err(format!(
            "argon2 cost too high (m={}, t={}; at most m={MAX_MEMORY_KIB}, t={MAX_ITERATIONS})",
            params.m_cost(),
            params.t_cost()
        ));
    }
    if params.p_cost() > MAX_LANES {
        return Err(format!("argon2 p={} is above {MAX_LANES}", params.p_cost()));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("the hash lacks its salt or output".into());
    }
    Ok(())
}

/// Signed-in sessions, by the SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Sessions {
    expiries: HashMap<[u8; 32], Instant>,
}

impl Sessions {
    /// A new session valid for [`SESSION_TTL`]; returns its token (64 hex digits).
    pub fn issue(&mut self, now: Instant) -> String {
        self.expiries.retain(|_, expiry| *expiry > now);
        if self.expiries.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .expiries
                .iter()
                .min_by_key(|(_, expiry)| **expiry)
                .map(|(digest, _)| *digest)
        {
            self.expiries.remove(&oldest);
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.expiries.insert(digest(&token), now + SESSION_TTL);
        token
    }

    /// Whether `token` names a session that has not expired.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.expiries
            .get(&digest(token))
            .is_some_and(|expiry| *expiry > now)
    }

    /// Ends one session (sign-out).
    pub fn revoke(&mut self, token: &str) {
        self.expiries.remove(&digest(token));
    }

    /// Ends every session (the password changed).
    pub fn revoke_all(&mut self) {
        self.expiries.clear();
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Slows password guessing: after [`FREE_FAILURES`] consecutive failures each attempt must wait,
/// 1 s doubling per further failure up to [`MAX_LOCKOUT`]. One brake for the whole box: there is
/// one account, and per-address limits would let a LAN attacker rotate addresses.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: u32,
    locked_until: Option<Instant>,
}

impl LoginThrottle {
    /// `Err(wait)` while attempts are refused.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.locked_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.failures > FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES - 1).min(16);
            let wait = Duration::from_secs(1u64 << doublings).min(MAX_LOCKOUT);
            self.locked_until = Some(now + wait);
        }
    }

    pub fn succeeded(&mut self) {
        *self = LoginThrottle::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_passwords_need_length_and_variety() {
        assert!(
            check_new_password("short")
                .unwrap_err()
                .contains("at least 10")
        );
        assert!(
            check_new_password("aaaaaaaaaaaa")
                .unwrap_err()
                .contains("repeated")
        );
        assert!(
            check_new_password(&"ab".repeat(200))
                .unwrap_err()
                .contains("at most")
        );
        assert!(check_new_password("correct horse battery").is_ok());
        // Characters, not bytes: ten CJK characters are ten.
        assert!(check_new_password("监控平台管理员密码好长").is_ok());
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash_password("correct horse battery");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(check_password_hash(&phc).is_ok());
        assert!(verify_password(&phc, "correct horse battery"));
        assert!(!verify_password(&phc, "correct horse batterY"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        // Two hashes of one password differ (random salt).
        assert_ne!(phc, hash_password("correct horse battery"));
    }

    #[test]
    fn provisioned_hashes_are_checked() {
        let good = hash_password("correct horse battery");
        assert!(check_password_hash("").is_err());
        assert!(check_password_hash("$2b$12$abcdefghijklmnopqrstuv").is_err());
        let argon2i = good.replacen("argon2id", "argon2i", 1);
        assert!(
            check_password_hash(&argon2i)
                .unwrap_err()
                .contains("only argon2id")
        );
        let huge = good.replacen("m=19456", "m=4194304", 1);
        assert!(
            check_password_hash(&huge)
                .unwrap_err()
                .contains("cost too high")
        );
        let no_output = good.rsplit_once('$').unwrap().0;
        assert!(check_password_hash(no_output).is_err());
    }

    #[test]
    fn sessions_expire_and_are_revoked() {
        let start = Instant::now();
        let mut sessions = Sessions::default();
        let token = sessions.issue(start);
        assert_eq!(token.len(), 64);
        assert!(sessions.is_valid(&token, start));
        assert!(!sessions.is_valid("0".repeat(64).as_str(), start));
        assert!(!sessions.is_valid(&token, start + SESSION_TTL));
        let other = sessions.issue(start);
        sessions.revoke(&other);
        assert!(!sessions.is_valid(&other, start));
        assert!(sessions.is_valid(&token, start));
        sessions.revoke_all();
        assert!(!sessions.is_valid(&token, start));
    }

    #[test]
    fn the_oldest_session_makes_room() {
        let start = Instant::now();
        let mut sessions = Sessions::default();
        let first = sessions.issue(start);
        let later: Vec<String> = (1..=MAX_SESSIONS as u64)
            .map(|n| sessions.issue(start + Duration::from_secs(n)))
            .collect();
        assert!(!sessions.is_valid(&first, start));
        assert!(later.iter().all(|t| sessions.is_valid(t, start)));
    }

    #[test]
    fn guessing_is_slowed_then_forgiven() {
        let now = Instant::now();
        let mut throttle = LoginThrottle::default();
        for _ in 0..FREE_FAILURES {
            assert!(throttle.check(now).is_ok());
            throttle.failed(now);
        }
        assert!(throttle.check(now).is_ok());
        throttle.failed(now);
        assert_eq!(throttle.check(now), Err(Duration::from_secs(1)));
        throttle.failed(now);
        assert_eq!(throttle.check(now), Err(Duration::from_secs(2)));
        assert!(throttle.check(now + Duration::from_secs(2)).is_ok());
        for _ in 0..40 {
            throttle.failed(now);
        }
        assert_eq!(throttle.check(now), Err(MAX_LOCKOUT));
        throttle.succeeded();
        assert!(throttle.check(now).is_ok());
    }
}
