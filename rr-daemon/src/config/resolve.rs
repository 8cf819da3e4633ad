//! From the file as written to the resolved [`Config`]: names checked, groups applied,
//! defaults filled in, mesh and dynamic neighbours expanded. Every error is located at
//! the key that is wrong, or, when a value is inherited, where it was written.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bgp_wire::attr::NextHop;
use bgp_wire::{Family, FamilySet};
use rib::NextHopMode;
use rib::policy::Policy;

use super::Config;
use super::error::{ConfigError, Doc, KeyPath};
use super::model::{
    AddPath, Api, Control, DynamicNeighbors, Fib, Learn, LogFormat, Mesh, PeerSettings,
    PolicyBinding, Secret, Speaker, Ttl,
};
use super::raw::{PeerFields, RawFile, RawMesh, RawPolicy, RawSpeaker};
use super::values::{DEFAULT_RESTART_TIME, NextHopSelf};

/// Default `[speaker]` values.
const HOLD_TIME: u16 = 90;
const CONNECT_RETRY: u16 = 5;
/// Default `idle_hold`: seconds in Idle after a first error (BIRD's error wait time
/// starts at 60; 5 is the state machine's default, and what Calico's restarts expect).
const IDLE_HOLD: u16 = 5;
/// Default `idle_hold_max` (BIRD's error wait time ends at 300).
const IDLE_HOLD_MAX: u16 = 120;
/// Default `stale_time`: how long a peer back from a graceful restart has to send its
/// End-of-RIB (FRR's `stalepath-time`; BIRD waits as long).
const STALE_TIME: u16 = 360;
/// Default `max_prefix` `restart`: how long a peer over its limit is held down.
pub(super) const MAX_PREFIX_RESTART: u32 = 60;
const LOCAL_PREF: u32 = 100;
/// Default `[api] listen`.
pub(super) const API_LISTEN: &str = "127.0.0.1:9179";

type Result<T> = std::result::Result<T, ConfigError>;

