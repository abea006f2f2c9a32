//! Text from strangers made safe to echo in an error description.

/// A caller-supplied string made safe to echo in an error: at most 64 chars, control
/// characters escaped as [`escape_controls`] does.
pub fn printable(s: &str) -> String {
    let end = s.char_indices().nth(64).map_or(s.len(), |(i, _)| i);
    escape_controls(&s[..end])
}

/// `s` with control characters written as `\u{…}` escapes. Escaped, not dropped: `ad\0min`
/// must not read as `admin`.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_are_escaped_not_dropped_so_nothing_reads_as_another_name() {
        assert_eq!(printable("ad\0min"), r"ad\u{0}min");
        assert_eq!(printable("a\x1b[2Jb\n"), r"a\u{1b}[2Jb\u{a}");
        assert_eq!(
            printable("plain, accents é and 漢字"),
            "plain, accents é and 漢字"
        );
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
