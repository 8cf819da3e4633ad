//! The resolved configuration: every default filled in, groups applied, names checked;
//! and the builders of what the session layer and the RIB take.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bgp_wire::capability::{
    AddPathEntry, Capability, ExtendedNextHopEntry, GrFamily, GracefulRestart, LlgrFamily,
};
use bgp_wire::{Family, FamilySet};
use ipnet::IpNet;
use rib::{AddPathMode, MaxPrefix, NextHopMode, PeerConfig, Policy, RibConfig};
use serde::Deserialize;

use crate::session::SessionSpec;

/// `bfd`: a BFD session (RFC 5880) that watches the path to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bfd {
    /// Desired Min TX and Required Min RX interval, in milliseconds.
    pub interval_ms: u32,
    /// Detect Mult: packets missed before the session is down.
    pub multiplier: u8,
    /// Multihop (RFC 5883, port 4784) rather than single hop (RFC 5881, port 3784).
    pub multihop: bool,
    /// BGP waits for the BFD session to be up (else a session that never comes up does
    /// not hold BGP back).
    pub strict: bool,
    /// Keyed SHA1 authentication (RFC 5880 §6.7.4): the key (1 to 20 bytes), its ID and
    /// whether it is the meticulous form; `None`: no authentication.
    pub sha1: Option<BfdSha1>,
}

/// The Keyed SHA1 settings of a peer's BFD session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdSha1 {
    /// The shared secret.
    pub password: Secret,
    /// Key ID.
    pub key_id: u8,
    /// Meticulous Keyed SHA1: a new sequence number in every packet.
    pub meticulous: bool,
}

impl Default for Bfd {
    /// 300 ms x 3, single hop, not strict.
    fn default() -> Self {
        Self {
            interval_ms: 300,
            multiplier: 3,
            multihop: false,
            strict: false,
            sha1: None,
        }
    }
}

impl Bfd {
    /// The BFD session of a peer with this setting, sent from `local`.
    pub fn spec(&self, local: Option<IpAddr>) -> crate::bfd::Spec {
        let mut config = crate::bfd::SessionConfig::new(
            Duration::from_millis(u64::from(self.interval_ms)),
            self.multiplier,
        );
        config.auth = self.sha1.as_ref().map(|a| crate::bfd::AuthKey {
            key_id: a.key_id,
            key: a.password.expose().as_bytes().to_vec(),
            meticulous: a.meticulous,
        });
        crate::bfd::Spec {
            local,
            multihop: self.multihop,
            config,
        }
    }
}

/// `[speaker]`: who we are, and the defaults of every peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speaker {
    /// Our AS (4-octet).
    pub asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where to accept BGP connections; empty for none.
    pub listen: Vec<SocketAddr>,
    /// Our cluster ID as a route reflector: as configured, else the router ID when some
    /// peer is a reflector client, else `None` (not a reflector).
    pub cluster_id: Option<Ipv4Addr>,
    /// Default hold time of peers, in seconds.
    pub hold_time: u16,
    /// Default keepalive interval of peers; `None` for a third of the hold time.
    pub keepalive_time: Option<u16>,
    /// Default send hold time of peers, in seconds (RFC 9687); `None` for the RFC's
    /// default, the larger of 480 s and twice the negotiated hold time.
    pub send_hold_time: Option<u16>,
    /// Default seconds between connection attempts.
    pub connect_retry: u16,
    /// Reflect routes from clients to other clients (RFC 4456 §8).
    pub client_to_client: bool,
    /// Compare MED between paths from different neighbour ASes.
    pub always_compare_med: bool,
    /// Treat a missing MED as the worst value instead of 0.
    pub missing_med_worst: bool,
    /// LOCAL_PREF assumed for paths without one.
    pub default_local_pref: u32,
    /// Default graceful restart time of peers; `None` for off.
    pub graceful_restart: Option<u16>,
    /// Default End-of-RIB wait of peers (`stale_time`), in seconds.
    pub stale_time: u16,
    /// A stop (SIGTERM) is a planned restart: sessions that negotiated graceful restart
    /// close without a NOTIFICATION, so that their peers keep our routes until we are
    /// back. `false`: every peer gets a Cease and drops our routes at once.
    pub graceful_stop: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, ... or `RUST_LOG` directives); `None`: `info`, or
    /// what `--log-level` or `RUST_LOG` say. Applied again at each reload.
    pub log_level: Option<String>,
}

