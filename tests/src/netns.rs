//! Network namespaces and what joins them: [`Netns`], [`Link`], [`Hub`].

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::proc::{Proc, next_id, poll, run_cmd, spawn_in};

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

    /// Starts `ip monitor route` in the namespace, its output in
    /// `dir/ip-monitor-LABEL.stdout` (to see whether a route was ever deleted).
    pub fn monitor_routes(&self, dir: &Path, label: &str) -> Result<Proc, String> {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or("no `ip` program")?;
        self.spawn(
            dir,
            &format!("ip-monitor-{label}"),
            ip,
            &["monitor".into(), "route".into()],
            &[],
            false,
        )
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
