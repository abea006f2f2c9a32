//! Human output (comfy-table, honouring NO_COLOR and non-terminal output), `--json`, and the
//! escaping that keeps stored or caller-supplied text from driving the terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

use comfy_table::{ColumnConstraint, ContentArrangement, presets};

/// Text made safe to print on a terminal: C0 controls (tab, CR and LF too), DEL, C1 controls,
/// the invisible format characters (Unicode Cf: bidi controls, zero-width spaces and joiners,
/// the byte-order mark, tags) and the Unicode line and paragraph separators become visible
/// `\u{1b}`-style escapes; everything else, ordinary non-ASCII included, is left alone. Clean
/// text is returned as it is, unallocated.
///
/// Backslashes are left alone, so a literal `\u{1b}` in a title reads the same as an
/// escaped ESC. Doubling them instead would make every Windows-style name (`CORP\ci-bot`)
/// or path read as something it is not and break copying a value from a table into the
/// next command, for the sake of telling apart values nobody writes honestly; `--json`
/// gives the exact text when it matters. It also makes escaping idempotent, so text escaped
/// where a message is built can pass through the error line's escaping unchanged.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    // Nearly all text is printable ASCII: a byte scan, not a char walk (log lines go here).
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    if !hidden_chars(s).any(|(_, hidden)| hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (c, hidden) in hidden_chars(s) {
        if hidden {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Each char of `s`, and whether it must be escaped.
fn hidden_chars(s: &str) -> impl Iterator<Item = (char, bool)> + '_ {
    let mut prev = None;
    let mut rest = s.chars().peekable();
    std::iter::from_fn(move || {
        let c = rest.next()?;
        let hidden = needs_escape(prev, c, rest.peek().copied());
        prev = Some(c);
        Some((c, hidden))
    })
}

/// Controls (C0, DEL, C1: general category Cc) act on the terminal; format characters (Cf)
/// are invisible: bidi controls reorder what is shown around them (a title ending in
/// `U+202E txt.exe` reads as `exe.txt`) and zero-width ones make one text look like another
/// (`ci\u{200b}-bot`); line and paragraph separators break lines in some viewers. A zero-width
/// joiner between two emoji is what draws one emoji (👩‍💻), so it stays.
fn needs_escape(prev: Option<char>, c: char, next: Option<char>) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    match c.general_category() {
        G::Control | G::LineSeparator | G::ParagraphSeparator => true,
        G::Format => {
            let emoji = |c: char| c.general_category() == G::OtherSymbol;
            // Before the joiner an emoji may carry its presentation selector or a skin tone.
            let emoji_end =
                |c: char| emoji(c) || c == '\u{FE0F}' || ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
            !(c == '\u{200D}' && prev.is_some_and(emoji_end) && next.is_some_and(emoji))
        }
        _ => false,
    }
}

/// How a text log line's fields are written: as tracing-subscriber writes them, then escaped
/// as table cells are, so that a value logged with `%` (a user name, a grant's subject) can
/// neither forge a line nor hide a character. JSON logs keep the exact text.
pub struct LogFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for LogFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::format::{DefaultFields, Writer};
        thread_local! {
            // One per thread, kept: a line per request must not cost an allocation.
            static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        TEXT.with(|text| {
            let mut fresh = String::new();
            let mut kept = text.try_borrow_mut();
            let text = match kept.as_deref_mut() {
                Ok(t) => t,
                Err(_) => &mut fresh,
            };
            text.clear();
            DefaultFields::new().format_fields(Writer::new(text), fields)?;
            writer.write_str(&terminal_safe(text))
        })
    }
}

/// What every table-printing command takes: `--json`, or `--wide`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct TableArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// Show full ids and times and every column, one line per row however wide (tables
    /// otherwise shorten ids to a prefix that commands take back, and fit the terminal or
    /// COLUMNS)
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
}

impl TableArgs {
    /// A table that is wide if --wide was given.
    pub fn table(&self, header: &[&str]) -> Table {
        build(header, self.wide)
    }

