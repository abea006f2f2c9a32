//! Human output (comfy-table, honouring NO_COLOR and non-terminal output) and `--json`.

use std::io::IsTerminal;

use comfy_table::{ContentArrangement, Table, presets};

/// A table for stdout: boxed on a terminal, plain aligned columns otherwise.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    if std::io::stdout().is_terminal() {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
            t.enforce_styling();
            t.set_header(
                header
                    .iter()
                    .map(|h| comfy_table::Cell::new(h).add_attribute(comfy_table::Attribute::Bold)),
            );
            return t;
        }
    } else {
        t.load_preset(presets::NOTHING).force_no_tty();
    }
    t.set_header(header.to_vec());
    t
}

pub fn print_table(t: &Table) {
    let text = t.to_string();
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
