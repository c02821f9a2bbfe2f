//! Quantities written the way people write them: `64 MiB`, `30d`.

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Units a [`ByteSize`] may be written in besides plain bytes, largest first
/// so that [`Display`](fmt::Display) picks the largest one that is exact.
const UNITS: [(&str, u64); 8] = [
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
];

/// An amount of bytes.
///
/// In the configuration it is either an integer (bytes) or a string of an
/// integer and a unit, with or without a space: `"100 B"`, `"512 KiB"`,
/// `"64MiB"`, `"8 GiB"`, `"1 TiB"`. `KiB`, `MiB`, `GiB`, `TiB` are powers of
/// 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000. Units are matched
/// case-insensitively.
///
/// It displays (and serialises) in the largest unit that represents it
/// exactly, e.g. `64 MiB`, `1 GB`, `1536 B`, so the text parses back to the
/// same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n << 30)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = (&text[..digits], text[digits..].trim_start());
        let invalid = |why: &str| format!("invalid byte size `{text}`: {why}");
        let number: u64 = number
            .parse()
            .map_err(|_| invalid("expected an integer followed by a unit, e.g. `64 MiB`"))?;
        if unit.starts_with('.') {
            return Err(invalid(
                "expected a whole number; write `1536 MiB` rather than `1.5 GiB`",
            ));
        }
        let multiplier = if unit.is_empty() || unit.eq_ignore_ascii_case("B") {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|&(_, multiplier)| multiplier)
                .ok_or_else(|| {
                    invalid(&format!(
                        "unknown unit `{unit}`, expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
                    ))
                })?
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| invalid("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match UNITS
            .iter()
            .find(|&&(_, size)| self.0 >= size && self.0.is_multiple_of(size))
        {
            Some(&(unit, size)) => write!(f, "{} {unit}", self.0 / size),
            None => write!(f, "{} B", self.0),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct ByteSizeVisitor;

        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size such as \"64 MiB\"")
            }

            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            // TOML integers are signed.
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(bytes), &self))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                ByteSize::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// A span of time.
///
/// In the configuration it is either a string in [`humantime`] syntax
/// (`"30d"`, `"60s"`, `"1h 30m"`, `"500ms"`) or an integer number of
/// seconds. It displays (and serialises) in humantime syntax, e.g. `30days`,
/// `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30d\" or \"1h 30m\", or a number of seconds")
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(secs))
            }

            // TOML integers are signed.
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map(Duration::from_secs)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(secs), &self))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                humantime::parse_duration(text)
                    .map(Duration)
                    .map_err(|err| E::custom(format!("invalid duration `{text}`: {err}")))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error, I64Deserializer, StrDeserializer};

    fn byte_size(text: &str) -> Result<ByteSize, String> {
        ByteSize::deserialize(StrDeserializer::<Error>::new(text)).map_err(|e| e.to_string())
    }

    fn duration(text: &str) -> Result<Duration, String> {
        Duration::deserialize(StrDeserializer::<Error>::new(text)).map_err(|e| e.to_string())
    }

    #[test]
    fn byte_size_parses_units() {
        assert_eq!(byte_size("100 B"), Ok(ByteSize(100)));
        assert_eq!(byte_size("100"), Ok(ByteSize(100)));
        assert_eq!(byte_size("512 KiB"), Ok(ByteSize(512 * 1024)));
        assert_eq!(byte_size("64 MiB"), Ok(ByteSize::mib(64)));
        assert_eq!(byte_size("64MiB"), Ok(ByteSize::mib(64)));
        assert_eq!(byte_size(" 8 GiB "), Ok(ByteSize::gib(8)));
        assert_eq!(byte_size("2 TiB"), Ok(ByteSize(2 << 40)));
        assert_eq!(byte_size("1 GB"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(byte_size("3 kb"), Ok(ByteSize(3_000)));
        assert_eq!(byte_size("1 mib"), Ok(ByteSize::mib(1)));
    }

    #[test]
    fn byte_size_rejects_garbage() {
        assert_eq!(
            byte_size("64 XB"),
            Err("invalid byte size `64 XB`: unknown unit `XB`, expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB".into())
        );
        assert_eq!(
            byte_size("MiB"),
            Err(
                "invalid byte size `MiB`: expected an integer followed by a unit, e.g. `64 MiB`"
                    .into()
            )
        );
        assert_eq!(
            byte_size("1.5 GiB"),
            Err("invalid byte size `1.5 GiB`: expected a whole number; write `1536 MiB` rather than `1.5 GiB`".into())
        );
        assert_eq!(
            byte_size("100000000 TiB"),
            Err("invalid byte size `100000000 TiB`: too large".into())
        );
        let negative = ByteSize::deserialize(I64Deserializer::<Error>::new(-1)).unwrap_err();
        assert_eq!(
            negative.to_string(),
            "invalid value: integer `-1`, expected a number of bytes or a size such as \"64 MiB\""
        );
        assert_eq!(
            ByteSize::deserialize(I64Deserializer::<Error>::new(4096)),
            Ok(ByteSize(4096))
        );
    }

    #[test]
    fn byte_size_displays_in_largest_exact_unit() {
        assert_eq!(ByteSize(0).to_string(), "0 B");
        assert_eq!(ByteSize(100).to_string(), "100 B");
        assert_eq!(ByteSize(1536).to_string(), "1536 B");
        assert_eq!(ByteSize(2048).to_string(), "2 KiB");
        assert_eq!(ByteSize(3000).to_string(), "3 KB");
        assert_eq!(ByteSize::mib(64).to_string(), "64 MiB");
        assert_eq!(ByteSize::mib(1536).to_string(), "1536 MiB");
        assert_eq!(ByteSize::gib(8).to_string(), "8 GiB");
        assert_eq!(ByteSize(1_000_000_000).to_string(), "1 GB");
        for size in [0, 1, 1000, 1024, 1_048_577, 5 << 40, u64::MAX] {
            assert_eq!(byte_size(&ByteSize(size).to_string()), Ok(ByteSize(size)));
        }
    }

    #[test]
    fn duration_parses_and_displays_humantime() {
        assert_eq!(duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(
            duration("forever"),
            Err("invalid duration `forever`: expected number at 0".into())
        );
        assert_eq!(
            Duration::deserialize(I64Deserializer::<Error>::new(90)),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(Duration::from_secs(5_400).to_string(), "1h 30m");
        assert_eq!(
            Duration::from_secs(60).get(),
            std::time::Duration::from_secs(60)
        );
        let odd = Duration(std::time::Duration::from_millis(90_061_500));
        assert_eq!(duration(&odd.to_string()), Ok(odd));
    }
}

/// An inclusive range of ports, written `"30000-30499"`: one key, so that first ≤ last is
/// checked where the value is and its error carries the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Ports below this need privileges the daemon does not hold.
    const LOWEST: u16 = 1024;

    pub fn len(self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Never empty: `first <= last` holds for every parsed range.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PortRange, D::Error> {
        let text = String::deserialize(deserializer)?;
        let invalid = |why: &str| {
            de::Error::custom(format!(
                "invalid port range `{text}`: {why} (expected e.g. `30000-30499`)"
            ))
        };
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| invalid("no `-` between the first and last port"))?;
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| invalid(&format!("`{}` is not a port number", s.trim())))
        };
        let range = PortRange {
            first: port(first)?,
            last: port(last)?,
        };
        if range.first < PortRange::LOWEST {
            return Err(invalid("ports below 1024 need privileges the daemon lacks"));
        }
        if range.first > range.last {
            return Err(invalid("the first port is above the last"));
        }
        Ok(range)
    }
}
