//! The JSON reader of the plugin configuration, and accessors that keep the field path for
//! error messages.
//!
//! Hand-written rather than serde_json: serde's visitors, serde_json's float parsing and
//! printing and their `Display` impls were the largest part of the proxy-wasm module (README,
//! "Module size"). It accepts the JSON serde_json accepts, with the same nesting limit, and
//! words syntax errors as serde_json does ("expected value at line 1 column 2"), so the
//! messages users and tests know are unchanged. (Only a number within a rounding step of the
//! largest `f64` may be judged out of range differently: serde_json itself rounds those
//! differently with and without its `float_roundtrip` feature.) Objects behave as
//! serde_json's default map: keys in sorted order, a repeated key's last value wins.
//!
//! serde's derive errors say "invalid type at line 3 column 7"; users of AuthorizationPolicy
//! need "spec.rules[0].from[0].source.ipBlocks[1]". Every accessor here takes the path of the
//! value it reads, so every error names the field.

use super::error::{ConfigError, ErrorKind};
use std::fmt;

pub type Result<T> = std::result::Result<T, ConfigError>;

/// A JSON value. Numbers keep their text: the configuration never computes with one, and
/// keeping the text avoids float parsing and printing altogether.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Box<str>),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// A serde_json value as the reader's value: what `PluginConfig::from_value` reads. A copy of
/// the tree, not a second reader: numbers keep serde_json's text for them (`Display`).
pub(crate) fn from_serde(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.to_string().into_boxed_str()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_serde).collect()),
        serde_json::Value::Object(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key.clone(), from_serde(value));
            }
            Value::Object(map)
        }
    }
}

/// An object: entries sorted by key, each key once (the last one written).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    /// Sets `key`, keeping the entries sorted: a repeated key's later value replaces the
    /// earlier one, as inserting into a map in document order does. Binary search and insert
    /// rather than a sort at the end: a sort's instantiation cost the module 4.5 kB, and keys
    /// written in order (as serializers of maps write them) are simply appended.
    pub(crate) fn insert(&mut self, key: String, value: Value) {
        if self.entries.last().is_none_or(|(last, _)| *last < key) {
            self.entries.push((key, value));
            return;
        }
        match self
            .entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key.as_str()))
        {
            Ok(i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = value;
                }
            }
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a String, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        fn pair((k, v): &(String, Value)) -> (&String, &Value) {
            (k, v)
        }
        self.entries
            .iter()
            .map(pair as fn(&'a (String, Value)) -> _)
    }
}

/// A number as serde_json's `Number` would show it in a message: integers as written; `-0`
/// is a float in serde_json (`-0.0`). Other floats are quoted as written (serde_json would
/// print the parsed `f64` in its shortest form: `1e3` as `1000.0`).
pub fn number_text(text: &str) -> String {
    if text == "-0" {
        "-0.0".to_string()
    } else {
        text.to_string()
    }
}

/// The number as a `u64`, when serde_json's `as_u64` gives one: a non-negative integer
/// without fraction or exponent that fits.
pub fn number_as_u64(text: &str) -> Option<u64> {
    let mut n: u64 = 0;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (!text.is_empty()).then_some(n)
}

/// A syntax error, shown as serde_json shows it: `<what> at line <l> column <c>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    what: &'static str,
    line: usize,
    column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

