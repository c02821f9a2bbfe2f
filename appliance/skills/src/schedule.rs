//! Weekly schedules: when a skill is armed. The library has no clock and no time zone database;
//! the caller converts the wall clock to the box's local weekday and time of day and passes that
//! in, so a schedule means what the people who wrote it see on their watches, DST included.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds in a day; also the largest [`TimeOfDay`], `24:00`, so a range can end at midnight.
pub const SECONDS_PER_DAY: u32 = 86_400;

/// A day of the week, written `mon` … `sun` in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// The day before, for ranges that started yesterday and wrap past midnight.
    pub fn previous(self) -> Weekday {
        match self {
            Weekday::Mon => Weekday::Sun,
            Weekday::Tue => Weekday::Mon,
            Weekday::Wed => Weekday::Tue,
            Weekday::Thu => Weekday::Wed,
            Weekday::Fri => Weekday::Thu,
            Weekday::Sat => Weekday::Fri,
            Weekday::Sun => Weekday::Sat,
        }
    }
}

/// A time of day as seconds since local midnight, `0..=86400`, written `"HH:MM"` or
/// `"HH:MM:SS"`; `"24:00"` is the midnight that ends a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u32);

impl TimeOfDay {
    /// `None` past `24:00`.
    pub fn from_seconds(seconds: u32) -> Option<TimeOfDay> {
        (seconds <= SECONDS_PER_DAY).then_some(TimeOfDay(seconds))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }

    /// Parses `H:MM`, `HH:MM` or `HH:MM:SS`, up to `24:00`.
    pub fn parse(text: &str) -> Option<TimeOfDay> {
        // Hours have one or two digits, minutes and seconds exactly two.
        fn number(part: &str, digits: std::ops::RangeInclusive<usize>, limit: u32) -> Option<u32> {
            if !digits.contains(&part.len()) || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok().filter(|&v| v < limit)
        }
        let parts: Vec<&str> = text.split(':').collect();
        let (hours, minutes, seconds) = match parts[..] {
            [h, m] => (h, m, "00"),
            [h, m, s] => (h, m, s),
            _ => return None,
        };
        let hours = number(hours, 1..=2, 25)?;
        let minutes = number(minutes, 2..=2, 60)?;
        let seconds = number(seconds, 2..=2, 60)?;
        TimeOfDay::from_seconds(hours * 3600 + minutes * 60 + seconds)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if s == 0 {
            write!(f, "{h:02}:{m:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        TimeOfDay::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid time of day `{text}`, expected HH:MM or HH:MM:SS from 00:00 to 24:00"
            ))
        })
    }
}

impl JsonSchema for TimeOfDay {
    fn schema_name() -> Cow<'static, str> {
        "TimeOfDay".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Local time of day, HH:MM or HH:MM:SS; 24:00 is the end of the day.",
            "pattern": "^(([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00(:00)?)$",
        })
    }
}

/// One weekly range. On each of `days`, from `start` (included) to `end` (excluded); when `end`
/// is before `start` the range runs past midnight into the next day, so `fri 22:00–06:00` is
/// Friday night until Saturday 06:00 and the days name the day a range starts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRange {
    #[schemars(length(min = 1))]
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl ScheduleRange {
    /// Whether the range covers `seconds` past local midnight on `day`.
    pub fn contains(&self, day: Weekday, seconds: u32) -> bool {
        let (start, end) = (self.start.seconds(), self.end.seconds());
        if start < end {
            self.days.contains(&day) && (start..end).contains(&seconds)
        } else if start > end {
            (self.days.contains(&day) && seconds >= start)
                || (self.days.contains(&day.previous()) && seconds < end)
        } else {
            // Validation rejects empty ranges; one built by hand covers nothing.
            false
        }
    }
}

/// When a skill is armed: the union of its ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Schedule(#[schemars(length(min = 1))] pub Vec<ScheduleRange>);

