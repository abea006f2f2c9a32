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
    fn formats_rfc3339() {
        assert_eq!(rfc3339(86_400), "1970-01-02T00:00:00Z");
    }
}