const EOF_LIST: &str = "EOF while parsing a list";
const EOF_OBJECT: &str = "EOF while parsing an object";
const EOF_STRING: &str = "EOF while parsing a string";
const EOF_VALUE: &str = "EOF while parsing a value";
const EXPECTED_COLON: &str = "expected `:`";
const EXPECTED_LIST_COMMA: &str = "expected `,` or `]`";
const EXPECTED_OBJECT_COMMA: &str = "expected `,` or `}`";
const EXPECTED_IDENT: &str = "expected ident";
const EXPECTED_VALUE: &str = "expected value";
const INVALID_ESCAPE: &str = "invalid escape";
const INVALID_NUMBER: &str = "invalid number";
const OUT_OF_RANGE: &str = "number out of range";
const INVALID_CODE_POINT: &str = "invalid unicode code point";
const CONTROL_CHARACTER: &str = "control character (\\u0000-\\u001F) found while parsing a string";
const KEY_MUST_BE_STRING: &str = "key must be a string";
const LONE_SURROGATE: &str = "lone leading surrogate in hex escape";
const TRAILING_COMMA: &str = "trailing comma";
const TRAILING_CHARACTERS: &str = "trailing characters";
const END_OF_HEX_ESCAPE: &str = "unexpected end of hex escape";
const RECURSION_LIMIT: &str = "recursion limit exceeded";

/// The significant digits of the largest decimal that rounds to a finite `f64` (halfway
/// between `f64::MAX` and 2^1024), times 10^308: larger numbers are out of range.
const F64_LIMIT_DIGITS: &[u8] = b"17976931348623158079";

type Parsed<T> = std::result::Result<T, SyntaxError>;

