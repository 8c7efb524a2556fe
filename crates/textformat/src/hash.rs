//! The hashes of names and series: [`series_hash`], the byte hash under it, and the maps
//! and sets keyed by hashes that are not hashed again ([`HashedMap`], [`HashedSet`]). A leaf:
//! the merge, the name table ([`crate::clash`]) and the exporter's series index use it.

use std::collections::HashMap;
use std::hash::Hasher;

use crate::Sample;

/// A fast 64-bit hash of bytes, a word at a time, each word mixed in by [`mix`] (a bijection
/// whose every input bit affects every output bit). Not DoS-resistant, which does not matter
/// here: a collision costs one comparison in [`merge`](crate::merge::merge) (which compares
/// the samples whose hashes match), and at worst the exporter's slower full merge.
///
/// (FxHash's multiply-rotate, used before, collides on short strings that differ in two
/// bytes: `job_00019` and `job_00092` hashed alike, so did sums of label hashes such as
/// `{job="a0",shard="1"}` and `{job="a1",shard="0"}`; jobs sharing family names looked like
/// duplicate series and took the full merge.)
pub(crate) fn fx_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = mix(seed ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    h
}

/// The hash by which [`merge`](crate::merge::merge) identifies a series: its name, its labels in any order, and its
/// timestamp in milliseconds. Labels are combined with a commutative sum, so no sorting (and
/// no allocation) is needed. Equal series hash equally; unequal ones may collide, rarely, so
/// a caller that needs certainty compares the samples when hashes match.
pub fn series_hash(sample: &Sample<'_>) -> u64 {
    let mut labels: u64 = 0;
    for label in &sample.labels {
        let name = fx_hash(label.name.as_bytes(), 0x9e37_79b9_7f4a_7c15);
        labels = labels.wrapping_add(fx_hash(label.value.as_bytes(), name));
    }
    let ts = sample.timestamp.map_or(u64::MAX, |t| t.as_millis() as u64);
    fx_hash(sample.name.as_bytes(), labels ^ ts.rotate_left(32))
}

/// The 64-bit finalizer of MurmurHash3 (`fmix64`): every input bit affects every output bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A hasher for keys that already are hashes (such as [`series_hash`]'s): the key is the hash.
/// Use it through [`HashedMap`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in.
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by series hashes ([`series_hash`]), which are not hashed again.
pub type HashedMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PassThrough>>;

/// A set of series hashes ([`series_hash`]), which are not hashed again.
pub type HashedSet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>;
