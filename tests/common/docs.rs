//! The README's and `docs/`'s code blocks, read so that tests run the recipes as printed.

/// The text of the section headed `heading` (a `## ` or `### ` title, written out) in `file`
/// (relative to the crate), up to the next `## ` title.
pub fn section(file: &str, heading: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let after = text
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("{file} has no section {heading:?}"))
        .1;
    after.split("\n## ").next().unwrap().to_owned()
}

/// Every fenced block of the section, in order, as (info string, body).
pub fn blocks(file: &str, heading: &str) -> Vec<(String, String)> {
    section(file, heading)
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| {
            let (info, body) = b.split_once('\n').unwrap();
            (info.to_owned(), body.to_owned())
        })
        .collect()
}

/// Every ```` ```lang ```` block of the section, in order; panics when there is none.
pub fn blocks_of(file: &str, heading: &str, lang: &str) -> Vec<String> {
    let found: Vec<String> = blocks(file, heading)
        .into_iter()
        .filter(|(info, _)| info == lang)
        .map(|(_, body)| body)
        .collect();
    assert!(
        !found.is_empty(),
        "{file} section {heading:?} has no {lang} block"
    );
    found
}