/// A cursor over JSON bytes. Positions in errors follow serde_json: an error about a byte
/// already read points at it; one about the byte looked at next points one past it.
pub(crate) struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Arrays and objects that may still be opened (serde_json's limit: 128).
    depth_left: u8,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser {
            bytes,
            pos: 0,
            depth_left: 128,
        }
    }

    fn error_at(&self, what: &'static str, index: usize) -> SyntaxError {
        let before = self.bytes.get(..index).unwrap_or(self.bytes);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = 1 + before
            .get(..line_start)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        SyntaxError {
            what,
            line,
            column: before.len() - line_start,
        }
    }

    /// About a byte already read.
    fn error(&self, what: &'static str) -> SyntaxError {
        self.error_at(what, self.pos)
    }

    /// About the byte looked at next.
    fn peek_error(&self, what: &'static str) -> SyntaxError {
        self.error_at(what, (self.pos + 1).min(self.bytes.len()))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Skips whitespace; the next byte, not consumed.
    pub(crate) fn whitespace(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    /// One whole document: a value and nothing but whitespace after it.
    pub(crate) fn document(&mut self) -> Parsed<Value> {
        let value = self.value()?;
        self.end()?;
        Ok(value)
    }

    pub(crate) fn end(&mut self) -> Parsed<()> {
        match self.whitespace() {
            Some(_) => Err(self.peek_error(TRAILING_CHARACTERS)),
            None => Ok(()),
        }
    }

    pub(crate) fn value(&mut self) -> Parsed<Value> {
        let Some(b) = self.whitespace() else {
            return Err(self.peek_error(EOF_VALUE));
        };
        match b {
            b'n' => self.ident(b"null").map(|()| Value::Null),
            b't' => self.ident(b"true").map(|()| Value::Bool(true)),
            b'f' => self.ident(b"false").map(|()| Value::Bool(false)),
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => {
                self.pos += 1;
                self.string().map(Value::String)
            }
            b'[' => {
                self.open()?;
                let mut items = Vec::new();
                while self.next_element(items.is_empty())? {
                    items.push(self.value()?);
                }
                self.close();
                Ok(Value::Array(items))
            }
            b'{' => {
                self.open()?;
                let mut map = Map::new();
                let mut first = true;
                while let Some(key) = self.next_key(first)? {
                    first = false;
                    let value = self.value()?;
                    map.insert(key, value);
                }
                self.close();
                Ok(Value::Object(map))
            }
            _ => Err(self.peek_error(EXPECTED_VALUE)),
        }
    }

    /// Enters the array or object whose first byte is next.
    pub(crate) fn open(&mut self) -> Parsed<()> {
        self.depth_left -= 1;
        if self.depth_left == 0 {
            return Err(self.peek_error(RECURSION_LIMIT));
        }
        self.pos += 1;
        Ok(())
    }

    /// Leaves an array or object whose closing byte is next (`next_element` or `next_key`
    /// has seen it).
    pub(crate) fn close(&mut self) {
        self.depth_left += 1;
        self.pos += 1;
    }

    /// Inside an array: whether another element follows (its first byte is next). `first`:
    /// none has been read yet.
    pub(crate) fn next_element(&mut self, first: bool) -> Parsed<bool> {
        match self.whitespace() {
            None => Err(self.peek_error(EOF_LIST)),
            Some(b']') => Ok(false),
            Some(_) if first => Ok(true),
            Some(b',') => {
                self.pos += 1;
                match self.whitespace() {
                    Some(b']') => Err(self.peek_error(TRAILING_COMMA)),
                    Some(_) => Ok(true),
                    None => Err(self.peek_error(EOF_VALUE)),
                }
            }
            Some(_) => Err(self.peek_error(EXPECTED_LIST_COMMA)),
        }
    }

    /// Inside an object: the next key and its `:`, or `None` at the closing `}`. `first`: no
    /// key has been read yet.
    pub(crate) fn next_key(&mut self, first: bool) -> Parsed<Option<String>> {
        match self.whitespace() {
            None => return Err(self.peek_error(EOF_OBJECT)),
            Some(b'}') => return Ok(None),
            Some(b'"') if first => {}
            Some(_) if first => return Err(self.peek_error(KEY_MUST_BE_STRING)),
            Some(b',') => {
                self.pos += 1;
                match self.whitespace() {
                    Some(b'"') => {}
                    Some(b'}') => return Err(self.peek_error(TRAILING_COMMA)),
                    Some(_) => return Err(self.peek_error(KEY_MUST_BE_STRING)),
                    None => return Err(self.peek_error(EOF_VALUE)),
                }
            }
            Some(_) => return Err(self.peek_error(EXPECTED_OBJECT_COMMA)),
        }
        self.pos += 1;
        let key = self.string()?;
        match self.whitespace() {
            Some(b':') => {
                self.pos += 1;
                Ok(Some(key))
            }
            Some(_) => Err(self.peek_error(EXPECTED_COLON)),
            None => Err(self.peek_error(EOF_OBJECT)),
        }
    }

    fn ident(&mut self, word: &[u8]) -> Parsed<()> {
        self.pos += 1;
        for expected in word.iter().skip(1) {
            match self.next() {
                None => return Err(self.error(EOF_VALUE)),
                Some(b) if b != *expected => return Err(self.error(EXPECTED_IDENT)),
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number, checked as serde_json checks it, kept as its text.
    fn number(&mut self) -> Parsed<Value> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.next() {
            None => return Err(self.error(EOF_VALUE)),
            Some(b'0') => {
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.peek_error(INVALID_NUMBER));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(self.error(INVALID_NUMBER)),
        }
        let int_end = self.pos;
        let mut frac = int_end..int_end;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            if self.digits() == 0 {
                return Err(match self.peek() {
                    Some(_) => self.peek_error(INVALID_NUMBER),
                    None => self.peek_error(EOF_VALUE),
                });
            }
            frac = frac_start..self.pos;
        }
        let mut exponent: i64 = 0;
        // An exponent beyond i32 with a negative sign or a zero number: serde_json reads 0.
        let mut zero = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let negative = match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                _ => false,
            };
            match self.next() {
                None => return Err(self.error(EOF_VALUE)),
                Some(b @ b'0'..=b'9') => exponent = i64::from(b - b'0'),
                Some(_) => return Err(self.error(INVALID_NUMBER)),
            }
            while let Some(b @ b'0'..=b'9') = self.peek() {
                self.pos += 1;
                exponent = exponent * 10 + i64::from(b - b'0');
                // serde_json stops at an exponent beyond i32: an error for a non-zero number
                // growing, zero otherwise.
                if exponent > i64::from(i32::MAX) {
                    let zero_digits = self
                        .bytes
                        .get(int_start..frac.end)
                        .unwrap_or_default()
                        .iter()
                        .all(|&b| b == b'0' || b == b'.');
                    if !zero_digits && !negative {
                        return Err(self.error(OUT_OF_RANGE));
                    }
                    self.digits();
                    zero = true;
                    break;
                }
            }
            if negative {
                exponent = -exponent;
            }
        }
        let int_digits = self.bytes.get(int_start..int_end).unwrap_or_default();
        let frac_digits = self.bytes.get(frac).unwrap_or_default();
        if !zero && out_of_range(int_digits, frac_digits, exponent) {
            return Err(self.error(OUT_OF_RANGE));
        }
        // ASCII: digits, sign, point and exponent, checked above.
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        Ok(Value::Number(
            std::str::from_utf8(text).unwrap_or_default().into(),
        ))
    }

    /// A string whose opening `"` has been read.
    pub(crate) fn string(&mut self) -> Parsed<String> {
        let mut out = Vec::new();
        loop {
            let run = self
                .bytes
                .get(self.pos..)
                .unwrap_or_default()
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let Some(run) = run else {
                self.pos = self.bytes.len();
                return Err(self.error(EOF_STRING));
            };
            out.extend_from_slice(self.bytes.get(self.pos..self.pos + run).unwrap_or_default());
            self.pos += run;
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut out)?,
                _ => return Err(self.error(CONTROL_CHARACTER)),
            }
        }
        String::from_utf8(out).map_err(|e| {
            // serde_json points back from the closing quote to the first invalid byte.
            let invalid = e.as_bytes().len() - e.utf8_error().valid_up_to();
            let mut error = self.error(INVALID_CODE_POINT);
            error.column = error.column.saturating_sub(invalid);
            error
        })
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Parsed<()> {
        let Some(b) = self.next() else {
            return Err(self.error(EOF_STRING));
        };
        let c = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => b'\x08',
            b'f' => b'\x0c',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(out),
            _ => return Err(self.error(INVALID_ESCAPE)),
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            self.pos = self.bytes.len();
            return Err(self.error(EOF_STRING));
        };
        self.pos += 4;
        let mut n = 0;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error(INVALID_ESCAPE)),
            };
            n = n * 16 + u32::from(v);
        }
        Ok(n)
    }

    /// `\uXXXX`, a surrogate pair being two of them.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Parsed<()> {
        let n = self.hex4()?;
        let code = match n {
            0xDC00..=0xDFFF => return Err(self.error(LONE_SURROGATE)),
            0xD800..=0xDBFF => {
                for expected in [b'\\', b'u'] {
                    match self.peek() {
                        None => return Err(self.error(EOF_STRING)),
                        Some(b) => {
                            self.pos += 1;
                            if b != expected {
                                return Err(self.error(END_OF_HEX_ESCAPE));
                            }
                        }
                    }
                }
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error(LONE_SURROGATE));
                }
                (((n - 0xD800) << 10) | (low - 0xDC00)) + 0x1_0000
            }
            _ => n,
        };
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }
}

