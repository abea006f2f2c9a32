//! Keys and tokens a check asks for that the registry does not hold: revoked ones (they
//! leave it at once), long-expired ones, and new ones not yet applied. The store answers,
//! so that refusals still say "revoked" or "expired"; at a bounded rate, since anyone can
//! send a well-formed token nobody issued; and the dead ones are remembered, a bounded
//! number of them, since a revoked key's tokens keep coming back until they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::registry::{KeyEntry, PatEntry};

/// Store lookups per second at most, on average; bursts up to this many at once.
const LOOKUPS_PER_SECOND: f64 = 200.0;
/// Dead keys and tokens remembered at most (about 300 bytes each): beyond, all are
/// forgotten and looked up again.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Miss {
    /// By key id (an access token's `key_id`).
    Key(String),
    /// By client id or Google address (a grant's `iss`).
    Client(String),
    /// By the token's SHA-256.
    Pat([u8; 32]),
}

#[derive(Clone)]
pub enum Dead {
    Key(Arc<KeyEntry>),
    Pat(Arc<PatEntry>),
}

impl Dead {
    pub fn key(&self) -> Option<Arc<KeyEntry>> {
        match self {
            Dead::Key(k) => Some(k.clone()),
            Dead::Pat(_) => None,
        }
    }

    pub fn pat(&self) -> Option<Arc<PatEntry>> {
        match self {
            Dead::Pat(p) => Some(p.clone()),
            Dead::Key(_) => None,
        }
    }
}

/// A revoked or expired key stays so: it can be remembered for good.
pub fn key_is_dead(k: &KeyEntry, now: i64) -> bool {
    k.revoked.is_some() || k.expires.is_some_and(|e| e <= now)
}

/// So does a revoked or expired token, or one whose user's secret was rotated (`epoch` is
/// the user's current one, None for a user gone).
pub fn pat_is_dead(p: &PatEntry, epoch: Option<i64>, now: i64) -> bool {
    p.pat.revoked.is_some()
        || p.pat.expires.is_some_and(|e| e <= now)
        || epoch != Some(p.pat.secret_epoch)
}

pub struct Misses {
    remembered: Mutex<HashMap<Miss, Dead>>,
    /// A token bucket: lookups available, and when it was last filled.
    bucket: Mutex<(f64, Instant)>,
}

impl Default for Misses {
    fn default() -> Misses {
        Misses {
            remembered: Mutex::default(),
            bucket: Mutex::new((LOOKUPS_PER_SECOND, Instant::now())),
        }
    }
}

impl Misses {
    pub fn cached(&self, miss: &Miss) -> Option<Dead> {
        self.remembered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(miss)
            .cloned()
    }

    pub fn remember(&self, miss: Miss, dead: Dead) {
        let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        if remembered.len() >= REMEMBERED {
            remembered.clear();
        }
        remembered.insert(miss, dead);
    }

    /// Takes one lookup from the bucket; false when it is empty.
    pub fn may_look_up(&self) -> bool {
        self.take(Instant::now())
    }

    fn take(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (available, filled) = *bucket;
        let refill = now.saturating_duration_since(filled).as_secs_f64() * LOOKUPS_PER_SECOND;
        let available = (available + refill).min(LOOKUPS_PER_SECOND);
        let (left, ok) = if available >= 1.0 {
            (available - 1.0, true)
        } else {
            (available, false)
        };
        *bucket = (left, now);
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lookups_are_limited_to_their_rate_after_a_burst() {
        let misses = Misses::default();
        let start = Instant::now();
        let burst = (0..1_000).filter(|_| misses.take(start)).count();
        assert_eq!(burst, LOOKUPS_PER_SECOND as usize);
        // A tenth of a second later, a tenth of the rate is back.
        let later = start + Duration::from_millis(100);
        let refilled = (0..1_000).filter(|_| misses.take(later)).count();
        assert_eq!(refilled, (LOOKUPS_PER_SECOND / 10.0) as usize);
    }
}
