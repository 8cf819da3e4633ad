//! BIRD 2 and BIRD 1.6 as peers: [`Bird`], [`BirdCtl`], [`parse_bird_routes`].

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::Netns;
use crate::peer::{Client, ClientConfig, ClientOptions, INSTALL_HINT, Learned, Peer, PeerConfig};
use crate::proc::{Proc, await_control, run_cmd, spawn_in, tail, which};

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

    /// Replaces the configuration of a BIRD started with [`Bird::start_config`] by `body`
    /// (the same `log` and `timeformat` lines are added) and checks it (`bird -p`); it
    /// takes effect at the next start, or with `birdc configure` ([`Bird::configure`]).
    pub fn replace_config(&mut self, body: &str) -> Result<(), String> {
        let mut text = String::new();
        let _ = writeln!(text, "log \"{}\" all;", self.log.display());
        if self.version == BirdVersion::V2 {
            let _ = writeln!(text, "timeformat protocol iso long ms;");
        } else {
            let _ = writeln!(text, "timeformat protocol iso long;");
        }
        text.push_str(body);
        self.write_config(&text)
    }

    /// `birdc configure`: the running BIRD takes its configuration file again.
    pub fn configure(&self) -> Result<(), String> {
        let out = self.birdc(&["configure"])?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(format!("`birdc configure` did not reconfigure:\n{out}"))
        }
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

/// Whether two readings of a session's `Since` (a BIRD `show protocols` column,
/// [`Bird::since`]; or any other client's [`Client::session_since`]) name the same
/// state change. BIRD keeps the instant on its monotonic clock and shows it on the wall
/// clock, converting at every reading, so one instant can read one unit of its last digit
/// apart (seen: `10:18:49.792`, then `10:18:49.793`, with the session untouched between).
/// Tokens must match exactly but for times of day (`HH:MM:SS`, with or without a
/// fraction), which may differ by one unit of their resolution (across midnight too).
/// A reading taken well after the change it shows (seconds, as every caller does) tells
/// a later change apart: its time lies at least that far after the first.
pub fn same_since(a: &str, b: &str) -> bool {
    // Milliseconds since midnight, and the resolution, of a time of day.
    fn time_of_day(t: &str) -> Option<(u64, u64)> {
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
        let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() || frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let unit = 10u64.pow(3 - frac.len() as u32);
        let f = if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>().ok()? * unit
        };
        Some(((h * 3600 + m * 60 + s) * 1000 + f, unit))
    }
    let (ta, tb): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    const DAY_MS: u64 = 86_400_000;
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            x == y
                || matches!((time_of_day(x), time_of_day(y)),
                    (Some((p, u)), Some((q, v)))
                        if u == v && p.abs_diff(q).min(DAY_MS - p.abs_diff(q)) <= u)
        })
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

#[cfg(test)]
mod tests {
    use super::same_since;

    #[test]
    fn test_same_since_allows_one_unit_of_the_last_digit() {
        let s = "2026-12-07 10:18:49.792";
        assert!(same_since(s, s));
        assert!(same_since(s, "2026-12-07 10:18:49.793"));
        assert!(same_since(s, "2026-12-07 10:18:49.791"));
        assert!(!same_since(s, "2026-12-07 10:18:49.794"));
        assert!(!same_since(s, "2026-12-07 10:18:50.792"));
        assert!(!same_since(s, "2026-12-08 10:18:49.792"));
        // Across a second, across midnight, and at second resolution (BIRD 1.6).
        assert!(same_since("10:18:49.999", "10:18:50.000"));
        assert!(same_since("23:59:59.999", "00:00:00.000"));
        assert!(!same_since("23:59:59.998", "00:00:00.000"));
        assert!(same_since("10:18:49 Established", "10:18:50 Established"));
        assert!(!same_since("10:18:49 Established", "10:18:51 Established"));
        assert!(!same_since("10:18:49 Established", "10:18:49 Active"));
        // Different resolutions, and what is not a time (FRR's epoch seconds).
        assert!(!same_since("10:18:49.5", "10:18:49.500"));
        assert!(same_since("1733566729", "1733566729"));
        assert!(!same_since("1733566729", "1733566730"));
        assert!(!same_since(s, ""));
    }
}
