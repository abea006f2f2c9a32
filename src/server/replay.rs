//! The in-memory replay set: grants this server saw used, until they expire. A fast first
//! check (the store's `used_grants` decides across processes), bounded per key so that one
//! key's holder cannot crowd out everyone else's grants, and evicted in expiry order so that
//! each use costs O(log n) however full it is.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// Grants held at most: beyond this, new grants skip the in-memory check (the store's
/// still decides) rather than let memory grow without bound.
pub const CAPACITY: usize = 2_000_000;
/// Unexpired used grants one key may hold. Grants live at most a day, so only a key that
/// exchanges long-lived grants over and over reaches this, and only it is then refused.
pub const PER_KEY: usize = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First use: recorded.
    First,
    /// Used before, and not expired.
    Replayed,
    /// The key holds [`PER_KEY`] unexpired used grants already.
    KeyFull,
}

#[derive(Default)]
pub struct ReplaySet {
    grants: HashMap<[u8; 16], (i64, Option<Arc<str>>)>,
    /// Soonest expiry first. An entry whose grant was forgotten stays until it comes up,
    /// and is then skipped (forgetting is rare: a store that failed).
    by_expiry: BinaryHeap<Reverse<(i64, [u8; 16])>>,
    per_key: HashMap<Arc<str>, usize>,
}

impl ReplaySet {
    /// Seeds the set with grants the store holds as used (their keys unknown: they count
    /// against no key's share).
    pub fn seeded(grants: impl IntoIterator<Item = ([u8; 16], i64)>) -> ReplaySet {
        let mut set = ReplaySet::default();
        for (grant, exp) in grants {
            if set.grants.len() >= CAPACITY {
                break;
            }
            set.grants.insert(grant, (exp, None));
            set.by_expiry.push(Reverse((exp, grant)));
        }
        set
    }

    pub fn len(&self) -> usize {
        self.grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Records `grant` (expiring at `exp`, signed by `key_id`) as used at `now`.
    pub fn first_use(&mut self, grant: [u8; 16], exp: i64, key_id: &str, now: i64) -> Seen {
        self.evict(now);
        if self.grants.get(&grant).is_some_and(|(e, _)| *e >= now) {
            return Seen::Replayed;
        }
        let held = self.per_key.get(key_id).copied().unwrap_or(0);
        if held >= PER_KEY {
            return Seen::KeyFull;
        }
        // Full of live grants: memory stays bounded and the store alone decides.
        if self.grants.len() >= CAPACITY {
            return Seen::First;
        }
        let key: Arc<str> = match self.per_key.get_key_value(key_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key_id),
        };
        *self.per_key.entry(key.clone()).or_default() += 1;
        self.grants.insert(grant, (exp, Some(key)));
        self.by_expiry.push(Reverse((exp, grant)));
        Seen::First
    }

    /// Forgets a grant whose use was not recorded after all.
    pub fn forget(&mut self, grant: [u8; 16]) {
        if let Some((_, key)) = self.grants.remove(&grant) {
            self.release(key);
        }
    }

    /// Drops grants that expired before `now`, oldest first.
    fn evict(&mut self, now: i64) {
        while let Some(&Reverse((exp, grant))) = self.by_expiry.peek() {
            if exp >= now {
                break;
            }
            self.by_expiry.pop();
            // Only the entry this one stands for: not one forgotten and used again since.
            if self.grants.get(&grant).is_some_and(|(e, _)| *e == exp)
                && let Some((_, key)) = self.grants.remove(&grant)
            {
                self.release(key);
            }
        }
    }

    fn release(&mut self, key: Option<Arc<str>>) {
        if let Some(key) = key
            && let Some(n) = self.per_key.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(i: u64) -> [u8; 16] {
        let mut g = [0; 16];
        g[..8].copy_from_slice(&i.to_le_bytes());
        g
    }

    #[test]
    fn a_grant_is_refused_as_replayed_until_it_expires() {
        let mut set = ReplaySet::default();
        assert_eq!(set.first_use(grant(1), 100, "k", 10), Seen::First);
        assert_eq!(set.first_use(grant(1), 100, "k", 50), Seen::Replayed);
        assert_eq!(set.first_use(grant(1), 100, "k", 100), Seen::Replayed);
        // Past its expiry the grant itself is refused by its exp; the set lets it go.
        assert_eq!(set.first_use(grant(2), 500, "k", 101), Seen::First);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn one_key_filling_its_share_is_refused_while_other_keys_go_on() {
        let mut set = ReplaySet::default();
        for i in 0..PER_KEY as u64 {
            assert_eq!(set.first_use(grant(i), 86_400, "greedy", 0), Seen::First);
        }
        assert_eq!(
            set.first_use(grant(u64::MAX), 86_400, "greedy", 0),
            Seen::KeyFull
        );
        assert_eq!(set.first_use(grant(u64::MAX), 60, "other", 0), Seen::First);
        // A forgotten use gives its room back; so does expiry.
        set.forget(grant(0));
        assert_eq!(
            set.first_use(grant(u64::MAX - 1), 60, "greedy", 0),
            Seen::First
        );
        assert_eq!(
            set.first_use(grant(u64::MAX - 2), 86_500, "greedy", 86_401),
            Seen::First
        );
        assert_eq!(set.len(), 1);
        assert_eq!(set.per_key.len(), 1);
    }

    #[test]
    fn grants_seeded_from_the_store_are_replays_and_count_against_no_key() {
        let mut set = ReplaySet::seeded([(grant(7), 100)]);
        assert_eq!(set.first_use(grant(7), 100, "k", 10), Seen::Replayed);
        assert!(set.per_key.is_empty());
        assert_eq!(set.first_use(grant(8), 100, "k", 200), Seen::First);
        assert_eq!(set.len(), 1);
    }
}