impl Schedule {
    /// Whether any range covers `seconds` past local midnight on `day`.
    pub fn contains(&self, day: Weekday, seconds: u32) -> bool {
        self.0.iter().any(|range| range.contains(day, seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u32 {
        TimeOfDay::parse(text).unwrap().seconds()
    }

    fn range(days: &[Weekday], start: &str, end: &str) -> ScheduleRange {
        ScheduleRange {
            days: days.to_vec(),
            start: TimeOfDay::parse(start).unwrap(),
            end: TimeOfDay::parse(end).unwrap(),
        }
    }

    #[test]
    fn parses_and_prints_times_of_day() {
        assert_eq!(at("08:00"), 8 * 3600);
        assert_eq!(at("8:05"), 8 * 3600 + 300);
        assert_eq!(at("23:59:59"), SECONDS_PER_DAY - 1);
        assert_eq!(at("24:00"), SECONDS_PER_DAY);
        for bad in [
            "",
            "8",
            "24:01",
            "25:00",
            "12:60",
            "12:00:60",
            "1:2",
            "-1:00",
            "12:00:00:00",
            "+8:00",
            "08:00:5",
            "١٢:00",
        ] {
            assert_eq!(TimeOfDay::parse(bad), None, "{bad}");
        }
        assert_eq!(TimeOfDay::parse("07:30").unwrap().to_string(), "07:30");
        assert_eq!(TimeOfDay(3661).to_string(), "01:01:01");
    }

    #[test]
    fn daytime_range_covers_start_but_not_end() {
        let r = range(&[Weekday::Mon, Weekday::Tue], "08:00", "18:00");
        assert!(r.contains(Weekday::Mon, at("08:00")));
        assert!(r.contains(Weekday::Tue, at("17:59:59")));
        assert!(!r.contains(Weekday::Tue, at("18:00")));
        assert!(!r.contains(Weekday::Mon, at("07:59")));
        assert!(!r.contains(Weekday::Wed, at("12:00")));
    }

    #[test]
    fn range_wraps_past_midnight_into_the_next_day() {
        let r = range(&[Weekday::Fri], "22:00", "06:00");
        assert!(r.contains(Weekday::Fri, at("22:00")));
        assert!(r.contains(Weekday::Fri, at("23:59")));
        assert!(r.contains(Weekday::Sat, at("00:00")));
        assert!(r.contains(Weekday::Sat, at("05:59")));
        assert!(!r.contains(Weekday::Sat, at("06:00")));
        assert!(!r.contains(Weekday::Sat, at("22:30")));
        // Friday early morning belongs to Thursday's night, not in the schedule.
        assert!(!r.contains(Weekday::Fri, at("03:00")));
        // Sunday night wraps into Monday.
        let sunday = range(&[Weekday::Sun], "20:00", "02:00");
        assert!(sunday.contains(Weekday::Mon, at("01:00")));
    }

    #[test]
    fn whole_day_and_union_of_ranges() {
        let s = Schedule(vec![
            range(&[Weekday::Sat, Weekday::Sun], "00:00", "24:00"),
            range(&[Weekday::Wed], "12:00", "13:00"),
        ]);
        assert!(s.contains(Weekday::Sun, at("23:59:59")));
        assert!(s.contains(Weekday::Sat, 0));
        assert!(s.contains(Weekday::Wed, at("12:30")));
        assert!(!s.contains(Weekday::Mon, at("12:30")));
        assert!(!range(&[Weekday::Mon], "10:00", "10:00").contains(Weekday::Mon, at("10:00")));
    }

    #[test]
    fn serde_round_trip_with_day_names() {
        let r: ScheduleRange =
            serde_json::from_str(r#"{"days":["mon","sun"],"start":"08:00","end":"18:30"}"#)
                .unwrap();
        assert_eq!(r, range(&[Weekday::Mon, Weekday::Sun], "08:00", "18:30"));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"days":["mon","sun"],"start":"08:00","end":"18:30"}"#
        );
        assert!(
            serde_json::from_str::<ScheduleRange>(
                r#"{"days":["monday"],"start":"08:00","end":"09:00"}"#
            )
            .is_err()
        );
    }
}