impl Speaker {
    /// The RIB's speaker-wide settings (`track_best_changes` left off: see
    /// [`crate::config::Config::rib_config`]).
    pub fn rib_config(&self) -> RibConfig {
        let mut c = RibConfig::new(self.asn, self.router_id);
        c.cluster_id = self.cluster_id;
        c.client_to_client = self.client_to_client;
        c.always_compare_med = self.always_compare_med;
        c.missing_med_worst = self.missing_med_worst;
        c.default_local_pref = self.default_local_pref;
        c
    }

    /// The first `[speaker]` key whose change from `self` to `new` needs a new session
    /// with every peer: the AS and the router ID go into every OPEN. Peer defaults
    /// (`hold_time`, ...) are compared peer by peer, once resolved into each peer's
    /// settings; `listen` is rebound without touching sessions.
    pub fn reset_key(&self, new: &Self) -> Option<&'static str> {
        if self.asn != new.asn {
            Some("speaker.asn")
        } else if self.router_id != new.router_id {
            Some("speaker.router_id")
        } else {
            None
        }
    }

    /// The first `[speaker]` key of the RIB's speaker-wide settings that differs: those
    /// are fixed at the start (the decision and reflection of every route depend on
    /// them), so a change takes effect at the next start.
    pub fn rib_key(&self, new: &Self) -> Option<&'static str> {
        [
            (
                "cluster_id",
                self.cluster_id.unwrap_or(self.router_id)
                    == new.cluster_id.unwrap_or(new.router_id),
            ),
            (
                "client_to_client",
                self.client_to_client == new.client_to_client,
            ),
            (
                "always_compare_med",
                self.always_compare_med == new.always_compare_med,
            ),
            (
                "missing_med_worst",
                self.missing_med_worst == new.missing_med_worst,
            ),
            (
                "default_local_pref",
                self.default_local_pref == new.default_local_pref,
            ),
        ]
        .iter()
        .find(|(_, same)| !same)
        .map(|(k, _)| *k)
    }

    /// Whether the speaker reflects routes (a cluster ID is in force).
    pub fn is_route_reflector(&self) -> bool {
        self.cluster_id.is_some()
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[api]`: the read-only HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Api {
    /// Whether to serve it.
    pub enabled: bool,
    /// Where.
    pub listen: SocketAddr,
    /// `readiness_grace`: for how long after the start `/readyz` wants every configured
    /// peer Established; after it, one is enough (Calico's rule, 30 s by default).
    pub readiness_grace: Duration,
    /// `ready_requires_fib`: `/readyz` also wants the kernel routes programmed (with
    /// `[fib]` on: the initial sync over, nothing pending, nothing failing).
    pub ready_requires_fib: bool,
}

/// `[control]`: the local control socket (`crate::control`), for the actions of
/// `rr-daemon ctl --socket`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// Whether to serve it.
    pub enabled: bool,
    /// The socket's path.
    pub socket: std::path::PathBuf,
    /// `socket` was set in the file: failing to create it fails the start. The default
    /// path (under `/run`, where a user other than root may not write) only logs.
    pub explicit: bool,
}

/// `[[bmp]]` `route_monitoring`: which Adj-RIB-In a collector is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteMonitoring {
    /// The routes as each peer sent them (before import policy).
    #[default]
    PrePolicy,
    /// The routes after import policy (the L flag).
    PostPolicy,
    /// Both.
    Both,
}

/// `[[bmp]]`: a BMP collector (RFC 7854) the speaker connects to and reports to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BmpCollector {
    /// `address` and `port` of the collector.
    pub address: SocketAddr,
    /// `route_monitoring`.
    pub route_monitoring: RouteMonitoring,
    /// `statistics_interval`: seconds between Statistics Reports; `None` for none.
    pub statistics_interval: Option<Duration>,
    /// `queue_limit`: bytes of live events held for a collector that does not keep up,
    /// past which it is dropped and resynchronised when it reconnects.
    pub queue_limit: usize,
    /// `retry`: the longest back-off between connection attempts.
    pub retry: Duration,
}

/// `[fib]`: kernel route programming (`crate::fib`), on when the section is present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fib {
    /// Whether to program routes.
    pub enabled: bool,
    /// Kernel routing table (254 is `main`).
    pub table: u32,
    /// Routing protocol number of our routes (12 is `bird`, which Calico's Felix knows).
    pub protocol: u8,
    /// Route metric: of every route when `metric_from_local_pref` is off, else of routes
    /// whose best path carries no LOCAL_PREF and of blocks without their own `metric`.
    pub metric: u32,
    /// Calico 3.32's rule: a learned route's metric is `2147483647 - LOCAL_PREF` when its
    /// best path carries LOCAL_PREF; a block is announced with `LOCAL_PREF = 2147483647 -
    /// metric` (its own `metric`, else `metric` above).
    pub metric_from_local_pref: bool,
    /// BIRD 1.6's kernel metrics (`bird16_metric`): every route of ours is installed with
    /// metric 0 (no priority), as BIRD 1.6 installs them on Calico's config, whatever
    /// `metric`, `metric_from_local_pref` and blocks' own metrics say; the export rule
    /// (blocks announced with `LOCAL_PREF = 2147483647 - metric`) is unchanged.
    pub bird16_metric: bool,
    /// The node's own subnet (`node_subnet`): `cross-subnet` pools tunnel only next hops
    /// outside it.
    pub node_subnet: Option<IpNet>,
    /// The IP-in-IP device (`tunnel_device`, `tunl0` by default).
    pub tunnel_device: String,
    /// `[[fib.ip_pool]]`, in file order.
    pub ip_pools: Vec<IpPool>,
    /// `[[fib.static_route]]`, in file order.
    pub static_routes: Vec<StaticRoute>,
}

