//! The change feed: a row per change to what a server checks against (users, secrets, keys,
//! personal access tokens, trusts, revoked token ids, settings), numbered in commit order and
//! written by triggers in the change's own transaction. Servers apply it entry by entry
//! (the rows it names, read as they are now), so a change costs what it changes; they load
//! everything only at start, or when they fell behind what the feed still holds.
//!
//! Numbering in commit order: SQLite has one writer at a time; on PostgreSQL every feed row
//! is written under one transaction-level advisory lock (taken by the trigger, and up front
//! by admin writes), so a number is handed out only after every lower one committed and a
//! reader never skips a number that commits later.

use super::keys::Key;
use super::pats::Pat;
use super::sql::params;
use super::trusts::Trust;
use super::users::UserAuth;
use super::{Backend, Result, Store};

/// Feed entries read at most in one batch.
pub const BATCH: i64 = 1024;

/// What the feed says happened after a reader's position.
#[derive(Debug)]
pub enum FeedRead {
    /// The entries after the reader's position were pruned (or the store no longer reaches
    /// that position): it must load everything.
    Behind,
    Batch(Box<FeedBatch>),
}

/// A batch of changes: the position it brings a reader to, and the rows it names as they
/// are now (a row that is gone is simply not there).
#[derive(Debug, Default)]
pub struct FeedBatch {
    pub upto: i64,
    /// How many entries the batch covers.
    pub entries: usize,
    /// Someone replaced the whole store (`store copy --force`): load everything.
    pub reset: bool,
    /// Every setting, when one changed.
    pub settings: Option<Vec<(String, String)>>,
    /// Users named (by name), and those of them that still exist.
    pub user_names: Vec<String>,
    pub users: Vec<UserAuth>,
    /// Keys named (by id), and those of them that still exist.
    pub key_ids: Vec<String>,
    pub keys: Vec<Key>,
    /// Personal access tokens named.
    pub pats: Vec<Pat>,
    /// Trusts named (by id), and those of them that still exist.
    pub trust_ids: Vec<String>,
    pub trusts: Vec<Trust>,
    /// Token ids revoked, with their token's expiry.
    pub revoked_tokens: Vec<(String, i64)>,
}

impl Store {
    /// The newest feed position (0 for a store that never changed).
    pub fn feed_head(&self) -> Result<i64> {
        self.value("SELECT coalesce(max(seq), 0) FROM changes", &[])
    }

    /// Reads the changes after position `after`, at most [`BATCH`] entries, with the rows
    /// they name, all as of one moment.
    pub fn read_feed(&self, after: i64) -> Result<FeedRead> {
        self.read_transaction(|| {
            let state = self
                .row(
                    "SELECT pruned, (SELECT coalesce(max(seq), 0) FROM changes) FROM feed_state",
                    &[],
                )?
                .ok_or_else(|| super::StoreError::Data("feed_state holds no row".into()))?;
            let (pruned, head): (i64, i64) = (state.get(0)?, state.get(1)?);
            // Past the head: the store was put back to an earlier state under the reader.
            if after < pruned || after > head {
                return Ok(FeedRead::Behind);
            }
            let entries = self.rows(
                "SELECT seq, entity, id FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                &params![after, BATCH],
            )?;
            let mut batch = FeedBatch {
                upto: after,
                entries: entries.len(),
                ..FeedBatch::default()
            };
            let (mut users, mut keys, mut pats, mut jtis, mut trusts) =
                (false, false, false, false, false);
            for e in &entries {
                batch.upto = e.get(0)?;
                let entity: String = e.get(1)?;
                match entity.as_str() {
                    "user" => {
                        users = true;
                        batch.user_names.push(e.get(2)?);
                    }
                    "key" => {
                        keys = true;
                        batch.key_ids.push(e.get(2)?);
                    }
                    "pat" => pats = true,
                    "trust" => {
                        trusts = true;
                        batch.trust_ids.push(e.get(2)?);
                    }
                    "jti" => jtis = true,
                    "setting" => batch.settings = Some(Vec::new()),
                    // "reset", or a kind a newer tokenauth writes: load everything.
                    _ => batch.reset = true,
                }
            }
            if batch.reset {
                return Ok(FeedRead::Batch(Box::new(batch)));
            }
            let (from, upto) = (after, batch.upto);
            if users {
                batch.users = self.changed_user_auths(from, upto)?;
            }
            if keys {
                batch.keys = self.changed_keys(from, upto)?;
            }
            if pats {
                batch.pats = self.changed_pats(from, upto)?;
            }
            if trusts {
                batch.trusts = self.changed_trusts(from, upto)?;
            }
            if jtis {
                batch.revoked_tokens = self.changed_revoked_tokens(from, upto)?;
            }
            if batch.settings.is_some() {
                batch.settings = Some(self.settings()?);
            }
            Ok(FeedRead::Batch(Box::new(batch)))
        })
    }

    /// Deletes feed entries older than `retention` seconds (by the database's clock),
    /// always keeping the newest, and notes how far it pruned: a reader behind that loads
    /// everything. Returns how many went.
    pub fn prune_feed(&mut self, retention: i64) -> Result<u64> {
        let now = match &self.db {
            Backend::Sqlite(_) => "unixepoch()",
            Backend::Postgres(_) => "CAST(extract(epoch FROM now()) AS BIGINT)",
        };
        let last = format!(
            "SELECT max(seq) FROM changes WHERE time <= {now} - ?1
               AND seq < (SELECT max(seq) FROM changes)"
        );
        self.transaction(false, || {
            let Some(upto) = self.value::<Option<i64>>(&last, &params![retention])? else {
                return Ok(0);
            };
            let n = self.exec("DELETE FROM changes WHERE seq <= ?1", &params![upto])?;
            self.exec(
                "UPDATE feed_state SET pruned = ?1 WHERE pruned < ?1",
                &params![upto],
            )?;
            Ok(n)
        })
    }

    /// Every setting, by name.
    pub fn settings(&self) -> Result<Vec<(String, String)>> {
        self.rows("SELECT name, value FROM settings ORDER BY name", &[])?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    /// Inside a bulk write (`store copy`): turns the feed triggers off, or back on.
    pub(super) fn quiet_feed(&self, quiet: bool) -> Result<()> {
        self.exec("UPDATE feed_state SET quiet = ?1", &params![quiet])
            .map(|_| ())
    }

    /// Inside a write: one entry that tells every reader to load everything.
    pub(super) fn reset_feed(&self) -> Result<()> {
        self.exec("INSERT INTO changes(entity, id) VALUES ('reset', '')", &[])?;
        if self.is_postgres() {
            self.exec(
                &format!("SELECT pg_notify('{}', '')", super::postgres::CHANNEL),
                &[],
            )?;
        }
        Ok(())
    }
}
