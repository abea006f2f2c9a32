//! The registry a server checks against, kept current by applying the store's change feed:
//! by a follower thread (woken by PostgreSQL's notifications, or polling SQLite's WAL
//! header), and by a request that finds the SQLite store moved on. Applying a batch holds the
//! registry's write lock for O(batch); checks take its read lock for a lookup at a time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::registry::{GRACE, Registry};
use crate::server::metrics::Metrics;
use crate::store::{ChangeProbe, FeedRead, Store, StoreError};

/// On PostgreSQL, a replica serves from a registry at most this old: the follower confirms
/// it (LISTEN/NOTIFY, and a read of the feed's head every [`POLL`]); when it cannot (the
/// database or the connection is gone), checks fail closed with 503 once this much time has
/// passed since the last confirmation.
pub const MAX_STALENESS: Duration = Duration::from_secs(1);
/// How often the follower reads the feed's head when no notification came.
pub const POLL: Duration = Duration::from_millis(50);
/// How often expired keys and tokens are swept out of memory.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct Live {
    registry: RwLock<Registry>,
    /// One applier at a time: a second one waits for the batch in flight (O(batch)), then
    /// finds nothing left to do.
    applying: Mutex<()>,
    /// Milliseconds since `base` at which a feed read that started then found the registry
    /// current; only moves forward.
    confirmed: AtomicU64,
    /// The registry must be loaded whole, and the follower is on it.
    reloading: AtomicBool,
    base: Instant,
    metrics: Arc<Metrics>,
}

impl Live {
    pub fn new(registry: Registry, metrics: Arc<Metrics>) -> Live {
        metrics.registry_loaded(&registry);
        Live {
            registry: RwLock::new(registry),
            applying: Mutex::new(()),
            confirmed: AtomicU64::new(0),
            reloading: AtomicBool::new(false),
            base: Instant::now(),
            metrics,
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the registry is being loaded whole, or must be: until it is, it may miss
    /// changes, and checks answer 503 rather than trust it.
    pub fn reloading(&self) -> bool {
        self.reloading.load(Ordering::Relaxed)
    }

    /// Applies every feed entry after the registry's position, batch by batch, and returns
    /// the position reached; nothing when another applier already reached `upto` (the head
    /// the caller saw) while this one waited for it. When the feed no longer holds the
    /// entries (this server fell behind its retention) or the store was replaced, the
    /// registry must be loaded whole: with `may_load` this does it (the follower), else it
    /// leaves it to the follower and says so, so that a request never waits for a load.
    pub fn catch_up(
        &self,
        store: &Store,
        now: i64,
        upto: Option<i64>,
        may_load: bool,
    ) -> Result<i64, CatchUpError> {
        if !may_load && self.reloading() {
            return Err(CatchUpError::Reloading);
        }
        let _one = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(upto) = upto {
            let seq = self.read().seq();
            if seq >= upto {
                return Ok(seq);
            }
        }
        loop {
            let after = self.read().seq();
            let batch = match store.read_feed(after)? {
                FeedRead::Batch(b) if !b.reset => b,
                behind => {
                    let why = match behind {
                        FeedRead::Behind => {
                            "this server fell behind the change feed's retention (or the store was restored to an earlier state)"
                        }
                        FeedRead::Batch(_) => "the store was replaced (store copy)",
                    };
                    if !self.reloading.swap(true, Ordering::Relaxed) {
                        tracing::warn!(after, "{why}; loading everything again");
                    }
                    if !may_load {
                        return Err(CatchUpError::Reloading);
                    }
                    // Built beside the current registry; checks answer 503 meanwhile.
                    let fresh = Registry::load(store, now)?;
                    let seq = fresh.seq();
                    self.metrics.registry_loaded(&fresh);
                    *self.registry.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                    self.reloading.store(false, Ordering::Relaxed);
                    tracing::info!(generation = seq, "registry loaded");
                    return Ok(seq);
                }
            };
            let entries = batch.entries;
            if entries == 0 {
                return Ok(after);
            }
            let prepared = Registry::prepare(*batch);
            let seq = {
                let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
                registry.apply(prepared, now);
                self.metrics.registry_sized(&registry);
                registry.seq()
            };
            self.metrics.feed_applied(entries);
            // Info: on PostgreSQL this is the moment a change reaches this replica.
            tracing::info!(generation = seq, entries, "store changes applied");
            if entries < crate::store::FEED_BATCH as usize {
                return Ok(seq);
            }
        }
    }

    /// Drops revoked token ids whose tokens have expired (a read lock when there are none).
    fn expire_revoked(&self, now: i64) {
        if self.read().next_revoked_expiry().is_some_and(|e| e < now) {
            let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
            registry.expire_revoked(now);
            self.metrics.registry_sized(&registry);
        }
    }

    /// Drops from memory what expired more than [`GRACE`] ago between two sweeps.
    fn sweep(&self, store: &Store, from: i64, to: i64, now: i64) -> Result<(), StoreError> {
        let keys = store.keys_expired_between(from, to)?;
        let pats = store.pats_expired_between(from, to)?;
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry.sweep(&keys, &pats, now);
        self.metrics.registry_sized(&registry);
        Ok(())
    }

    pub fn confirm(&self, started: Instant) {
        let ms = started.duration_since(self.base).as_millis() as u64;
        self.confirmed.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the registry was last known current (PostgreSQL).
    pub fn age(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.confirmed.load(Ordering::Relaxed)))
    }
}

/// Why the registry could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It must be loaded whole, which the follower is doing.
    #[error("the registry is being loaded again (this server fell behind the store's changes)")]
    Reloading,
}

