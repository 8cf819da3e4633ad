//! Shared helpers for the interop scenarios and the load generator.
//!
//! The interop harness: network namespaces ([`Netns`]) joined by veth pairs ([`Link`]) or
//! to a bridge ([`Hub`]), real BGP peers running inside them ([`Bird`] for BIRD 2 and
//! BIRD 1.6, [`Frr`] for FRR `bgpd`; as one session's peer, or as route-reflector clients
//! that originate routes and report what they learned, [`Client`]), our one-session
//! speaker ([`Speaker`]) whose JSON event lines are collected by a reader thread, and our
//! daemon on a configuration file ([`Daemon`]) with its control API read through
//! `speaker ctl --json` ([`ctl_json`], [`ctl_route`]). Beyond plain clients: ADD-PATH
//! clients ([`ClientOptions`]), and BIRD or FRR on a configuration of the test's own
//! ([`Bird::start_config`], [`Frr::start_config`]: a reflector, a mesh node). Graceful
//! restart (RFC 4724): clients with it on ([`ClientOptions::graceful_restart`]), a BIRD or
//! our daemon killed with SIGKILL and started again as a restarting speaker
//! ([`Bird::kill`], [`Bird::start_again_with`] `-R`; [`Daemon::kill`],
//! [`Daemon::start_again`] `--graceful-restart`), and a BIRD watched from another thread
//! ([`BirdCtl`]).
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
use std::net::{IpAddr, Ipv4Addr};
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
    let (status, stdout, stderr) = run_capture(program, args, timeout)?;
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`{program} {}` failed ({status}): {}{}",
            args.join(" "),
            stderr.trim(),
            if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                ""
            }
        ))
    }
}

/// Runs `program args` to completion (bounded by `timeout`: killed after it) and returns
/// its exit status, stdout and stderr, whatever the status.
pub fn run_capture(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
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
    Ok((status, stdout, stderr))
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

/// Waits (10 s at most) until a freshly started daemon `p` answers on its control channel,
/// or fails saying whether it died or stayed silent, with its stderr and log.
fn await_control(
    p: &mut Proc,
    log: &Path,
    name: &str,
    control: &str,
    mut answers: impl FnMut() -> bool,
) -> Result<(), String> {
    let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        if !p.is_running() {
            return Some(false);
        }
        answers().then_some(true)
    });
    let tails = || {
        format!(
            "stderr:\n{}\nlog:\n{}",
            tail(p.stderr_path(), 20),
            tail(log, 20)
        )
    };
    match ready {
        Some(true) => Ok(()),
        Some(false) => Err(format!("{name} exited at start; {}", tails())),
        None => Err(format!("{control} did not answer within 10 s; {}", tails())),
    }
}

/// Polls `check` every `every` until it returns `Ok`, at most `timeout`: how long it took,
/// or the last error it gave.
pub fn poll_ok(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let t = Instant::now();
    let mut last = String::new();
    let ok = poll(timeout, every, || match check() {
        Ok(()) => Some(()),
        Err(e) => {
            last = e;
            None
        }
    });
    ok.map(|()| t.elapsed()).ok_or(last)
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
        Self::named(a, "bgpt0", a_addrs, b, "bgpt1", b_addrs)
    }

    /// [`Link::new`] with the interface names given (each unique in its namespace).
    pub fn named(
        a: &Netns,
        a_if: &str,
        a_addrs: &[&str],
        b: &Netns,
        b_if: &str,
        b_addrs: &[&str],
    ) -> Result<Self, String> {
        let link = Self {
            a_if: a_if.into(),
            b_if: b_if.into(),
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

// ---------------------------------------------------------------------------------- Hub

/// A namespace with a bridge `br0` (holding the given addresses) to which other namespaces
/// attach by veth pairs: one shared subnet, as nodes on one L2 segment with a reflector.
///
/// Every attached namespace reaches every other directly, so a reflected route's next hop
/// (the originator's address) is on-link at every client.
#[derive(Debug)]
pub struct Hub {
    ns: Netns,
    ports: AtomicUsize,
}

impl Hub {
    /// Creates the namespace `bgpt-<pid>-<n>-<role>` and its bridge, up, with `addrs`.
    pub fn create(role: &str, addrs: &[&str]) -> Result<Self, String> {
        let ns = Netns::create(role)?;
        ns.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ns.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.br0.addr_gen_mode=1",
                "net.ipv6.conf.br0.accept_dad=0",
            ],
        )?;
        for addr in addrs {
            if addr.contains(':') {
                ns.ip(&["addr", "add", addr, "dev", "br0", "nodad"])?;
            } else {
                ns.ip(&["addr", "add", addr, "dev", "br0"])?;
            }
        }
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            ns,
            ports: AtomicUsize::new(0),
        })
    }

    /// The hub's namespace (where the reflector runs).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Joins `other` to the bridge: a veth `portN` (hub side, a bridge port) – `eth0`
    /// (`other` side, with `addrs`); returns once both ends are up.
    pub fn attach(&self, other: &Netns, addrs: &[&str]) -> Result<Link, String> {
        let port = format!("port{}", self.ports.fetch_add(1, Ordering::Relaxed));
        let link = Link::named(&self.ns, &port, &[], other, "eth0", addrs)?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
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

/// One route a reflector client originates.
#[derive(Clone, Debug)]
pub struct ClientRoute {
    /// The prefix: `"198.51.100.0/26"`, `"2001:db8:11::/48"`.
    pub prefix: String,
    /// A standard community to attach, `(65000, 11)`.
    pub community: Option<(u16, u16)>,
    /// The LOCAL_PREF to send (otherwise the client's default, 100).
    pub local_pref: Option<u32>,
}

impl ClientRoute {
    /// A route with no attributes of its own.
    pub fn plain(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            community: None,
            local_pref: None,
        }
    }

    /// A route with a community and a LOCAL_PREF.
    pub fn tagged(prefix: &str, community: (u16, u16), local_pref: u32) -> Self {
        Self {
            prefix: prefix.into(),
            community: Some(community),
            local_pref: Some(local_pref),
        }
    }

    /// Whether it is an IPv6 prefix.
    pub fn is_ipv6(&self) -> bool {
        self.prefix.contains(':')
    }

    /// Its community as the peers print it: `"65000:11"`.
    pub fn community_text(&self) -> Option<String> {
        self.community.map(|(a, v)| format!("{a}:{v}"))
    }
}

