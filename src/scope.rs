//! Scopes: `read` and `write`, where `write` implies `read`.

use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScopeError {
    #[error("unknown scope '{0}'; scopes are 'read' and 'write'")]
    Unknown(String),
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// The OAuth scope string a token with this scope carries ("read write" for write).
    pub fn granted(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "read write",
        }
    }

    /// Parses a space-separated OAuth scope list into the highest scope it asks for.
    /// `None` for an empty list.
    pub fn parse_list(list: &str) -> Result<Option<Scope>, ScopeError> {
        list.split_whitespace()
            .map(str::parse)
            .try_fold(None, |acc, s| Ok(acc.max(Some(s?))))
    }

    pub fn covers(self, wanted: Scope) -> bool {
        self >= wanted
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            _ => Err(ScopeError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read() {
        assert!(Scope::Write.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Write));
        assert_eq!(Scope::parse_list("read write").unwrap(), Some(Scope::Write));
        assert_eq!(Scope::parse_list(" ").unwrap(), None);
        assert_eq!(
            Scope::parse_list("read admin"),
            Err(ScopeError::Unknown("admin".into()))
        );
    }
}
