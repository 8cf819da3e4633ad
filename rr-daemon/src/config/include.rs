//! `include = ["a.toml", ...]`: other files whose tables join the file's.
//!
//! The files make one document: the including file, then each included file in the
//! order given (and, in turn, what it includes), one after another. Their `include`
//! keys are blanked out (spaces, so that every position stays where it was), and
//! [`Segment`]s say where each file starts, so that an error names the file and its own
//! line. An included file holds tables only (`[fib]`, `[[peer]]`, ...): a bare key would
//! join the previous file's last table. A file included twice, an include cycle and a
//! file that cannot be read are errors at the name in the `include` list.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ErrorKind, Segment, line_col};

/// The most files in one document, included ones and the main file.
const MAX_FILES: usize = 256;

/// The document `text` (of `file`) makes with what it includes, and where each file
/// starts; `None` when `text` includes nothing (it is the document as it is).
pub(super) fn assemble(
    text: &str,
    file: &Path,
) -> Result<Option<(String, Vec<Segment>)>, Vec<ConfigError>> {
    if !text.contains("include") {
        return Ok(None);
    }
    let Ok(root) = DeTable::parse(text) else {
        // A syntax error: the document as it is reports it.
        return Ok(None);
    };
    if root.get_ref().get("include").is_none() {
        return Ok(None);
    }
    let mut a = Assembly {
        out: String::new(),
        segments: Vec::new(),
        errors: Vec::new(),
        stack: Vec::new(),
        seen: Vec::new(),
    };
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    a.add(text, file, canonical, true);
    if a.errors.is_empty() {
        Ok(Some((a.out, a.segments)))
    } else {
        Err(a.errors)
    }
}

struct Assembly {
    out: String,
    segments: Vec<Segment>,
    errors: Vec<ConfigError>,
    /// The files being included, outermost first (for cycles).
    stack: Vec<PathBuf>,
    /// Every file added (for files included twice).
    seen: Vec<PathBuf>,
}

fn error(file: &Path, text: &str, at: usize, key: &str, message: String) -> ConfigError {
    let (line, column) = line_col(text, at);
    ConfigError {
        kind: ErrorKind::Invalid,
        file: file.display().to_string(),
        line,
        column,
        key: key.to_owned(),
        message,
    }
}

impl Assembly {
    fn add(&mut self, text: &str, file: &Path, canonical: PathBuf, main: bool) {
        let root = match DeTable::parse(text) {
            Ok(r) => r.into_inner(),
            // Added as it is: parsing the document reports the error, in this file.
            Err(_) => DeTable::new(),
        };
        let mut includes: Vec<(String, Range<usize>)> = Vec::new();
        let mut blank: Option<Range<usize>> = None;
        for (k, v) in root.iter() {
            if k.get_ref().as_ref() == "include" {
                blank = Some(k.span().start..v.span().end);
                match v.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            match item.get_ref() {
                                DeValue::String(s) => includes.push((s.to_string(), item.span())),
                                _ => self.errors.push(error(
                                    file,
                                    text,
                                    item.span().start,
                                    &format!("include[{i}]"),
                                    "not a file name (a string)".to_owned(),
                                )),
                            }
                        }
                    }
                    _ => self.errors.push(error(
                        file,
                        text,
                        v.span().start,
                        "include",
                        "a list of file names, such as [\"peers.toml\"]".to_owned(),
                    )),
                }
            } else if !main && !is_header(text, k.span().start) {
                self.errors.push(error(
                    file,
                    text,
                    k.span().start,
                    k.get_ref(),
                    "an included file holds tables only ([speaker], [[peer]], ...): a key \
                     outside a table belongs in the main file"
                        .to_owned(),
                ));
            }
        }
        // Blanked, not cut: every other position of the file stays where it was.
        let mut own: String = text.to_owned();
        if let Some(r) = blank {
            let spaces: String = text[r.clone()]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' })
                .collect();
            own.replace_range(r, &spaces);
        }
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        let line = self.out.bytes().filter(|&b| b == b'\n').count() + 1;
        self.segments.push(Segment {
            file: file.display().to_string(),
            start: self.out.len(),
            line,
        });
        self.out.push_str(&own);
        self.seen.push(canonical.clone());
        self.stack.push(canonical);
        let dir = file.parent().unwrap_or(Path::new("."));
        for (i, (name, span)) in includes.into_iter().enumerate() {
            let key = format!("include[{i}]");
            let path = dir.join(&name);
            let fail = |message: String| error(file, text, span.start, &key, message);
            let (canonical, included) = match std::fs::canonicalize(&path)
                .and_then(|c| Ok((c, std::fs::read_to_string(&path)?)))
            {
                Ok(x) => x,
                Err(e) => {
                    self.errors
                        .push(fail(format!("cannot read {}: {e}", path.display())));
                    continue;
                }
            };
            if let Some(at) = self.stack.iter().position(|p| *p == canonical) {
                let cycle: Vec<String> = self.stack[at..]
                    .iter()
                    .chain(std::iter::once(&canonical))
                    .map(|p| p.display().to_string())
                    .collect();
                self.errors
                    .push(fail(format!("include cycle: {}", cycle.join(" -> "))));
                continue;
            }
            if self.seen.contains(&canonical) {
                self.errors
                    .push(fail(format!("{} is already included", path.display())));
                continue;
            }
            if self.seen.len() >= MAX_FILES {
                self.errors
                    .push(fail(format!("more than {MAX_FILES} files included")));
                continue;
            }
            self.add(&included, &path, canonical, false);
        }
        self.stack.pop();
    }
}

/// Whether the top-level key at byte `at` is a table header's (`[fib]`, `[[peer]]`):
/// the text before it on its line is `[`s and spaces.
fn is_header(text: &str, at: usize) -> bool {
    let before = &text[..at.min(text.len())];
    let line = before.rsplit('\n').next().unwrap_or(before);
    let t = line.trim();
    !t.is_empty() && t.chars().all(|c| c == '[' || c == ' ' || c == '\t')
}
