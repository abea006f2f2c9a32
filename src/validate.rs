//! Checks of values admins give (user names, expiries, origins), shared by the command line
//! and the admin operations, with messages that name the flag.

use anyhow::bail;

use crate::output::terminal_safe;

/// `--expires` as a time after `now`: a duration (90d) or a date.
pub fn parse_expires(text: Option<&str>, now: i64) -> anyhow::Result<Option<i64>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = crate::clock::parse_expiry(text, now)
        .map_err(|e| anyhow::anyhow!("invalid --expires: {e}"))?;
    if at <= now {
        bail!("--expires {text} is in the past; give a later date or a duration like 90d");
    }
    Ok(Some(at))
}

/// `--origin` values, normalised.
pub fn parse_origins(values: &[String]) -> anyhow::Result<Vec<String>> {
    crate::origin::parse_list(values).map_err(|e| anyhow::anyhow!("invalid --origin: {e}"))
}

/// User names: printable, no whitespace, no invisible formatting characters, at most 128
/// characters.
pub fn check_user_name(name: &str) -> anyhow::Result<()> {
    // Format characters (bidi controls, zero-width joiners) make one name look like
    // another, or reorder what is printed around it.
    if let Some(c) = name.chars().find(|&c| is_format(c)) {
        let shown: String = name
            .chars()
            .map(|c| {
                if is_format(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        bail!(
            "invalid user name '{}': {} is an invisible formatting character; use 1 to 128 printable characters without spaces",
            terminal_safe(&shown),
            c.escape_unicode()
        );
    }
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("invalid user name '{name}': use 1 to 128 printable characters without spaces");
    }
    Ok(())
}

/// Unicode general category Cf: format characters.
fn is_format(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}
