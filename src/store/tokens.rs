//! Revoked access tokens: a row per revoked `jti`, kept until the token would have expired
//! anyway.

use super::sql::params;
use super::{Result, Store};

impl Store {
    pub fn revoke_token(&mut self, jti: &str, exp: i64, now: i64) -> Result<()> {
        self.write(|| {
            // Entries past their token's expiry can go: the token fails on expiry anyway.
            // (On the expiry index: a range at the front, not a scan.)
            self.exec("DELETE FROM revoked_tokens WHERE exp < ?1", &params![now])?;
            self.exec(
                "INSERT INTO revoked_tokens(jti, exp, revoked) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                &params![jti, exp, now],
            )
            .map(|_| ())
        })
    }

    /// Revoked token ids whose tokens have not expired by `now`, with their expiry.
    pub fn revoked_tokens(&self, now: i64) -> Result<Vec<(String, i64)>> {
        self.rows(
            "SELECT jti, exp FROM revoked_tokens WHERE exp >= ?1",
            &params![now],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
    }

    /// Whether this token id was revoked (and its token has not expired by `now`).
    pub fn token_revoked(&self, jti: &str, now: i64) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM revoked_tokens WHERE jti = ?1 AND exp >= ?2",
                &params![jti, now],
            )?
            .is_some())
    }

    /// The revocations the change feed names between two positions, with their expiry.
    pub(super) fn changed_revoked_tokens(
        &self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT jti, exp FROM revoked_tokens WHERE jti IN ({})",
            super::CHANGED.replace("{entity}", "jti")
        );
        self.rows(&sql, &params![after, upto])?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }
}