/// Resolves and checks `raw`, read from `doc`.
pub(super) fn resolve(doc: &Doc<'_>, raw: RawFile) -> Result<Config> {
    let mut cx = Cx {
        doc,
        speaker: speaker(doc, &raw.speaker)?,
        speaker_keys: speaker_keys(&raw.speaker),
        policies: BTreeMap::new(),
        groups: Vec::new(),
    };
    for (i, p) in raw.policy.iter().enumerate() {
        cx.policy(i, p)?;
    }
    for (i, g) in raw.peer_group.iter().enumerate() {
        let path = KeyPath::item("peer_group", i);
        if g.name.is_empty() {
            return Err(doc.error(&path.key("name"), "must not be empty"));
        }
        if let Some(j) = cx.groups.iter().position(|(n, _)| *n == g.name) {
            return Err(doc.error(
                &path.key("name"),
                format!(
                    "peer group {:?} is already defined at peer_group[{j}]",
                    g.name
                ),
            ));
        }
        let fields = g.fields();
        cx.check_level(&fields, &path)?;
        cx.groups.push((g.name.clone(), fields));
    }

    let mut peers = BTreeMap::new();
    let mut defined_at = BTreeMap::new();
    for (i, p) in raw.peer.iter().enumerate() {
        let path = KeyPath::item("peer", i);
        let own = p.fields();
        let address = p.address.ip;
        cx.check_level(&own, &path)?;
        let group = cx.group(p.group.as_deref(), &path.key("group"))?;
        cx.check_unicast(address, &path.key("address"))?;
        if cx.is_own_address(address) {
            return Err(doc.error(
                &path.key("address"),
                format!(
                    "{} is this speaker's own address (speaker.router_id or speaker.listen)",
                    address
                ),
            ));
        }
        let layers = Layers {
            own: &own,
            own_path: path.clone(),
            group,
        };
        let mut settings = cx.peer(&layers, address, &Defaults::default())?;
        settings.interface.clone_from(&p.address.zone);
        settings.group.clone_from(&p.group);
        if let Some(j) = defined_at.insert(address, i) {
            return Err(doc.error(
                &path.key("address"),
                format!("peer {address} is already defined at peer[{j}]"),
            ));
        }
        peers.insert(address, settings);
    }

    let mut dynamic_neighbors: Vec<DynamicNeighbors> = Vec::new();
    for (i, d) in raw.dynamic_neighbors.iter().enumerate() {
        let path = KeyPath::item("dynamic_neighbors", i);
        let group_path = path.key("group");
        let group = cx.group(Some(&d.group), &group_path)?;
        if group.as_ref().is_some_and(|(f, _)| f.asn.is_none()) {
            return Err(doc.error(
                &group_path,
                format!(
                    "peer group {:?} sets no asn, which dynamic neighbours take from their group",
                    d.group
                ),
            ));
        }
        let interface = d.interface.as_ref().map(|i| i.0.clone());
        let prefix = match (d.prefix, &interface) {
            (Some(p), _) => p.0,
            // FRR's `neighbor eth0 interface`: any link-local peer on the link.
            (None, Some(_)) => "fe80::/10".parse().expect("a prefix"),
            (None, None) => {
                return Err(doc.error(
                    &path,
                    "missing prefix (required unless interface names a link)",
                ));
            }
        };
        if let Some(j) = dynamic_neighbors
            .iter()
            .position(|o| o.prefix == prefix && o.interface == interface)
        {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already given at dynamic_neighbors[{j}]"),
            ));
        }
        let own = PeerFields::default();
        let layers = Layers {
            own: &own,
            own_path: path,
            group,
        };
        let defaults = Defaults {
            passive: Some(true),
            ..Defaults::default()
        };
        let mut template = cx.peer(&layers, prefix.network(), &defaults)?;
        template.interface.clone_from(&interface);
        template.group = Some(d.group.clone());
        dynamic_neighbors.push(DynamicNeighbors {
            prefix,
            interface,
            group: d.group.clone(),
            limit: d
                .limit
                .map_or(super::model::DEFAULT_DYNAMIC_LIMIT, |l| l.get()),
            template,
        });
    }

    let mesh = match &raw.mesh {
        Some(m) => cx.mesh(m, &mut peers, &defined_at)?,
        None => None,
    };

    let mut speaker = cx.speaker;
    let any_client = peers.values().any(|p| p.rr_client)
        || dynamic_neighbors.iter().any(|d| d.template.rr_client);
    if any_client && speaker.cluster_id.is_none() {
        speaker.cluster_id = Some(speaker.router_id);
    }
    let mut routes = routes(doc, &raw.route)?;
    let originate = originate(doc, &raw.originate, &mut routes)?;
    let api = raw.api.as_ref();
    let fib = fib(doc, raw.fib.as_ref())?;
    for (i, r) in fib.static_routes.iter().enumerate() {
        if let Some(j) = originate
            .iter()
            .position(|o| o.blackhole && o.prefix == r.prefix)
        {
            return Err(doc.error(
                &KeyPath::root()
                    .key("fib")
                    .key("static_route")
                    .index(i)
                    .key("prefix"),
                format!("{} is already a blackhole: originate[{j}]", r.prefix),
            ));
        }
    }
    if fib.metric_from_local_pref {
        // Calico 3.32's export rule: `bgp_local_pref = 2147483647 - krt_metric`, the
        // metric defaulting to 1024 (`[fib] metric`); a peer that follows the import rule
        // installs the block with this metric. Without `[fib]`, only blocks that set
        // their own metric.
        for o in &originate {
            let metric = match o.metric {
                Some(m) => m,
                None if fib.enabled => fib.metric,
                None => continue,
            };
            if let Some(r) = routes.iter_mut().find(|r| r.prefix == o.prefix) {
                r.attrs.local_pref = Some(crate::fib::local_pref_of_metric(metric));
            }
        }
    }
    let learn = learn(doc, raw.learn.as_ref())?;
    let bmp = bmp(doc, &raw.bmp)?;
    Ok(Config {
        learn,
        bmp,
        routes,
        speaker,
        api: Api {
            enabled: api.and_then(|a| a.enabled).unwrap_or(true),
            listen: api
                .and_then(|a| a.listen)
                .unwrap_or_else(|| API_LISTEN.parse().expect("valid address")),
            readiness_grace: api
                .and_then(|a| a.readiness_grace)
                .map_or(crate::api::DEFAULT_READINESS_GRACE, |s| {
                    Duration::from_secs(u64::from(s))
                }),
            ready_requires_fib: api.and_then(|a| a.ready_requires_fib).unwrap_or(false),
        },
        control: Control {
            enabled: raw.control.as_ref().and_then(|c| c.enabled).unwrap_or(true),
            socket: raw
                .control
                .as_ref()
                .and_then(|c| c.socket.clone())
                .unwrap_or_else(|| crate::control::DEFAULT_SOCKET.into()),
            explicit: raw.control.as_ref().is_some_and(|c| c.socket.is_some()),
        },
        originate,
        fib,
        peers,
        dynamic_neighbors,
        mesh,
        policies: cx.policies,
    })
}