impl Fib {
    /// The static routes to install: prefix, gateway and metric (the route's own `metric`,
    /// else 0 with `bird16_metric`, else `metric`).
    pub fn statics(&self) -> Vec<(IpNet, IpAddr, u32)> {
        self.static_routes
            .iter()
            .map(|r| {
                let m = match r.metric {
                    Some(m) => m,
                    None if self.bird16_metric => 0,
                    None => self.metric,
                };
                (r.prefix, r.via, m)
            })
            .collect()
    }
}

/// `[[fib.static_route]]`: a route installed in the kernel via a gateway, never announced
/// over BGP (BIRD's `protocol static { route P via GW; }` on Calico's config, confd's route
/// to a BGPPeer's `reachableBy` gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    /// The destination, host bits clear.
    pub prefix: IpNet,
    /// The gateway, of the prefix's family.
    pub via: IpAddr,
    /// Its own kernel metric, else `[fib] metric` (0 with `bird16_metric`).
    pub metric: Option<u32>,
}

/// `[[fib.ip_pool]]`: a Calico IP pool, as far as kernel routes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPool {
    /// The pool's CIDR, host bits clear.
    pub prefix: IpNet,
    /// Calico's `ipipMode`: which routes inside the pool go through the tunnel device.
    pub ipip: IpipMode,
    /// `false`: routes inside the pool are not installed at all (newer Calico: Felix
    /// programs them).
    pub install: bool,
}

/// Calico's `ipipMode` of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpipMode {
    /// No tunnel: via the next hop as BGP gives it (resolved through the kernel).
    #[default]
    Never,
    /// Every route of the pool `via NEXT_HOP dev tunl0 onlink`.
    Always,
    /// Through the tunnel only when the (IPv4) next hop is outside `[fib] node_subnet`.
    CrossSubnet,
}

