//! A table of shared values that forgets the unused ones as it grows: family shapes
//! (`prepared::FamilyShape::intern`) and the HELP/TYPE text between a file's lines
//! (`packed::Gaps`), both the same in every file a library writes with the same families.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Values in use, by a key their caller computes (values that share a key are told apart by
/// the caller's comparison). It holds at most about twice the values in use, plus a
/// thousand: when it reaches its purge size, it drops those only it holds.
pub(crate) struct Interned<T> {
    map: Option<HashMap<u64, Vec<Arc<T>>>>,
    len: usize,
    /// The size at which values no longer used are dropped.
    purge_at: usize,
}

impl<T> Interned<T> {
    /// An empty table (for a `static`).
    pub(crate) const fn new() -> Interned<T> {
        Interned {
            map: None,
            len: 0,
            purge_at: 1024,
        }
    }

    /// The table in `table`, locked. A poisoned lock only means another thread panicked
    /// while holding it; the table is still one of valid values.
    pub(crate) fn lock(table: &Mutex<Interned<T>>) -> MutexGuard<'_, Interned<T>> {
        table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value kept under `key` for which `is` holds.
    pub(crate) fn find(&self, key: u64, is: impl Fn(&Arc<T>) -> bool) -> Option<Arc<T>> {
        let kept = self.map.as_ref()?.get(&key)?;
        kept.iter().find(|v| is(v)).cloned()
    }

    /// Keeps `value` under `key`, shared from now on.
    pub(crate) fn insert(&mut self, key: u64, value: T) -> Arc<T> {
        let value = Arc::new(value);
        let map = self.map.get_or_insert_with(HashMap::new);
        map.entry(key).or_default().push(Arc::clone(&value));
        self.len += 1;
        if self.len >= self.purge_at {
            map.retain(|_, kept| {
                kept.retain(|v| Arc::strong_count(v) > 1);
                !kept.is_empty()
            });
            self.len = map.values().map(Vec::len).sum();
            self.purge_at = 2 * self.len + 1024;
        }
        value
    }
}
