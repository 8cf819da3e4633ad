//! BIRD compatibility: the configuration files Calico's confd renders for BIRD 1.6
//! (`bird.cfg` and its includes, `bird6.cfg` for IPv6), read and translated into the
//! daemon's own model, and the `bird`/`bird6` command line ([`argv`]).
//!
//! The seam: [`load`] reads a file (following `include`s relative to the including
//! file's directory), translates it and returns a [`Translation`]: the native TOML text
//! (what `rr-daemon check --bird FILE` prints), the resolved [`Config`] the speaker runs
//! from (the TOML parsed by [`Config::parse`], so both front ends meet the same checks),
//! and the protocols as BIRD would list them in `show protocols` ([`ProtocolInfo`]: name,
//! kind, and for BGP the peer's address, which keys [`Config::peers`]).
//!
//! ```
//! # use rr_daemon::bird::{Dialect, translate_str};
//! let t = translate_str(
//!     "router id 10.0.0.1;\n\
//!      protocol bgp Mesh_10_0_0_2 { local as 64512; neighbor 10.0.0.2 as 64512; }\n",
//!     "bird.cfg",
//!     Dialect::Bird,
//! )
//! .unwrap();
//! assert_eq!(t.protocols[0].name, "Mesh_10_0_0_2");
//! assert!(t.config.peers.contains_key(&"10.0.0.2".parse().unwrap()));
//! ```
//!
//! Layout: `ast` (the file as written), `parse` (the nom grammar), `filter` (filters onto
//! policies and `[fib]`), `translate` (protocols onto the model), [`argv`] (the `bird`
//! command line), [`socket`] (BIRD 1.6's control socket protocol, pure: a command line in,
//! reply lines out) and [`control`] (its Unix socket shell at `-s PATH`). Nothing outside
//! this module knows BIRD's syntax. The control socket is organised by dialect as the
//! reader is: a BIRD 2/3 `show protocols` would be another printer over the same views.

pub mod argv;
pub mod ast;
pub mod control;
mod filter;
mod parse;
pub mod socket;
mod translate;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;

pub use ast::ProtoKind;
pub use filter::Note;

/// Which BIRD the file is for: the name the binary was started under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `bird`: BIRD 1.6 for IPv4 (sessions carry IPv4 unicast).
    Bird,
    /// `bird6`: BIRD 1.6 for IPv6 (sessions carry IPv6 unicast).
    Bird6,
}

impl Dialect {
    /// The program's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bird => "bird",
            Self::Bird6 => "bird6",
        }
    }
}

/// An error in a BIRD file: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdError {
    /// The file (as given, or as an `include` named it relative to the including file).
    pub file: String,
    /// Line, from 1 (0 when the file could not be read).
    pub line: u32,
    /// Column, from 1, in characters (0 when the file could not be read).
    pub col: u32,
    /// What is wrong.
    pub message: String,
}

impl BirdError {
    fn at(pos: &ast::Pos, msg: impl Into<String>) -> Self {
        Self {
            file: pos.file.to_string(),
            line: pos.line,
            col: pos.col,
            message: msg.into(),
        }
    }
}

impl fmt::Display for BirdError {
    /// `FILE:LINE:COL message`, or `FILE: message` when the file could not be read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{} {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

impl std::error::Error for BirdError {}

/// A protocol as BIRD lists it in `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// Its name: as written, else BIRD's `kernel1`, `device1`, `direct1`, `static1`,
    /// `bgp1` (the kind and a count per kind, from 1, in file order).
    pub name: String,
    /// The kind.
    pub kind: ProtoKind,
    /// `description "..."`, if any.
    pub description: Option<String>,
    /// For BGP: the neighbour's address, the key of [`Config::peers`].
    pub peer: Option<IpAddr>,
    /// The template it was made `from`, if any.
    pub template: Option<String>,
    /// Its import filter as BIRD names it in `show protocols all`: `ACCEPT` (`all`, the
    /// default), `REJECT` (`none`), `(unnamed)` (inline or `where`), or the filter's name.
    pub import: String,
    /// Its export filter, likewise (default `REJECT`).
    pub export: String,
}

