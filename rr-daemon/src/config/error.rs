//! Errors that name their place: file, line, column and key path.
//!
//! TOML keeps every key's and value's byte span ([`toml::de::DeTable`]); [`Doc`] keeps the
//! parsed tree so that both directions work: a serde error's span gives the key path
//! (the deepest key or value that contains it), and a validation error's key path gives
//! the span (the value, or the nearest table that exists).

use std::fmt;
use std::fmt::Write as _;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file cannot be read.
    Io,
    /// The text is not TOML.
    Syntax,
    /// A key is unknown, missing, or its value has the wrong type or range.
    Schema,
    /// The values are well-formed but do not fit together (unknown group or policy
    /// name, duplicate peer, ...).
    Invalid,
    /// An environment override (`RR_ROUTER_ID`, ...) is not a valid value; `key` names
    /// the variable.
    Environment,
}

/// A configuration that cannot be used, and where the mistake is.
///
/// Displays as `FILE:LINE:COL: KEY: message` (`FILE: message` for [`ErrorKind::Io`],
/// `FILE: VARIABLE: message` for [`ErrorKind::Environment`]).
/// Lines and columns count from 1, columns in characters. `KEY` is a path such as
/// `peer[2].asn` (arrays index from 0, in file order); for TOML syntax errors it is
/// `syntax`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The kind of mistake.
    pub kind: ErrorKind,
    /// The file, as given.
    pub file: String,
    /// Line, from 1 (0 for [`ErrorKind::Io`]).
    pub line: usize,
    /// Column in characters, from 1 (0 for [`ErrorKind::Io`]).
    pub column: usize,
    /// Key path, e.g. `peer[2].asn`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ErrorKind::Io {
            return write!(f, "{}: {}", self.file, self.message);
        }
        if self.kind == ErrorKind::Environment {
            return write!(f, "{}: {}: {}", self.file, self.key, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in a configuration, in file order (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The first mistake.
    pub fn first(self) -> ConfigError {
        self.0.into_iter().next().unwrap_or_else(|| ConfigError {
            kind: ErrorKind::Invalid,
            file: String::new(),
            line: 0,
            column: 0,
            key: String::new(),
            message: "invalid configuration".to_owned(),
        })
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// One mistake a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The message of a required key that is not there.
const MISSING: &str = "missing (required)";

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a key, e.g. `peer[2].add_path.send`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The root.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// `self.key`.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    /// `self[index]`.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// `name[index]`, a top-level array element.
    pub(crate) fn item(name: &str, index: usize) -> Self {
        Self::root().key(name).index(index)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Where one file's text starts in a document made of several (`include`).
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// The file, as named in errors.
    pub(crate) file: String,
    /// Its first byte in the document.
    pub(crate) start: usize,
    /// The document's line (from 1) that is the file's first.
    pub(crate) line: usize,
}

/// The file, line and column (from 1) of byte `offset` of `text`, made of `segments`
/// (none: all of it is `file`).
fn locate(text: &str, segments: &[Segment], file: &str, offset: usize) -> (String, usize, usize) {
    let (line, column) = line_col(text, offset);
    match segments.iter().rev().find(|s| s.start <= offset) {
        Some(s) => (s.file.clone(), line + 1 - s.line, column),
        None => (file.to_owned(), line, column),
    }
}

/// The parsed document, for locating keys.
pub(crate) struct Doc<'a> {
    file: String,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
    segments: Vec<Segment>,
}

impl<'a> Doc<'a> {
    /// Parses `text`; a syntax error comes back located.
    pub(crate) fn parse(text: &'a str, file: String) -> Result<Self, ConfigError> {
        Self::parse_segments(text, file, Vec::new())
    }

    /// Parses `text`, made of the files of `segments` (`include`); errors name the file
    /// each position is in.
    pub(crate) fn parse_segments(
        text: &'a str,
        file: String,
        segments: Vec<Segment>,
    ) -> Result<Self, ConfigError> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Self {
                file,
                text,
                root,
                segments,
            }),
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                let (file, line, column) = locate(text, &segments, &file, at);
                let mut message = e.message().trim_end().to_owned();
                if message == "duplicate key" {
                    message = duplicate(text, at);
                } else if let Some(word) = unquoted_address(text, at) {
                    let _ = write!(message, ": an address is a string, quote it: \"{word}\"");
                }
                Err(ConfigError {
                    kind: ErrorKind::Syntax,
                    file,
                    line,
                    column,
                    key: "syntax".to_owned(),
                    message,
                })
            }
        }
    }

    /// The file's name, as given.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// A validation error at `path`.
    pub(crate) fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        self.at(ErrorKind::Invalid, self.span_of(path).start, path, message)
    }

    /// Deserializes the document, reporting every schema error, in file order: after
    /// each error the key (or table) it is about is taken out of a copy of the tree and
    /// the copy deserialized again, until it passes or nothing more can be taken out.
    /// A key that was taken out is not reported again as missing. `required` are keys
    /// that the types leave optional (an environment variable may set them later) but
    /// that must be there now: each one absent from a table that is present is reported
    /// missing in the same list, at the end of its table, as serde's own missing keys.
    pub(crate) fn deserialize_all<T>(&self, required: &[KeyPath]) -> Result<T, Vec<ConfigError>>
    where
        T: for<'de> serde::Deserialize<'de>,
    {
        let mut tree = self.root.clone();
        let mut errors: Vec<(usize, ConfigError)> = required
            .iter()
            .filter_map(|path| self.missing(path))
            .collect();
        let mut removed: Vec<String> = Vec::new();
        // Bounded: every round takes an entry out of the tree, or stops.
        for _ in 0..1000 {
            let e = match T::deserialize(toml::de::Deserializer::from(tree.clone())) {
                Ok(v) if errors.is_empty() => return Ok(v),
                Ok(_) => break,
                Err(e) => e,
            };
            let span = e.span().unwrap_or(0..0);
            let error = self.schema_error(&e);
            // A missing key is noticed at the end of its table: it sorts after the
            // mistakes inside the table (and a missing table of the root, last).
            let at = if error.message == MISSING {
                if span.is_empty() {
                    usize::MAX
                } else {
                    span.end
                }
            } else {
                span.start
            };
            if !removed.contains(&error.key) && !errors.iter().any(|(_, x)| *x == error) {
                errors.push((at, error));
            }
            match take_out(tree.get_mut(), &span) {
                Some(at) => removed.push(self.path_at(&at).to_string()),
                None => break,
            }
        }
        errors.sort_by_key(|(at, _)| *at);
        Err(errors.into_iter().map(|(_, e)| e).collect())
    }

    /// `path` as a missing key, with where it sorts (the end of its table), when its
    /// table is present and the key is not.
    fn missing(&self, path: &KeyPath) -> Option<(usize, ConfigError)> {
        let (Seg::Key(key), parent) = path.0.split_last()? else {
            return None;
        };
        let mut table = self.root.get_ref();
        let mut span = 0..self.text.len();
        for seg in parent {
            let Seg::Key(k) = seg else { return None };
            let next = table.get(k.as_str())?;
            span = next.span();
            table = next.get_ref().as_table()?;
        }
        if table.get(key.as_str()).is_some() {
            return None;
        }
        let error = self.at(ErrorKind::Schema, span.start, path, MISSING);
        // A `[header]` table's span is its header: its end is that of its last value.
        let end = table
            .values()
            .map(|v| v.span().end)
            .fold(span.end, usize::max);
        Some((end, error))
    }

    /// A serde error, located by its span and given the key path found there.
    pub(crate) fn schema_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        // No span: the root's (a missing top-level table).
        let mut path = if span.is_empty() {
            KeyPath::root()
        } else {
            self.path_at(&span)
        };
        let raw = e.message().trim_end();
        let message = if let Some(rest) = raw.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            path = path.key(name);
            MISSING.to_owned()
        } else if let Some(rest) = raw.strip_prefix("unknown field `") {
            match rest.split_once("`, ") {
                Some((_, "there are no fields")) | None => "unknown key".to_owned(),
                Some((key, expected)) => match did_you_mean(key, expected) {
                    Some(near) => format!("unknown key: did you mean `{near}`?"),
                    None => format!("unknown key, {expected}"),
                },
            }
        } else {
            plain(raw, self.text.get(span.clone()).unwrap_or_default())
        };
        self.at(ErrorKind::Schema, span.start, &path, message)
    }

    fn at(
        &self,
        kind: ErrorKind,
        offset: usize,
        path: &KeyPath,
        message: impl Into<String>,
    ) -> ConfigError {
        let (file, line, column) = locate(self.text, &self.segments, &self.file, offset);
        ConfigError {
            kind,
            file,
            line,
            column,
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// The span of the value at `path`, or of the nearest enclosing table that exists
    /// (its header), or the start of the file.
    fn span_of(&self, path: &KeyPath) -> Range<usize> {
        let mut span = 0..0;
        let mut table = Some(self.root.get_ref());
        let mut value: Option<&DeValue<'_>> = None;
        for seg in &path.0 {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => t.get(k.as_str()),
                (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            span = next.span();
            value = Some(next.get_ref());
            table = next.get_ref().as_table();
        }
        span
    }

    /// The deepest key or value whose span holds `span`.
    fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let mut best = (0, KeyPath::root());
        let mut path = KeyPath::root();
        walk_table(self.root.get_ref(), span, &mut path, &mut best);
        best.1
    }
}

/// serde's words for a type error, in the file's terms: `u32` is an integer in a range,
/// a sequence a list, a map at a `[name]` header a table that should be `[[name]]`.
/// `value` is the text the error points at.
fn plain(raw: &str, value: &str) -> String {
    const RANGES: [(&str, &str); 4] = [
        ("u8", "0 to 255"),
        ("u16", "0 to 65535"),
        ("u32", "0 to 4294967295"),
        ("u64", "0 to 18446744073709551615"),
    ];
    if raw == "invalid IP address syntax" && value.starts_with('"') {
        return format!("{value} is not an IP address");
    }
    if raw.starts_with("invalid type: map, expected a sequence")
        && value.starts_with('[')
        && !value.starts_with("[[")
    {
        let name = value[1..].split(']').next().unwrap_or_default().trim();
        return format!(
            "`[{name}]` is one table, but `{name}` is a list of tables: write each entry as `[[{name}]]`"
        );
    }
    for (ty, range) in RANGES {
        if let Some(head) = raw.strip_suffix(&format!("expected {ty}")) {
            return format!("{head}expected an integer from {range}");
        }
    }
    if let Some(head) = raw.strip_suffix("expected a sequence") {
        return format!("{head}expected a list: [ ... ]");
    }
    if let Some(head) = raw.strip_suffix("expected a boolean") {
        return format!("{head}expected true or false");
    }
    raw.to_owned()
}

/// TOML's "duplicate key" with the key's name: `offset` is at the key, or inside the
/// `[header]` of a table defined twice.
fn duplicate(text: &str, offset: usize) -> String {
    let rest = text.get(offset..).unwrap_or_default();
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    if name.is_empty() {
        return "duplicate key".to_owned();
    }
    const LISTS: [&str; 9] = [
        "peer",
        "peer_group",
        "dynamic_neighbors",
        "policy",
        "policy.rule",
        "route",
        "originate",
        "bmp",
        "fib.ip_pool",
    ];
    if text.get(..offset).is_some_and(|t| t.ends_with('[')) {
        if LISTS.contains(&name.as_str()) {
            format!(
                "duplicate key: table `[{name}]` is defined twice (each entry of a list of \
                 tables is written `[[{name}]]`)"
            )
        } else {
            format!("duplicate key: table `[{name}]` is defined twice")
        }
    } else {
        format!("duplicate key: `{name}` is set twice in this table")
    }
}

/// The word around `offset` when it is an IP address, a prefix or `ADDRESS:PORT` written
/// without quotes (`router_id = 192.0.2.1`, as in BIRD's files), which TOML reads as a
/// broken number or boolean.
fn unquoted_address(text: &str, offset: usize) -> Option<&str> {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '%');
    let start = text
        .get(..offset)?
        .rfind(|c: char| !word(c))
        .map_or(0, |i| i + 1);
    let end = offset
        + text
            .get(offset..)?
            .find(|c: char| !word(c))
            .unwrap_or(text.len() - offset);
    let w = text.get(start..end)?;
    if text[..start].ends_with(['"', '\'']) {
        return None;
    }
    let address = |s: &str| s.parse::<std::net::IpAddr>().is_ok();
    let ok = address(w)
        || w.parse::<std::net::SocketAddr>().is_ok()
        || w.split_once('/')
            .is_some_and(|(a, l)| address(a) && l.parse::<u8>().is_ok())
        || w.split_once('%')
            .is_some_and(|(a, z)| address(a) && !z.is_empty());
    ok.then_some(w)
}

