//! Shared helpers for the interop scenarios and the load generator.
//!
//! The interop harness: network namespaces ([`Netns`]) joined by veth pairs ([`Link`]),
//! real BGP peers running inside them ([`Bird`] for BIRD 2 and BIRD 1.6, [`Frr`] for FRR
//! `bgpd`), and our own speaker ([`Speaker`]) whose JSON event lines are collected by a
//! reader thread.
//!
//! Rules every helper follows:
//! - everything is created by the test that uses it: namespaces are named
//!   `bgpt-<pid>-<n>-<role>` so parallel tests (and parallel test binaries) never clash;
//! - every wait is bounded in time;
//! - guards clean up on drop, also when the test panics: a [`Proc`] is stopped by its PID
//!   (SIGTERM, then SIGKILL), a [`Netns`] kills what still runs inside it and is deleted,
//!   a [`WorkDir`] is removed (kept, and its path printed, when the test failed or
//!   `KEEP_WORK=1`).
//!
//! Needs root (namespaces) and the peers from `tests/scripts/install-peers.sh`.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// FRR's BGP daemon (Debian `frr`).
pub const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

/// A number unique within this process, for names of namespaces and work dirs.
fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Fails with a clear message unless running as root (namespaces need it).
pub fn require_root() -> Result<(), String> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&out.stdout).trim() == "0" {
        Ok(())
    } else {
        Err(
            "the interop tests need root (they create network namespaces): run them as root \
             after tests/scripts/install-peers.sh"
                .into(),
        )
    }
}

/// Runs `program args` to completion (bounded by `timeout`) and returns its stdout, or an
/// error with the exit status and stderr.
pub fn run_cmd(program: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let show = || format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", show()))?;
    // Drain both pipes in threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not finish within {timeout:?}", show()));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", show())),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} failed ({status}): {}{}",
            show(),
            stderr.trim(),
            if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                ""
            }
        ))
    }
}

/// Polls `f` every `every` until it returns `Some`, at most until `timeout` has passed.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------- WorkDir

/// A scratch directory `/tmp/bgpt-<pid>-<n>-<tag>` for configs, sockets and logs.
///
/// Removed on drop, unless the thread is panicking (a failed test) or `KEEP_WORK=1`: then
/// it is kept and its path printed.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a fresh directory.
    pub fn new(tag: &str) -> Result<Self, String> {
        let path = PathBuf::from(format!(
            "/tmp/bgpt-{}-{}-{tag}",
            std::process::id(),
            next_id()
        ));
        fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("KEEP_WORK").is_some_and(|v| v == "1") {
            eprintln!("work dir kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------- Proc

/// A child process started by this harness, stopped by its PID when dropped.
///
/// The child is only ever signalled while it has not been reaped, so its PID cannot have
/// been reused by another process.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    exited: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// The name given at spawn time.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file that receives its stdout (unless piped to the harness).
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// The file that receives its stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Its exit status, once it has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.exited = Some(st);
        }
        self.exited
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Sends `signal` (a name such as `TERM`) to the child, if it has not been reaped.
    pub fn signal(&mut self, signal: &str) -> Result<(), String> {
        if self.exited.is_some() {
            return Ok(());
        }
        // Not reaped yet (a zombie at worst): the PID is still this child's.
        let pid = self.child.id().to_string();
        run_cmd("kill", &["-s", signal, &pid], Duration::from_secs(5)).map(|_| ())
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, Duration::from_millis(20), || self.try_exit())
    }

    /// SIGTERM, wait at most `grace`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited {
            return Some(st);
        }
        let _ = self.signal("TERM");
        if let Some(st) = self.wait_exit(grace) {
            return Some(st);
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM for {grace:?}: killing it",
            self.label,
            self.pid()
        );
        let _ = self.child.kill();
        self.wait_exit(Duration::from_secs(5))
    }

    /// Takes the piped stdout (only when spawned with `pipe_stdout`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(3));
    }
}

// ---------------------------------------------------------------------------------- Netns

