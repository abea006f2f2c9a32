//! A bearer credential of either kind, an access token (JWT) or a personal access token,
//! checked by the same rules; and the rule for browser callers from other sites.

use crate::access_token::{self, Claims, Invalid};
use crate::iprange::ClientAddr;
use crate::pat::{self, PatUse};
use crate::registry::Credentials;
use crate::scope::Scope;

/// A credential that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Access(Claims),
    Pat(PatUse),
}

impl Checked {
    /// The user the caller acts for.
    pub fn user(&self) -> &str {
        match self {
            Checked::Access(c) => &c.sub,
            Checked::Pat(p) => &p.user,
        }
    }

    /// The OAuth scope string (`read` or `read write`).
    pub fn scope(&self) -> &str {
        match self {
            Checked::Access(c) => &c.scope,
            Checked::Pat(p) => p.scope.granted(),
        }
    }

    /// Whether the credential's key, trust or token lists this browser origin.
    fn lists(&self, origin: &str, credentials: &dyn Credentials) -> bool {
        match self {
            Checked::Access(c) if c.key_id.starts_with(crate::access_token::TRUST_ID_PREFIX) => {
                credentials
                    .trust(&c.key_id)
                    .is_some_and(|t| t.trust.origins.iter().any(|o| o == origin))
            }
            Checked::Access(c) => credentials
                .key(&c.key_id)
                .is_some_and(|k| k.origins.iter().any(|o| o == origin)),
            Checked::Pat(p) => p.origins.iter().any(|o| o == origin),
        }
    }
}

/// Checks `token` (a `tapat_` token or a JWT access token) at `now`: for `addr` against IP
/// ranges, for the `required` scope, and, for a caller on another site, that its `origin` is
/// listed.
pub fn check(
    token: &str,
    credentials: &dyn Credentials,
    now: i64,
    addr: Option<ClientAddr>,
    required: Option<Scope>,
    origin: Option<&str>,
) -> Result<Checked, Invalid> {
    let checked = if pat::is_pat(token) {
        Checked::Pat(pat::validate(token, credentials, now, addr, required)?)
    } else {
        Checked::Access(access_token::validate(
            token,
            credentials,
            now,
            addr,
            required,
        )?)
    };
    if let Some(origin) = origin
        && !checked.lists(origin, credentials)
    {
        let refused = Invalid::OriginNotAllowed(origin.to_owned());
        return Err(match checked {
            Checked::Pat(p) => Invalid::Pat {
                id: p.id,
                user: p.user,
                why: Box::new(refused),
            },
            Checked::Access(_) => refused,
        });
    }
    Ok(checked)
}
