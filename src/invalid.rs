//! Why a bearer credential (an access token or a personal access token) is not good: one
//! vocabulary for both kinds, whose `Display` is the RFC 6750 `error_description`.

use std::net::IpAddr;

use crate::scope::Scope;

/// Why a string is not a well-formed token: said without a store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    // pat::LEN (a test holds them equal).
    #[error("a personal access token is 55 characters long")]
    Length,
    #[error("a personal access token holds only letters and digits after tapat_")]
    Alphabet,
    #[error("checksum does not match; the token was mistyped or cut")]
    Checksum,
}

/// Why a token is not good. `Display` is the RFC 6750 `error_description`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error("Malformed access token: {0}")]
    Malformed(String),
    #[error("Access token expired")]
    Expired,
    #[error("Invalid signature")]
    BadSignature,
    #[error("Access token has been revoked")]
    Revoked,
    #[error("Key has been revoked")]
    KeyRevoked,
    #[error("Key has expired")]
    KeyExpired,
    #[error("Unknown key")]
    UnknownKey,
    #[error("The trust relationship this token was issued under has been removed")]
    TrustRemoved,
    #[error("The trust relationship this token was issued under has expired")]
    TrustExpired,
    #[error("User '{0}' is disabled")]
    UserDisabled(String),
    #[error("Address {0} is not allowed to use this key")]
    AddressNotAllowed(IpAddr),
    #[error(
        "The client's address is unknown (a trusted proxy sent an unreadable X-Forwarded-For) and this key is limited to IP ranges"
    )]
    AddressUnknown,
    #[error("Insufficient scope: '{0}' required")]
    InsufficientScope(Scope),
    #[error("Origin {0} is not allowed for this token")]
    OriginNotAllowed(String),
    #[error("Malformed personal access token: {0}")]
    MalformedPat(FormatError),
    #[error("Unknown personal access token")]
    UnknownPat,
    #[error("Personal access token has been revoked")]
    PatRevoked,
    #[error("Personal access token was ended when its user's secret was rotated")]
    PatRotated,
    /// A known personal access token refused for `why`: who it was, for the usage log.
    #[error("{why}")]
    Pat {
        id: String,
        user: String,
        why: Box<Invalid>,
    },
}

impl Invalid {
    /// The RFC 6750 error code.
    pub fn code(&self) -> &'static str {
        match self.reason() {
            Invalid::InsufficientScope(_) => "insufficient_scope",
            Invalid::OriginNotAllowed(_) => "access_denied",
            _ => "invalid_token",
        }
    }

    /// What was wrong, whoever's token it was.
    pub fn reason(&self) -> &Invalid {
        match self {
            Invalid::Pat { why, .. } => why.reason(),
            other => other,
        }
    }
}