    /// A table whose `wide_only` columns are shown with --wide alone: rows still give every
    /// column's cell, and the hidden ones are dropped.
    pub fn table_with_wide_only(&self, header: &[&str], wide_only: &[&str]) -> Table {
        let keep: Vec<bool> = header
            .iter()
            .map(|h| self.wide || !wide_only.contains(h))
            .collect();
        let shown: Vec<&str> = header
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(h, _)| *h)
            .collect();
        let mut t = build(&shown, self.wide);
        t.keep = keep;
        t
    }
}

/// A table for stdout: aligned columns, the header bold on a colour terminal, fitted to the
/// terminal's width (or COLUMNS) unless --wide. Every cell goes
/// through [`terminal_safe`] on its way in, so no command can forget to escape one.
pub struct Table {
    table: comfy_table::Table,
    wide: bool,
    /// Per column, whether it may wrap to fit the width ([`Table::wrap`]).
    wrap: Vec<bool>,
    header: Vec<String>,
    /// Per cell of a row as given, whether its column is shown.
    keep: Vec<bool>,
}

/// A table that fits the known width, as [`TableArgs::table`] without --wide.
pub fn table(header: &[&str]) -> Table {
    build(header, false)
}

fn build(header: &[&str], wide: bool) -> Table {
    let mut t = comfy_table::Table::new();
    // No vertical lines: a border costs a column per column, and at 80 columns that is what
    // decides whether a row fits on its line.
    t.load_preset(presets::NOTHING);
    let tty = std::io::stdout().is_terminal();
    if !tty {
        t.force_no_tty();
    }
    // A terminal that reports no size (some CI runners' pseudo-terminals) says 0 columns:
    // arranged into 0, every cell would be one character wide.
    let width = env_columns().or_else(|| t.width().filter(|&w| w > 0));
    match width {
        Some(w) if !wide => {
            t.set_width(w)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        // Piped without COLUMNS, no width is known: the natural width, as ripgrep or xh do.
        _ => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    if tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
        t.enforce_styling();
        t.set_header(
            header
                .iter()
                .map(|h| comfy_table::Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
        );
    } else {
        t.set_header(header.to_vec());
    }
    // Two spaces between columns and none at the ends, where they would only cost width.
    let last = header.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    Table {
        table: t,
        wide,
        wrap: vec![false; header.len()],
        header: header.iter().map(|h| h.to_string()).collect(),
        keep: vec![true; header.len()],
    }
}

/// The width COLUMNS gives, when it is a positive number.
fn env_columns() -> Option<u16> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w| w > 0)
}

/// How many characters of an id a table shows: `edit-key`, `revoke-key`, `token edit`,
/// `token revoke` and `usage-log` take a unique prefix of 4 or more, and 12 base64url or hex
/// characters (72 or 48 bits) of random ids are all but certainly unique in any store (when
/// not, those commands ask for more characters).
pub const SHORT_ID: usize = 12;

/// `id` as a table shows it: its first [`SHORT_ID`] characters and `…`, or all of it when
/// that is no longer.
pub fn short_id(id: &str) -> String {
    match id.char_indices().nth(SHORT_ID) {
        Some((end, _)) if id.chars().count() > SHORT_ID + 1 => format!("{}…", &id[..end]),
        _ => id.to_owned(),
    }
}

impl Table {
    pub fn add_row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let keep = &self.keep;
        self.table.add_row(
            cells
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.get(*i).copied().unwrap_or(true))
                .map(|(_, c)| terminal_safe(c.as_ref()).into_owned())
                .collect::<Vec<_>>(),
        );
    }

    /// Lets these columns (of free text: titles, descriptions, reasons) wrap when the table
    /// is fitted to a width; the others never do.
    pub fn wrap(&mut self, columns: &[&str]) {
        for (h, w) in self.header.iter().zip(&mut self.wrap) {
            *w |= columns.contains(&h.as_str());
        }
    }

    /// An id as this table shows it: whole with --wide, else shortened by [`short_id`].
    pub fn id(&self, id: &str) -> String {
        if self.wide {
            id.to_owned()
        } else {
            short_id(id)
        }
    }

    /// A time as this table shows it: its date, or RFC 3339 with --wide.
    pub fn date(&self, t: i64) -> String {
        let full = crate::clock::rfc3339(t);
        if self.wide {
            full
        } else {
            full[..10].to_owned()
        }
    }
}