fn speaker(doc: &Doc<'_>, s: &RawSpeaker) -> Result<Speaker> {
    let path = KeyPath::root().key("speaker");
    let (Some(asn), Some(router_id)) = (s.asn, s.router_id) else {
        let key = if s.asn.is_none() { "asn" } else { "router_id" };
        return Err(ConfigError {
            kind: super::ErrorKind::Schema,
            ..doc.error(&path.key(key), "missing (required)")
        });
    };
    let router_id = match router_id {
        IpAddr::V4(v4) if !v4.is_unspecified() => v4,
        IpAddr::V4(_) => {
            return Err(doc.error(
                &path.key("router_id"),
                "must not be 0.0.0.0 (RFC 6286 §2.1)",
            ));
        }
        IpAddr::V6(v6) => {
            return Err(doc.error(
                &path.key("router_id"),
                format!("must be an IPv4 address (a BGP identifier is 32 bits), not {v6}"),
            ));
        }
    };
    let listen: Vec<SocketAddr> = match &s.listen {
        Some(l) => l.iter().map(|a| a.0).collect(),
        None => vec![SocketAddr::from(([0, 0, 0, 0], 179))],
    };
    for (i, a) in listen.iter().enumerate() {
        if let Some(j) = listen[..i].iter().position(|b| b == a) {
            return Err(doc.error(
                &path.key("listen").index(i),
                format!("{a} is already listed at speaker.listen[{j}]"),
            ));
        }
    }
    let hold_time = s.hold_time.map_or(HOLD_TIME, |h| h.0);
    let keepalive_time = s.keepalive_time.map(|k| k.get());
    if let Some(k) = keepalive_time {
        check_keepalive(doc, &path.key("keepalive_time"), k, hold_time)?;
    }
    Ok(Speaker {
        asn: asn.0,
        router_id,
        listen,
        cluster_id: s.cluster_id,
        hold_time,
        keepalive_time,
        send_hold_time: s.send_hold_time.map(|h| h.0),
        connect_retry: s.connect_retry.map_or(CONNECT_RETRY, |c| c.get()),
        client_to_client: s.client_to_client.unwrap_or(true),
        always_compare_med: s.always_compare_med.unwrap_or(false),
        missing_med_worst: s.missing_med_worst.unwrap_or(false),
        default_local_pref: s.default_local_pref.unwrap_or(LOCAL_PREF),
        graceful_restart: s
            .graceful_restart
            .map_or(Some(DEFAULT_RESTART_TIME), |g| g.0),
        stale_time: s.stale_time.map_or(STALE_TIME, |t| t.get()),
        graceful_stop: s.graceful_stop.unwrap_or(true),
        log_format: s.log_format.unwrap_or(LogFormat::Text),
        log_level: s.log_level.as_ref().map(|l| l.0.clone()),
    })
}

/// The `[speaker]` keys that are defaults of peer keys of the same name, when set.
fn speaker_keys(s: &RawSpeaker) -> Vec<&'static str> {
    [
        ("hold_time", s.hold_time.is_some()),
        ("keepalive_time", s.keepalive_time.is_some()),
        ("send_hold_time", s.send_hold_time.is_some()),
        ("connect_retry", s.connect_retry.is_some()),
        ("graceful_restart", s.graceful_restart.is_some()),
        ("stale_time", s.stale_time.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

fn check_keepalive(doc: &Doc<'_>, at: &KeyPath, keepalive: u16, hold: u16) -> Result<()> {
    if hold == 0 {
        return Err(doc.error(
            at,
            "keepalive_time needs a hold time other than 0 (hold time 0 sends no keepalives)",
        ));
    }
    if keepalive >= hold {
        return Err(doc.error(
            at,
            format!("keepalive_time {keepalive} must be less than the hold time {hold}"),
        ));
    }
    Ok(())
}

/// Where a peer's settings come from: its own table, then its group's.
struct Layers<'a> {
    own: &'a PeerFields,
    own_path: KeyPath,
    group: Option<(&'a PeerFields, KeyPath)>,
}

impl Layers<'_> {
    /// The level that sets a key of `keys`: the peer's own table if it sets any of them,
    /// else the group's. Keys that act together (`multihop` and `ttl_security`) are
    /// taken from one level, so that a peer's own choice replaces the group's whole.
    fn level(&self, keys: &[&str]) -> Option<&PeerFields> {
        if keys.iter().any(|k| self.own.has(k)) {
            return Some(self.own);
        }
        self.group
            .as_ref()
            .map(|(g, _)| *g)
            .filter(|g| keys.iter().any(|k| g.has(k)))
    }
}

/// Values a resolution fixes beyond the file: mesh and dynamic peers.
#[derive(Default)]
struct Defaults {
    asn: Option<u32>,
    passive: Option<bool>,
    source_address: Option<IpAddr>,
}

/// The resolution context.
struct Cx<'a> {
    doc: &'a Doc<'a>,
    speaker: Speaker,
    speaker_keys: Vec<&'static str>,
    policies: BTreeMap<String, Arc<Policy>>,
    groups: Vec<(String, PeerFields)>,
}