/// A BIRD file, translated.
#[derive(Clone, Debug)]
pub struct Translation {
    /// The native configuration file (TOML) the BIRD file translates to, with the
    /// translation's notes as comments at the top.
    pub toml: String,
    /// The resolved configuration (the TOML above, parsed).
    pub config: Config,
    /// Every protocol, in file order (templates excluded).
    pub protocols: Vec<ProtocolInfo>,
    /// What became of the constructs that are not a native key of their own.
    pub notes: Vec<Note>,
}

impl Translation {
    /// The protocol named `name`.
    pub fn protocol(&self, name: &str) -> Option<&ProtocolInfo> {
        self.protocols.iter().find(|p| p.name == name)
    }

    /// The BGP protocol of the peer at `address`.
    pub fn protocol_of_peer(&self, address: IpAddr) -> Option<&ProtocolInfo> {
        self.protocols.iter().find(|p| p.peer == Some(address))
    }
}

/// How deep `include`s may nest.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Reads the BIRD file at `path` with its includes and translates it.
pub fn load(path: impl AsRef<Path>, dialect: Dialect) -> Result<Translation, BirdError> {
    let path = path.as_ref();
    let mut items = Vec::new();
    let mut stack = Vec::new();
    read(
        path,
        &path.display().to_string(),
        None,
        &mut stack,
        &mut items,
    )?;
    translate::translate(&items, &path.display().to_string(), dialect)
}

/// Translates `text` (no includes followed: an `include` is an error); `name` names the
/// file in errors.
pub fn translate_str(text: &str, name: &str, dialect: Dialect) -> Result<Translation, BirdError> {
    let file: Arc<str> = Arc::from(name);
    let p = parse::Parser_::new(text, file);
    let tops = p.file().map_err(|e| syntax(&p, e))?;
    let mut items = Vec::new();
    for t in tops {
        match t {
            parse::Top::Item(i) => items.push(i),
            parse::Top::Include(_, pos) => {
                return Err(BirdError::at(&pos, "include: not followed in a string"));
            }
        }
    }
    translate::translate(&items, name, dialect)
}

fn syntax(p: &parse::Parser_<'_>, e: parse::PErr) -> BirdError {
    BirdError::at(&p.pos_at(e.rest), e.msg)
}

/// Parses the file at `path` (shown as `shown`) into `items`, following includes.
fn read(
    path: &Path,
    shown: &str,
    from: Option<&ast::Pos>,
    stack: &mut Vec<PathBuf>,
    items: &mut Vec<ast::Item>,
) -> Result<(), BirdError> {
    let text = std::fs::read_to_string(path).map_err(|e| match from {
        Some(pos) => BirdError::at(pos, format!("unable to open included file {shown}: {e}")),
        None => BirdError {
            file: shown.to_owned(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        },
    })?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        let pos = from.expect("an included file");
        return Err(BirdError::at(pos, format!("{shown} includes itself")));
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        let pos = from.expect("an included file");
        return Err(BirdError::at(
            pos,
            format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
        ));
    }
    stack.push(canonical);
    let p = parse::Parser_::new(&text, Arc::from(shown));
    let tops = p.file().map_err(|e| syntax(&p, e))?;
    for t in tops {
        match t {
            parse::Top::Item(i) => items.push(i),
            parse::Top::Include(name, pos) => {
                // Relative to the including file's directory.
                let dir = path.parent().unwrap_or(Path::new(""));
                let inc = dir.join(&name);
                let inc_shown = Path::new(shown)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(&name)
                    .display()
                    .to_string();
                read(&inc, &inc_shown, Some(&pos), stack, items)?;
            }
        }
    }
    stack.pop();
    Ok(())
}
