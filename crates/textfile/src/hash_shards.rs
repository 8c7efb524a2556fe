//! A set of series hashes held as sorted shards: about 8 bytes a hash.
//!
//! The series index holds every served series' hash, a million at the default caps. A hash
//! table of them is 9 bytes a bucket and at most 7/8 full, and it doubles: just past a power
//! of two (a million is just under 2^20 / (7/8)), 18 bytes a hash, the exporter's largest
//! table. Here the hashes (uniform: `series_hash` ends with a full-avalanche mix) are split by
//! their top bits into shards of about [`SHARD_TARGET`], each a sorted boxed slice of exactly
//! its length. A lookup is a binary search in one shard; an insertion or removal rebuilds
//! that shard (a few hundred bytes), which the index does only for files whose series
//! changed.

/// About how many hashes a shard holds before the shards double.
const SHARD_TARGET: usize = 64;

/// A set of uniformly distributed 64-bit hashes: see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct HashShards {
    /// The hashes by their top `bits` bits, each shard sorted.
    shards: Vec<Box<[u64]>>,
    bits: u32,
    len: usize,
}

impl HashShards {
    /// Whether it holds no hash.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every hash.
    pub(crate) fn clear(&mut self) {
        *self = HashShards::default();
    }

    /// Adds `hash`; false when it was already there.
    pub(crate) fn insert(&mut self, hash: u64) -> bool {
        if self.shards.is_empty() {
            self.shards.push(Box::default());
        }
        let index = self.shard_of(hash);
        let shard = &self.shards[index];
        let Err(at) = shard.binary_search(&hash) else {
            return false;
        };
        let mut grown = Vec::with_capacity(shard.len() + 1);
        grown.extend_from_slice(&shard[..at]);
        grown.push(hash);
        grown.extend_from_slice(&shard[at..]);
        self.shards[index] = grown.into_boxed_slice();
        self.len += 1;
        if self.len > SHARD_TARGET << self.bits {
            self.split();
        }
        true
    }

    /// Removes `hash`; false when it was not there.
    pub(crate) fn remove(&mut self, hash: u64) -> bool {
        let index = self.shard_of(hash);
        let Some(shard) = self.shards.get(index) else {
            return false;
        };
        let Ok(at) = shard.binary_search(&hash) else {
            return false;
        };
        let mut shrunk = Vec::with_capacity(shard.len() - 1);
        shrunk.extend_from_slice(&shard[..at]);
        shrunk.extend_from_slice(&shard[at + 1..]);
        self.shards[index] = shrunk.into_boxed_slice();
        self.len -= 1;
        true
    }

    /// Whether it holds `hash`.
    #[cfg(test)]
    fn contains(&self, hash: u64) -> bool {
        self.shards
            .get(self.shard_of(hash))
            .is_some_and(|s| s.binary_search(&hash).is_ok())
    }

    fn shard_of(&self, hash: u64) -> usize {
        match self.bits {
            0 => 0,
            bits => (hash >> (64 - bits)) as usize,
        }
    }

    /// Doubles the shards: each splits in two by the next bit (it is sorted, so the hashes
    /// with that bit clear come first).
    fn split(&mut self) {
        let bit = 63 - self.bits;
        let mut shards = Vec::with_capacity(self.shards.len() * 2);
        for shard in std::mem::take(&mut self.shards) {
            let at = shard.partition_point(|h| (h >> bit) & 1 == 0);
            shards.push(Box::from(&shard[..at]));
            shards.push(Box::from(&shard[at..]));
        }
        self.shards = shards;
        self.bits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform 64-bit hashes, as series hashes are.
    fn spread(i: u64) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(7).hash_one(i)
    }

    #[test]
    fn holds_what_a_hash_set_holds() {
        let mut shards = HashShards::default();
        let mut set = std::collections::HashSet::new();
        // Inserts with repeats, then removals of half, of absent ones, and inserts again.
        for i in 0..20_000u64 {
            let h = spread(i % 15_000);
            assert_eq!(shards.insert(h), set.insert(h), "insert {i}");
        }
        assert!(shards.bits > 6, "{} bits", shards.bits);
        for i in (0..30_000u64).step_by(2) {
            let h = spread(i);
            assert_eq!(shards.remove(h), set.remove(&h), "remove {i}");
        }
        for i in 0..1_000u64 {
            assert_eq!(shards.insert(spread(i)), set.insert(spread(i)));
        }
        assert_eq!(shards.len, set.len());
        for i in 0..40_000u64 {
            assert_eq!(shards.contains(spread(i)), set.contains(&spread(i)), "{i}");
        }
        for shard in &shards.shards {
            assert!(shard.is_sorted());
        }
        // The ends of the range, in the first and the last shard.
        for h in [0, u64::MAX] {
            assert_eq!(shards.insert(h), set.insert(h));
            assert!(!shards.insert(h) && shards.remove(h) && !shards.contains(h));
        }
        shards.clear();
        assert!(shards.is_empty() && !shards.remove(u64::MAX));
    }
}
