//! GB28181 SSRCs and their allocation.
//!
//! A GB28181 SSRC is written as ten decimal digits (the `y=` line of the SDP and the `Subject`
//! header of the INVITE): the first digit is 0 for live video and 1 for playback or download, the
//! next five are digits 4 to 8 of the platform's 10-digit SIP domain, and the last four are a
//! serial from 0001 to 9999. The media server matches incoming RTP to a session by this SSRC.
//!
//! [`SsrcAllocator`] hands the serials out. Two failure modes of existing platforms shape it:
//!
//! * Leaks: an SSRC that is never released stays unusable forever. The allocator therefore counts
//!   what is in use ([`SsrcAllocator::in_use`]) so the session layer can prove it releases on every
//!   exit path, and [`SsrcAllocator::release`] reports whether the SSRC was actually held, so a
//!   double release (BYE after a timeout) is visible instead of silently freeing someone else's.
//! * Crossed streams: RTP from a session that just ended can still be in flight. If its SSRC were
//!   handed to the next session at once, those late packets would land in the new stream. The
//!   allocator therefore goes round-robin: it hands out the lowest free serial *after* the last one
//!   handed out, so a released serial comes back only after the others have been used.
//!
//! Live and playback SSRCs share one pool of serials (as WVP does): a serial then identifies one
//! session whatever its kind, which keeps logs and media-server stream ids unambiguous, and 9999
//! concurrent streams is far beyond what an edge appliance carries.

use std::fmt;
use std::str::FromStr;

/// Highest serial; serial 0 is not used by the GB convention.
const MAX_SERIAL: u16 = 9999;
/// The kind digit is the highest of the ten digits.
const KIND_FACTOR: u32 = 1_000_000_000;
/// The domain digits sit above the four serial digits.
const DOMAIN_FACTOR: u32 = 10_000;

/// A 10-digit GB28181 SSRC.
///
/// Any `u32` is representable (`u32::MAX` has ten digits), which matters because devices may answer
/// with an SSRC of their own that does not follow the convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(u32);

impl Ssrc {
    /// The numeric value, as carried in the RTP header.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl From<u32> for Ssrc {
    /// The SSRC of an RTP packet.
    fn from(value: u32) -> Self {
        Ssrc(value)
    }
}

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

impl FromStr for Ssrc {
    type Err = SsrcError;

    /// Exactly ten ASCII digits whose value fits a `u32`. Shorter forms are refused rather than
    /// zero-padded: a GB SSRC always has ten digits, and guessing would hide a broken peer.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = |reason| SsrcError::Malformed {
            text: text.chars().take(32).collect(),
            reason,
        };
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("not exactly 10 digits"));
        }
        let value: u64 = text.parse().map_err(|_| malformed("not a number"))?;
        u32::try_from(value)
            .map(Ssrc)
            .map_err(|_| malformed("larger than a 32-bit SSRC"))
    }
}

/// What a stream is for; it decides the first SSRC digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Real-time video (`s=Play`): first digit 0.
    Live,
    /// Recorded video (`s=Playback` or `s=Download`): first digit 1.
    Playback,
}

impl StreamKind {
    fn digit(self) -> u32 {
        match self {
            StreamKind::Live => 0,
            StreamKind::Playback => 1,
        }
    }
}

/// Why an SSRC could not be parsed, allocated or restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrcError {
    #[error("SIP domain `{0}` is not 10 digits")]
    InvalidDomain(String),
    #[error("SSRC `{text}`: {reason}")]
    Malformed { text: String, reason: &'static str },
    #[error("all {MAX_SERIAL} SSRC serials are in use")]
    Exhausted,
    #[error("SSRC {0} was not allocated from this domain's pool")]
    Foreign(Ssrc),
    #[error("SSRC {0} (or another SSRC with its serial) is already in use")]
    AlreadyInUse(Ssrc),
}