/// `[learn]`: routes learned from the kernel and announced (`crate::fib::learn`), on
/// when the section is present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learn {
    /// Whether to learn.
    pub enabled: bool,
    /// Kernel routes are learned only inside these (Calico's IP pools).
    pub pools: Vec<IpNet>,
    /// A metric below this marks a route inside one of our blocks as elevated.
    pub elevated_below: u32,
    /// Announce interface prefixes (BIRD's `direct`).
    pub direct: bool,
    /// Interface name patterns whose prefixes are never announced.
    pub direct_exclude: Vec<String>,
    /// Interface name patterns: kernel routes through a matching interface are never
    /// learned (Calico's filters reject routes through Felix's tunnel devices).
    pub route_exclude: Vec<String>,
    /// Period of the full reconciliation with a kernel dump.
    pub resync: Duration,
}

/// TTL handling of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// Send with this TTL; accept any.
    Multihop(u8),
    /// GTSM (RFC 5082): send with TTL 255; accept only packets that crossed at most this
    /// many hops (TTL at least 256 - hops).
    Security(u8),
}

impl Ttl {
    /// The TTL of outgoing packets.
    pub const fn outgoing(self) -> u8 {
        match self {
            Self::Multihop(t) => t,
            Self::Security(_) => 255,
        }
    }

    /// The smallest TTL accepted on incoming packets (for `IP_MINTTL`), if any.
    pub const fn min_incoming(self) -> Option<u8> {
        match self {
            Self::Multihop(_) => None,
            Self::Security(hops) => Some(255 - hops.saturating_sub(1)),
        }
    }
}

/// ADD-PATH (RFC 7911) settings of a peer, for each of its families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddPath {
    /// We accept path identifiers from the peer.
    pub receive: bool,
    /// Which paths we send, with identifiers; `None` for the best only.
    pub send: Option<AddPathMode>,
}

/// An import or export policy, by name and resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyBinding {
    /// `all`, `none` or the name of a `[[policy]]`.
    pub name: String,
    /// The policy (`all` accepts everything, `none` refuses everything).
    pub policy: Arc<Policy>,
}

impl PolicyBinding {
    /// `all`.
    pub fn all() -> Self {
        Self {
            name: "all".to_owned(),
            policy: Arc::new(Policy::accept_all()),
        }
    }

    /// `none`.
    pub fn none() -> Self {
        Self {
            name: "none".to_owned(),
            policy: Arc::new(Policy::reject_all()),
        }
    }
}

