//! Keyless CI (issue 21): trusting a CI platform's OIDC ID tokens — the trusts' claim rules,
//! the ID tokens, and the issuers' signing keys.

pub mod jwks;
pub mod keys;
pub mod rules;
#[cfg(test)]
pub(crate) mod test_keys;
pub mod token;

pub use jwks::{IdAlg, KeyMiss, KeySet};
pub use keys::{CacheConfig, KeyCache, KeysError, Source, https_or_loopback};
pub use rules::{check_rules, claim_text, matches, org_wide_only, parse_claim};
pub use token::{Failure, Matched, TrustRules, Unverified, check};
