use std::fmt;
use std::str::FromStr;

use utoipa::ToSchema;

/// A 64-bit event id that sorts by event start time.
///
/// Layout: the top 48 bits are the event's start time in milliseconds since the Unix epoch, the
/// low 16 bits a sequence that makes ids unique within one millisecond. The store allocates the
/// sequence, so ids are unique per box; the cloud identifies an event by (device id, event id).
/// Written as 16 lower-case hex digits, which sort in the same order as the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, example = "018bd2f1a2b30000")]
pub struct EventId(u64);

/// Bits of an [`EventId`] that hold the per-millisecond sequence.
pub const SEQUENCE_BITS: u32 = 16;
/// Largest start time an id can hold (ms since the epoch, year ~10889).
pub const MAX_ID_MILLIS: u64 = (1 << (64 - SEQUENCE_BITS)) - 1;

impl EventId {
    pub const MIN: EventId = EventId(0);
    pub const MAX: EventId = EventId(u64::MAX);

    /// `millis` is clamped to the representable range; `seq` must fit in 16 bits.
    pub fn from_parts(millis: i64, seq: u16) -> EventId {
        let ms = millis.clamp(0, MAX_ID_MILLIS as i64) as u64;
        EventId(ms << SEQUENCE_BITS | u64::from(seq))
    }

    /// The smallest id whose time is `millis`.
    pub fn first_at(millis: i64) -> EventId {
        EventId::from_parts(millis, 0)
    }

    pub fn millis(self) -> i64 {
        (self.0 >> SEQUENCE_BITS) as i64
    }

    pub fn sequence(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    pub const fn from_u64(raw: u64) -> EventId {
        EventId(raw)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_be_slice(bytes: &[u8]) -> Option<EventId> {
        Some(EventId(u64::from_be_bytes(bytes.try_into().ok()?)))
    }
}

/// Hands out unique ids for one commit: the next free sequence in the event's start millisecond.
/// When a millisecond's 65 536 ids are used up (a flood of alarms with one timestamp), the event
/// moves to the next millisecond. The store's writer and the SQLite baseline of the benchmark
/// both allocate with it, so both hold the same ids.
#[derive(Debug, Default)]
pub struct IdAllocator {
    last_seq: std::collections::HashMap<i64, u16>,
}

impl IdAllocator {
    /// `highest_stored(ms)` returns the highest sequence already stored in millisecond `ms`; it is
    /// asked at most once per millisecond per allocator.
    pub fn allocate<E>(
        &mut self,
        start_ms: i64,
        mut highest_stored: impl FnMut(i64) -> Result<Option<u16>, E>,
    ) -> Result<EventId, E> {
        let mut ms = EventId::first_at(start_ms).millis();
        loop {
            let next = match self.last_seq.get(&ms) {
                Some(&seq) => seq.checked_add(1),
                None => highest_stored(ms)?.map_or(Some(0), |seq| seq.checked_add(1)),
            };
            match next {
                Some(seq) => {
                    self.last_seq.insert(ms, seq);
                    return Ok(EventId::from_parts(ms, seq));
                }
                None => {
                    self.last_seq.insert(ms, u16::MAX);
                    ms += 1;
                }
            }
        }
    }
}

/// Serialises a type as its `Display` string and parses it back with `FromStr`.
macro_rules! serde_as_string {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_string;

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEventIdError(String);

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an event id (16 hex digits)", self.0)
    }
}

impl std::error::Error for ParseEventIdError {}

impl FromStr for EventId {
    type Err = ParseEventIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseEventIdError(s.chars().take(40).collect()));
        }
        u64::from_str_radix(s, 16)
            .map(EventId)
            .map_err(|_| ParseEventIdError(s.to_string()))
    }
}

serde_as_string!(EventId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_order_is_numeric_order() {
        let a = EventId::from_parts(1_000, 65_535);
        let b = EventId::from_parts(1_001, 0);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<EventId>().unwrap(), a);
        assert_eq!(b.millis(), 1_001);
        assert_eq!(a.sequence(), 65_535);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "xyz",
            "018bd2f1a2b3000",
            "018bd2f1a2b30000a",
            "+18bd2f1a2b30000",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocator_continues_after_stored_ids_and_overflows_into_the_next_millisecond() {
        let mut ids = IdAllocator::default();
        let mut asked = Vec::new();
        let mut stored = |ms: i64| -> Result<Option<u16>, ()> {
            asked.push(ms);
            Ok((ms == 7).then_some(u16::MAX - 1))
        };
        assert_eq!(ids.allocate(5, &mut stored), Ok(EventId::from_parts(5, 0)));
        assert_eq!(ids.allocate(5, &mut stored), Ok(EventId::from_parts(5, 1)));
        assert_eq!(
            ids.allocate(7, &mut stored),
            Ok(EventId::from_parts(7, u16::MAX))
        );
        assert_eq!(ids.allocate(7, &mut stored), Ok(EventId::from_parts(8, 0)));
        assert_eq!(asked, [5, 7, 8], "each millisecond looked up once");
    }

    #[test]
    fn clamps_times_outside_the_range() {
        assert_eq!(EventId::from_parts(-5, 1).millis(), 0);
        assert_eq!(
            EventId::from_parts(i64::MAX, 0).millis(),
            MAX_ID_MILLIS as i64
        );
    }
}