impl Cx<'_> {
    fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        self.doc.error(path, message)
    }

    /// Where `key` of a peer was written, and how specific that is (3: the peer, 2: its
    /// group, 1: `[speaker]`, 0: nowhere, the default; the peer's table is named then).
    fn locate(&self, l: &Layers<'_>, key: &str) -> (u8, KeyPath) {
        if l.own.has(key) {
            return (3, l.own_path.key(key));
        }
        if let Some((g, p)) = &l.group
            && g.has(key)
        {
            return (2, p.key(key));
        }
        if self.speaker_keys.contains(&key) {
            return (1, KeyPath::root().key("speaker").key(key));
        }
        (0, l.own_path.key(key))
    }

    /// The more specific place of `a` and `b` (`a` on a tie), for an error about both.
    fn blame(&self, l: &Layers<'_>, a: &str, b: &str) -> KeyPath {
        let (la, pa) = self.locate(l, a);
        let (lb, pb) = self.locate(l, b);
        if lb > la { pb } else { pa }
    }

    fn group<'g>(
        &'g self,
        name: Option<&str>,
        at: &KeyPath,
    ) -> Result<Option<(&'g PeerFields, KeyPath)>> {
        let Some(name) = name else { return Ok(None) };
        match self.groups.iter().position(|(n, _)| n == name) {
            Some(i) => Ok(Some((&self.groups[i].1, KeyPath::item("peer_group", i)))),
            None => {
                let message = match super::error::nearest(
                    name,
                    self.groups.iter().map(|(n, _)| n.as_str()),
                ) {
                    Some(near) => format!("unknown peer group {name:?}: did you mean {near:?}?"),
                    None => format!(
                        "unknown peer group {name:?} (define it with [[peer_group]] name = ...)"
                    ),
                };
                Err(self.error(at, message))
            }
        }
    }

    fn check_unicast(&self, a: IpAddr, at: &KeyPath) -> Result<()> {
        if a.is_unspecified() || a.is_multicast() || a == IpAddr::from([255, 255, 255, 255]) {
            return Err(self.error(at, format!("{a} is not a unicast address")));
        }
        Ok(())
    }

    fn is_own_address(&self, a: IpAddr) -> bool {
        a == IpAddr::V4(self.speaker.router_id) || self.speaker.listen.iter().any(|l| l.ip() == a)
    }

    /// Checks of one table's own keys: policy names, and keys that exclude each other.
    fn check_level(&self, f: &PeerFields, path: &KeyPath) -> Result<()> {
        for (key, name) in [("import", &f.import), ("export", &f.export)] {
            if let Some(name) = name {
                self.binding(name, &path.key(key))?;
            }
        }
        if f.multihop.is_some() && f.ttl_security.is_some_and(|t| t.0.is_some()) {
            return Err(self.error(
                &path.key("ttl_security"),
                "cannot be combined with multihop: GTSM always sends with TTL 255 \
                 (ttl_security = N allows N hops)",
            ));
        }
        if f.password.is_some() && f.password_file.is_some() {
            return Err(self.error(
                &path.key("password_file"),
                "cannot be combined with password: give the key in one place",
            ));
        }
        if f.next_hop_keep == Some(true) && f.next_hop_self.is_some_and(|n| n != NextHopSelf::Off) {
            return Err(self.error(
                &path.key("next_hop_keep"),
                "cannot be combined with next_hop_self",
            ));
        }
        Ok(())
    }

    fn binding(&self, name: &str, at: &KeyPath) -> Result<PolicyBinding> {
        match name {
            "all" => Ok(PolicyBinding::all()),
            "none" => Ok(PolicyBinding::none()),
            _ => match self.policies.get(name) {
                Some(p) => Ok(PolicyBinding {
                    name: name.to_owned(),
                    policy: p.clone(),
                }),
                None => {
                    let known = ["all", "none"]
                        .into_iter()
                        .chain(self.policies.keys().map(String::as_str));
                    let message = match super::error::nearest(name, known) {
                        Some(near) => format!("unknown policy {name:?}: did you mean {near:?}?"),
                        None => format!(
                            "unknown policy {name:?} (\"all\", \"none\" or the name of a \
                             [[policy]])"
                        ),
                    };
                    Err(self.error(at, message))
                }
            },
        }
    }

    /// Resolves one peer at `address`.
    fn peer(&self, l: &Layers<'_>, address: IpAddr, d: &Defaults) -> Result<PeerSettings> {
        macro_rules! pick {
            ($f:ident) => {
                l.own
                    .$f
                    .clone()
                    .or_else(|| l.group.as_ref().and_then(|(g, _)| g.$f.clone()))
            };
        }
        let s = &self.speaker;
        let Some(asn) = pick!(asn).map(|a| a.0).or(d.asn) else {
            return Err(self.error(
                &l.own_path.key("asn"),
                "missing (required): set asn in the peer or in its group",
            ));
        };
        let local_as = pick!(local_as).map(|a| a.0);
        let ibgp = asn == local_as.unwrap_or(s.asn);

        let source_address = pick!(source_address).or(d.source_address);
        if let Some(src) = source_address
            && src.is_ipv4() != address.is_ipv4()
        {
            return Err(self.error(
                &self.locate(l, "source_address").1,
                format!("{src} is not of the address family of the peer {address}"),
            ));
        }

        let ttl = match l.level(&["multihop", "ttl_security"]) {
            Some(f) => match (f.ttl_security.and_then(|t| t.0), f.multihop) {
                (Some(hops), _) => Ttl::Security(hops),
                (None, Some(m)) => Ttl::Multihop(m.0),
                (None, None) => default_ttl(ibgp),
            },
            None => default_ttl(ibgp),
        };

        let hold_time = pick!(hold_time).map_or(s.hold_time, |h| h.0);
        let keepalive_time = pick!(keepalive_time).map(|k| k.get()).or(s.keepalive_time);
        if let Some(k) = keepalive_time {
            let at = self.blame(l, "keepalive_time", "hold_time");
            check_keepalive(self.doc, &at, k, hold_time)?;
        }

        let rr_client = pick!(rr_client).unwrap_or(false);
        if rr_client && !ibgp {
            return Err(self.error(
                &self.blame(l, "rr_client", "asn"),
                format!(
                    "rr_client needs an internal peer, but asn {asn} is not speaker.asn {}",
                    s.asn
                ),
            ));
        }

        let client_to_client = pick!(client_to_client);
        if client_to_client.is_some() && !rr_client {
            return Err(self.error(
                &self.locate(l, "client_to_client").1,
                "client_to_client applies to route-reflector clients: set rr_client = true",
            ));
        }

        let next_hop = match l.level(&["next_hop_self", "next_hop_keep"]) {
            Some(f) if f.next_hop_keep == Some(true) => NextHopMode::Keep,
            Some(f) => match f.next_hop_self {
                Some(NextHopSelf::On) => NextHopMode::SelfExceptReflected,
                Some(NextHopSelf::Force) => NextHopMode::SelfAll,
                Some(NextHopSelf::Off) | None => NextHopMode::Auto,
            },
            None => NextHopMode::Auto,
        };

        let families = pick!(families).map_or(FamilySet::ALL, |f| f.0);
        let extended_next_hop = pick!(extended_next_hop).unwrap_or(false);
        if extended_next_hop && !families.contains(Family::Ipv4Unicast) {
            return Err(self.error(
                &self.blame(l, "extended_next_hop", "families"),
                "extended_next_hop needs \"ipv4-unicast\" in families",
            ));
        }

        let idle_hold = pick!(idle_hold).map_or(IDLE_HOLD, |t| t.get());
        let idle_hold_max = pick!(idle_hold_max).map_or(IDLE_HOLD_MAX.max(idle_hold), |t| t.get());
        if idle_hold_max < idle_hold {
            return Err(self.error(
                &self.blame(l, "idle_hold_max", "idle_hold"),
                format!("{idle_hold_max} is below idle_hold ({idle_hold}): the ceiling of the back-off cannot be under its start"),
            ));
        }

        // RFC 8212: without a policy, nothing in or out on external sessions.
        let default_policy = if ibgp { "all" } else { "none" };
        let import = pick!(import).unwrap_or_else(|| default_policy.to_owned());
        let export = pick!(export).unwrap_or_else(|| default_policy.to_owned());

        Ok(PeerSettings {
            address,
            interface: None,
            group: None,
            port: pick!(port).map_or(179, |p| p.get()),
            asn,
            source_address,
            passive: d.passive.or(pick!(passive)).unwrap_or(false),
            ttl,
            hold_time,
            keepalive_time,
            send_hold_time: pick!(send_hold_time).map(|h| h.0).or(s.send_hold_time),
            connect_retry: pick!(connect_retry).map_or(s.connect_retry, |c| c.get()),
            families,
            add_path: pick!(add_path).map_or(AddPath::default(), |a| AddPath {
                receive: a.receive,
                send: a.send,
            }),
            extended_next_hop,
            extended_message: pick!(extended_message).unwrap_or(true),
            enforce_first_as: pick!(enforce_first_as).unwrap_or(true),
            soft_reconfiguration_inbound: pick!(soft_reconfiguration_inbound).unwrap_or(false),
            rr_client,
            cluster_id: pick!(cluster_id),
            client_to_client,
            next_hop,
            import: self.binding(&import, &self.locate(l, "import").1)?,
            export: self.binding(&export, &self.locate(l, "export").1)?,
            max_prefix: pick!(max_prefix).and_then(|m| m.0),
            max_prefix_restart: pick!(max_prefix).map_or(MAX_PREFIX_RESTART, |m| m.1),
            graceful_restart: pick!(graceful_restart).map_or(s.graceful_restart, |g| g.0),
            stale_time: pick!(stale_time).map_or(s.stale_time, |t| t.get()),
            long_lived_stale_time: pick!(long_lived_stale_time).and_then(|t| t.0),
            password: match l.level(&["password", "password_file"]) {
                Some(f) => match (&f.password, &f.password_file) {
                    (Some(p), _) => Some(Secret::new(p.0.clone())),
                    (None, Some(file)) => {
                        Some(self.read_password(&file.0, &self.locate(l, "password_file").1)?)
                    }
                    (None, None) => None,
                },
                None => None,
            },
            bfd: pick!(bfd).and_then(|b| b.0),
            description: pick!(description),
            enabled: pick!(enabled).unwrap_or(true),
            local_as,
            allow_local_as: pick!(allow_local_as).unwrap_or(0),
            idle_hold,
            idle_hold_max,
        })
    }

    /// The TCP-MD5 key in the file at `path` (relative to the configuration's directory),
    /// read now: a reload reads it again, so a rotated Secret takes effect on SIGHUP. The
    /// key itself never appears in an error.
    fn read_password(&self, path: &Path, at: &KeyPath) -> Result<Secret> {
        let full = match Path::new(self.doc.file()).parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        };
        let text = std::fs::read_to_string(&full)
            .map_err(|e| self.error(at, format!("cannot read {}: {e}", full.display())))?;
        Secret::from_file_text(&text)
            .map_err(|e| self.error(at, format!("{}: {e}", full.display())))
    }

    fn policy(&mut self, i: usize, p: &RawPolicy) -> Result<()> {
        let name_at = KeyPath::item("policy", i).key("name");
        if self.policies.contains_key(&p.name) {
            return Err(self.error(&name_at, format!("policy {:?} is already defined", p.name)));
        }
        let policy = super::policy::build(self.doc, i, p)?;
        self.policies.insert(p.name.clone(), Arc::new(policy));
        Ok(())
    }

    /// Expands `[mesh]` into peers.
    fn mesh(
        &self,
        m: &RawMesh,
        peers: &mut BTreeMap<IpAddr, PeerSettings>,
        defined_at: &BTreeMap<IpAddr, usize>,
    ) -> Result<Option<Mesh>> {
        let path = KeyPath::root().key("mesh");
        let group = self.group(m.group.as_deref(), &path.key("group"))?;
        if m.enabled == Some(false) {
            return Ok(None);
        }
        let nodes_at = path.key("nodes");
        for (i, n) in m.nodes.iter().enumerate() {
            self.check_unicast(*n, &nodes_at.index(i))?;
            if let Some(j) = m.nodes[..i].iter().position(|o| o == n) {
                return Err(self.error(
                    &nodes_at.index(i),
                    format!("{n} is already listed at mesh.nodes[{j}]"),
                ));
            }
        }
        // Our own address in each family: given, or the node that is our router ID or a
        // listening address.
        let mut local: Vec<IpAddr> = Vec::new();
        let mut add_local =
            |a: IpAddr, at: &KeyPath| match local.iter().find(|l| l.is_ipv4() == a.is_ipv4()) {
                Some(other) => Err(self.error(
                    at,
                    format!(
                        "{a} and {other} cannot both be this speaker's mesh address: \
                     set mesh.local_address to one address per family"
                    ),
                )),
                None => {
                    local.push(a);
                    Ok(())
                }
            };
        match &m.local_address {
            Some(list) => {
                for (i, a) in list.0.iter().enumerate() {
                    let at = match list.0.len() {
                        1 => path.key("local_address"),
                        _ => path.key("local_address").index(i),
                    };
                    add_local(*a, &at)?;
                }
            }
            None => {
                for (i, n) in m.nodes.iter().enumerate() {
                    if self.is_own_address(*n) {
                        add_local(*n, &nodes_at.index(i))?;
                    }
                }
            }
        }
        for (i, &node) in m.nodes.iter().enumerate() {
            if local.contains(&node) {
                continue;
            }
            let at = nodes_at.index(i);
            let Some(&ours) = local.iter().find(|l| l.is_ipv4() == node.is_ipv4()) else {
                let family = if node.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(self.error(
                    &at,
                    format!(
                        "no {family} mesh node is this speaker (none is speaker.router_id or \
                         a speaker.listen address): set mesh.local_address"
                    ),
                ));
            };
            let own = PeerFields {
                bfd: m.bfd.clone(),
                ..PeerFields::default()
            };
            let layers = Layers {
                own: &own,
                own_path: path.clone(),
                group: group.clone(),
            };
            let defaults = Defaults {
                asn: Some(self.speaker.asn),
                passive: Some(mesh_passive(ours, node)),
                source_address: Some(ours),
            };
            let mut settings = self.peer(&layers, node, &defaults)?;
            settings.group.clone_from(&m.group);
            match peers.entry(node) {
                Entry::Occupied(_) => {
                    let j = defined_at.get(&node).copied().unwrap_or_default();
                    return Err(self.error(
                        &KeyPath::item("peer", j).key("address"),
                        format!("{node} is also mesh.nodes[{i}]: a mesh node is not a [[peer]]"),
                    ));
                }
                Entry::Vacant(v) => {
                    v.insert(settings);
                }
            }
        }
        Ok(Some(Mesh {
            nodes: m.nodes.clone(),
            local,
            group: m.group.clone(),
        }))
    }
}

