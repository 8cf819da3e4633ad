//! Log output: `tracing` lines on standard error, text or JSON (one object per line, the
//! event's fields at the top level next to `timestamp`, `level`, `target` and
//! `message`), through a filter that can be replaced while running (`[speaker]
//! log_level` read again at a reload).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The plain levels a filter may be (besides `RUST_LOG` directives).
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The filter without the file's: `--log-level`, else `RUST_LOG`, else `info`.
static BASE: OnceLock<String> = OnceLock::new();

/// Whether `filter` is a level or a list of `RUST_LOG` directives. A single word must be
/// a level: `EnvFilter` would take a misspelt one (`debgu`) as a target name and log
/// nothing of ours.
pub fn check(filter: &str) -> Result<(), String> {
    parse(filter).map(|_| ())
}

fn parse(filter: &str) -> Result<EnvFilter, String> {
    let f = filter.trim();
    let single = !f.contains(['=', ',', ':', '[']);
    if single && !LEVELS.contains(&f.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{filter:?} is not a log level ({})",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::builder()
        .parse(f)
        .map_err(|e| format!("{filter:?} is not a log filter: {e}"))
}

/// Installs the process's logger; JSON lines with `json`. Its filter is `flag`
/// (`--log-level`), else `RUST_LOG`, else `file` (`[speaker] log_level`), else `info`.
/// Fails on a bad filter, or when a logger is already installed.
pub fn init(json: bool, flag: Option<&str>, file: Option<&str>) -> Result<(), String> {
    let base = match (flag, std::env::var("RUST_LOG")) {
        (Some(f), _) => Some(f.to_owned()),
        (None, Ok(v)) if !v.trim().is_empty() => Some(v),
        _ => None,
    };
    let filter = base.as_deref().or(file).unwrap_or("info");
    let (layer, handle) = reload::Layer::new(parse(filter)?);
    let _ = BASE.set(base.unwrap_or_else(|| "info".to_owned()));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let r = if json {
        Registry::default()
            .with(layer)
            .with(lines.json().flatten_event(true))
            .try_init()
    } else {
        Registry::default()
            .with(layer)
            .with(lines.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .try_init()
    };
    r.map_err(|e| e.to_string())?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the filter of the logger [`init`] installed.
pub fn set(filter: &str) -> Result<(), String> {
    let f = parse(filter)?;
    let handle = FILTER.get().ok_or("no logger installed")?;
    handle.reload(f).map_err(|e| e.to_string())
}

/// A reload read `[speaker] log_level` as `new` where it was `old`: a changed value
/// applies at once (over `--log-level` and `RUST_LOG`, which set the start's); a removed
/// one gives the start's back. Returns the filter applied, if it changed.
pub fn reloaded(old: Option<&str>, new: Option<&str>) -> Result<Option<String>, String> {
    if old == new {
        return Ok(None);
    }
    let filter = match new {
        Some(f) => f.to_owned(),
        None => BASE.get().cloned().unwrap_or_else(|| "info".to_owned()),
    };
    set(&filter)?;
    Ok(Some(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_checked() {
        for ok in [
            "info",
            "DEBUG",
            "warn",
            "info,rr_daemon::session=debug",
            "rr_daemon=trace",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        let e = check("debgu").unwrap_err();
        assert!(e.contains("not a log level"), "{e}");
        assert!(check("info,x=loud").is_err());
    }
}