/// A route-reflector client: an iBGP peer of our reflector that originates `routes` and
/// imports everything. Its BGP session is named `upstream` (BIRD), its static routes are in
/// `static1` (IPv4) and `static6` (IPv6).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Names its files (and FRR's hostname).
    pub name: String,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Its AS (the reflector's, for a client).
    pub asn: u32,
    /// Its session address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// The reflector's session address.
    pub rr_addr: IpAddr,
    /// The reflector's AS.
    pub rr_asn: u32,
    /// Hold time, seconds.
    pub hold: u16,
    /// Keepalive interval, seconds.
    pub keepalive: u16,
    /// Connect retry interval, seconds.
    pub connect_retry: u16,
    /// BIRD: seconds before it first connects out, and again after a connection closes
    /// (`connect delay time`; BIRD's default is 5). FRR ignores it.
    pub connect_delay: u16,
    /// Never connect out.
    pub passive: bool,
    /// What it originates.
    pub routes: Vec<ClientRoute>,
}

impl ClientConfig {
    /// The families it needs: the session's, and those of its routes.
    fn families(&self) -> (bool, bool) {
        let v4 = self.addr.is_ipv4() || self.routes.iter().any(|r| !r.is_ipv6());
        let v6 = self.addr.is_ipv6() || self.routes.iter().any(ClientRoute::is_ipv6);
        (v4, v6)
    }
}

/// Settings of a route-reflector client beyond [`ClientConfig`] (default: none of them).
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// ADD-PATH (RFC 7911) on the session to the reflector, receive and send: BIRD 2
    /// `add paths on` in each channel, BIRD 1.6 `add paths on`, FRR
    /// `addpath-tx-all-paths` (FRR 8.4 offers to receive whenever the neighbor has no
    /// `disable-addpath-rx`; it has no `addpath-rx-*` command).
    pub add_path: bool,
    /// Graceful restart (RFC 4724) on the session to the reflector, as restarting speaker
    /// and as helper: BIRD `graceful restart on;` in the protocol, FRR
    /// `bgp graceful-restart` in `router bgp`.
    pub graceful_restart: bool,
    /// BIRD only: configuration appended verbatim after the client's own (another
    /// protocol, such as an eBGP session to an observer). An FRR client refuses it.
    pub extra_config: String,
}

/// A route as a client learned it from the reflector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The prefix, as the client prints it.
    pub prefix: String,
    /// NEXT_HOP (IPv4) or the MP_REACH next hops (global first).
    pub next_hops: Vec<String>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// Standard communities, `"65000:11"`, sorted.
    pub communities: Vec<String>,
    /// ORIGINATOR_ID.
    pub originator_id: Option<String>,
    /// CLUSTER_LIST, in order.
    pub cluster_list: Vec<String>,
    /// AS_PATH as printed (empty for a route from the own AS).
    pub as_path: String,
}

/// A real peer acting as a route-reflector client (started with `start_client`).
pub trait Client: Peer {
    /// Its configuration.
    fn client(&self) -> &ClientConfig;
    /// The routes it learned over its session with the reflector.
    fn learned(&self) -> Result<Vec<Learned>, String>;
    /// Stops originating `prefix` (BIRD: reconfigure without it; FRR: `no network`).
    fn withdraw(&mut self, prefix: &str) -> Result<(), String>;
    /// Evidence that the reflector sent the client one of its own routes back, if any.
    /// BIRD treats such a route (its own ORIGINATOR_ID) as a withdrawal, so any received
    /// import withdrawal counts (only meaningful before anything was withdrawn); FRR logs
    /// every received prefix (`debug bgp updates in`), also the ones it denies.
    fn own_routes_echoed(&self) -> Result<Option<String>, String>;
    /// When its session last changed state (BIRD: `Since`, to the millisecond with BIRD 2;
    /// FRR: the Established time, to the second): it changes whenever the session resets.
    fn session_since(&self) -> Result<String, String>;
}