/// Calico's mesh rule: each link is opened from one side only, and we wait for a peer
/// whose address is greater than ours *as a string* (confd's `processMeshPeers`:
/// `if peerIP > currentNodeIP { passive }`). The lower string waits, the greater one
/// connects. The text is what Calico stores for a node (Go's `net.IP.String()`, which for
/// the unicast addresses a node can have reads the same as Rust's `Display`: dotted
/// quads, RFC 5952 for IPv6), compared byte by byte as Go compares strings. So
/// `10.0.0.9` waits for `10.0.0.10`, although it is the smaller number: comparing
/// numbers instead leaves pairs where both sides wait in a mesh shared with BIRD.
pub(super) fn mesh_passive(ours: IpAddr, peer: IpAddr) -> bool {
    peer.to_string() > ours.to_string()
}

/// TTL without `multihop` or `ttl_security`: 1 (directly connected) for eBGP, 255 for
/// iBGP.
fn default_ttl(ibgp: bool) -> Ttl {
    Ttl::Multihop(if ibgp { 255 } else { 1 })
}

/// `[[route]]`: originated routes, checked for duplicates and next-hop families.
fn routes(doc: &Doc<'_>, raw: &[super::raw::RawRoute]) -> Result<Vec<super::Route>> {
    let mut out: Vec<super::Route> = Vec::with_capacity(raw.len());
    // Each prefix's index: a table of 100,000 routes is checked in well under a second
    // (a scan per route took minutes).
    let mut seen: BTreeMap<ipnet::IpNet, usize> = BTreeMap::new();
    for (i, r) in raw.iter().enumerate() {
        let path = KeyPath::item("route", i);
        let prefix = r.prefix.trunc();
        if let Some(j) = seen.insert(prefix, i) {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already originated by route[{j}]"),
            ));
        }
        let next_hop = match (prefix, r.next_hop) {
            (_, None) => None,
            (ipnet::IpNet::V4(_), Some(IpAddr::V4(a))) => Some(NextHop::V4(a)),
            (ipnet::IpNet::V6(_), Some(IpAddr::V6(a))) => Some(NextHop::V6 {
                global: a,
                link_local: None,
            }),
            (_, Some(a)) => {
                return Err(doc.error(
                    &path.key("next_hop"),
                    format!("{a} is not of the family of {prefix}"),
                ));
            }
        };
        let attrs = rib::Attrs {
            next_hop,
            med: r.med,
            local_pref: r.local_pref,
            communities: sorted(r.communities.iter().flatten().map(|c| c.0).collect()),
            large_communities: sorted(r.large_communities.iter().flatten().map(|c| c.0).collect()),
            ..rib::Attrs::default()
        };
        out.push(super::Route { prefix, attrs });
    }
    Ok(out)
}

