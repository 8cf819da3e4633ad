//! Our own code under test: the one-session [`Speaker`], the reflector [`Daemon`], and its
//! control API through `ctl` ([`ctl_json`], [`ctl_route`]).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Netns;
use crate::proc::{Proc, poll, spawn_in, tail};

// ---------------------------------------------------------------------------------- Speaker

#[derive(Debug, Default)]
struct Events {
    lines: Mutex<(Vec<Value>, bool)>,
    changed: Condvar,
}

/// Our speaker (`speaker session ... --json`) running in a namespace; a reader thread
/// collects its JSON event lines (also copied to `dir/speaker.stdout`).
#[derive(Debug)]
pub struct Speaker {
    proc: Proc,
    events: Arc<Events>,
    reader: Option<JoinHandle<()>>,
    stdout: PathBuf,
}

impl Speaker {
    /// Starts `exe session ARGS --json` inside `ns` with `RUST_LOG=debug`.
    pub fn start(ns: &Netns, dir: &Path, exe: &Path, args: &[&str]) -> Result<Self, String> {
        let mut argv: Vec<String> = vec!["session".into()];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        argv.push("--json".into());
        let mut proc = ns.spawn(dir, "speaker", exe, &argv, &[("RUST_LOG", "debug")], true)?;
        let out = proc.take_stdout().ok_or("speaker stdout not piped")?;
        let stdout = proc.stdout_path().to_owned();
        let mut copy =
            File::create(&stdout).map_err(|e| format!("cannot create stdout copy: {e}"))?;
        let events = Arc::new(Events::default());
        let ev = Arc::clone(&events);
        let reader = thread::Builder::new()
            .name("speaker-stdout".into())
            .spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(copy, "{line}");
                    let v = serde_json::from_str::<Value>(&line)
                        .unwrap_or_else(|_| serde_json::json!({"event": "raw", "line": line}));
                    let mut g = ev.lines.lock().unwrap_or_else(|p| p.into_inner());
                    g.0.push(v);
                    ev.changed.notify_all();
                }
                let mut g = ev.lines.lock().unwrap_or_else(|p| p.into_inner());
                g.1 = true;
                ev.changed.notify_all();
            })
            .map_err(|e| format!("cannot start the reader thread: {e}"))?;
        Ok(Self {
            proc,
            events,
            reader: Some(reader),
            stdout,
        })
    }

    /// All events so far.
    pub fn events(&self) -> Vec<Value> {
        self.events
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The number of events so far: a position for [`Speaker::wait_for`].
    pub fn mark(&self) -> usize {
        self.events
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .len()
    }

    /// Waits at most `timeout` for an event at position `from` or later that satisfies
    /// `pred`; returns its position and the event.
    pub fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(usize, Value), String> {
        let deadline = Instant::now() + timeout;
        let mut g = self.events.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(i) = (from..g.0.len()).find(|&i| pred(&g.0[i])) {
                return Ok((i, g.0[i].clone()));
            }
            if g.1 {
                return Err("speaker's stdout closed (it exited)".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no such event within {timeout:?}"));
            }
            g = self
                .events
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the first event named `name` (`"established"`, `"down"`, ...) at position
    /// `from` or later.
    pub fn wait_event(
        &self,
        from: usize,
        name: &str,
        timeout: Duration,
    ) -> Result<(usize, Value), String> {
        self.wait_for(from, timeout, |v| v["event"] == name)
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Sends SIGTERM and waits at most `timeout` for the exit status (and the rest of its
    /// output).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.proc.signal("TERM")?;
        let st = self
            .proc
            .wait_exit(timeout)
            .ok_or_else(|| format!("speaker did not exit within {timeout:?} of SIGTERM"))?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(st)
    }

    /// The stdout copy and the stderr log, last `lines` lines of each.
    pub fn transcript(&self, lines: usize) -> String {
        format!(
            "--- speaker stdout ({}) ---\n{}\n--- speaker stderr ({}) ---\n{}",
            self.stdout.display(),
            tail(&self.stdout, lines),
            self.proc.stderr_path().display(),
            tail(self.proc.stderr_path(), lines)
        )
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.proc.stop(Duration::from_secs(5));
        if let Some(r) = self.reader.take() {
            // The pipe closes with the process; do not hang if it somehow does not.
            let _ = poll(Duration::from_secs(2), Duration::from_millis(20), || {
                r.is_finished().then_some(())
            });
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------- Daemon

/// Our daemon (`speaker --config FILE`: the reflector) running in a namespace. Its config
/// is `dir/rr.toml`, its log (stderr, `RUST_LOG=info,rr_daemon=debug` unless `RR_LOG` says
/// otherwise) `dir/rr-daemon.stderr`.
#[derive(Debug)]
pub struct Daemon {
    proc: Proc,
    conf: PathBuf,
    /// Where it runs, what it is, and its work dir: to start it again.
    ns: String,
    exe: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    /// Writes `config` and starts `exe --config FILE` inside `ns`; returns once it logged
    /// its configuration summary (at most 10 s), or an error with its log if it exited.
    pub fn start(ns: &Netns, dir: &Path, exe: &Path, config: &str) -> Result<Self, String> {
        Self::start_with(ns, dir, exe, config, &[])
    }

    /// [`Daemon::start`] with `extra` arguments after `--config FILE`
    /// (`--graceful-restart`).
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        exe: &Path,
        config: &str,
        extra: &[&str],
    ) -> Result<Self, String> {
        let conf = dir.join("rr.toml");
        fs::write(&conf, config).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let proc = Self::spawn(ns.name(), dir, exe, &conf, extra)?;
        let mut d = Self {
            proc,
            conf,
            ns: ns.name().to_owned(),
            exe: exe.to_owned(),
            dir: dir.to_owned(),
        };
        d.wait_started(0)?;
        Ok(d)
    }

    /// Starts the daemon as BIRD 1.6 would be started: `dir/NAME -d -c CONFIG` inside
    /// `ns`, where `dir/NAME` (`bird` or `bird6`) is a symlink to `exe`, so that `argv[0]`
    /// names it. `config` is a BIRD file ([`rr_daemon::bird`] translates it). Returns once
    /// it logged its configuration summary (at most 10 s).
    pub fn start_bird(
        ns: &Netns,
        dir: &Path,
        exe: &Path,
        name: &str,
        config: &Path,
    ) -> Result<Self, String> {
        let link = dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(exe, &link)
            .map_err(|e| format!("cannot link {} to {}: {e}", link.display(), exe.display()))?;
        let filter = std::env::var("RR_LOG").unwrap_or_else(|_| "info,rr_daemon=debug".into());
        let args = vec![
            "-d".to_owned(),
            "-c".to_owned(),
            config.to_string_lossy().into_owned(),
        ];
        let proc = spawn_in(
            ns.name(),
            dir,
            "rr-daemon",
            &link,
            &args,
            &[("RUST_LOG", filter.as_str())],
            false,
        )?;
        let mut d = Self {
            proc,
            conf: config.to_owned(),
            ns: ns.name().to_owned(),
            exe: exe.to_owned(),
            dir: dir.to_owned(),
        };
        d.wait_started(0)?;
        Ok(d)
    }

    fn spawn(
        ns: &str,
        dir: &Path,
        exe: &Path,
        conf: &Path,
        extra: &[&str],
    ) -> Result<Proc, String> {
        let filter = std::env::var("RR_LOG").unwrap_or_else(|_| "info,rr_daemon=debug".into());
        let mut args = vec!["--config".to_owned(), conf.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        spawn_in(
            ns,
            dir,
            "rr-daemon",
            exe,
            &args,
            &[("RUST_LOG", filter.as_str())],
            false,
        )
    }

    /// Waits (at most 10 s) for the configuration summary after log position `from`.
    fn wait_started(&mut self, from: usize) -> Result<(), String> {
        let up = poll(Duration::from_secs(10), Duration::from_millis(20), || {
            if !self.proc.is_running() {
                return Some(false);
            }
            self.log_since(from)
                .iter()
                .any(|l| l.contains(" rr_daemon::cli: "))
                .then_some(true)
        });
        match up {
            Some(true) => Ok(()),
            Some(false) => Err(format!(
                "the daemon exited at start ({:?}):\n{}",
                self.proc.try_exit(),
                self.log()
            )),
            None => Err(format!(
                "the daemon logged no summary within 10 s:\n{}",
                self.log()
            )),
        }
    }

    /// Kills it with SIGKILL (no NOTIFICATION: the kernel closes its sessions) and reaps
    /// it; returns its exit status.
    pub fn kill(&mut self) -> Result<ExitStatus, String> {
        self.proc.signal("KILL")?;
        self.proc
            .wait_exit(Duration::from_secs(5))
            .ok_or_else(|| format!("the daemon (pid {}) survived SIGKILL", self.pid()))
    }

    /// Starts it again, once it has exited, on the same configuration file, in the same
    /// namespace, with `extra` arguments (`--graceful-restart`); its log goes on in the
    /// same file. Returns once it logged its summary (at most 10 s).
    pub fn start_again(&mut self, extra: &[&str]) -> Result<(), String> {
        if self.proc.is_running() {
            return Err(format!("the daemon (pid {}) still runs", self.pid()));
        }
        let from = self.log_mark();
        // The old process is reaped: replacing its guard signals nothing.
        self.proc = Self::spawn(&self.ns, &self.dir, &self.exe, &self.conf, extra)?;
        self.wait_started(from)
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its configuration file.
    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.proc.stderr_path()).unwrap_or_default()
    }

    /// The log's length now: a position for [`Daemon::wait_log`].
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// The log lines after position `from`.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        let log = self.log();
        log.get(from..)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits at most `timeout` for a log line after position `from` that satisfies `pred`.
    pub fn wait_log(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        poll(timeout, Duration::from_millis(50), || {
            self.log_since(from).into_iter().find(|l| pred(l))
        })
        .ok_or_else(|| format!("no such log line within {timeout:?}"))
    }

    /// Replaces the configuration file with `config` (atomically) and sends SIGHUP.
    pub fn reload(&mut self, config: &str) -> Result<(), String> {
        let tmp = self.conf.with_extension("toml.new");
        fs::write(&tmp, config).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &self.conf)
            .map_err(|e| format!("cannot replace {}: {e}", self.conf.display()))?;
        self.proc.signal("HUP")
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Sends SIGTERM and waits at most `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.proc.signal("TERM")?;
        self.proc
            .wait_exit(timeout)
            .ok_or_else(|| format!("the daemon did not exit within {timeout:?} of SIGTERM"))
    }

    /// The config and the last `lines` lines of the log.
    pub fn transcript(&self, lines: usize) -> String {
        format!(
            "--- daemon config ({}) ---\n{}\n--- daemon log ({}) ---\n{}",
            self.conf.display(),
            fs::read_to_string(&self.conf).unwrap_or_default(),
            self.proc.stderr_path().display(),
            tail(self.proc.stderr_path(), lines)
        )
    }
}

// ---------------------------------------------------------------------------------- ctl

/// Runs `exe ctl --api API --json ARGS` inside `ns` (at most 10 s) and parses its answer.
/// The error carries `ctl`'s one line (`rr-daemon ctl: no route for ... (HTTP 404)`).
pub fn ctl_json(ns: &Netns, exe: &Path, api: &str, args: &[&str]) -> Result<Value, String> {
    let exe = exe.to_string_lossy();
    let mut argv = vec!["ctl", "--api", api, "--json"];
    argv.extend_from_slice(args);
    let out = ns.exec(&exe, &argv)?;
    serde_json::from_str(&out)
        .map_err(|e| format!("`ctl {}` printed no JSON ({e}):\n{out}", argv.join(" ")))
}

/// `ctl routes PREFIX` (the API's `GET /v1/routes/PREFIX`): every path of the prefix,
/// best first; `None` when the daemon has no route for it (HTTP 404).
pub fn ctl_route(ns: &Netns, exe: &Path, api: &str, prefix: &str) -> Result<Option<Value>, String> {
    match ctl_json(ns, exe, api, &["routes", prefix]) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.contains("(HTTP 404)") => Ok(None),
        Err(e) => Err(e),
    }
}