/// The follower: reads the feed's head (when PostgreSQL notifies, every [`POLL`] anyway, and
/// on SQLite only when the WAL header says someone committed), applies what is new, marks
/// the registry confirmed as of the moment the read began, drops revoked token ids whose
/// tokens expired, sweeps expired credentials out (every [`SWEEP_EVERY`]), and prunes feed
/// entries older than `retention` seconds. Errors (the database gone) leave
/// the registry unconfirmed, so checks on PostgreSQL fail closed after [`MAX_STALENESS`];
/// the store reconnects on the next round by itself. Ends when the server's state is gone.
pub fn follow(mut store: Store, live: Arc<Live>, clock: Clock, retention: i64) {
    let probe = store.path().and_then(ChangeProbe::open);
    let mut seen = None;
    let mut failing = false;
    let mut swept_to = clock.now() - GRACE;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let prune_every = Duration::from_secs((retention / 2).clamp(0, 60) as u64).max(POLL);
    let mut next_prune = Instant::now();
    while Arc::strong_count(&live) > 1 {
        let started = Instant::now();
        let mut round = || -> Result<(), CatchUpError> {
            let header = probe.as_ref().and_then(ChangeProbe::header);
            if live.reloading() || header.is_none() || header != seen {
                if live.reloading() || store.feed_head()? != live.read().seq() {
                    live.catch_up(&store, clock.now(), None, true)?;
                }
                seen = header;
            }
            live.expire_revoked(clock.now());
            if started >= next_sweep {
                let now = clock.now();
                live.sweep(&store, swept_to, now - GRACE, now)?;
                swept_to = now - GRACE;
                next_sweep = started + SWEEP_EVERY;
            }
            if started >= next_prune {
                let pruned = store.prune_feed(retention)?;
                if pruned > 0 {
                    tracing::debug!(pruned, "old change-feed entries pruned");
                }
                next_prune = started + prune_every;
            }
            Ok(())
        };
        match round() {
            Ok(()) => {
                live.confirm(started);
                if std::mem::take(&mut failing) {
                    tracing::info!("store reachable again; registry current");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "cannot follow the store's changes; on PostgreSQL checks fail closed after {} ms", MAX_STALENESS.as_millis());
                }
                std::thread::sleep(POLL);
                continue;
            }
        }
        if let Err(e) = store.wait_for_change(POLL) {
            tracing::debug!(error = %e, "change notifications interrupted");
            std::thread::sleep(POLL);
        }
    }
}