/// `[fib]` and its `[[fib.ip_pool]]`s.
fn fib(doc: &Doc<'_>, fib: Option<&super::raw::RawFib>) -> Result<Fib> {
    let mut ip_pools: Vec<super::IpPool> = Vec::new();
    for (i, p) in fib.map_or(&[][..], |f| &f.ip_pool).iter().enumerate() {
        let path = KeyPath::root().key("fib").key("ip_pool").index(i);
        let prefix = p.prefix.trunc();
        if let Some(j) = ip_pools.iter().position(|q| q.prefix == prefix) {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already fib.ip_pool[{j}]"),
            ));
        }
        let ipip = p.ipip.unwrap_or_default();
        if ipip != super::IpipMode::Never && !prefix.addr().is_ipv4() {
            return Err(doc.error(
                &path.key("ipip"),
                "IP-in-IP carries IPv4 only: an IPv6 pool's ipip must be \"never\"",
            ));
        }
        if ipip == super::IpipMode::CrossSubnet && fib.and_then(|f| f.node_subnet).is_none() {
            return Err(doc.error(
                &path.key("ipip"),
                "\"cross-subnet\" needs [fib] node_subnet (the node's own subnet)",
            ));
        }
        ip_pools.push(super::IpPool {
            prefix,
            ipip,
            install: p.install.unwrap_or(true),
        });
    }
    let mut static_routes: Vec<super::StaticRoute> = Vec::new();
    for (i, r) in fib.map_or(&[][..], |f| &f.static_route).iter().enumerate() {
        let path = KeyPath::root().key("fib").key("static_route").index(i);
        let prefix = r.prefix.trunc();
        if let Some(j) = static_routes.iter().position(|q| q.prefix == prefix) {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already fib.static_route[{j}]"),
            ));
        }
        if r.via.is_ipv4() != prefix.addr().is_ipv4() {
            return Err(doc.error(&path.key("via"), "not of the prefix's family"));
        }
        if r.via.is_unspecified() || r.via.is_multicast() || r.via.is_loopback() {
            return Err(doc.error(&path.key("via"), "not a unicast gateway address"));
        }
        static_routes.push(super::StaticRoute {
            prefix,
            via: r.via,
            metric: r.metric,
        });
    }
    let tunnel_device = fib
        .and_then(|f| f.tunnel_device.clone())
        .unwrap_or_else(|| "tunl0".to_owned());
    if tunnel_device.is_empty() || tunnel_device.len() > 15 || tunnel_device.contains('/') {
        return Err(doc.error(
            &KeyPath::root().key("fib").key("tunnel_device"),
            format!("{tunnel_device:?} is not an interface name (1 to 15 bytes, no '/')"),
        ));
    }
    Ok(Fib {
        // The section's presence turns programming on; `enabled = false` keeps it off.
        enabled: fib.is_some_and(|f| f.enabled.unwrap_or(true)),
        table: fib.and_then(|f| f.table).map_or(254, |t| t.get()),
        protocol: fib.and_then(|f| f.protocol).map_or(12, |p| p.0),
        metric: fib.and_then(|f| f.metric).unwrap_or(1024),
        metric_from_local_pref: fib.and_then(|f| f.metric_from_local_pref).unwrap_or(true),
        bird16_metric: fib.and_then(|f| f.bird16_metric).unwrap_or(false),
        node_subnet: fib.and_then(|f| f.node_subnet).map(|n| n.trunc()),
        tunnel_device,
        ip_pools,
        static_routes,
    })
}

