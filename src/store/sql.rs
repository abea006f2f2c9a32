//! What both backends exchange with the store's methods: parameters, cells and rows in the
//! few types the schema uses (integers for times and booleans, text, bytes), so that each
//! query and its row mapping is written once.

use super::{Result, StoreError};

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(v.into())
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(v)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Param<'a> {
    fn from(v: &'a [u8; N]) -> Self {
        Param::Blob(v)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Param::Null, Param::Text)
    }
}

impl<'a> From<&'a i64> for Param<'a> {
    fn from(v: &'a i64) -> Self {
        Param::Int(*v)
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::Null, Param::Int)
    }
}

/// `[Param; N]` from values of the types above.
macro_rules! params {
    ($($v:expr),* $(,)?) => { [$($crate::store::sql::Param::from($v)),*] };
}
pub(crate) use params;

/// One value read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row read from either backend.
#[derive(Debug)]
pub struct Row(pub Vec<Cell>);

impl Row {
    pub fn get<T: FromCell>(&self, i: usize) -> Result<T> {
        let cell = self.0.get(i).unwrap_or(&Cell::Null);
        T::from_cell(cell)
            .ok_or_else(|| StoreError::Data(format!("column {i} holds {cell:?}, not {}", T::NAME)))
    }

    /// Takes a text column without copying.
    pub fn take_text(&mut self, i: usize) -> Result<String> {
        match self.0.get_mut(i) {
            Some(Cell::Text(s)) => Ok(std::mem::take(s)),
            other => Err(StoreError::Data(format!(
                "column {i} holds {other:?}, not text"
            ))),
        }
    }
}

pub trait FromCell: Sized {
    const NAME: &'static str;
    fn from_cell(c: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    const NAME: &'static str = "an integer";
    fn from_cell(c: &Cell) -> Option<Self> {
        match c {
            Cell::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromCell for bool {
    const NAME: &'static str = "a boolean";
    fn from_cell(c: &Cell) -> Option<Self> {
        i64::from_cell(c).map(|i| i != 0)
    }
}

impl FromCell for String {
    const NAME: &'static str = "text";
    fn from_cell(c: &Cell) -> Option<Self> {
        match c {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    const NAME: &'static str = "bytes";
    fn from_cell(c: &Cell) -> Option<Self> {
        match c {
            Cell::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<const N: usize> FromCell for [u8; N] {
    const NAME: &'static str = "bytes of the right length";
    fn from_cell(c: &Cell) -> Option<Self> {
        match c {
            Cell::Blob(b) => b.as_slice().try_into().ok(),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_cell(c: &Cell) -> Option<Self> {
        match c {
            Cell::Null => Some(None),
            c => T::from_cell(c).map(Some),
        }
    }
}

/// SQLite's `?1` placeholders as PostgreSQL's `$1` (outside string literals).
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals_only() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' OR d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' OR d = $12"
        );
    }

    #[test]
    fn cells_convert_only_to_their_own_types() {
        let row = Row(vec![
            Cell::Int(1),
            Cell::Null,
            Cell::Text("x".into()),
            Cell::Blob(vec![1, 2]),
        ]);
        assert!(row.get::<bool>(0).unwrap());
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        assert_eq!(row.get::<[u8; 2]>(3).unwrap(), [1, 2]);
        assert!(row.get::<i64>(2).is_err());
        assert!(row.get::<[u8; 3]>(3).is_err());
    }
}
