//! Exponential backoff with full jitter: after the n-th consecutive failure wait a uniformly
//! random time in `[0, min(cap, base × 2ⁿ⁻¹)]`. The jitter spreads the reconnects of a fleet of
//! boxes that lost the same broker at the same moment, instead of having them return in step.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Delays between attempts; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: StdRng,
}

impl Backoff {
    /// The uplink's: from up to 1 s after the first failure to up to 60 s.
    pub const BASE: Duration = Duration::from_secs(1);
    pub const CAP: Duration = Duration::from_secs(60);

    /// A backoff seeded from the OS, as production wants.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff::with_rng(base, cap, StdRng::from_entropy())
    }

    /// The same delays for the same seed: for tests.
    pub fn seeded(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff::with_rng(base, cap, StdRng::seed_from_u64(seed))
    }

    fn with_rng(base: Duration, cap: Duration, rng: StdRng) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
            rng,
        }
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // 2^31 × base is far past any cap: stop doubling there rather than overflow.
        let ceiling = self
            .base
            .saturating_mul(1 << self.failures.min(31))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.gen_range(0..=nanos))
    }

    /// After a success: the next failure waits at most `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Backoff::BASE;
    const CAP: Duration = Backoff::CAP;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_up_to_the_cap() {
        let mut backoff = Backoff::seeded(BASE, CAP, 7);
        for n in 0..40u32 {
            let ceiling = BASE.saturating_mul(2u32.saturating_pow(n)).min(CAP);
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "attempt {n}: {delay:?} > {ceiling:?}");
        }
        assert_eq!(backoff.failures(), 40);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        // Many boxes at the cap: their delays cover [0, cap], not a band near it.
        let delays: Vec<Duration> = (0..200)
            .map(|seed| {
                let mut backoff = Backoff::seeded(BASE, CAP, seed);
                (0..10).map(|_| backoff.next_delay()).last().unwrap()
            })
            .collect();
        let low = delays.iter().filter(|d| **d < CAP / 4).count();
        let high = delays.iter().filter(|d| **d > CAP * 3 / 4).count();
        assert!(low > 20 && high > 20, "low {low}, high {high}");
        assert!(delays.iter().all(|d| *d <= CAP));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut backoff = Backoff::seeded(BASE, CAP, seed);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn reset_starts_over_from_the_base() {
        let mut backoff = Backoff::seeded(BASE, CAP, 1);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.next_delay() <= BASE);
        assert!(backoff.next_delay() <= BASE * 2);
    }
}