/// The known key closest to `key` among serde's "expected one of `a`, `b`" list (see
/// [`nearest`]).
fn did_you_mean<'e>(key: &str, expected: &'e str) -> Option<&'e str> {
    nearest(key, expected.split('`').skip(1).step_by(2))
}

/// The name among `known` closest to `name`, when it is close enough to be a misspelling:
/// at most two edits (transpositions count as one), and fewer than half the name's letters.
pub(crate) fn nearest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, _)| *d <= 2 && *d * 2 < name.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Takes out of `table` the deepest key (or array element that is a table) whose span
/// holds `span`; returns the span of what was taken out (in the original text). Every
/// table is looked into: the span of an array of tables need not cover its elements.
fn take_out(table: &mut DeTable<'_>, span: &Range<usize>) -> Option<Range<usize>> {
    let mut found = None;
    for (k, v) in table.iter_mut() {
        let deeper = match v.get_mut() {
            DeValue::Table(t) => take_out(t, span),
            DeValue::Array(a) => take_out_item(a, span),
            _ => None,
        };
        if deeper.is_some() {
            return deeper;
        }
        if found.is_none() && (holds(&k.span(), span) || holds(&v.span(), span)) {
            found = Some((k.get_ref().to_string(), v.span()));
        }
    }
    let (key, at) = found?;
    table.remove(key.as_str());
    Some(at)
}

