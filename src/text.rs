//! Text from strangers made safe to echo in an error description.

/// A caller-supplied string made safe to echo in an error: printable, at most 64 chars.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}
