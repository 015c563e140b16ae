//! Strings stored once, addressed by a `u32`, and hash tables of such ids.
//!
//! Ten thousand policies repeat the same paths (`spec.rules[0].from[0].source`), field names
//! and, across rules, the same principals and namespaces. Each distinct string is kept once
//! in one buffer; the compiled rules, their explanations and the rule indexes hold ids.

use std::hash::Hasher;

/// A string in [`Strings`].
pub(crate) type StrId = u32;

const EMPTY: u32 = u32::MAX;

fn hash(bytes: &[u8]) -> u64 {
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
}

/// An open-addressing hash table of ids, each standing for the string its entry names:
/// finds an entry by the string's bytes without allocating.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdTable {
    /// Entry numbers, `EMPTY` where free; the length is a power of two, at least twice the
    /// number of entries, so probes stay short and always reach a free slot.
    slots: Box<[u32]>,
}

impl IdTable {
    /// A table of `n` entries whose strings `key_of` gives.
    fn with_entries<'a>(n: usize, key_of: impl Fn(u32) -> &'a [u8]) -> IdTable {
        if n == 0 {
            return IdTable::default();
        }
        let size = (n * 2).next_power_of_two();
        let mut slots = vec![EMPTY; size].into_boxed_slice();
        let mask = size - 1;
        for entry in 0..n as u32 {
            let mut i = hash(key_of(entry)) as usize & mask;
            while let Some(slot) = slots.get_mut(i) {
                if *slot == EMPTY {
                    *slot = entry;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        IdTable { slots }
    }

    /// The entry whose string is `key`.
    fn find<'a>(&self, key: &[u8], key_of: impl Fn(u32) -> &'a [u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash(key) as usize & mask;
        loop {
            match self.slots.get(i).copied() {
                None | Some(EMPTY) => return None,
                Some(entry) if key_of(entry) == key => return Some(entry),
                Some(_) => i = (i + 1) & mask,
            }
        }
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
        if let Some(id) = self.find(s) {
            return id;
        }
        let id = self.strings.len() as StrId;
        self.strings.text.push_str(s);
        self.strings.ends.push(self.strings.text.len() as u32);
        if self.strings.len() * 2 > self.table.slots.len() {
            let strings = &self.strings;
            self.table = IdTable::with_entries(strings.len(), |e| strings.bytes(e));
        } else {
            self.insert(id, s.as_bytes());
        }
        id
    }

    pub fn find(&self, s: &str) -> Option<StrId> {
        let strings = &self.strings;
        self.table.find(s.as_bytes(), |e| strings.bytes(e))
    }

    fn insert(&mut self, id: StrId, key: &[u8]) {
        let mask = self.table.slots.len().saturating_sub(1);
        let mut i = hash(key) as usize & mask;
        while let Some(slot) = self.table.slots.get_mut(i) {
            if *slot == EMPTY {
                *slot = id;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    pub fn strings(&self) -> &Strings {
        &self.strings
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
    /// Per key: its string and its run in `rules`.
    keys: Box<[(StrId, u32, u32)]>,
    table: IdTable,
    rules: Box<[u32]>,
}

impl KeyIndex {
    /// From `(key, rule ids)` pairs, keys distinct.
    pub fn new(strings: &Strings, lists: Vec<(StrId, Vec<u32>)>) -> KeyIndex {
        let total = lists.iter().map(|(_, l)| l.len()).sum();
        let mut rules = Vec::with_capacity(total);
        let mut keys = Vec::with_capacity(lists.len());
        for (key, list) in lists {
            keys.push((key, rules.len() as u32, list.len() as u32));
            rules.extend(list);
        }
        let table = IdTable::with_entries(keys.len(), |e| {
            keys.get(e as usize)
                .map_or(&[][..], |(k, _, _)| strings.bytes(*k))
        });
        KeyIndex {
            keys: keys.into_boxed_slice(),
            table,
            rules: rules.into_boxed_slice(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The rules filed under `key`, in order; none when no rule is.
    pub fn get(&self, strings: &Strings, key: &[u8]) -> &[u32] {
        let key_of = |e: u32| {
            self.keys
                .get(e as usize)
                .map_or(&[][..], |(k, _, _)| strings.bytes(*k))
        };
        self.table
            .find(key, key_of)
            .and_then(|e| self.keys.get(e as usize))
            .and_then(|(_, start, len)| {
                self.rules
                    .get(*start as usize..(*start as usize + *len as usize))
            })
            .unwrap_or(&[])
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
        let index = KeyIndex::new(&strings, vec![(ids[3], vec![1, 2]), (ids[7], vec![5])]);
        assert_eq!(index.get(&strings, b"w3"), &[1, 2]);
        assert_eq!(index.get(&strings, b"w7"), &[5]);
        assert!(index.get(&strings, b"w4").is_empty());
        assert!(KeyIndex::default().get(&strings, b"w3").is_empty());
    }
}
