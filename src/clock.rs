//! The clock, passed to whatever needs the time so tests can fix it.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// Always this Unix time: set with the hidden `TOKENAUTH_NOW` variable, in test builds only.
    Fixed(i64),
    /// The Unix time written in this file, read afresh each time (`TOKENAUTH_NOW=@PATH`, in
    /// test builds only): lets a test move a running server's clock, and no test sleep.
    File(&'static std::path::Path),
}

/// Whether this build honours `TOKENAUTH_NOW` (the `test-clock` feature, which `cargo test`
/// turns on): worth a warning anywhere but a test run.
pub const TEST_CLOCK: bool = cfg!(feature = "test-clock");

impl Clock {
    /// The system clock; in a build with the `test-clock` feature, the time `TOKENAUTH_NOW`
    /// fixes (Unix seconds) when it is set. A release build ignores the variable: a test hook
    /// must not move a production clock.
    pub fn from_env() -> Clock {
        if !TEST_CLOCK {
            return Clock::System;
        }
        match std::env::var("TOKENAUTH_NOW") {
            Ok(v) if v.starts_with('@') => {
                let path = std::path::PathBuf::from(&v[1..]);
                Clock::File(Box::leak(path.into_boxed_path()))
            }
            Ok(v) => v.parse().map_or(Clock::System, Clock::Fixed),
            Err(_) => Clock::System,
        }
    }

    pub fn now(&self) -> i64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            Clock::Fixed(t) => *t,
            Clock::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or_else(|| Clock::System.now()),
        }
    }
}

/// Formats Unix seconds as RFC 3339 UTC ("2026-11-23T15:04:05Z").
pub fn rfc3339(t: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an expiry given as a duration from now ("90d", "12h", "1y") or a date
/// ("2027-01-31", "2027-01-31T12:00:00Z"), into Unix seconds.
pub fn parse_expiry(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now + d.as_secs() as i64);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
        .map_err(|_| format!("'{text}' is neither a duration (90d, 12h) nor a date (2027-01-31, 2027-01-31T12:00:00Z)"))
}

/// Parses a duration ("7d", "12h", "30m") into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_secs() as i64)
        .map_err(|e| format!("'{text}' is not a duration ({e}); use e.g. 7d, 12h, 30m"))
}

/// What the duration parser takes `1y` for: humantime's year, 365.25 days.
const YEAR: i64 = 31_557_600;
const DAY: i64 = 86_400;

/// A duration as people say it, in at most two units the parser takes back: `1y`, `400d`,
/// `2h 5m`, `45s`. A day or more is whole days (the nearest), or years when it is a whole
/// number of the parser's years; less is hours and minutes, or minutes and seconds.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= DAY {
        return if secs % YEAR == 0 {
            format!("{}y", secs / YEAR)
        } else {
            format!("{}d", secs / DAY + i64::from(secs % DAY >= DAY / 2))
        };
    }
    let units = [(3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|&(unit, _)| secs >= unit) else {
        return "0s".to_owned();
    };
    let (unit, name) = units[first];
    let mut text = format!("{}{name}", secs / unit);
    if let Some(&(next, next_name)) = units.get(first + 1)
        && secs % unit / next > 0
    {
        text += &format!(" {}{next_name}", secs % unit / next);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_durations_and_dates() {
        assert_eq!(parse_expiry("1d", 100), Ok(86_500));
        assert_eq!(parse_expiry("1970-01-02", 0), Ok(86_400));
        assert_eq!(parse_expiry("1970-01-01T00:01:00Z", 0), Ok(60));
        assert!(parse_expiry("soon", 0).unwrap_err().contains("'soon'"));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        for (secs, shown) in [
            (0, "0s"),
            (-5, "0s"),
            (45, "45s"),
            (90, "1m 30s"),
            (3600, "1h"),
            (3605, "1h"),
            (7530, "2h 5m"),
            (86_399, "23h 59m"),
            (86_400, "1d"),
            // Whole days from a day on: 36h is nearer two days than one.
            (129_600, "2d"),
            (30 * 86_400, "30d"),
            (365 * 86_400, "365d"),
            (400 * 86_400, "400d"),
            (31_557_600, "1y"),
            (2 * 31_557_600, "2y"),
            (i64::MAX, "106751991167301d"),
        ] {
            assert_eq!(human_duration(secs), shown, "{secs}");
        }
    }

    #[test]
    fn exact_durations_round_trip_through_the_parser() {
        for secs in [
            1,
            59,
            60,
            61,
            3599,
            3600,
            7500,
            86_340,
            86_400,
            90 * 86_400,
            365 * 86_400,
            31_557_600,
            10 * 31_557_600,
        ] {
            assert_eq!(parse_duration(&human_duration(secs)), Ok(secs), "{secs}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(86_400), "1970-01-02T00:00:00Z");
    }
}
