//! A minimal protobuf reader for the JWT payload in Envoy's dynamic metadata.
//!
//! The module reads the property `metadata` (Envoy serializes the whole
//! `envoy.config.core.v3.Metadata` message with `SerializeToString`) and walks
//! `filter_metadata[<namespace>]` (a `google.protobuf.Struct`) to the payload key, whose
//! `google.protobuf.Value` is converted into the engine's [`Claim`]. Reading the message at the
//! top level is deliberate: below it Envoy converts `Struct`s into CEL maps, and how it then
//! serializes those maps changed between versions (protobuf `Struct` in older releases, the
//! untyped pairs encoding in newer ones, where a nested object and a string are
//! indistinguishable). The `Metadata` message is encoded the same way in every version.
//!
//! Wire format facts used (protobuf encoding spec): a field key is a varint
//! `(field_number << 3) | wire_type`; wire types 0 varint, 1 fixed64, 2 length-delimited,
//! 5 fixed32 (3/4, groups, never occur in these messages and are rejected). Map fields are
//! repeated entry messages `{1: key, 2: value}`; for duplicate keys the last entry wins.

use crate::engine::Claim;

/// How deep a payload is read: values below `depth` (see `Engine::jwt_depth`, at most the
/// longest claim path accepted plus one) are left unread, as [`Claim::Other`]. No rule can look
/// at them, so a deeply nested claim neither hides the token (the rules that read `iss`, `sub`
/// or a shallow claim still see it) nor makes the reader recurse without bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Depth(pub(crate) usize);

enum Wire<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.buf.split_first()?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    /// The next field, `Ok(None)` at the end, `Err(())` on malformed input.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ()> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint().ok_or(())?;
        let number = key >> 3;
        if number == 0 {
            return Err(());
        }
        let wire = match key & 7 {
            0 => {
                self.varint().ok_or(())?;
                Wire::Varint
            }
            1 => {
                self.take(8).ok_or(())?;
                Wire::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint().ok_or(())?).map_err(|_| ())?;
                Wire::Bytes(self.take(len).ok_or(())?)
            }
            5 => {
                self.take(4).ok_or(())?;
                Wire::Fixed32
            }
            _ => return Err(()),
        };
        Ok(Some((number, wire)))
    }
}

/// Why a payload could not be decoded (logged by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

fn text(bytes: &[u8]) -> Result<String, Malformed> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| Malformed)
}

/// A map entry `{1: string key, 2: message value}`.
fn map_entry(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let mut key: &[u8] = &[];
    let mut value: &[u8] = &[];
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => key = b,
            (2, Wire::Bytes(b)) => value = b,
            (1 | 2, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok((key, value))
}

/// Finds `filter_metadata[namespace][key]` in a serialized `envoy.config.core.v3.Metadata` and
/// converts it. `Ok(None)`: not present.
pub(crate) fn jwt_payload(
    metadata: &[u8],
    namespace: &str,
    key: &str,
    limit: Depth,
) -> Result<Option<Claim>, Malformed> {
    // filter_metadata = 1 (map<string, google.protobuf.Struct>); the last entry for a key wins.
    let mut found: Option<&[u8]> = None;
    let mut r = Reader::new(metadata);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        if let (1, Wire::Bytes(entry)) = (number, wire) {
            let (k, v) = map_entry(entry)?;
            if k == namespace.as_bytes() {
                found = Some(v);
            }
        }
    }
    let Some(structure) = found else {
        return Ok(None);
    };
    // google.protobuf.Struct: fields = 1 (map<string, Value>).
    let mut value: Option<&[u8]> = None;
    let mut r = Reader::new(structure);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        if let (1, Wire::Bytes(entry)) = (number, wire) {
            let (k, v) = map_entry(entry)?;
            if k == key.as_bytes() {
                value = Some(v);
            }
        }
    }
    match value {
        None => Ok(None),
        Some(v) => decode_value(v, 0, limit.0).map(Some),
    }
}

/// `google.protobuf.Value`: null 1, number 2, string 3, bool 4, struct 5, list 6 (a oneof: the
/// last one present wins).
fn decode_value(bytes: &[u8], depth: usize, limit: usize) -> Result<Claim, Malformed> {
    if depth > limit {
        // Deeper than any rule reads: present, never compared.
        return Ok(Claim::Other);
    }
    let mut claim = Claim::Other;
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        claim = match (number, wire) {
            (1, Wire::Varint) | (2, Wire::Fixed64) | (4, Wire::Varint) => Claim::Other,
            (3, Wire::Bytes(b)) => Claim::String(text(b)?),
            (5, Wire::Bytes(b)) => decode_struct(b, depth + 1, limit)?,
            (6, Wire::Bytes(b)) => decode_list(b, depth + 1, limit)?,
            (1..=6, _) => return Err(Malformed),
            _ => continue,
        };
    }
    Ok(claim)
}

fn decode_struct(bytes: &[u8], depth: usize, limit: usize) -> Result<Claim, Malformed> {
    let mut fields: Vec<(String, Claim)> = Vec::new();
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        match (number, wire) {
            (1, Wire::Bytes(entry)) => {
                let (k, v) = map_entry(entry)?;
                let name = text(k)?;
                let value = decode_value(v, depth, limit)?;
                match fields.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = value,
                    None => fields.push((name, value)),
                }
            }
            (1, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(Claim::Object(fields))
}

fn decode_list(bytes: &[u8], depth: usize, limit: usize) -> Result<Claim, Malformed> {
    let mut items = Vec::new();
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.field().map_err(|_| Malformed)? {
        match (number, wire) {
            (1, Wire::Bytes(v)) => items.push(decode_value(v, depth, limit)?),
            (1, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(Claim::List(items))
}
