//! Errors that name their place: file, line, column and key path.
//!
//! TOML keeps every key's and value's byte span ([`toml::de::DeTable`]); [`Doc`] keeps the
//! parsed tree so that both directions work: a serde error's span gives the key path
//! (the deepest key or value that contains it), and a validation error's key path gives
//! the span (the value, or the nearest table that exists).

use std::fmt;
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

/// The parsed document, for locating keys.
pub(crate) struct Doc<'a> {
    file: String,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Doc<'a> {
    /// Parses `text`; a syntax error comes back located.
    pub(crate) fn parse(text: &'a str, file: String) -> Result<Self, ConfigError> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Self { file, text, root }),
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                let (line, column) = line_col(text, at);
                Err(ConfigError {
                    kind: ErrorKind::Syntax,
                    file,
                    line,
                    column,
                    key: "syntax".to_owned(),
                    message: e.message().trim_end().to_owned(),
                })
            }
        }
    }

    /// The file's name, as given.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// The tree, for the deserializer.
    pub(crate) fn tree(&self) -> Spanned<DeTable<'a>> {
        self.root.clone()
    }

    /// A validation error at `path`.
    pub(crate) fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        self.at(ErrorKind::Invalid, self.span_of(path).start, path, message)
    }

    /// A serde error, located by its span and given the key path found there.
    pub(crate) fn schema_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut path = self.path_at(&span);
        let raw = e.message().trim_end();
        let message = if let Some(rest) = raw.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            path = path.key(name);
            "missing (required)".to_owned()
        } else if let Some(rest) = raw.strip_prefix("unknown field `") {
            match rest.split_once("`, ") {
                Some((_, "there are no fields")) | None => "unknown key".to_owned(),
                Some((_, expected)) => format!("unknown key, {expected}"),
            }
        } else {
            raw.to_owned()
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
        let (line, column) = line_col(self.text, offset);
        ConfigError {
            kind,
            file: self.file.clone(),
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
fn line_col(text: &str, offset: usize) -> (usize, usize) {
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