/// Whether `<int>.<frac>e<exponent>` is beyond the largest finite `f64`, where serde_json
/// reports "number out of range".
fn out_of_range(int_digits: &[u8], frac_digits: &[u8], exponent: i64) -> bool {
    let digits = || int_digits.iter().chain(frac_digits).copied();
    let Some(first) = digits().position(|b| b != b'0') else {
        return false;
    };
    // The power of ten of the first significant digit.
    let magnitude = int_digits.len() as i64 - 1 - first as i64 + exponent;
    match magnitude {
        ..308 => false,
        308 => {
            let significant: Vec<u8> = digits().skip(first).collect();
            significant.as_slice() >= F64_LIMIT_DIGITS
        }
        _ => true,
    }
}

/// Parses one whole JSON document.
pub(crate) fn parse(bytes: &[u8]) -> Parsed<Value> {
    Parser::new(bytes).document()
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An object, or an error naming `path`.
pub fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ConfigError::new(
            ErrorKind::WrongType,
            path,
            format!("must be an object, got {}", type_name(other)),
        )),
    }
}

/// Rejects keys outside `allowed`: a misspelt field would otherwise be silently ignored, and
/// in an authorization policy an ignored field changes what is allowed.
pub fn only_keys(map: &Map, allowed: &[&str], path: &str) -> Result<()> {
    only_these_keys(map.keys(), allowed, path)
}

