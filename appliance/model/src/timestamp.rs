use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// A point in time with millisecond precision, written as RFC 3339 in UTC
/// (`2026-11-24T23:52:14.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-24T23:52:14.123Z")]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn now() -> Timestamp {
        let now = OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let t = t
                    .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
                    .unwrap_or(t);
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            }
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTimestampError(String);

impl fmt::Display for ParseTimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an RFC 3339 time (e.g. 2026-11-24T10:00:00Z) nor milliseconds since the epoch",
            self.0
        )
    }
}

impl std::error::Error for ParseTimestampError {}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;
    /// Accepts RFC 3339 with any offset, or an integer number of milliseconds since the epoch.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ms) = s.parse::<i64>() {
            return Ok(Timestamp(ms));
        }
        OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| ParseTimestampError(s.chars().take(64).collect()))
    }
}

crate::id::serde_as_string!(Timestamp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let t = Timestamp::from_millis(1_764_028_334_123);
        let s = t.to_string();
        assert_eq!(s, "2025-11-24T23:52:14.123Z");
        assert_eq!(s.parse::<Timestamp>().unwrap(), t);
        assert_eq!(
            "2025-11-25T07:52:14.123+08:00"
                .parse::<Timestamp>()
                .unwrap(),
            t
        );
        assert_eq!("1764028334123".parse::<Timestamp>().unwrap(), t);
        assert!("yesterday".parse::<Timestamp>().is_err());
    }
}
