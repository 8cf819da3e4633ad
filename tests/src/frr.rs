//! FRR `bgpd` as a peer: [`Frr`].

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;
use crate::peer::{Client, ClientConfig, ClientOptions, INSTALL_HINT, Learned, Peer, PeerConfig};
use crate::proc::{Proc, await_control, run_cmd, spawn_in, tail, which};

/// FRR's BGP daemon (Debian `frr`).
pub const FRR_BGPD: &str = "/usr/lib/frr/bgpd";
/// FRR's kernel route manager (Debian `frr`).
pub const FRR_ZEBRA: &str = "/usr/lib/frr/zebra";

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
    /// FRR's `zebra` beside `bgpd` (kernel routes), started by [`Frr::start_node_config`];
    /// declared after `proc` so that `bgpd` stops first.
    zebra: Option<Zebra>,
}

/// FRR's `zebra` in the same namespace as a `bgpd`: it installs bgpd's best routes into
/// the namespace's kernel (protocol `bgp`, 186). It runs as the `frr` user (FRR refuses
/// root without the `frrvty` group), in a directory of its own given to that user, which
/// holds its config, log, PID file, vty socket and the zserv socket bgpd connects to.
#[derive(Debug)]
struct Zebra {
    dir: PathBuf,
    proc: Proc,
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

    /// [`Frr::start_config`] with FRR's `zebra` beside `bgpd`, so that bgpd's best routes
    /// go into the namespace's kernel (protocol `bgp`): FRR as a node that programs
    /// routes. `bgpd` listens on every address of the namespace (`-l` would turn the
    /// kernel off).
    pub fn start_node_config(
        ns: &Netns,
        dir: &Path,
        name: &str,
        neighbor: IpAddr,
        listen: IpAddr,
        body: &str,
    ) -> Result<Self, String> {
        let mut f = Self::prepare(ns, dir, name, neighbor, listen)?;
        let zdir = dir.join(format!("frr-{name}-zebra"));
        fs::create_dir_all(&zdir).map_err(|e| format!("cannot create {}: {e}", zdir.display()))?;
        fs::write(
            zdir.join("zebra.conf"),
            format!(
                "hostname {name}-zebra\nlog file {}\n",
                zdir.join("zebra.log").display()
            ),
        )
        .map_err(|e| format!("cannot write zebra.conf: {e}"))?;
        // The vty directory holds bgpd's socket and zebra's: both write there.
        run_cmd(
            "chown",
            &[
                "-R",
                "frr:frr",
                &zdir.to_string_lossy(),
                &f.vty.to_string_lossy(),
            ],
            Duration::from_secs(5),
        )?;
        let z = |file: &str| zdir.join(file).to_string_lossy().into_owned();
        let args: Vec<String> = vec![
            "-u".into(),
            "frr".into(),
            "-g".into(),
            "frr".into(),
            "-f".into(),
            z("zebra.conf"),
            "-i".into(),
            z("zebra.pid"),
            "-z".into(),
            z("zserv.api"),
            "--vty_socket".into(),
            f.vty.to_string_lossy().into_owned(),
            "-P".into(),
            "0".into(),
        ];
        let mut p = spawn_in(
            &f.ns,
            dir,
            &format!("frr-{name}-zebra"),
            Path::new(FRR_ZEBRA),
            &args,
            &[],
            false,
        )?;
        let sock = zdir.join("zserv.api");
        let up = crate::proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
            if !p.is_running() {
                return Some(false);
            }
            sock.exists().then_some(true)
        });
        if up != Some(true) {
            return Err(format!(
                "FRR zebra did not come up (no {}): {}",
                sock.display(),
                tail(p.stderr_path(), 20)
            ));
        }
        f.zebra = Some(Zebra { dir: zdir, proc: p });
        let mut s = String::new();
        let _ = writeln!(s, "frr defaults traditional");
        let _ = writeln!(s, "hostname {name}");
        let _ = writeln!(s, "log file {}", f.log.display());
        let _ = writeln!(s, "log timestamp precision 3");
        let _ = writeln!(s, "debug bgp neighbor-events");
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
            zebra: None,
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
        let pid = self.dir.join(format!("frr-{}.pid", self.name));
        if let Some(z) = &self.zebra {
            // With zebra: no `-Z` (no zebra) and no `-l` (which implies no kernel).
            let args: Vec<String> = [
                "-S",
                "-f",
                &self.conf.to_string_lossy(),
                "-i",
                &pid.to_string_lossy(),
                "-z",
                &z.dir.join("zserv.api").to_string_lossy(),
                "--vty_socket",
                &self.vty.to_string_lossy(),
                "-p",
                "179",
                "-P",
                "0",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            return self.spawn_bgpd(&args);
        }
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
        self.spawn_bgpd(&args)
    }

    fn log_tail(&self, lines: usize) -> String {
        let stderr = self.dir.join(format!("frr-{}.stderr", self.name));
        let zebra = self.zebra.as_ref().map_or_else(String::new, |z| {
            format!(
                "\n--- FRR {} zebra stderr ---\n{}",
                self.name,
                tail(z.proc.stderr_path(), lines)
            )
        });
        format!(
            "--- FRR {} stderr ---\n{}\n--- FRR {} log ({}) ---\n{}{zebra}",
            self.name,
            tail(&stderr, lines),
            self.name,
            self.log.display(),
            tail(&self.log, lines)
        )
    }
}

impl Frr {
    /// Starts `bgpd` with `args` and waits (10 s at most) until vtysh answers.
    fn spawn_bgpd(&mut self, args: &[String]) -> Result<(), String> {
        let mut p = spawn_in(
            &self.ns,
            &self.dir,
            &format!("frr-{}", self.name),
            Path::new(FRR_BGPD),
            args,
            &[],
            false,
        )?;
        await_control(&mut p, &self.log, "FRR bgpd", "FRR vtysh", || {
            self.neighbor_json().is_ok()
        })?;
        self.proc = Some(p);
        Ok(())
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