fn take_out_item(a: &mut toml::de::DeArray<'_>, span: &Range<usize>) -> Option<Range<usize>> {
    let mut found = None;
    for (i, item) in a.as_mut().iter_mut().enumerate() {
        let at = item.span();
        if let DeValue::Table(t) = item.get_mut() {
            if let Some(deeper) = take_out(t, span) {
                return Some(deeper);
            }
            if found.is_none() && holds(&at, span) {
                found = Some((i, at));
            }
        }
    }
    // The error is about a table element itself (a key missing): the element goes. A
    // scalar element is not taken out: its key goes.
    let (i, at) = found?;
    let items = std::mem::replace(a, toml::de::DeArray::new());
    for (j, item) in items.into_iter().enumerate() {
        if j != i {
            a.push(item);
        }
    }
    Some(at)
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

fn walk_table(
    t: &DeTable<'_>,
    span: &Range<usize>,
    path: &mut KeyPath,
    best: &mut (usize, KeyPath),
) {
    for (k, v) in t.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        if (holds(&k.span(), span) || holds(&v.span(), span)) && path.0.len() > best.0 {
            *best = (path.0.len(), path.clone());
        }
        walk_value(v.get_ref(), span, path, best);
        path.0.pop();
    }
}

fn walk_value(
    v: &DeValue<'_>,
    span: &Range<usize>,
    path: &mut KeyPath,
    best: &mut (usize, KeyPath),
) {
    match v {
        DeValue::Table(t) => walk_table(t, span, path, best),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.0.push(Seg::Index(i));
                if holds(&item.span(), span) && path.0.len() > best.0 {
                    *best = (path.0.len(), path.clone());
                }
                walk_value(item.get_ref(), span, path, best);
                path.0.pop();
            }
        }
        _ => {}
    }
}

/// Line and column (in characters), both from 1, of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_line_col() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        // "é" is two bytes, one column.
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 8), (3, 1));
    }

    #[test]
    fn test_key_path_display() {
        let p = KeyPath::item("peer", 2).key("add_path").key("send");
        assert_eq!(p.to_string(), "peer[2].add_path.send");
        assert_eq!(KeyPath::root().key("a.b").to_string(), "\"a.b\"");
    }

    #[test]
    fn test_span_and_path_agree() {
        let text = "[speaker]\nasn = 1\n[[peer]]\naddress = \"1.1.1.1\"\n[[peer]]\nx = [1, 2]\n";
        let doc = Doc::parse(text, "f".into()).unwrap();
        let p = KeyPath::item("peer", 1).key("x").index(1);
        let span = doc.span_of(&p);
        assert_eq!(&text[span.clone()], "2");
        assert_eq!(doc.path_at(&span), p);
        // A missing key falls back to its table's header.
        let span = doc.span_of(&KeyPath::item("peer", 1).key("asn"));
        assert_eq!(&text[span], "[[peer]]");
    }
}