/// A secret (the TCP-MD5 key) that `Debug` does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A TCP-MD5 key read from a file (`password_file`, `rr-daemon session --password`):
    /// the text less one trailing newline (`echo KEY > FILE` writes one, a Kubernetes
    /// Secret none), 1 to 80 bytes.
    pub fn from_file_text(text: &str) -> Result<Self, String> {
        let key = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        super::values::check_md5_key(key)?;
        Ok(Self(key.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One peer, resolved: its group applied, every default filled in.
///
/// Compares by value, so that a reload can tell which peers changed
/// ([`crate::config::Config::diff`]); policies compare by content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    /// The peer's address.
    pub address: IpAddr,
    /// The interface of a link-local peer (`fe80::2%eth0`): connections go out on it,
    /// and the peer's connections are taken only from it.
    pub interface: Option<String>,
    /// The peer's TCP port.
    pub port: u16,
    /// The `[[peer_group]]` its settings come from (the range's group for a dynamic
    /// neighbour, `[mesh] group` for a mesh peer), if any: a label of its metrics.
    pub group: Option<String>,
    /// The peer's AS: equal to ours makes the session internal.
    pub asn: u32,
    /// Our source address for connections to the peer.
    pub source_address: Option<IpAddr>,
    /// Never connect out; wait for the peer.
    pub passive: bool,
    /// TTL handling.
    pub ttl: Ttl,
    /// Hold time we propose, in seconds (0, or at least 3).
    pub hold_time: u16,
    /// Seconds between KEEPALIVEs; `None` for a third of the negotiated hold time.
    pub keepalive_time: Option<u16>,
    /// Seconds our output may stay blocked (the peer reads nothing) before the session
    /// is dropped with Send Hold Timer Expired (RFC 9687, at least 1); `None` for the
    /// RFC's default, the larger of 480 s and twice the negotiated hold time.
    pub send_hold_time: Option<u16>,
    /// Seconds between connection attempts.
    pub connect_retry: u16,
    /// Families we offer.
    pub families: FamilySet,
    /// ADD-PATH, for each family in `families`.
    pub add_path: AddPath,
    /// Extended next hop (RFC 8950): we offer IPv4 unicast routes with an IPv6 next hop.
    pub extended_next_hop: bool,
    /// Extended messages (RFC 8654): we offer messages up to 65535 bytes; used where the
    /// peer offers them too.
    pub extended_message: bool,
    /// On eBGP, an UPDATE whose AS_PATH does not start with the peer's AS is treated as
    /// withdrawn (RFC 4271 §6.3). Off for route servers, which do not add their AS.
    pub enforce_first_as: bool,
    /// Keep the routes the import policy rejects (FRR's soft-reconfiguration inbound),
    /// listed as rejected; off, they are dropped as they arrive.
    pub soft_reconfiguration_inbound: bool,
    /// The peer is a route-reflector client (iBGP only).
    pub rr_client: bool,
    /// Cluster ID towards this peer instead of the speaker's.
    pub cluster_id: Option<Ipv4Addr>,
    /// For a client: routes from the other clients of its cluster are reflected to it;
    /// `None` for `speaker.client_to_client`.
    pub client_to_client: Option<bool>,
    /// Next-hop handling on export.
    pub next_hop: NextHopMode,
    /// Import policy.
    pub import: PolicyBinding,
    /// Export policy.
    pub export: PolicyBinding,
    /// Max-prefix limit.
    pub max_prefix: Option<MaxPrefix>,
    /// Seconds a peer that crossed its max-prefix limit is held down (its session
    /// stopped, its connections refused) before it may come back.
    pub max_prefix_restart: u32,
    /// Graceful restart time we advertise; `None`: graceful restart off.
    pub graceful_restart: Option<u16>,
    /// Seconds a restarting peer whose session is back has to send End-of-RIB before
    /// its routes still stale are removed (RFC 4724 §4.2, FRR's `stalepath-time`).
    pub stale_time: u16,
    /// Long-lived graceful restart (RFC 9494): the long-lived stale time we advertise and
    /// keep a peer's routes for (as LLGR-stale) once its graceful restart time is over;
    /// `None`: off. Only with `graceful_restart`.
    pub long_lived_stale_time: Option<u32>,
    /// TCP-MD5 key (RFC 2385).
    pub password: Option<Secret>,
    /// BFD with the peer (RFC 5880); `None`: off.
    pub bfd: Option<Bfd>,
    /// Free text naming the peer, shown by `ctl peers` and in the peers' JSON.
    pub description: Option<String>,
    /// `false`: administratively down from the start, as after `ctl disable` (no
    /// connection out, the peer's refused) until `ctl enable` or a reload that sets it
    /// `true`.
    pub enabled: bool,
    /// The AS we present on this session (in our OPEN) instead of `[speaker] asn`;
    /// `None`: the speaker's.
    pub local_as: Option<u32>,
    /// How many times our AS may appear in the AS_PATH of a route from an external peer
    /// before the route is a loop (BIRD's `allow local as N`); 0 by default.
    pub allow_local_as: u8,
    /// Seconds in Idle after an error before we connect out again, the first time (the
    /// peer's connections are accepted meanwhile); doubled at each error in a row.
    pub idle_hold: u16,
    /// Ceiling of the doubled idle hold time, in seconds.
    pub idle_hold_max: u16,
}

impl PeerSettings {
    /// The first key whose change from `self` to `new` needs a new session (a Cease, Other
    /// Configuration Change), as the file names it; `None` when the two differ at most in
    /// policy: `import`, `export`, `next_hop_self`/`next_hop_keep` and `max_prefix`, which
    /// the speaker applies to the running session, or in what it also applies there or
    /// only shows: `passive` (who opens the next connection), `enabled`, `bfd`,
    /// `description`, `stale_time`. Everything else goes into the OPEN (AS, families,
    /// ADD-PATH, extended next hop, graceful restart, timers), the connection (port,
    /// source address, TTL, password), or into how the peer's routes were accepted and
    /// reflected (`rr_client`, `cluster_id`,
    /// `allow_local_as`).
    pub fn reset_key(&self, new: &Self) -> Option<&'static str> {
        self.compare(new)
            .into_iter()
            .find(|&(_, same, resets)| resets && !same)
            .map(|(k, _, _)| k)
    }

    /// Every key that differs from `self` to `new`, as the file names it (empty when the
    /// two are equal): what a reload says it changed. A key set in a peer's group counts
    /// as the peer's.
    pub fn changed_keys(&self, new: &Self) -> Vec<&'static str> {
        self.compare(new)
            .into_iter()
            .filter(|&(_, same, _)| !same)
            .map(|(k, _, _)| k)
            .collect()
    }

    /// Each key: its name in the file, whether `self` and `new` agree on it, and whether
    /// a change of it needs a new session (see [`PeerSettings::reset_key`]).
    fn compare(&self, new: &Self) -> [(&'static str, bool, bool); 37] {
        // Destructured so that a new field has to be placed on one side or the other.
        let Self {
            address,
            interface,
            port,
            group,
            asn,
            source_address,
            passive,
            ttl,
            hold_time,
            keepalive_time,
            send_hold_time,
            connect_retry,
            families,
            add_path,
            extended_next_hop,
            extended_message,
            enforce_first_as,
            soft_reconfiguration_inbound,
            rr_client,
            cluster_id,
            client_to_client,
            next_hop,
            import,
            export,
            max_prefix,
            max_prefix_restart,
            graceful_restart,
            stale_time,
            long_lived_stale_time,
            password,
            bfd,
            description,
            enabled,
            local_as,
            allow_local_as,
            idle_hold,
            idle_hold_max,
        } = self;
        const RESET: bool = true;
        // Applied to the running session, or only shown.
        const KEPT: bool = false;
        [
            ("address", *address == new.address, RESET),
            ("interface", *interface == new.interface, RESET),
            ("asn", *asn == new.asn, RESET),
            ("port", *port == new.port, RESET),
            (
                "source_address",
                *source_address == new.source_address,
                RESET,
            ),
            // A name only: the settings it brings are compared one by one.
            ("group", *group == new.group, KEPT),
            // Who opens the next connection: applied to the running session, which stays
            // (an Established one keeps its connection).
            ("passive", *passive == new.passive, KEPT),
            ("multihop/ttl_security", *ttl == new.ttl, RESET),
            ("hold_time", *hold_time == new.hold_time, RESET),
            (
                "keepalive_time",
                *keepalive_time == new.keepalive_time,
                RESET,
            ),
            (
                "send_hold_time",
                *send_hold_time == new.send_hold_time,
                RESET,
            ),
            ("connect_retry", *connect_retry == new.connect_retry, RESET),
            ("families", *families == new.families, RESET),
            ("add_path", *add_path == new.add_path, RESET),
            (
                "extended_next_hop",
                *extended_next_hop == new.extended_next_hop,
                RESET,
            ),
            (
                "extended_message",
                *extended_message == new.extended_message,
                RESET,
            ),
            (
                "enforce_first_as",
                *enforce_first_as == new.enforce_first_as,
                RESET,
            ),
            (
                "soft_reconfiguration_inbound",
                *soft_reconfiguration_inbound == new.soft_reconfiguration_inbound,
                RESET,
            ),
            ("rr_client", *rr_client == new.rr_client, RESET),
            ("cluster_id", *cluster_id == new.cluster_id, RESET),
            (
                "client_to_client",
                *client_to_client == new.client_to_client,
                RESET,
            ),
            (
                "next_hop_self/next_hop_keep",
                *next_hop == new.next_hop,
                KEPT,
            ),
            ("import", *import == new.import, KEPT),
            ("export", *export == new.export, KEPT),
            ("max_prefix", *max_prefix == new.max_prefix, KEPT),
            (
                "max_prefix_restart",
                *max_prefix_restart == new.max_prefix_restart,
                KEPT,
            ),
            (
                "graceful_restart",
                *graceful_restart == new.graceful_restart,
                RESET,
            ),
            ("stale_time", *stale_time == new.stale_time, KEPT),
            (
                "long_lived_stale_time",
                *long_lived_stale_time == new.long_lived_stale_time,
                RESET,
            ),
            ("password", *password == new.password, RESET),
            ("bfd", *bfd == new.bfd, KEPT),
            ("description", *description == new.description, KEPT),
            // Applied to the running session: stopped or started, nothing else.
            ("enabled", *enabled == new.enabled, KEPT),
            ("local_as", *local_as == new.local_as, RESET),
            (
                "allow_local_as",
                *allow_local_as == new.allow_local_as,
                RESET,
            ),
            ("idle_hold", *idle_hold == new.idle_hold, RESET),
            ("idle_hold_max", *idle_hold_max == new.idle_hold_max, RESET),
        ]
    }

    /// Whether the session is internal.
    pub fn is_ibgp(&self, speaker: &Speaker) -> bool {
        self.asn == self.local_as(speaker)
    }

    /// The AS we present to the peer: `local_as`, else `[speaker] asn`.
    pub fn local_as(&self, speaker: &Speaker) -> u32 {
        self.local_as.unwrap_or(speaker.asn)
    }

    /// The session's configuration: our OPEN (families, ADD-PATH, extended next hop,
    /// graceful restart as helper), passive mode and timers.
    pub fn fsm_config(&self, speaker: &Speaker) -> bgp_fsm::Config {
        let mut c = bgp_fsm::Config::new(self.local_as(speaker), speaker.router_id, self.asn);
        c.set_families(self.families);
        let mode = match (self.add_path.receive, self.add_path.send.is_some()) {
            (true, true) => Some(bgp_wire::capability::AddPathMode::Both),
            (true, false) => Some(bgp_wire::capability::AddPathMode::Receive),
            (false, true) => Some(bgp_wire::capability::AddPathMode::Send),
            (false, false) => None,
        };
        if let Some(mode) = mode {
            let entries = self
                .families
                .iter()
                .map(|f| AddPathEntry {
                    afi: f.afi(),
                    safi: f.safi(),
                    mode,
                })
                .collect();
            c.capabilities.push(Capability::AddPath(entries));
        }
        if self.extended_next_hop {
            // RFC 8950 §3: IPv4 unicast NLRI with an IPv6 next hop.
            c.capabilities
                .push(Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
                    afi: Family::Ipv4Unicast.afi(),
                    safi: Family::Ipv4Unicast.safi(),
                    next_hop_afi: Family::Ipv6Unicast.afi(),
                }]));
        }
        if self.extended_message {
            c.capabilities.push(Capability::ExtendedMessage);
        }
        if let Some(restart_time) = self.graceful_restart {
            // RFC 4724 §3: every family listed, so that the peer keeps our routes when we
            // restart; forwarding state not preserved on a fresh start (the restarting
            // speaker sets R and F, see `Speaker::start_restarting`).
            let families = self
                .families
                .iter()
                .map(|f| GrFamily {
                    afi: f.afi(),
                    safi: f.safi(),
                    forwarding: false,
                })
                .collect();
            c.capabilities
                .push(Capability::GracefulRestart(GracefulRestart {
                    restart_state: false,
                    notification: true,
                    restart_time,
                    families,
                }));
            if let Some(stale_time) = self.long_lived_stale_time {
                // RFC 9494 §3: every family, with our long-lived stale time.
                let families = self
                    .families
                    .iter()
                    .map(|f| LlgrFamily {
                        afi: f.afi(),
                        safi: f.safi(),
                        forwarding: false,
                        stale_time,
                    })
                    .collect();
                c.capabilities
                    .push(Capability::LongLivedGracefulRestart(families));
            }
        }
        c.passive = self.passive;
        c.timing.hold_time = self.hold_time;
        c.timing.keepalive_time = self.keepalive_time;
        c.timing.send_hold = self.send_hold_time.map(|s| Duration::from_secs(s.into()));
        c.timing.connect_retry = Duration::from_secs(self.connect_retry.into());
        c.timing.idle_hold = Duration::from_secs(self.idle_hold.into());
        c.timing.idle_hold_max = Duration::from_secs(self.idle_hold_max.into());
        c
    }

    /// What the RIB needs of the peer.
    pub fn rib_config(&self) -> PeerConfig {
        let mut c = PeerConfig::new(self.address, self.asn);
        c.rr_client = self.rr_client;
        c.cluster_id = self.cluster_id;
        c.client_to_client = self.client_to_client;
        c.next_hop = self.next_hop;
        c.import = Some(self.import.policy.clone());
        c.export = Some(self.export.policy.clone());
        c.max_prefix = self.max_prefix;
        for (i, f) in Family::ALL.into_iter().enumerate() {
            if self.families.contains(f) {
                c.add_path_send[i] = self.add_path.send;
            }
        }
        c.graceful_restart = self.graceful_restart.is_some();
        c.soft_reconfiguration_inbound = self.soft_reconfiguration_inbound;
        c.local_as = self.local_as;
        c.allow_local_as = self.allow_local_as;
        c
    }

    /// The checks of received UPDATEs beyond syntax for a session with this peer that
    /// negotiated `ctx`: the first AS of AS_PATH on eBGP (`enforce_first_as`).
    pub fn update_policy(&self, ctx: &bgp_wire::SessionCtx) -> bgp_wire::UpdatePolicy {
        let mut p = ctx.policy;
        p.enforce_first_as = (self.enforce_first_as && !ctx.ibgp).then_some(self.asn);
        p
    }

    /// Where and how the session layer reaches the peer. Connection attempts time out
    /// after the connect retry time.
    pub fn session_spec(&self, speaker: &Speaker) -> SessionSpec {
        SessionSpec {
            fsm: self.fsm_config(speaker),
            peer: self.address,
            port: self.port,
            local: self.source_address,
            interface: self.interface.clone(),
            connect_timeout: Duration::from_secs(self.connect_retry.into()),
            password: self.password.clone(),
            ttl: self.ttl,
            admin_down: !self.enabled,
        }
    }
}