/// A network namespace `bgpt-<pid>-<n>-<role>` created by this harness: `lo` up, no IPv6
/// duplicate address detection, no router advertisements, no automatic link-local
/// addresses.
///
/// Dropping it kills whatever still runs inside it (only processes this harness put
/// there) and deletes it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace.
    pub fn create(role: &str) -> Result<Self, String> {
        let name = format!("bgpt-{}-{}-{role}", std::process::id(), next_id());
        run_cmd("ip", &["netns", "add", &name], Duration::from_secs(10))?;
        let ns = Self { name };
        ns.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
                "net.ipv6.conf.default.addr_gen_mode=1",
                "net.ipv6.conf.default.router_solicitations=0",
            ],
        )?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args` inside the namespace to completion (at most 10 s) and returns
    /// its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["netns", "exec", &self.name, program];
        argv.extend_from_slice(args);
        run_cmd("ip", &argv, Duration::from_secs(10))
    }

    /// Runs `ip -n NAME args` (at most 10 s).
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["-n", &self.name];
        argv.extend_from_slice(args);
        run_cmd("ip", &argv, Duration::from_secs(10))
    }

    /// Starts `program args` inside the namespace in the background. Its stderr goes to
    /// `dir/<label>.stderr`, its stdout to `dir/<label>.stdout` or, with `pipe_stdout`, to
    /// a pipe ([`Proc::take_stdout`]).
    pub fn spawn(
        &self,
        dir: &Path,
        label: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        pipe_stdout: bool,
    ) -> Result<Proc, String> {
        spawn_in(&self.name, dir, label, program, args, env, pipe_stdout)
    }

    /// PIDs of the processes in this namespace.
    pub fn pids(&self) -> Vec<u32> {
        run_cmd("ip", &["netns", "pids", &self.name], Duration::from_secs(5))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Normally the process guards are gone already; anything left inside was started
        // by this harness (nobody else knows the namespace).
        let left = self.pids();
        if !left.is_empty() {
            for pid in &left {
                let _ = run_cmd(
                    "kill",
                    &["-s", "KILL", &pid.to_string()],
                    Duration::from_secs(5),
                );
            }
            let _ = poll(Duration::from_secs(5), Duration::from_millis(50), || {
                self.pids().is_empty().then_some(())
            });
        }
        if let Err(e) = run_cmd("ip", &["netns", "del", &self.name], Duration::from_secs(10)) {
            eprintln!("cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// [`Netns::spawn`] by namespace name.
fn spawn_in(
    ns: &str,
    dir: &Path,
    label: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    pipe_stdout: bool,
) -> Result<Proc, String> {
    let stdout = dir.join(format!("{label}.stdout"));
    let stderr = dir.join(format!("{label}.stderr"));
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    };
    let err_file = open(&stderr)?;
    let mut cmd = Command::new("ip");
    // `ip netns exec` execs the program (no fork): the child's PID is the program's.
    cmd.args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::from(err_file));
    for (k, v) in env {
        cmd.env(k, v);
    }
    if pipe_stdout {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(open(&stdout)?));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} in {}: {e}", program.display(), ns))?;
    Ok(Proc {
        label: label.to_owned(),
        child,
        exited: None,
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------------- Link

/// A veth pair between two namespaces, both ends up, with the given addresses
/// (`"192.0.2.1/24"`, `"2001:db8::1/64"`; IPv6 ones without DAD, usable at once).
///
/// Needs no cleanup of its own: deleting either namespace deletes the pair.
#[derive(Debug)]
pub struct Link {
    /// The interface name on side `a`.
    pub a_if: String,
    /// The interface name on side `b`.
    pub b_if: String,
}

impl Link {
    /// Creates the pair directly inside both namespaces (nothing appears in the root
    /// namespace, so names never clash) and waits (at most 5 s) until both ends are up.
    pub fn new(a: &Netns, a_addrs: &[&str], b: &Netns, b_addrs: &[&str]) -> Result<Self, String> {
        let link = Self {
            a_if: "bgpt0".into(),
            b_if: "bgpt1".into(),
        };
        run_cmd(
            "ip",
            &[
                "link", "add", &link.a_if, "netns", &a.name, "type", "veth", "peer", "name",
                &link.b_if, "netns", &b.name,
            ],
            Duration::from_secs(10),
        )?;
        for (ns, dev, addrs) in [(a, &link.a_if, a_addrs), (b, &link.b_if, b_addrs)] {
            ns.exec(
                "sysctl",
                &[
                    "-qw",
                    &format!("net.ipv6.conf.{dev}.addr_gen_mode=1"),
                    &format!("net.ipv6.conf.{dev}.accept_dad=0"),
                ],
            )?;
            for addr in addrs {
                if addr.contains(':') {
                    ns.ip(&["addr", "add", addr, "dev", dev, "nodad"])?;
                } else {
                    ns.ip(&["addr", "add", addr, "dev", dev])?;
                }
            }
            ns.ip(&["link", "set", dev, "up"])?;
        }
        for (ns, dev) in [(a, &link.a_if), (b, &link.b_if)] {
            poll(Duration::from_secs(5), Duration::from_millis(20), || {
                let out = ns.ip(&["-o", "link", "show", dev]).unwrap_or_default();
                out.contains("state UP").then_some(())
            })
            .ok_or_else(|| format!("{dev} in {} not up within 5 s", ns.name))?;
        }
        Ok(link)
    }
}

// ---------------------------------------------------------------------------------- peers

/// One BGP session's parameters, seen from the peer being configured.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Name of the session (BIRD protocol name; in file names).
    pub name: String,
    /// The peer's own AS.
    pub local_as: u32,
    /// The peer's own address (also its router id).
    pub local_addr: Ipv4Addr,
    /// Our speaker's AS.
    pub remote_as: u32,
    /// Our speaker's address.
    pub remote_addr: Ipv4Addr,
    /// Hold time, seconds.
    pub hold: u16,
    /// Keepalive interval, seconds.
    pub keepalive: u16,
    /// Connect retry interval, seconds.
    pub connect_retry: u16,
    /// Never connect out.
    pub passive: bool,
}

/// What the tests ask of any real peer.
pub trait Peer {
    /// Which implementation ("BIRD 2", "BIRD 1.6", "FRR").
    fn kind(&self) -> &'static str;
    /// The BGP state of the session as the peer reports it (`Established`, `Active`, ...).
    fn state(&self) -> Result<String, String>;
    /// The peer's full description of the session (for assertions and diagnostics).
    fn details(&self) -> Result<String, String>;
    /// When the session's last error is a Cease / Administrative Shutdown *received* from
    /// our speaker: `Some(shutdown communication)` (empty when there was none).
    fn received_admin_shutdown(&self) -> Result<Option<String>, String>;
    /// Stops the daemon (SIGTERM: it closes its sessions with a Cease).
    fn stop(&mut self) -> Result<(), String>;
    /// Starts it again with the same configuration.
    fn start_again(&mut self) -> Result<(), String>;
    /// Stops and starts it.
    fn restart(&mut self) -> Result<(), String> {
        self.stop()?;
        self.start_again()
    }
    /// The last lines of its log and stderr.
    fn log_tail(&self, lines: usize) -> String;
}

/// Which BIRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BirdVersion {
    /// BIRD 2.0 (Debian `bird2`, on `PATH`).
    V2,
    /// BIRD 1.6 (Debian `bird`, unpacked under `BIRD16_DIR`).
    V16,
}

/// Where BIRD 1.6 was unpacked: `$BIRD16_DIR`, default `<repo>/target/peers/bird16`.
pub fn bird16_dir() -> PathBuf {
    match std::env::var_os("BIRD16_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/peers/bird16"),
    }
}

/// Finds `program` on `PATH` (or as given, when it contains a slash).
fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

const INSTALL_HINT: &str = "run `sudo tests/scripts/install-peers.sh` first";

/// A BIRD daemon (2.0 or 1.6) in a namespace with one BGP protocol towards our speaker.
#[derive(Debug)]
pub struct Bird {
    version: BirdVersion,
    ns: String,
    dir: PathBuf,
    cfg: PeerConfig,
    bird: PathBuf,
    birdc: PathBuf,
    conf: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Bird {
    /// Writes the config into `dir`, checks it (`bird -p`) and starts BIRD in the
    /// foreground inside `ns`; returns once its control socket answers (at most 10 s).
    pub fn start(
        version: BirdVersion,
        ns: &Netns,
        dir: &Path,
        cfg: PeerConfig,
    ) -> Result<Self, String> {
        let (bird, birdc) = match version {
            BirdVersion::V2 => {
                let bird = which("bird")
                    .ok_or_else(|| format!("BIRD 2 (`bird`) not found on PATH: {INSTALL_HINT}"))?;
                let birdc = which("birdc")
                    .ok_or_else(|| format!("BIRD 2 (`birdc`) not found on PATH: {INSTALL_HINT}"))?;
                (bird, birdc)
            }
            BirdVersion::V16 => {
                let d = bird16_dir();
                let (bird, birdc) = (d.join("usr/sbin/bird"), d.join("usr/sbin/birdc"));
                if !bird.is_file() || !birdc.is_file() {
                    return Err(format!(
                        "BIRD 1.6 not found at {} (set BIRD16_DIR to where the Debian `bird` \
                         package was unpacked): {INSTALL_HINT}",
                        bird.display()
                    ));
                }
                (bird, birdc)
            }
        };
        let want = match version {
            BirdVersion::V2 => "BIRD version 2.",
            BirdVersion::V16 => "BIRD version 1.6",
        };
        let v = Command::new(&bird)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bird.display()))?;
        let v = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        if !v.contains(want) {
            return Err(format!(
                "{} is not {want}: {} ({INSTALL_HINT})",
                bird.display(),
                v.trim()
            ));
        }
        let stem = format!("bird-{}", cfg.name);
        let mut b = Self {
            version,
            ns: ns.name().to_owned(),
            dir: dir.to_owned(),
            bird,
            birdc,
            conf: dir.join(format!("{stem}.conf")),
            ctl: dir.join(format!("{stem}.ctl")),
            log: dir.join(format!("{stem}.log")),
            cfg,
            proc: None,
        };
        fs::write(&b.conf, b.config()).map_err(|e| format!("cannot write config: {e}"))?;
        run_cmd(
            &b.bird.to_string_lossy(),
            &["-p", "-c", &b.conf.to_string_lossy()],
            Duration::from_secs(10),
        )
        .map_err(|e| format!("bad BIRD config {}: {e}", b.conf.display()))?;
        b.start_again()?;
        Ok(b)
    }

    fn config(&self) -> String {
        let c = &self.cfg;
        let mut s = String::new();
        let _ = writeln!(s, "router id {};", c.local_addr);
        let _ = writeln!(s, "log \"{}\" all;", self.log.display());
        let _ = writeln!(s, "protocol device {{ scan time 10; }}");
        let _ = writeln!(s, "protocol bgp {} {{", c.name);
        let _ = writeln!(s, "  debug all;");
        let _ = writeln!(s, "  local {} as {};", c.local_addr, c.local_as);
        let _ = writeln!(s, "  neighbor {} as {};", c.remote_addr, c.remote_as);
        let _ = writeln!(s, "  hold time {};", c.hold);
        let _ = writeln!(s, "  keepalive time {};", c.keepalive);
        let _ = writeln!(s, "  connect retry time {};", c.connect_retry);
        let _ = writeln!(s, "  error wait time 1,2;");
        let _ = writeln!(s, "  error forget time 10;");
        if c.passive {
            let _ = writeln!(s, "  passive on;");
        }
        match self.version {
            BirdVersion::V2 => {
                let _ = writeln!(s, "  strict bind on;");
                let _ = writeln!(s, "  connect delay time 1;");
                let _ = writeln!(s, "  ipv4 {{ import all; export none; }};");
                let _ = writeln!(s, "  ipv6 {{ import all; export none; }};");
            }
            BirdVersion::V16 => {
                let _ = writeln!(s, "  start delay time 1;");
                let _ = writeln!(s, "  import all;");
                let _ = writeln!(s, "  export none;");
            }
        }
        let _ = writeln!(s, "}}");
        s
    }

    /// Runs `birdc -s CTL args` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let ctl = self.ctl.to_string_lossy();
        let mut argv = vec!["-s", &ctl];
        argv.extend_from_slice(args);
        let out = run_cmd(&self.birdc.to_string_lossy(), &argv, Duration::from_secs(5))?;
        if out.contains("Unable to connect to server") {
            return Err(out);
        }
        Ok(out)
    }

    /// `show protocols all NAME`.
    pub fn show_protocol(&self) -> Result<String, String> {
        self.birdc(&["show", "protocols", "all", &self.cfg.name])
    }

    /// Its stderr file and log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Peer for Bird {
    fn kind(&self) -> &'static str {
        match self.version {
            BirdVersion::V2 => "BIRD 2",
            BirdVersion::V16 => "BIRD 1.6",
        }
    }

    fn state(&self) -> Result<String, String> {
        let out = self.show_protocol()?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("BGP state:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| format!("no `BGP state:` in birdc output:\n{out}"))
    }

    fn details(&self) -> Result<String, String> {
        self.show_protocol()
    }

    fn received_admin_shutdown(&self) -> Result<Option<String>, String> {
        // BIRD 1.6 and 2 alike:
        //   Last error:       Received: Administrative shutdown
        //   Message:          rr-daemon session stopped   (RFC 8203, when one was sent)
        let out = self.show_protocol()?;
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if field("Last error:").as_deref() != Some("Received: Administrative shutdown") {
            return Ok(None);
        }
        Ok(Some(field("Message:").unwrap_or_default()))
    }

    fn stop(&mut self) -> Result<(), String> {
        if let Some(mut p) = self.proc.take() {
            let st = p.stop(Duration::from_secs(10));
            if st.is_none() {
                return Err(format!("{} (pid {}) did not exit", p.label(), p.pid()));
            }
        }
        Ok(())
    }

    fn start_again(&mut self) -> Result<(), String> {
        let _ = fs::remove_file(&self.ctl);
        let args: Vec<String> = vec![
            "-f".into(),
            "-c".into(),
            self.conf.to_string_lossy().into_owned(),
            "-s".into(),
            self.ctl.to_string_lossy().into_owned(),
        ];
        let mut p = spawn_in(
            &self.ns,
            &self.dir,
            &format!("bird-{}", self.cfg.name),
            &self.bird,
            &args,
            &[],
            false,
        )?;
        let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            if !p.is_running() {
                return Some(false);
            }
            self.birdc(&["show", "status"]).is_ok().then_some(true)
        });
        let log = || {
            format!(
                "stderr:\n{}\nlog:\n{}",
                tail(p.stderr_path(), 20),
                tail(&self.log, 20)
            )
        };
        match ready {
            Some(true) => {
                self.proc = Some(p);
                Ok(())
            }
            Some(false) => Err(format!("{} exited at start; {}", self.kind(), log())),
            None => Err(format!(
                "{} control socket did not answer within 10 s; {}",
                self.kind(),
                log()
            )),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let stderr = self.dir.join(format!("bird-{}.stderr", self.cfg.name));
        format!(
            "--- {} stderr ---\n{}\n--- {} log ({}) ---\n{}",
            self.kind(),
            tail(&stderr, lines),
            self.kind(),
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

/// FRR `bgpd` (no zebra) in a namespace with one neighbor: our speaker.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    dir: PathBuf,
    cfg: PeerConfig,
    conf: PathBuf,
    vty: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Frr {
    /// Writes the config into `dir` and starts `bgpd -Z -S` listening on the peer's
    /// address inside `ns`; returns once vtysh answers (at most 10 s).
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Self, String> {
        if !Path::new(FRR_BGPD).is_file() {
            return Err(format!("FRR bgpd not found at {FRR_BGPD}: {INSTALL_HINT}"));
        }
        if which("vtysh").is_none() {
            return Err(format!("FRR vtysh not found on PATH: {INSTALL_HINT}"));
        }
        let stem = format!("frr-{}", cfg.name);
        let mut f = Self {
            ns: ns.name().to_owned(),
            dir: dir.to_owned(),
            conf: dir.join(format!("{stem}.conf")),
            vty: dir.join(format!("{stem}.vty")),
            log: dir.join(format!("{stem}.log")),
            cfg,
            proc: None,
        };
        fs::create_dir_all(&f.vty).map_err(|e| format!("cannot create vty dir: {e}"))?;
        fs::write(&f.conf, f.config()).map_err(|e| format!("cannot write config: {e}"))?;
        f.start_again()?;
        Ok(f)
    }

    fn config(&self) -> String {
        let c = &self.cfg;
        let n = c.remote_addr;
        let mut s = String::new();
        let _ = writeln!(s, "frr defaults traditional");
        let _ = writeln!(s, "hostname {}", c.name);
        let _ = writeln!(s, "log file {}", self.log.display());
        let _ = writeln!(s, "log timestamp precision 3");
        let _ = writeln!(s, "debug bgp neighbor-events");
        let _ = writeln!(s, "!");
        let _ = writeln!(s, "router bgp {}", c.local_as);
        let _ = writeln!(s, " bgp router-id {}", c.local_addr);
        let _ = writeln!(s, " no bgp ebgp-requires-policy");
        let _ = writeln!(s, " no bgp default ipv4-unicast");
        let _ = writeln!(s, " timers bgp {} {}", c.keepalive, c.hold);
        let _ = writeln!(s, " neighbor {n} remote-as {}", c.remote_as);
        let _ = writeln!(s, " neighbor {n} timers {} {}", c.keepalive, c.hold);
        let _ = writeln!(s, " neighbor {n} timers connect {}", c.connect_retry);
        if c.passive {
            let _ = writeln!(s, " neighbor {n} passive");
        }
        for af in ["ipv4", "ipv6"] {
            let _ = writeln!(s, " address-family {af} unicast");
            let _ = writeln!(s, "  neighbor {n} activate");
            let _ = writeln!(s, " exit-address-family");
        }
        let _ = writeln!(s, "!");
        s
    }

    /// Runs `vtysh --vty_socket DIR -d bgpd -c CMD` and returns its output.
    pub fn vtysh(&self, cmd: &str) -> Result<String, String> {
        let vty = self.vty.to_string_lossy();
        run_cmd(
            "vtysh",
            &["--vty_socket", &vty, "-d", "bgpd", "-c", cmd],
            Duration::from_secs(5),
        )
    }

    /// `show bgp neighbors ADDR json`, the neighbor's object.
    pub fn neighbor_json(&self) -> Result<Value, String> {
        let addr = self.cfg.remote_addr.to_string();
        let out = self.vtysh(&format!("show bgp neighbors {addr} json"))?;
        let v: Value = serde_json::from_str(&out)
            .map_err(|e| format!("vtysh printed no JSON ({e}):\n{out}"))?;
        v.get(&addr)
            .cloned()
            .ok_or_else(|| format!("no neighbor {addr} in:\n{out}"))
    }
}

impl Peer for Frr {
    fn kind(&self) -> &'static str {
        "FRR"
    }

    fn state(&self) -> Result<String, String> {
        let v = self.neighbor_json()?;
        v.get("bgpState")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no bgpState in {v}"))
    }

    fn details(&self) -> Result<String, String> {
        self.neighbor_json()
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
    }

    fn received_admin_shutdown(&self) -> Result<Option<String>, String> {
        // FRR 8.4: "lastResetDueTo": "BGP Notification received",
        // "lastNotificationReason": "Cease/Administrative Shutdown",
        // "lastShutdownDescription": "<the RFC 8203 communication>".
        let v = self.neighbor_json()?;
        let field = |name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default();
        if field("lastResetDueTo") != "BGP Notification received"
            || field("lastNotificationReason") != "Cease/Administrative Shutdown"
        {
            return Ok(None);
        }
        Ok(Some(field("lastShutdownDescription").to_owned()))
    }

    fn stop(&mut self) -> Result<(), String> {
        if let Some(mut p) = self.proc.take()
            && p.stop(Duration::from_secs(10)).is_none()
        {
            return Err(format!("{} (pid {}) did not exit", p.label(), p.pid()));
        }
        Ok(())
    }

    fn start_again(&mut self) -> Result<(), String> {
        let args: Vec<String> = [
            "-Z",
            "-S",
            "-f",
            &self.conf.to_string_lossy(),
            "-i",
            &self
                .dir
                .join(format!("frr-{}.pid", self.cfg.name))
                .to_string_lossy(),
            "--vty_socket",
            &self.vty.to_string_lossy(),
            "-l",
            &self.cfg.local_addr.to_string(),
            "-p",
            "179",
            "-P",
            "0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut p = spawn_in(
            &self.ns,
            &self.dir,
            &format!("frr-{}", self.cfg.name),
            Path::new(FRR_BGPD),
            &args,
            &[],
            false,
        )?;
        let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            if !p.is_running() {
                return Some(false);
            }
            self.neighbor_json().is_ok().then_some(true)
        });
        let log = || {
            format!(
                "stderr:\n{}\nlog:\n{}",
                tail(p.stderr_path(), 20),
                tail(&self.log, 20)
            )
        };
        match ready {
            Some(true) => {
                self.proc = Some(p);
                Ok(())
            }
            Some(false) => Err(format!("FRR bgpd exited at start; {}", log())),
            None => Err(format!("FRR vtysh did not answer within 10 s; {}", log())),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let stderr = self.dir.join(format!("frr-{}.stderr", self.cfg.name));
        format!(
            "--- FRR stderr ---\n{}\n--- FRR log ({}) ---\n{}",
            tail(&stderr, lines),
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

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