pub fn print_table(t: &Table) {
    let mut table = t.table.clone();
    // Fitted to a width, the columns of free text wrap; an id, a time, a name or a state split
    // mid-word would read as nothing, so the others keep their width. Narrower terminals get
    // longer lines rather than unreadable cells.
    for (column, may_wrap) in table.column_iter_mut().zip(&t.wrap) {
        if !may_wrap {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    let text = table.to_string();
    for line in text.lines() {
        println!("{}", line.trim_end());
    }
}

pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// "-" for a missing value in a table.
pub fn or_dash(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed_unchanged() {
        for s in [
            "",
            "ci-bot",
            "nightly build",
            "café",
            "構築",
            "🚀 deploy",
            "👩‍💻",
            r"CORP\ci-bot",
        ] {
            assert!(
                matches!(terminal_safe(s), Cow::Borrowed(b) if b == s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn controls_are_escaped_visibly() {
        assert_eq!(
            terminal_safe("\x1b]0;pwned\x07\x1b[31mred"),
            r"\u{1b}]0;pwned\u{7}\u{1b}[31mred"
        );
        assert_eq!(terminal_safe("a\tb\r\nc\0"), r"a\u{9}b\u{d}\u{a}c\u{0}");
        assert_eq!(
            terminal_safe("\x7f\u{80}\u{9b}31m\u{9f}"),
            r"\u{7f}\u{80}\u{9b}31m\u{9f}"
        );
    }

    #[test]
    fn bidi_controls_are_escaped_and_their_neighbours_kept() {
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let s = format!("é{c}x");
            assert_eq!(
                terminal_safe(&s),
                format!("é\\u{{{:x}}}x", c as u32),
                "{c:?}"
            );
        }
        // Visible spaces and unassigned code points next to the ranges: left alone.
        for c in ['\u{00A0}', '\u{202F}', '\u{2065}'] {
            let s = c.to_string();
            assert_eq!(terminal_safe(&s), s, "{c:?}");
        }
    }

    #[test]
    fn zero_width_and_other_format_characters_are_escaped() {
        for c in [
            '\u{00AD}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2028}',
            '\u{2029}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{206A}',
            '\u{FEFF}',
            '\u{FFF9}',
            '\u{E0001}',
            '\u{E0041}',
        ] {
            let s = format!("ci{c}-bot");
            assert_eq!(
                terminal_safe(&s),
                format!("ci\\u{{{:x}}}-bot", c as u32),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_joiner_stays_only_between_two_emoji() {
        for kept in ["👩‍💻", "🧑🏽‍💻", "🏳️‍🌈", "👨‍👩‍👧"] {
            assert!(
                matches!(terminal_safe(kept), Cow::Borrowed(b) if b == kept),
                "{kept}"
            );
        }
        assert_eq!(terminal_safe("a\u{200d}b"), r"a\u{200d}b");
        assert_eq!(terminal_safe("💻\u{200d}"), r"💻\u{200d}");
        assert_eq!(terminal_safe("\u{200d}💻"), r"\u{200d}💻");
        assert_eq!(terminal_safe("💻\u{200d}x"), r"💻\u{200d}x");
        // Two joiners in a row join nothing.
        assert_eq!(
            terminal_safe("💻\u{200d}\u{200d}💻"),
            r"💻\u{200d}\u{200d}💻"
        );
    }

    #[test]
    fn escaping_is_idempotent_and_leaves_backslashes_alone() {
        let once = terminal_safe("C:\\keys\\\u{1b}[2J\u{202e}");
        assert_eq!(once, r"C:\keys\\u{1b}[2J\u{202e}");
        assert_eq!(terminal_safe(&once), once);
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut t = table(&["A", "B"]);
        t.add_row(["x\x1b[31m", "line\nbreak"]);
        // On a terminal the header may be bold (an escape sequence of our own): look at cells.
        let text = t.table.to_string();
        assert!(
            !text.contains("x\x1b") && !text.contains("line\n"),
            "{text:?}"
        );
        assert!(
            text.contains(r"x\u{1b}[31m") && text.contains(r"line\u{a}break"),
            "{text}"
        );
    }
}