/// Hands out SSRCs for one SIP domain and takes them back.
#[derive(Debug, Clone)]
pub struct SsrcAllocator {
    /// Domain digits 4..8 as a number, already shifted above the serial.
    domain_part: u32,
    /// Indexed by serial (index 0 unused): the kind the serial was handed out for, if in use.
    slots: Vec<Option<StreamKind>>,
    /// Number of `Some` entries in `slots`, kept so `in_use` is O(1).
    in_use: usize,
    /// The serial handed out last (0 before the first); the search for the next one starts after it.
    last: u16,
}

impl SsrcAllocator {
    /// An allocator for the 10-digit SIP `domain` (the first 10 digits of the platform id).
    pub fn new(domain: &str) -> Result<SsrcAllocator, SsrcError> {
        let digits = domain.as_bytes();
        if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(SsrcError::InvalidDomain(domain.chars().take(32).collect()));
        }
        // Digits 4 to 8 (1-based), i.e. bytes 3..8: five ASCII digits, so at most 99999.
        let domain_digits = digits
            .get(3..8)
            .ok_or_else(|| SsrcError::InvalidDomain(domain.to_owned()))?;
        let part = domain_digits
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        Ok(SsrcAllocator {
            domain_part: part * DOMAIN_FACTOR,
            slots: vec![None; usize::from(MAX_SERIAL) + 1],
            in_use: 0,
            last: 0,
        })
    }

    /// A fresh SSRC of `kind`: the lowest free serial after the last one handed out, wrapping
    /// around, so a just-released SSRC is not reused while others are free.
    pub fn allocate(&mut self, kind: StreamKind) -> Result<Ssrc, SsrcError> {
        let after_last = (self.last + 1)..=MAX_SERIAL;
        let wrapped = 1..=self.last;
        let serial = after_last
            .chain(wrapped)
            .find(|&serial| matches!(self.slots.get(usize::from(serial)), Some(None)))
            .ok_or(SsrcError::Exhausted)?;
        self.occupy(serial, kind);
        self.last = serial;
        Ok(self.compose(kind, serial))
    }

    /// Gives `ssrc` back. Returns false, changing nothing, if it was not allocated (already
    /// released, never handed out, or from another domain or kind).
    pub fn release(&mut self, ssrc: Ssrc) -> bool {
        let Some((kind, serial)) = self.decompose(ssrc) else {
            return false;
        };
        match self.slots.get_mut(usize::from(serial)) {
            Some(slot) if *slot == Some(kind) => {
                *slot = None;
                self.in_use -= 1;
                true
            }
            _ => false,
        }
    }

    /// Marks `ssrc` as in use again after a restart, for a session that was persisted.
    ///
    /// The round-robin position is not persisted: after a restart the allocator cannot know
    /// which SSRCs were released just before, and only the restored ones are known to be busy.
    pub fn restore(&mut self, ssrc: Ssrc) -> Result<(), SsrcError> {
        let (kind, serial) = self.decompose(ssrc).ok_or(SsrcError::Foreign(ssrc))?;
        match self.slots.get(usize::from(serial)) {
            Some(None) => {
                self.occupy(serial, kind);
                Ok(())
            }
            _ => Err(SsrcError::AlreadyInUse(ssrc)),
        }
    }

    /// How many SSRCs are allocated; 0 once every session has ended, if none leaked.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether `ssrc` is currently allocated (for its own kind).
    pub fn is_allocated(&self, ssrc: Ssrc) -> bool {
        self.decompose(ssrc)
            .is_some_and(|(kind, serial)| self.slots.get(usize::from(serial)) == Some(&Some(kind)))
    }

    /// Callers have checked that the slot is free.
    fn occupy(&mut self, serial: u16, kind: StreamKind) {
        if let Some(slot) = self.slots.get_mut(usize::from(serial)) {
            *slot = Some(kind);
            self.in_use += 1;
        }
    }

    fn compose(&self, kind: StreamKind, serial: u16) -> Ssrc {
        // At most 1_999_999_999: fits a u32.
        Ssrc(kind.digit() * KIND_FACTOR + self.domain_part + u32::from(serial))
    }

    /// The kind and serial of an SSRC of this domain's convention, or `None` for any other.
    fn decompose(&self, ssrc: Ssrc) -> Option<(StreamKind, u16)> {
        let kind = match ssrc.0 / KIND_FACTOR {
            0 => StreamKind::Live,
            1 => StreamKind::Playback,
            _ => return None,
        };
        let rest = ssrc.0 % KIND_FACTOR;
        if rest - rest % DOMAIN_FACTOR != self.domain_part {
            return None;
        }
        let serial = u16::try_from(rest % DOMAIN_FACTOR).ok()?;
        (1..=MAX_SERIAL).contains(&serial).then_some((kind, serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    const DOMAIN: &str = "3402000000";

    fn ssrc(text: &str) -> Ssrc {
        text.parse().expect("valid SSRC literal")
    }

    #[test]
    fn display_pads_to_ten_digits() {
        assert_eq!(Ssrc::from(1).to_string(), "0000000001");
        assert_eq!(Ssrc::from(u32::MAX).to_string(), "4294967295");
        assert_eq!(ssrc("0200000001").value(), 200_000_001);
    }

    #[test]
    fn from_str_takes_exactly_ten_digits_that_fit() {
        assert_eq!(ssrc("0000000000").value(), 0);
        assert_eq!(ssrc("4294967295").value(), u32::MAX);
        // A device's own SSRC outside the GB convention still parses.
        assert_eq!(ssrc("3735928559").value(), 0xDEAD_BEEF);
        for bad in [
            "",
            "200000001",
            "02000000011",
            "4294967296",
            "9999999999",
            "+200000001",
            "02000 0001",
            "０２００００００01",
            "abcdefghij",
        ] {
            assert!(
                matches!(bad.parse::<Ssrc>(), Err(SsrcError::Malformed { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn new_requires_a_ten_digit_domain() {
        for bad in [
            "",
            "340200000",
            "34020000001",
            "34020a0000",
            "３４０２０００００",
        ] {
            assert_eq!(
                SsrcAllocator::new(bad).err(),
                Some(SsrcError::InvalidDomain(bad.to_owned()))
            );
        }
    }

    #[test]
    fn format_follows_the_gb_convention() -> Result<(), SsrcError> {
        // Domain "3402000000": 1-based digits 4..8 are "2","0","0","0","0" = "20000".
        // Live:     "0" + "20000" + "0001" = "0200000001".
        // Playback: "1" + "20000" + "0002" = "1200000002" (serials are shared between kinds).
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        assert_eq!(pool.allocate(StreamKind::Live)?.to_string(), "0200000001");
        assert_eq!(
            pool.allocate(StreamKind::Playback)?.to_string(),
            "1200000002"
        );

        // Domain "4401061234": digits 4..8 are "1","0","6","1","2" = "10612" → live "0106120001".
        let mut other = SsrcAllocator::new("4401061234")?;
        assert_eq!(other.allocate(StreamKind::Live)?.to_string(), "0106120001");
        Ok(())
    }

    #[test]
    fn exhausted_after_9999_until_one_is_released() -> Result<(), SsrcError> {
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        let mut all = BTreeSet::new();
        for i in 0..9999 {
            let kind = if i % 2 == 0 {
                StreamKind::Live
            } else {
                StreamKind::Playback
            };
            assert!(all.insert(pool.allocate(kind)?));
        }
        assert_eq!(pool.in_use(), 9999);
        assert_eq!(pool.allocate(StreamKind::Live), Err(SsrcError::Exhausted));
        assert_eq!(
            pool.allocate(StreamKind::Playback),
            Err(SsrcError::Exhausted)
        );
        // Serial 0005 was handed out as live (odd serial ↔ even index).
        assert!(pool.release(ssrc("0200000005")));
        assert_eq!(pool.allocate(StreamKind::Playback)?, ssrc("1200000005"));
        assert_eq!(pool.allocate(StreamKind::Live), Err(SsrcError::Exhausted));
        Ok(())
    }

    #[test]
    fn release_then_reuse_goes_round_robin() -> Result<(), SsrcError> {
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        let first = pool.allocate(StreamKind::Live)?;
        let second = pool.allocate(StreamKind::Live)?;
        assert!(pool.release(first));
        // The just-released serial 0001 is skipped while later ones are free.
        assert_eq!(pool.allocate(StreamKind::Live)?, ssrc("0200000003"));
        assert!(!pool.release(first), "double release must report false");
        assert!(pool.release(second));
        assert_eq!(pool.in_use(), 1);

        // Walk to the end of the range: after 9999 the search wraps to the lowest free serial.
        for _ in 4..=9999 {
            pool.allocate(StreamKind::Live)?;
        }
        assert_eq!(pool.allocate(StreamKind::Playback)?, ssrc("1200000001"));
        assert_eq!(pool.allocate(StreamKind::Playback)?, ssrc("1200000002"));
        assert_eq!(
            pool.allocate(StreamKind::Playback),
            Err(SsrcError::Exhausted)
        );
        Ok(())
    }

    #[test]
    fn release_refuses_what_was_not_handed_out() -> Result<(), SsrcError> {
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        let live = pool.allocate(StreamKind::Live)?;
        // Same serial, other kind; other domain; serial 0; a device's own SSRC.
        for stranger in ["1200000001", "0210000001", "0200000000", "3735928559"] {
            assert!(!pool.release(ssrc(stranger)), "{stranger}");
            assert!(!pool.is_allocated(ssrc(stranger)), "{stranger}");
        }
        assert_eq!(pool.in_use(), 1);
        assert!(pool.is_allocated(live));
        assert!(pool.release(live));
        assert!(!pool.is_allocated(live));
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }

    #[test]
    fn restore_marks_persisted_sessions_busy() -> Result<(), SsrcError> {
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        pool.restore(ssrc("0200000001"))?;
        pool.restore(ssrc("1200000003"))?;
        assert_eq!(pool.in_use(), 2);
        assert!(pool.is_allocated(ssrc("1200000003")));
        assert_eq!(
            pool.restore(ssrc("0200000001")),
            Err(SsrcError::AlreadyInUse(ssrc("0200000001")))
        );
        // The serial is taken whatever the kind.
        assert_eq!(
            pool.restore(ssrc("1200000001")),
            Err(SsrcError::AlreadyInUse(ssrc("1200000001")))
        );
        for foreign in ["0210000001", "2200000001", "0200000000", "4294967295"] {
            assert_eq!(
                pool.restore(ssrc(foreign)),
                Err(SsrcError::Foreign(ssrc(foreign)))
            );
        }
        // New allocations skip the restored serials.
        assert_eq!(pool.allocate(StreamKind::Live)?, ssrc("0200000002"));
        assert_eq!(pool.allocate(StreamKind::Live)?, ssrc("0200000004"));
        assert!(pool.release(ssrc("1200000003")));
        assert_eq!(pool.in_use(), 3);
        Ok(())
    }

    /// The allocator's expected choice, computed independently: the lowest free serial after
    /// `last`, else the lowest free one from the start.
    fn expected_serial(used: &BTreeMap<u16, Ssrc>, last: u16) -> Option<u16> {
        ((last + 1)..=MAX_SERIAL)
            .chain(1..=last)
            .find(|s| !used.contains_key(s))
    }

    #[test]
    fn random_sessions_never_share_or_leak_ssrcs() -> Result<(), SsrcError> {
        for seed in 0..2u64 {
            run_session_model(seed, 30_000)?;
        }
        Ok(())
    }

    /// Models media sessions the way the session layer drives the allocator: INVITEs that
    /// succeed or fail, BYEs, timeouts, a BYE arriving after a timeout, and daemon restarts that
    /// restore the persisted sessions. The mix alternates between filling (start-heavy, until the
    /// pool is exhausted) and draining (stop-heavy, until few sessions are left) so both ends of
    /// the pool are exercised.
    fn run_session_model(seed: u64, steps: usize) -> Result<(), SsrcError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pool = SsrcAllocator::new(DOMAIN)?;
        // The live modelled sessions, and the same keyed by serial (the model of the pool).
        let mut live: Vec<Ssrc> = Vec::new();
        let mut by_serial: BTreeMap<u16, Ssrc> = BTreeMap::new();
        // SSRCs of ended sessions, for late BYEs.
        let mut ended: Vec<Ssrc> = Vec::new();
        // The model of the round-robin position.
        let mut last = 0u16;
        let serial_of = |s: Ssrc| u16::try_from(s.value() % DOMAIN_FACTOR).unwrap_or(0);
        let mut filling = true;
        let mut exhaustions = 0;

        for step in 0..steps {
            let start_weight = if filling { 90 } else { 20 };
            let roll = rng.gen_range(0..100);
            if roll < start_weight {
                let kind = if rng.gen_bool(0.5) {
                    StreamKind::Live
                } else {
                    StreamKind::Playback
                };
                match pool.allocate(kind) {
                    Ok(s) => {
                        let serial = serial_of(s);
                        assert_eq!(
                            Some(serial),
                            expected_serial(&by_serial, last),
                            "seed {seed} step {step}"
                        );
                        assert!(
                            !by_serial.contains_key(&serial),
                            "seed {seed} step {step}: {s} handed to two live sessions"
                        );
                        assert_eq!(s.value() / KIND_FACTOR, kind.digit());
                        last = serial;
                        if rng.gen_bool(0.15) {
                            // The INVITE failed (4xx, transport error): release on the error path.
                            assert!(pool.release(s));
                            ended.push(s);
                        } else {
                            live.push(s);
                            by_serial.insert(serial, s);
                        }
                    }
                    Err(SsrcError::Exhausted) => {
                        assert_eq!(
                            live.len(),
                            usize::from(MAX_SERIAL),
                            "seed {seed} step {step}"
                        );
                        exhaustions += 1;
                        filling = false;
                    }
                    Err(other) => return Err(other),
                }
            } else if roll < 97 {
                // BYE, media timeout or stream gone: each releases exactly once.
                if !live.is_empty() {
                    let s = live.swap_remove(rng.gen_range(0..live.len()));
                    by_serial.remove(&serial_of(s));
                    assert!(pool.release(s), "seed {seed} step {step}: {s} not held");
                    assert!(!pool.is_allocated(s));
                    ended.push(s);
                    if live.len() < 50 {
                        filling = true;
                    }
                }
            } else if roll < 99 {
                // A BYE arriving after a timeout already released the SSRC must free nothing,
                // unless the SSRC has since gone to a new session (then it is that one's BYE).
                if !ended.is_empty() {
                    let s = ended[rng.gen_range(0..ended.len())];
                    if by_serial.get(&serial_of(s)) != Some(&s) {
                        assert!(!pool.release(s), "seed {seed} step {step}: stale {s} freed");
                    }
                }
            } else {
                // Daemon restart: a fresh allocator restores the persisted sessions.
                pool = SsrcAllocator::new(DOMAIN)?;
                for &s in &live {
                    pool.restore(s)?;
                }
                last = 0;
            }
            assert_eq!(pool.in_use(), live.len(), "seed {seed} step {step}");
        }

        assert!(
            exhaustions > 0,
            "seed {seed}: the model never filled the pool"
        );
        for s in live.drain(..) {
            assert!(pool.release(s));
        }
        assert_eq!(pool.in_use(), 0);
        Ok(())
    }
}
