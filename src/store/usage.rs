//! The usage log (a row per issuance or refused attempt) and the used-grant set that makes
//! every grant good for one exchange across processes.

use super::sql::params;
use super::{Backend, Result, Store};

/// One row of the usage log: an issuance or a refused attempt.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UsageRow {
    pub time: i64,
    pub key_id: Option<String>,
    /// The personal access token a refused check used.
    pub pat_id: Option<String>,
    pub user: Option<String>,
    pub subject: Option<String>,
    pub address: String,
    pub user_agent: Option<String>,
    pub ok: bool,
    pub reason: Option<String>,
    /// An issuance from a grant without `jti` (counted so admins see who relies on them).
    pub no_jti: bool,
    /// How many refusals of this kind the row stands for (1 for issuances and for rows
    /// written before refusals were counted).
    pub count: i64,
    /// The trust relationship an ID token was exchanged under (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// The claims of that ID token that the trust bound (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
    /// Set on a counted refusal: what later ones of its kind in its minute add to.
    #[serde(skip)]
    pub refusal_group: Option<String>,
    #[serde(skip)]
    pub grant_jti: Option<String>,
    #[serde(skip)]
    pub grant_exp: Option<i64>,
    #[serde(skip)]
    pub token_jti: Option<String>,
    /// The grant this issuance uses up: the row is written only if no row before took it.
    #[serde(skip)]
    pub grant_use: Option<GrantUse>,
}

/// A grant's claim to be used once: its [`replay_key`] and its expiry. The store knows a
/// grant by both: the same jti under another expiry can only come from the key's holder, who
/// can sign new grants anyway, so only copies of a grant are replays worth refusing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantUse {
    pub key: [u8; 16],
    pub exp: i64,
}

/// What identifies a grant for replay checks: its client and its `jti`, or, for a grant
/// without one, its signature (so that an exact copy is refused just the same). A truncated
/// SHA-256: 128 bits keep collisions out of reach and the keys short.
pub fn replay_key(client_id: &str, jti: Option<&str>, signature: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    match jti {
        Some(j) => {
            h.update(b"\0jti\0");
            h.update(j.as_bytes());
        }
        None => {
            h.update(b"\0sig\0");
            h.update(signature);
        }
    }
    let mut key = [0; 16];
    key.copy_from_slice(&h.finalize()[..16]);
    key
}

/// How long used-grant rows outlive their grant's expiry: a process whose clock is a little
/// behind still finds them.
pub(super) const USED_GRANT_MARGIN: i64 = 120;

#[derive(Debug, Default)]
pub struct UsageFilter {
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub since: Option<i64>,
    pub failures_only: bool,
    /// Only issuances from grants without `jti`.
    pub no_jti_only: bool,
    pub limit: i64,
}

