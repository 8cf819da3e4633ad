//! The `bird` / `bird6` command line: the daemon started under one of those names (a
//! symlink or a copy; the basename of `argv[0]` decides) takes BIRD 1.6's options.
//!
//! - `-c FILE`: the configuration (default `/etc/bird.conf`, `/etc/bird6.conf`).
//! - `-p`: parse the file and exit: 0, or 1 after `bird: FILE:LINE:COL message` on
//!   stderr, as BIRD 1.6 prints it.
//! - `-R`: start in graceful-restart recovery (`rr-daemon --graceful-restart`).
//! - `-s SOCK`: the control socket ([`super::control`]): BIRD's protocol, mode 0660,
//!   removed on exit.
//! - `-d`, `-f`: stay in the foreground (the daemon always does; calico-node passes
//!   `-d`). Logs go to stderr at `info`; `RUST_LOG` asks for more.
//! - `-l`, `-D FILE`, `-P FILE`, `-u USER`, `-g GROUP`: accepted; logs go to stderr, the
//!   process keeps its user.
//! - `--version`, `--help`.
//!
//! Options may be combined (`-dR`) and a value may follow its letter (`-cFILE`), as
//! getopt takes them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Dialect, load};

/// The dialect of a program name: `bird` or `bird6` (the basename of `argv[0]`).
pub fn dialect_of(argv0: &std::ffi::OsStr) -> Option<Dialect> {
    match Path::new(argv0).file_name()?.to_str()? {
        "bird" => Some(Dialect::Bird),
        "bird6" => Some(Dialect::Bird6),
        _ => None,
    }
}

/// BIRD's options, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdArgs {
    /// `-c FILE`.
    pub config: PathBuf,
    /// `-s SOCK`.
    pub socket: Option<PathBuf>,
    /// `-p`.
    pub parse_only: bool,
    /// `-R`.
    pub recovery: bool,
    /// `-d` (foreground with logs on stderr: what the daemon always does).
    pub debug: bool,
}

impl BirdArgs {
    /// Parses the arguments after the program's name.
    pub fn parse(dialect: Dialect, args: &[OsString]) -> Result<Self, String> {
        let mut a = Self {
            config: PathBuf::from(match dialect {
                Dialect::Bird => "/etc/bird.conf",
                Dialect::Bird6 => "/etc/bird6.conf",
            }),
            socket: None,
            parse_only: false,
            recovery: false,
            debug: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let s = arg
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", arg.to_string_lossy()))?;
            if s == "--version" || s == "--help" {
                return Err(s.to_owned());
            }
            let Some(flags) = s.strip_prefix('-').filter(|f| !f.is_empty()) else {
                return Err(format!("unexpected argument {s:?}"));
            };
            let chars = flags.char_indices();
            for (i, c) in chars {
                match c {
                    'p' => a.parse_only = true,
                    'R' => a.recovery = true,
                    'd' => a.debug = true,
                    'f' | 'l' => {}
                    'c' | 's' | 'D' | 'P' | 'u' | 'g' => {
                        let rest = &flags[i + c.len_utf8()..];
                        let value = if rest.is_empty() {
                            it.next()
                                .ok_or_else(|| format!("option -{c} requires an argument"))?
                                .clone()
                        } else {
                            OsString::from(rest)
                        };
                        match c {
                            'c' => a.config = PathBuf::from(value),
                            's' => a.socket = Some(PathBuf::from(value)),
                            _ => {}
                        }
                        break;
                    }
                    other => return Err(format!("invalid option -- '{other}'")),
                }
            }
        }
        Ok(a)
    }
}

fn usage(dialect: Dialect) -> String {
    format!(
        "Usage: {} [-c <config-file>] [-d] [-D <debug-file>] [-f] [-l] [-p] [-P <pid-file>] \
         [-R] [-s <control-socket>]",
        dialect.name()
    )
}

/// Runs as `bird`/`bird6` with `args` (argv without the program's name).
pub fn main(dialect: Dialect, args: &[OsString]) -> ExitCode {
    let a = match BirdArgs::parse(dialect, args) {
        Ok(a) => a,
        Err(e) if e == "--version" => {
            println!(
                "{} (rr-daemon {}, BIRD 1.6 compatible)",
                dialect.name(),
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) if e == "--help" => {
            println!("{}", usage(dialect));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}: {e}\n{}", dialect.name(), usage(dialect));
            return ExitCode::FAILURE;
        }
    };
    if a.parse_only {
        return match load(&a.config, dialect) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", dialect.name());
                ExitCode::FAILURE
            }
        };
    }
    // Checked before any logging or runtime: a bad file is one line and exit 1.
    if let Err(e) = load(&a.config, dialect) {
        eprintln!("{}: {e}", dialect.name());
        return ExitCode::FAILURE;
    }
    let source = crate::cli::ConfigSource::Bird(a.config.clone(), dialect);
    crate::cli::run_daemon(source, a.recovery, a.socket.as_deref())
}