/// `[[originate]]`: the node's blocks, announced as `[[route]]`s with default attributes
/// (appended to `routes`) and, with `blackhole`, installed as blackholes by the FIB.
fn originate(
    doc: &Doc<'_>,
    raw: &[super::raw::RawOriginate],
    routes: &mut Vec<super::Route>,
) -> Result<Vec<super::Originate>> {
    let mut out: Vec<super::Originate> = Vec::new();
    let configured: BTreeMap<ipnet::IpNet, usize> = routes
        .iter()
        .enumerate()
        .map(|(j, r)| (r.prefix, j))
        .collect();
    let mut seen: BTreeMap<ipnet::IpNet, usize> = BTreeMap::new();
    for (i, o) in raw.iter().enumerate() {
        let path = KeyPath::item("originate", i);
        let prefix = o.prefix.trunc();
        if let Some(j) = configured.get(&prefix) {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already originated by route[{j}]"),
            ));
        }
        if let Some(j) = seen.insert(prefix, i) {
            return Err(doc.error(
                &path.key("prefix"),
                format!("{prefix} is already originated by originate[{j}]"),
            ));
        }
        out.push(super::Originate {
            prefix,
            blackhole: o.blackhole.unwrap_or(true),
            metric: o.metric,
            kernel_metric: o.kernel_metric,
        });
        routes.push(super::Route {
            prefix,
            attrs: rib::Attrs::default(),
        });
    }
    Ok(out)
}