/// Which BIRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BirdVersion {
    /// BIRD 2.0 (Debian `bird2`, on `PATH`).
    V2,
    /// BIRD 1.6 (Debian `bird`, unpacked under `BIRD16_DIR`; `bird6` for IPv6).
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
    /// In file names: `bird-<name>.*`.
    name: String,
    /// The BGP protocol's name.
    proto: String,
    bird: PathBuf,
    birdc: PathBuf,
    conf: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    client: Option<ClientConfig>,
    options: ClientOptions,
    withdrawn: Vec<String>,
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
        let mut b = Self::prepare(version, ns, dir, &cfg.name, &cfg.name, false)?;
        let text = b.session_config(&cfg);
        b.write_and_start(&text)?;
        Ok(b)
    }

    /// [`Bird::start`] as a route-reflector client (BIRD 1.6: `bird6` for an IPv6 session,
    /// which then carries IPv6 routes only).
    pub fn start_client(
        version: BirdVersion,
        ns: &Netns,
        dir: &Path,
        cfg: ClientConfig,
    ) -> Result<Self, String> {
        Self::start_client_with(version, ns, dir, cfg, ClientOptions::default())
    }

    /// [`Bird::start_client`] with [`ClientOptions`].
    pub fn start_client_with(
        version: BirdVersion,
        ns: &Netns,
        dir: &Path,
        cfg: ClientConfig,
        options: ClientOptions,
    ) -> Result<Self, String> {
        let v6 = cfg.addr.is_ipv6();
        if version == BirdVersion::V16 && cfg.routes.iter().any(|r| r.is_ipv6() != v6) {
            return Err(format!(
                "BIRD 1.6 client {}: `bird` carries IPv4 only and `bird6` IPv6 only",
                cfg.name
            ));
        }
        let mut b = Self::prepare(version, ns, dir, &cfg.name, "upstream", v6)?;
        b.client = Some(cfg);
        b.options = options;
        let text = b.client_config();
        b.write_and_start(&text)?;
        Ok(b)
    }

    /// Starts BIRD on a configuration of the test's own (`body`: everything after the
    /// `log` and `timeformat` lines, which this adds), as `bird-<name>.*` in `dir`;
    /// `proto` names the BGP protocol that [`Peer::state`] and friends report on, `ipv6`
    /// picks `bird6` for BIRD 1.6.
    pub fn start_config(
        version: BirdVersion,
        ns: &Netns,
        dir: &Path,
        name: &str,
        proto: &str,
        ipv6: bool,
        body: &str,
    ) -> Result<Self, String> {
        let mut b = Self::prepare(version, ns, dir, name, proto, ipv6)?;
        let mut text = String::new();
        let _ = writeln!(text, "log \"{}\" all;", b.log.display());
        if version == BirdVersion::V2 {
            let _ = writeln!(text, "timeformat protocol iso long ms;");
        } else {
            let _ = writeln!(text, "timeformat protocol iso long;");
        }
        text.push_str(body);
        b.write_and_start(&text)?;
        Ok(b)
    }

    fn prepare(
        version: BirdVersion,
        ns: &Netns,
        dir: &Path,
        name: &str,
        proto: &str,
        ipv6: bool,
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
                let (bird, birdc) = if ipv6 {
                    (d.join("usr/sbin/bird6"), d.join("usr/sbin/birdc6"))
                } else {
                    (d.join("usr/sbin/bird"), d.join("usr/sbin/birdc"))
                };
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
        let stem = format!("bird-{name}");
        Ok(Self {
            version,
            ns: ns.name().to_owned(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            proto: proto.to_owned(),
            bird,
            birdc,
            conf: dir.join(format!("{stem}.conf")),
            ctl: dir.join(format!("{stem}.ctl")),
            log: dir.join(format!("{stem}.log")),
            proc: None,
            client: None,
            options: ClientOptions::default(),
            withdrawn: Vec::new(),
        })
    }

    fn write_config(&self, text: &str) -> Result<(), String> {
        fs::write(&self.conf, text).map_err(|e| format!("cannot write config: {e}"))?;
        run_cmd(
            &self.bird.to_string_lossy(),
            &["-p", "-c", &self.conf.to_string_lossy()],
            Duration::from_secs(10),
        )
        .map(|_| ())
        .map_err(|e| format!("bad BIRD config {}: {e}", self.conf.display()))
    }

    fn write_and_start(&mut self, text: &str) -> Result<(), String> {
        self.write_config(text)?;
        self.start_again()
    }

    fn session_config(&self, c: &PeerConfig) -> String {
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

    /// A client: static routes (less the withdrawn ones), exported with their attributes
    /// by the filter `to_reflector`; a directly connected iBGP session `upstream`.
    fn client_config(&self) -> String {
        let c = self.client.as_ref().expect("a client");
        let v2 = self.version == BirdVersion::V2;
        let (v4, v6) = c.families();
        let mut s = String::new();
        let _ = writeln!(s, "router id {};", c.router_id);
        let _ = writeln!(s, "log \"{}\" all;", self.log.display());
        // The session's `Since` to the millisecond (BIRD 1.6: to the second).
        if v2 {
            let _ = writeln!(s, "timeformat protocol iso long ms;");
        } else {
            let _ = writeln!(s, "timeformat protocol iso long;");
        }
        let _ = writeln!(s, "protocol device {{ scan time 10; }}");
        for (name, want_v6) in [("static1", false), ("static6", true)] {
            if !c.routes.iter().any(|r| r.is_ipv6() == want_v6) {
                continue;
            }
            let _ = write!(s, "protocol static {name} {{");
            if v2 {
                let _ = write!(s, " {};", if want_v6 { "ipv6" } else { "ipv4" });
            }
            for r in c.routes.iter().filter(|r| r.is_ipv6() == want_v6) {
                if !self.withdrawn.contains(&r.prefix) {
                    let _ = write!(s, " route {} blackhole;", r.prefix);
                }
            }
            let _ = writeln!(s, " }}");
        }
        // The filter never changes on a withdrawal, so a reconfiguration only touches the
        // static protocol.
        let _ = writeln!(s, "filter to_reflector {{");
        let _ = writeln!(s, "  if source != RTS_STATIC then reject;");
        for r in &c.routes {
            let mut set = String::new();
            if let Some((a, v)) = r.community {
                let _ = write!(set, " bgp_community.add(({a},{v}));");
            }
            if let Some(lp) = r.local_pref {
                let _ = write!(set, " bgp_local_pref = {lp};");
            }
            if !set.is_empty() {
                let _ = writeln!(s, "  if net = {} then {{{set} }}", r.prefix);
            }
        }
        let _ = writeln!(s, "  accept;");
        let _ = writeln!(s, "}}");
        let _ = writeln!(s, "protocol bgp {} {{", self.proto);
        let _ = writeln!(s, "  debug all;");
        let _ = writeln!(s, "  local {} as {};", c.addr, c.asn);
        let _ = writeln!(s, "  neighbor {} as {};", c.rr_addr, c.rr_asn);
        // On the reflector's subnet: next hops of reflected routes are on-link.
        let _ = writeln!(s, "  direct;");
        let _ = writeln!(s, "  hold time {};", c.hold);
        let _ = writeln!(s, "  keepalive time {};", c.keepalive);
        let _ = writeln!(s, "  connect retry time {};", c.connect_retry);
        let _ = writeln!(s, "  connect delay time {};", c.connect_delay);
        let _ = writeln!(s, "  error wait time 1,2;");
        let _ = writeln!(s, "  error forget time 10;");
        if c.passive {
            let _ = writeln!(s, "  passive on;");
        }
        if self.options.graceful_restart {
            let _ = writeln!(s, "  graceful restart on;");
        }
        if v2 {
            let _ = writeln!(s, "  strict bind on;");
            for (af, on) in [("ipv4", v4), ("ipv6", v6)] {
                if on {
                    let add_paths = if self.options.add_path {
                        " add paths on;"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        s,
                        "  {af} {{ import all; export filter to_reflector;{add_paths} }};"
                    );
                }
            }
        } else {
            let _ = writeln!(s, "  import all;");
            let _ = writeln!(s, "  export filter to_reflector;");
            if self.options.add_path {
                let _ = writeln!(s, "  add paths on;");
            }
        }
        let _ = writeln!(s, "}}");
        s.push_str(&self.options.extra_config);
        s
    }

    /// Runs `birdc -s CTL args` and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        self.control().birdc(args)
    }

    /// A handle on its control socket, independent of this guard's borrow (for a thread
    /// that watches it while the test restarts other daemons).
    pub fn control(&self) -> BirdCtl {
        BirdCtl {
            birdc: self.birdc.clone(),
            ctl: self.ctl.clone(),
        }
    }

    /// `show protocols all NAME` of the BGP protocol.
    pub fn show_protocol(&self) -> Result<String, String> {
        self.birdc(&["show", "protocols", "all", &self.proto])
    }

    /// The `Since` column of the BGP protocol (`2024-01-02 03:04:05.678` with BIRD 2
    /// clients): when it last changed state.
    pub fn since(&self) -> Result<String, String> {
        let out = self.birdc(&["show", "protocols", &self.proto])?;
        out.lines()
            .map(str::split_whitespace)
            .find_map(|mut t| (t.next() == Some(self.proto.as_str())).then(|| t.skip(3).take(2)))
            .map(|t| t.collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("no `{}` line in birdc output:\n{out}", self.proto))
    }

    /// The `Last error:` of the BGP protocol, if any.
    pub fn last_error(&self) -> Result<Option<String>, String> {
        let out = self.show_protocol()?;
        Ok(out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Last error:"))
            .map(|v| v.trim().to_owned()))
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its whole log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `BGP state:` of protocol `proto` (`Established`, `Active`, ...).
    pub fn protocol_state(&self, proto: &str) -> Result<String, String> {
        let out = self.birdc(&["show", "protocols", "all", proto])?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("BGP state:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| format!("no `BGP state:` for {proto} in birdc output:\n{out}"))
    }

    /// A client originates `prefix` again after [`Client::withdraw`] (reconfigured with
    /// it).
    pub fn announce_again(&mut self, prefix: &str) -> Result<(), String> {
        if !self.withdrawn.iter().any(|p| p == prefix) {
            return Err(format!("{prefix} was not withdrawn"));
        }
        self.withdrawn.retain(|p| p != prefix);
        let text = self.client_config();
        self.write_config(&text)?;
        let out = self.birdc(&["configure"])?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(format!("`birdc configure` did not reconfigure:\n{out}"))
        }
    }

    /// Starts it again with the same configuration and `extra` arguments (`-R`: as a
    /// restarting speaker, RFC 4724); returns once its control socket answers (at most
    /// 10 s).
    pub fn start_again_with(&mut self, extra: &[&str]) -> Result<(), String> {
        let _ = fs::remove_file(&self.ctl);
        let mut args: Vec<String> = vec![
            "-f".into(),
            "-c".into(),
            self.conf.to_string_lossy().into_owned(),
            "-s".into(),
            self.ctl.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut p = spawn_in(
            &self.ns,
            &self.dir,
            &format!("bird-{}", self.name),
            &self.bird,
            &args,
            &[],
            false,
        )?;
        let kind = self.kind();
        let control = format!("{kind} control socket");
        await_control(&mut p, &self.log, kind, &control, || {
            self.birdc(&["show", "status"]).is_ok()
        })?;
        self.proc = Some(p);
        Ok(())
    }

    /// The PID of its running `bird` process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Kills its `bird` process with SIGKILL (by the PID this harness started; no
    /// NOTIFICATION, the kernel closes its sockets) and reaps it.
    pub fn kill(&mut self) -> Result<(), String> {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL")?;
            if p.wait_exit(Duration::from_secs(5)).is_none() {
                return Err(format!("{} (pid {}) survived SIGKILL", p.label(), p.pid()));
            }
        }
        Ok(())
    }

    /// The `received` column of `Import withdraws:` of protocol `proto`, summed over its
    /// channels (BIRD 2 prints one such line per channel).
    pub fn import_withdraws_received(&self, proto: &str) -> Result<u64, String> {
        self.control().import_withdraws_received(proto)
    }

    /// `show route all ARGS` parsed: one entry per route (path), as [`Client::learned`].
    pub fn routes(&self, args: &[&str]) -> Result<Vec<Learned>, String> {
        let mut argv = vec!["show", "route", "all"];
        argv.extend_from_slice(args);
        let out = self.birdc(&argv)?;
        Ok(parse_bird_routes(&out))
    }
}

/// BIRD's control socket and the `birdc` that talks to it ([`Bird::control`]).
#[derive(Clone, Debug)]
pub struct BirdCtl {
    birdc: PathBuf,
    ctl: PathBuf,
}

impl BirdCtl {
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

    /// The `received` column of `Import withdraws:` of protocol `proto`, summed over its
    /// channels (BIRD 2 prints one such line per channel).
    pub fn import_withdraws_received(&self, proto: &str) -> Result<u64, String> {
        let out = self.birdc(&["show", "protocols", "all", proto])?;
        let mut seen = false;
        let mut received = 0u64;
        for l in out.lines() {
            if let Some(rest) = l.trim().strip_prefix("Import withdraws:") {
                seen = true;
                received += rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        if seen {
            Ok(received)
        } else {
            Err(format!(
                "no `Import withdraws:` for {proto} in birdc output:\n{out}"
            ))
        }
    }
}

/// Parses `show route all` of BIRD 2 or 1.6: a line at column 0 starts a prefix's first
/// route, one indented by spaces another route of the same prefix, one indented by a tab
/// is a detail (`via ...`, `BGP.next_hop: ...`) of the current route.
pub fn parse_bird_routes(out: &str) -> Vec<Learned> {
    let mut routes: Vec<Learned> = Vec::new();
    let mut prefix = String::new();
    for line in out.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('\t') {
            let Some(r) = routes.last_mut() else { continue };
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let value = value.trim();
            let words = || value.split_whitespace().map(str::to_owned).collect();
            match key {
                "BGP.next_hop" => r.next_hops = words(),
                "BGP.local_pref" => r.local_pref = value.parse().ok(),
                "BGP.originator_id" => r.originator_id = Some(value.to_owned()),
                "BGP.cluster_list" => r.cluster_list = words(),
                "BGP.as_path" => r.as_path = value.to_owned(),
                "BGP.community" => {
                    // "(65000,11) (65000,12)"
                    let mut c: Vec<String> = value
                        .split_whitespace()
                        .map(|w| {
                            w.trim_matches(|ch| ch == '(' || ch == ')')
                                .replace(',', ":")
                        })
                        .collect();
                    c.sort();
                    r.communities = c;
                }
                _ => {}
            }
        } else if line.starts_with(' ') {
            if !prefix.is_empty() {
                routes.push(Learned {
                    prefix: prefix.clone(),
                    ..Learned::default()
                });
            }
        } else {
            let first = line.split_whitespace().next().unwrap_or_default();
            if first.contains('/') {
                prefix = first.to_owned();
                routes.push(Learned {
                    prefix: prefix.clone(),
                    ..Learned::default()
                });
            } else {
                // "Table master4:", "BIRD 2.0.12 ready."
                prefix.clear();
            }
        }
    }
    routes
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
        self.start_again_with(&[])
    }

    fn log_tail(&self, lines: usize) -> String {
        let stderr = self.dir.join(format!("bird-{}.stderr", self.name));
        format!(
            "--- {} {} stderr ---\n{}\n--- {} {} log ({}) ---\n{}",
            self.kind(),
            self.name,
            tail(&stderr, lines),
            self.kind(),
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

impl Client for Bird {
    fn session_since(&self) -> Result<String, String> {
        self.since()
    }

    fn client(&self) -> &ClientConfig {
        self.client
            .as_ref()
            .expect("Client methods need a BIRD started with Bird::start_client")
    }

    fn learned(&self) -> Result<Vec<Learned>, String> {
        let out = self.birdc(&["show", "route", "all", "protocol", &self.proto])?;
        Ok(parse_bird_routes(&out))
    }

    fn withdraw(&mut self, prefix: &str) -> Result<(), String> {
        let c = self.client.as_ref().ok_or("not a client")?;
        if !c.routes.iter().any(|r| r.prefix == prefix) {
            return Err(format!("{} does not originate {prefix}", c.name));
        }
        self.withdrawn.push(prefix.to_owned());
        let text = self.client_config();
        self.write_config(&text)?;
        let out = self.birdc(&["configure"])?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(format!("`birdc configure` did not reconfigure:\n{out}"))
        }
    }

    fn own_routes_echoed(&self) -> Result<Option<String>, String> {
        // "      Import withdraws:            0          0        ---          0          0"
        // (BIRD 2: one such line per channel); the first number is "received".
        let out = self.show_protocol()?;
        let mut seen = false;
        let mut received = 0u64;
        for l in out.lines() {
            if let Some(rest) = l.trim().strip_prefix("Import withdraws:") {
                seen = true;
                received += rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        if !seen {
            return Err(format!("no `Import withdraws:` in birdc output:\n{out}"));
        }
        Ok((received > 0).then(|| {
            format!(
                "{} {} received {received} withdrawal(s) (BIRD turns a route with its own \
                 ORIGINATOR_ID into a withdrawal):\n{out}",
                self.kind(),
                self.name
            )
        }))
    }
}

/// FRR `bgpd` (no zebra) in a namespace with one neighbor: our speaker.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    dir: PathBuf,
    /// In file names: `frr-<name>.*`; the hostname.
    name: String,
    /// Our speaker's address.
    neighbor: IpAddr,
    /// Its own address (where it listens).
    listen: IpAddr,
    conf: PathBuf,
    vty: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    client: Option<ClientConfig>,
}

impl Frr {
    /// Writes the config into `dir` and starts `bgpd -Z -S` listening on the peer's
    /// address inside `ns`; returns once vtysh answers (at most 10 s).
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Self, String> {
        let mut f = Self::prepare(
            ns,
            dir,
            &cfg.name,
            cfg.remote_addr.into(),
            cfg.local_addr.into(),
        )?;
        let text = f.session_config(&cfg);
        f.write_and_start(&text)?;
        Ok(f)
    }

    /// [`Frr::start`] as a route-reflector client.
    pub fn start_client(ns: &Netns, dir: &Path, cfg: ClientConfig) -> Result<Self, String> {
        Self::start_client_with(ns, dir, cfg, &ClientOptions::default())
    }

    /// [`Frr::start_client`] with [`ClientOptions`].
    pub fn start_client_with(
        ns: &Netns,
        dir: &Path,
        cfg: ClientConfig,
        options: &ClientOptions,
    ) -> Result<Self, String> {
        if !options.extra_config.is_empty() {
            return Err(format!(
                "FRR client {}: `extra_config` is for BIRD clients only (use \
                 Frr::start_config)",
                cfg.name
            ));
        }
        let mut f = Self::prepare(ns, dir, &cfg.name, cfg.rr_addr, cfg.addr)?;
        let text = Self::client_config(&f.log, &cfg, options);
        f.client = Some(cfg);
        f.write_and_start(&text)?;
        Ok(f)
    }

    /// Starts `bgpd` on a configuration of the test's own (`body`: everything after the
    /// `frr defaults`, `hostname`, `log` and `debug` lines, which this adds), listening on
    /// `listen`; `neighbor` is the session that [`Peer::state`] and friends report on.
    pub fn start_config(
        ns: &Netns,
        dir: &Path,
        name: &str,
        neighbor: IpAddr,
        listen: IpAddr,
        body: &str,
    ) -> Result<Self, String> {
        let mut f = Self::prepare(ns, dir, name, neighbor, listen)?;
        let mut s = String::new();
        let _ = writeln!(s, "frr defaults traditional");
        let _ = writeln!(s, "hostname {name}");
        let _ = writeln!(s, "log file {}", f.log.display());
        let _ = writeln!(s, "log timestamp precision 3");
        let _ = writeln!(s, "debug bgp neighbor-events");
        let _ = writeln!(s, "debug bgp updates in");
        let _ = writeln!(s, "!");
        s.push_str(body);
        f.write_and_start(&s)?;
        Ok(f)
    }

    fn prepare(
        ns: &Netns,
        dir: &Path,
        name: &str,
        neighbor: IpAddr,
        listen: IpAddr,
    ) -> Result<Self, String> {
        if !Path::new(FRR_BGPD).is_file() {
            return Err(format!("FRR bgpd not found at {FRR_BGPD}: {INSTALL_HINT}"));
        }
        if which("vtysh").is_none() {
            return Err(format!("FRR vtysh not found on PATH: {INSTALL_HINT}"));
        }
        let stem = format!("frr-{name}");
        let f = Self {
            ns: ns.name().to_owned(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            neighbor,
            listen,
            conf: dir.join(format!("{stem}.conf")),
            vty: dir.join(format!("{stem}.vty")),
            log: dir.join(format!("{stem}.log")),
            proc: None,
            client: None,
        };
        fs::create_dir_all(&f.vty).map_err(|e| format!("cannot create vty dir: {e}"))?;
        Ok(f)
    }

    fn write_and_start(&mut self, text: &str) -> Result<(), String> {
        fs::write(&self.conf, text).map_err(|e| format!("cannot write config: {e}"))?;
        self.start_again()
    }

    fn session_config(&self, c: &PeerConfig) -> String {
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

    /// A client: `network` statements (no zebra, so no import check), a route map per
    /// route with attributes, every received prefix logged.
    fn client_config(log: &Path, c: &ClientConfig, options: &ClientOptions) -> String {
        let n = c.rr_addr;
        let (v4, v6) = c.families();
        let mut s = String::new();
        let _ = writeln!(s, "frr defaults traditional");
        let _ = writeln!(s, "hostname {}", c.name);
        let _ = writeln!(s, "log file {}", log.display());
        let _ = writeln!(s, "log timestamp precision 3");
        let _ = writeln!(s, "debug bgp neighbor-events");
        let _ = writeln!(s, "debug bgp updates in");
        let _ = writeln!(s, "!");
        for (i, r) in c.routes.iter().enumerate() {
            if r.community.is_none() && r.local_pref.is_none() {
                continue;
            }
            let _ = writeln!(s, "route-map ROUTE{i} permit 10");
            if let Some(cm) = r.community_text() {
                let _ = writeln!(s, " set community {cm}");
            }
            if let Some(lp) = r.local_pref {
                let _ = writeln!(s, " set local-preference {lp}");
            }
            let _ = writeln!(s, "!");
        }
        let _ = writeln!(s, "router bgp {}", c.asn);
        let _ = writeln!(s, " bgp router-id {}", c.router_id);
        let _ = writeln!(s, " no bgp ebgp-requires-policy");
        let _ = writeln!(s, " no bgp default ipv4-unicast");
        let _ = writeln!(s, " no bgp network import-check");
        if options.graceful_restart {
            let _ = writeln!(s, " bgp graceful-restart");
        }
        let _ = writeln!(s, " timers bgp {} {}", c.keepalive, c.hold);
        let _ = writeln!(s, " neighbor {n} remote-as {}", c.rr_asn);
        let _ = writeln!(s, " neighbor {n} timers {} {}", c.keepalive, c.hold);
        let _ = writeln!(s, " neighbor {n} timers connect {}", c.connect_retry);
        let _ = writeln!(s, " neighbor {n} update-source {}", c.addr);
        if c.passive {
            let _ = writeln!(s, " neighbor {n} passive");
        }
        for (af, on, v6) in [("ipv4", v4, false), ("ipv6", v6, true)] {
            if !on {
                continue;
            }
            let _ = writeln!(s, " address-family {af} unicast");
            for (i, r) in c.routes.iter().enumerate() {
                if r.is_ipv6() != v6 {
                    continue;
                }
                if r.community.is_some() || r.local_pref.is_some() {
                    let _ = writeln!(s, "  network {} route-map ROUTE{i}", r.prefix);
                } else {
                    let _ = writeln!(s, "  network {}", r.prefix);
                }
            }
            let _ = writeln!(s, "  neighbor {n} activate");
            if options.add_path {
                let _ = writeln!(s, "  neighbor {n} addpath-tx-all-paths");
            }
            let _ = writeln!(s, " exit-address-family");
        }
        let _ = writeln!(s, "!");
        s
    }

    /// Runs `vtysh --vty_socket DIR -d bgpd -c CMD` and returns its output.
    pub fn vtysh(&self, cmd: &str) -> Result<String, String> {
        self.vtysh_lines(&[cmd])
    }

    /// [`Frr::vtysh`] with several commands in one session (`configure terminal`, ...).
    pub fn vtysh_lines(&self, cmds: &[&str]) -> Result<String, String> {
        let vty = self.vty.to_string_lossy();
        let mut argv = vec!["--vty_socket", &vty, "-d", "bgpd"];
        for c in cmds {
            argv.push("-c");
            argv.push(c);
        }
        run_cmd("vtysh", &argv, Duration::from_secs(5))
    }

    /// `show bgp neighbors ADDR json`, the neighbor's object.
    pub fn neighbor_json(&self) -> Result<Value, String> {
        let addr = self.neighbor.to_string();
        let out = self.vtysh(&format!("show bgp neighbors {addr} json"))?;
        let v: Value = serde_json::from_str(&out)
            .map_err(|e| format!("vtysh printed no JSON ({e}):\n{out}"))?;
        v.get(&addr)
            .cloned()
            .ok_or_else(|| format!("no neighbor {addr} in:\n{out}"))
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn json(&self, cmd: &str) -> Result<Value, String> {
        let out = self.vtysh(cmd)?;
        serde_json::from_str(&out).map_err(|e| format!("`{cmd}` printed no JSON ({e}):\n{out}"))
    }

    /// Runs a `show ... json` command and parses its answer.
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value, String> {
        self.json(cmd)
    }

    /// The `bgpState` of the session with `addr` (`Established`, `Active`, ...).
    pub fn neighbor_state(&self, addr: IpAddr) -> Result<String, String> {
        let a = addr.to_string();
        let v = self.json(&format!("show bgp neighbors {a} json"))?;
        v[&a]["bgpState"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no bgpState for {a} in {v}"))
    }

    /// Every path FRR holds for `prefix` (`show bgp ipv4|ipv6 unicast PREFIX json`'s
    /// `paths`: `nexthops`, `peer`, `addpathRxId`, `originatorId`, ...); empty when none.
    pub fn prefix_paths(&self, prefix: &str) -> Result<Vec<Value>, String> {
        let afi = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let v = self.json(&format!("show bgp {afi} unicast {prefix} json"))?;
        Ok(v["paths"].as_array().cloned().unwrap_or_default())
    }

    /// The prefixes of FRR's table (`show bgp ipv4|ipv6 unicast json`).
    pub fn table_prefixes(&self, ipv6: bool) -> Result<Vec<String>, String> {
        let afi = if ipv6 { "ipv6" } else { "ipv4" };
        let v = self.json(&format!("show bgp {afi} unicast json"))?;
        Ok(v["routes"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
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
                .join(format!("frr-{}.pid", self.name))
                .to_string_lossy(),
            "--vty_socket",
            &self.vty.to_string_lossy(),
            "-l",
            &self.listen.to_string(),
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
            &format!("frr-{}", self.name),
            Path::new(FRR_BGPD),
            &args,
            &[],
            false,
        )?;
        await_control(&mut p, &self.log, "FRR bgpd", "FRR vtysh", || {
            self.neighbor_json().is_ok()
        })?;
        self.proc = Some(p);
        Ok(())
    }

    fn log_tail(&self, lines: usize) -> String {
        let stderr = self.dir.join(format!("frr-{}.stderr", self.name));
        format!(
            "--- FRR {} stderr ---\n{}\n--- FRR {} log ({}) ---\n{}",
            self.name,
            tail(&stderr, lines),
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

impl Client for Frr {
    fn session_since(&self) -> Result<String, String> {
        let v = self.neighbor_json()?;
        v.get("bgpTimerUpEstablishedEpoch")
            .map(Value::to_string)
            .ok_or_else(|| format!("no bgpTimerUpEstablishedEpoch in {v}"))
    }

    fn client(&self) -> &ClientConfig {
        self.client
            .as_ref()
            .expect("Client methods need an FRR started with Frr::start_client")
    }

    fn learned(&self) -> Result<Vec<Learned>, String> {
        let (v4, v6) = self
            .client
            .as_ref()
            .map_or((true, true), ClientConfig::families);
        let rr = self.neighbor.to_string();
        let mut routes = Vec::new();
        for (afi, on) in [("ipv4", v4), ("ipv6", v6)] {
            if !on {
                continue;
            }
            let table = self.json(&format!("show bgp {afi} unicast json"))?;
            let Some(prefixes) = table.get("routes").and_then(Value::as_object) else {
                continue;
            };
            for (prefix, paths) in prefixes {
                let from_rr = paths
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["peerId"] == rr.as_str()));
                if !from_rr {
                    continue;
                }
                let detail = self.json(&format!("show bgp {afi} unicast {prefix} json"))?;
                let Some(p) = detail["paths"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["peer"]["peerId"] == rr.as_str()))
                else {
                    continue; // withdrawn meanwhile
                };
                let strings = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut communities = strings(&p["community"]["list"]);
                communities.sort();
                routes.push(Learned {
                    prefix: prefix.clone(),
                    next_hops: p["nexthops"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|n| n["ip"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    local_pref: p["locPrf"].as_u64().and_then(|n| u32::try_from(n).ok()),
                    communities,
                    originator_id: p["originatorId"].as_str().map(str::to_owned),
                    cluster_list: strings(&p["clusterList"]["list"]),
                    as_path: p["aspath"]["string"]
                        .as_str()
                        .map(|s| if s == "Local" { "" } else { s })
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        Ok(routes)
    }

    fn withdraw(&mut self, prefix: &str) -> Result<(), String> {
        let c = self.client.as_ref().ok_or("not a client")?;
        let Some(r) = c.routes.iter().find(|r| r.prefix == prefix) else {
            return Err(format!("{} does not originate {prefix}", c.name));
        };
        let af = if r.is_ipv6() {
            "address-family ipv6 unicast"
        } else {
            "address-family ipv4 unicast"
        };
        let router = format!("router bgp {}", c.asn);
        let no = format!("no network {prefix}");
        self.vtysh_lines(&["configure terminal", &router, af, &no])
            .map(|_| ())
    }

    fn own_routes_echoed(&self) -> Result<Option<String>, String> {
        // "2001:db8::1(Unknown) rcvd 2001:db8:12::/48 IPv6 unicast", or for a denied one
        // "... rcvd UPDATE about 203.0.113.0/26 IPv4 unicast -- DENIED due to: ...".
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let rcvd: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" rcvd ") && l.contains(" unicast"))
            .collect();
        if rcvd.is_empty() {
            return Err(format!(
                "FRR {} logged no received prefix (is `debug bgp updates in` on?)",
                self.name
            ));
        }
        let c = self.client();
        let echoed: Vec<&str> = rcvd
            .iter()
            .copied()
            .filter(|l| {
                c.routes
                    .iter()
                    .any(|r| l.contains(&format!(" {} ", r.prefix)))
            })
            .collect();
        Ok((!echoed.is_empty()).then(|| {
            format!(
                "FRR {} received its own routes:\n{}",
                self.name,
                echoed.join("\n")
            )
        }))
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