impl Store {
    /// Appends rows in one transaction, adds counted refusals (`refused`: each with its
    /// `refusal_group` and `count`, added to the group's row when there is one), records
    /// when personal access tokens were last used (`touches`: id and time), then prunes rows older than `prune_before` (keeping each
    /// key's newest row) and used grants that have expired. A row with a `grant_use` first
    /// claims its grant: when an earlier row (from any process) took it, the row is written
    /// as a refused replay instead. Returns, per row, whether it was written as given.
    pub fn append_usage(
        &mut self,
        rows: &[UsageRow],
        refused: &[UsageRow],
        touches: &[(String, i64)],
        now: i64,
        prune_before: Option<i64>,
    ) -> Result<Vec<bool>> {
        // Not an admin write: replicas append side by side; the used-grants key decides.
        self.transaction(false, || {
            let written = match &self.db {
                // One round trip per statement: set-based there, not a pair per row.
                Backend::Postgres(d) => d.insert_usage(rows)?,
                Backend::Sqlite(_) => self.insert_usage(rows)?,
            };
            for r in refused {
                self.exec(
                    "INSERT INTO usage_log(time, key_id, user_name, subject, address, user_agent, ok, reason,
                        pat_id, count, refusal_group, no_jti, trust, claims)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (refusal_group) WHERE refusal_group IS NOT NULL
                     DO UPDATE SET count = usage_log.count + excluded.count",
                    &params![
                        r.time,
                        &r.key_id,
                        &r.user,
                        &r.subject,
                        &r.address,
                        &r.user_agent,
                        &r.reason,
                        &r.pat_id,
                        r.count,
                        &r.refusal_group,
                        r.no_jti,
                        &r.trust,
                        &r.claims
                    ],
                )?;
            }
            for (id, time) in touches {
                self.exec(
                    "UPDATE pats SET last_used = ?2 WHERE id = ?1 AND (last_used IS NULL OR last_used < ?2)",
                    &params![id, *time],
                )?;
            }
            if let Some(cutoff) = prune_before {
                self.exec(
                    "DELETE FROM usage_log WHERE time < ?1
                       AND id NOT IN (SELECT max(id) FROM usage_log WHERE key_id IS NOT NULL GROUP BY key_id)",
                    &params![cutoff],
                )?;
                self.exec(
                    "DELETE FROM used_grants WHERE exp < ?1",
                    &params![now.saturating_sub(USED_GRANT_MARGIN)],
                )?;
            }
            Ok(written)
        })
    }

    /// Claims each row's grant and writes the row (as a refused replay when the grant was
    /// taken): statement by statement, cheap in-process.
    fn insert_usage(&self, rows: &[UsageRow]) -> Result<Vec<bool>> {
        let mut written = Vec::with_capacity(rows.len());
        for r in rows {
            let fresh =
                match &r.grant_use {
                    None => true,
                    Some(g) => self.exec(
                        "INSERT INTO used_grants(exp, key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                        &params![g.exp, &g.key],
                    )? == 1,
                };
            let (ok, reason, token_jti) = if fresh {
                (r.ok, r.reason.as_deref(), r.token_jti.as_deref())
            } else {
                (false, Some(replay_reason(r.grant_jti.is_some())), None)
            };
            self.exec(
                "INSERT INTO usage_log(time, key_id, user_name, subject, address, user_agent, ok, reason,
                    grant_jti, grant_exp, token_jti, no_jti, pat_id, trust, claims)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                &params![
                    r.time,
                    &r.key_id,
                    &r.user,
                    &r.subject,
                    &r.address,
                    &r.user_agent,
                    ok,
                    reason,
                    &r.grant_jti,
                    r.grant_exp,
                    token_jti,
                    r.no_jti,
                    &r.pat_id,
                    &r.trust,
                    &r.claims
                ],
            )?;
            written.push(fresh);
        }
        Ok(written)
    }

    pub fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        let rows = self.rows(
            "SELECT time, key_id, user_name, subject, address, user_agent, ok, reason, no_jti, pat_id, count,
                trust, claims
             FROM usage_log
             WHERE (CAST(?1 AS TEXT) IS NULL OR key_id = ?1 OR pat_id = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR user_name = ?2 OR subject = ?2)
               AND (CAST(?3 AS BIGINT) IS NULL OR time >= ?3) AND (?4 = 0 OR ok = 0) AND (?6 = 0 OR no_jti <> 0)
             ORDER BY time DESC, id DESC LIMIT ?5",
            &params![
                &f.key_id,
                &f.user,
                f.since,
                f.failures_only,
                f.limit,
                f.no_jti_only
            ],
        )?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    time: r.get(0)?,
                    key_id: r.get(1)?,
                    user: r.get(2)?,
                    subject: r.get(3)?,
                    address: r.get(4)?,
                    user_agent: r.get(5)?,
                    ok: r.get(6)?,
                    reason: r.get(7)?,
                    no_jti: r.get(8)?,
                    pat_id: r.get(9)?,
                    count: r.get(10)?,
                    trust: r.get(11)?,
                    claims: r.get(12)?,
                    ..UsageRow::default()
                })
            })
            .collect()
    }

    /// Grants used and not yet expired: seeds a server's in-memory replay check when it
    /// starts.
    pub fn live_used_grants(&self, now: i64) -> Result<Vec<GrantUse>> {
        self.rows(
            "SELECT key, exp FROM used_grants WHERE exp >= ?1",
            &params![now],
        )?
        .iter()
        .map(|r| {
            Ok(GrantUse {
                key: r.get(0)?,
                exp: r.get(1)?,
            })
        })
        .collect()
    }
}

/// Why a row's grant claim failed: its grant was used before.
pub fn replay_reason(had_jti: bool) -> &'static str {
    if had_jti {
        "Grant has already been used (jti replayed)"
    } else {
        "Grant has already been used (a grant without jti is good for one exchange)"
    }
}