/// `[learn]`: interface patterns checked, defaults filled in.
/// `[[bmp]]`.
fn bmp(doc: &Doc<'_>, raw: &[super::raw::RawBmp]) -> Result<Vec<super::BmpCollector>> {
    let mut out: Vec<super::BmpCollector> = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        let path = KeyPath::item("bmp", i);
        let address = SocketAddr::new(b.address, b.port.get());
        if out.iter().any(|o| o.address == address) {
            return Err(doc.error(
                &path.key("port"),
                format!("the collector {address} is already configured"),
            ));
        }
        out.push(super::BmpCollector {
            address,
            route_monitoring: b.route_monitoring.unwrap_or_default(),
            statistics_interval: b
                .statistics_interval
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s))),
            queue_limit: b
                .queue_limit
                .map_or(crate::bmp::collector::QUEUE_LIMIT, |q| q.get() as usize),
            retry: Duration::from_secs(u64::from(b.retry.map_or(30, |r| r.get()))),
        });
    }
    Ok(out)
}

fn learn(doc: &Doc<'_>, raw: Option<&super::raw::RawLearn>) -> Result<Learn> {
    let path = KeyPath::root().key("learn");
    let exclude = match raw.and_then(|l| l.direct_exclude.as_ref()) {
        Some(v) => v.clone(),
        None => DIRECT_EXCLUDE.iter().map(|s| (*s).to_owned()).collect(),
    };
    let route_exclude = raw
        .and_then(|l| l.route_exclude.clone())
        .unwrap_or_default();
    for (key, list) in [
        ("direct_exclude", &exclude),
        ("route_exclude", &route_exclude),
    ] {
        for (i, p) in list.iter().enumerate() {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(doc.error(
                    &path.key(key).index(i),
                    format!(
                        "{p:?} is not an interface name pattern (a name with `*` and `?`, such as \"cali*\")"
                    ),
                ));
            }
        }
    }
    let pools: Vec<ipnet::IpNet> = raw
        .and_then(|l| l.pools.as_ref())
        .map(|v| v.iter().map(|p| p.0).collect())
        .unwrap_or_default();
    for (i, p) in pools.iter().enumerate() {
        if let Some(j) = pools[..i].iter().position(|o| o == p) {
            return Err(doc.error(
                &path.key("pools").index(i),
                format!("{p} is already given at learn.pools[{j}]"),
            ));
        }
    }
    Ok(Learn {
        // The section's presence turns learning on; `enabled = false` keeps it off.
        enabled: raw.is_some_and(|l| l.enabled.unwrap_or(true)),
        pools,
        elevated_below: raw.and_then(|l| l.elevated_below).unwrap_or(1024),
        direct: raw.and_then(|l| l.direct).unwrap_or(false),
        direct_exclude: exclude,
        route_exclude,
        resync: Duration::from_secs(
            raw.and_then(|l| l.resync)
                .map_or(60, |s| u64::from(s.get())),
        ),
    })
}

/// Interfaces whose prefixes Calico's BIRD never announces (its `direct` protocol).
const DIRECT_EXCLUDE: [&str; 2] = ["cali*", "kube-ipvs*"];

/// Sorted and without duplicates: the order of communities means nothing (RFC 1997).
fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v.dedup();
    v
}
