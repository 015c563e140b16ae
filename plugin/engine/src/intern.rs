//! Strings stored once, addressed by a `u32`, and hash tables of such ids.
//!
//! Ten thousand policies repeat the same paths (`spec.rules[0].from[0].source`), field names
//! and, across rules, the same principals and namespaces. Each distinct string is kept once
//! in one buffer; the compiled rules, their explanations and the rule indexes hold ids.

use std::hash::Hasher;

/// A string in [`Strings`].
pub(crate) type StrId = u32;

const EMPTY: u32 = u32::MAX;

pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h = super::hash::Fnv::default();
    h.write(bytes);
    h.finish()
}

/// Every distinct string once, end to end in one buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Strings {
    text: String,
    /// Where string `i` ends in `text`; it starts where `i - 1` ends.
    ends: Vec<u32>,
}

impl Strings {
    pub fn get(&self, id: StrId) -> &str {
        let id = id as usize;
        let start = match id.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(id).copied().unwrap_or(start);
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    pub fn bytes(&self, id: StrId) -> &[u8] {
        self.get(id).as_bytes()
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn bytes_held(&self) -> usize {
        self.text.len() + std::mem::size_of_val(&*self.ends)
    }
}

/// An open-addressing hash table of ids, each standing for an item kept elsewhere (a
/// string, a list): finds an item equal to a given one without storing it twice.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdTable {
    /// Ids, `EMPTY` where free; the length is a power of two, at least twice the number of
    /// ids, so probes stay short and always reach a free slot.
    slots: Box<[u32]>,
    len: usize,
}

impl IdTable {
    /// A table of the ids `0..n`, whose hashes `hash_of` gives.
    pub fn with_ids(n: usize, hash_of: impl Fn(u32) -> u64) -> IdTable {
        let mut table = IdTable::default();
        if n > 0 {
            table.slots = vec![EMPTY; (n * 2).next_power_of_two()].into_boxed_slice();
            for id in 0..n as u32 {
                table.place(id, hash_of(id));
            }
            table.len = n;
        }
        table
    }

    fn place(&mut self, id: u32, hash: u64) {
        let mask = self.slots.len().saturating_sub(1);
        let mut i = hash as usize & mask;
        while let Some(slot) = self.slots.get_mut(i) {
            if *slot == EMPTY {
                *slot = id;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of hash `hash` for which `is` holds.
    pub fn find(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        loop {
            match self.slots.get(i).copied() {
                None | Some(EMPTY) => return None,
                Some(id) if is(id) => return Some(id),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `id`; on growing, the ids already in are placed again by `hash_of`. Filled up to
    /// three quarters (a table only used while building: room matters more than probes).
    pub fn insert(&mut self, id: u32, hash: u64, hash_of: impl Fn(u32) -> u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let size = ((self.len + 1) * 2).next_power_of_two().max(16);
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; size].into_boxed_slice());
            for kept in old.iter().copied().filter(|s| *s != EMPTY) {
                self.place(kept, hash_of(kept));
            }
        }
        self.place(id, hash);
        self.len += 1;
    }
}

/// Builds [`Strings`], giving an existing string its id again.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    strings: Strings,
    table: IdTable,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> StrId {
        let h = hash(s.as_bytes());
        let strings = &self.strings;
        if let Some(id) = self.table.find(h, |id| strings.get(id) == s) {
            return id;
        }
        let id = self.strings.len() as StrId;
        self.strings.text.push_str(s);
        self.strings.ends.push(self.strings.text.len() as u32);
        let strings = &self.strings;
        self.table.insert(id, h, |id| hash(strings.bytes(id)));
        id
    }

    /// The buffers, to make room in them (see `compile::make_room`).
    pub fn text_and_ends(&mut self) -> (&mut String, &mut Vec<u32>) {
        (&mut self.strings.text, &mut self.strings.ends)
    }

    /// The strings, without spare capacity; the table is only needed while building.
    pub fn finish(self) -> Strings {
        let mut strings = self.strings;
        strings.text.shrink_to_fit();
        strings.ends.shrink_to_fit();
        strings
    }
}

/// Rule lists by a string key: for each key, a run of one shared list of rule ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyIndex {
    /// Per key: its string and where its run in `rules` starts (it ends where the next
    /// key's starts).
    keys: Box<[(StrId, u32)]>,
    table: IdTable,
    rules: Box<[u32]>,
}

impl KeyIndex {
    /// From `(key, rule id)` pairs sorted by key, rule ids in order within a key.
    pub fn from_sorted(strings: &Strings, pairs: &[(StrId, u32)]) -> KeyIndex {
        let mut keys: Vec<(StrId, u32)> = Vec::new();
        for (i, (key, _)) in pairs.iter().enumerate() {
            if keys.last().is_none_or(|(last, _)| last != key) {
                keys.push((*key, i as u32));
            }
        }
        let table = IdTable::with_ids(keys.len(), |e| {
            keys.get(e as usize)
                .map_or(0, |(k, _)| hash(strings.bytes(*k)))
        });
        KeyIndex {
            keys: keys.into_boxed_slice(),
            table,
            rules: pairs.iter().map(|(_, rule)| *rule).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.keys)
            + std::mem::size_of_val(&*self.table.slots)
            + std::mem::size_of_val(&*self.rules)
    }

    /// The rules filed under `key`, in order; none when no rule is.
    pub fn get(&self, strings: &Strings, key: &[u8]) -> &[u32] {
        let is = |e: u32| {
            self.keys
                .get(e as usize)
                .is_some_and(|(k, _)| strings.bytes(*k) == key)
        };
        let Some(e) = self.table.find(hash(key), is) else {
            return &[];
        };
        let start = self.keys.get(e as usize).map_or(0, |(_, s)| *s as usize);
        let end = self
            .keys
            .get(e as usize + 1)
            .map_or(self.rules.len(), |(_, s)| *s as usize);
        self.rules.get(start..end).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_stored_once_and_found_by_its_bytes() {
        let mut interner = Interner::default();
        let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        let ids: Vec<StrId> = words.iter().map(|w| interner.intern(w)).collect();
        let again: Vec<StrId> = words.iter().map(|w| interner.intern(w)).collect();
        assert_eq!(ids, again);
        assert_eq!(interner.intern(""), 1000);
        let strings = interner.finish();
        for (w, id) in words.iter().zip(&ids) {
            assert_eq!(strings.get(*id), w);
        }
        assert_eq!(strings.get(1000), "");
        let index = KeyIndex::from_sorted(&strings, &[(ids[3], 1), (ids[3], 2), (ids[7], 5)]);
        assert_eq!(index.get(&strings, b"w3"), &[1, 2]);
        assert_eq!(index.get(&strings, b"w7"), &[5]);
        assert!(index.get(&strings, b"w4").is_empty());
        assert!(KeyIndex::default().get(&strings, b"w3").is_empty());
    }
}