/// [`only_keys`] for the keys of any map (the fixture reader's serde_json objects), so that a
/// fixture and a plugin configuration name a misspelt key alike.
pub fn only_these_keys<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    allowed: &[&str],
    path: &str,
) -> Result<()> {
    for key in keys {
        if !allowed.contains(&key.as_str()) {
            return Err(ConfigError::new(
                ErrorKind::UnknownField,
                join(path, key),
                format!(
                    "unknown field \"{key}\" (expected one of: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// An optional string field; `null` counts as absent, as in Kubernetes.
pub fn opt_str<'a>(map: &'a Map, key: &str, path: &str) -> Result<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(ConfigError::new(
            ErrorKind::WrongType,
            join(path, key),
            format!("must be a string, got {}", type_name(other)),
        )),
    }
}

pub fn opt_object<'a>(map: &'a Map, key: &str, path: &str) -> Result<Option<&'a Map>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v, &join(path, key)).map(Some),
    }
}

pub fn opt_list<'a>(map: &'a Map, key: &str, path: &str) -> Result<Option<&'a [Value]>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.as_slice())),
        Some(other) => Err(ConfigError::new(
            ErrorKind::WrongType,
            join(path, key),
            format!("must be a list, got {}", type_name(other)),
        )),
    }
}

/// A list of strings; every element must be a non-empty string (istiod's `CheckEmptyValues`).
pub fn opt_str_list(map: &Map, key: &str, path: &str) -> Result<Option<Vec<String>>> {
    let Some(items) = opt_list(map, key, path)? else {
        return Ok(None);
    };
    let list_path = join(path, key);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.is_empty() => {
                return Err(ConfigError::new(
                    ErrorKind::Empty,
                    index(&list_path, i),
                    "empty value is not allowed",
                ))
            }
            Value::String(s) => out.push(s.clone()),
            other => {
                return Err(ConfigError::new(
                    ErrorKind::WrongType,
                    index(&list_path, i),
                    format!("must be a string, got {}", type_name(other)),
                ))
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers: `as_u64` and the text a message shows are serde_json's, for the integers
    /// (and `-0`) a configuration holds.
    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "80",
            "65535",
            "65536",
            "-1",
            "18446744073709551615",
            "-9223372036854775808",
        ] {
            let ours = match parse(text.as_bytes()) {
                Ok(Value::Number(n)) => n,
                other => panic!("{text}: {other:?}"),
            };
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            let serde_json::Value::Number(theirs) = theirs else {
                panic!("{text}")
            };
            assert_eq!(number_as_u64(&ours), theirs.as_u64(), "{text}");
            assert_eq!(number_text(&ours), theirs.to_string(), "{text}");
        }
    }

    /// Objects: keys in sorted order, a repeated key's last value wins, as in serde_json's map.
    #[test]
    fn objects_are_sorted_and_the_last_repeated_key_wins() {
        let text = r#"{"b": 1, "a": 2, "c": {"z": 1, "y": 2}, "a": 3, "b": [4], "0": null}"#;
        let Ok(Value::Object(ours)) = parse(text.as_bytes()) else {
            panic!("not an object")
        };
        let theirs: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).unwrap();
        assert!(ours.keys().eq(theirs.keys()));
        assert_eq!(ours.get("a"), Some(&Value::Number("3".into())));
        assert_eq!(
            ours.get("b"),
            Some(&Value::Array(vec![Value::Number("4".into())]))
        );
        assert_eq!(ours.get("d"), None);
        let Some(Value::Object(inner)) = ours.get("c") else {
            panic!("c")
        };
        assert_eq!(inner.keys().collect::<Vec<_>>(), ["y", "z"]);
    }
}