/// Dynamic neighbours accepted at once from one range when `limit` is not set: a
/// connection from the range takes a peer (and its memory) from the accept until its
/// session ends, so a range open to many addresses must not take connections without
/// bound. Above the nodes a reflector of a large cluster serves; FRR's default is 100,
/// BIRD has none.
pub const DEFAULT_DYNAMIC_LIMIT: u32 = 5000;

/// `[[dynamic_neighbors]]`: peers accepted from a range, configured by a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicNeighbors {
    /// The range (`fe80::/10` for an `interface` without `prefix`).
    pub prefix: IpNet,
    /// Peers are taken only from this interface (FRR's `neighbor eth0 interface`): a
    /// link-local range on a link.
    pub interface: Option<String>,
    /// The group the settings come from.
    pub group: String,
    /// The most peers at once from the range ([`DEFAULT_DYNAMIC_LIMIT`] unless set).
    pub limit: u32,
    /// The settings of every peer from the range (always passive); `address` is the
    /// range's network address, replaced by [`DynamicNeighbors::peer`].
    pub template: PeerSettings,
}

impl DynamicNeighbors {
    /// The settings of a peer at `address` (not checked against the range).
    pub fn peer(&self, address: IpAddr) -> PeerSettings {
        PeerSettings {
            address,
            interface: self.interface.clone(),
            ..self.template.clone()
        }
    }
}

/// `[mesh]`, resolved: the peers it adds are in [`crate::config::Config::peers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mesh {
    /// Every node of the mesh, ourselves included, in file order.
    pub nodes: Vec<IpAddr>,
    /// Our own addresses among them (at most one per family).
    pub local: Vec<IpAddr>,
    /// The group mesh peers take their settings from.
    pub group: Option<String>,
}
