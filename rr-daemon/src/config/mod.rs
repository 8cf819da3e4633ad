//! The daemon's configuration: a TOML file (schema in `rr-daemon/CONFIG.md`), parsed with
//! every error located at `FILE:LINE:COL: KEY`, checked, and resolved into the model the
//! speaker consumes: [`Config`], one [`PeerSettings`] per peer with its group applied and
//! its defaults filled in, and builders of [`bgp_fsm::Config`], [`rib::PeerConfig`] and
//! [`rib::RibConfig`].
//!
//! ```
//! # use rr_daemon::config::Config;
//! let text = r#"
//! [speaker]
//! asn = 65000
//! router_id = "10.0.0.1"
//!
//! [[peer]]
//! address = "10.0.0.2"
//! asn = 65000
//! rr_client = true
//! "#;
//! let cfg = Config::parse(text, "rr.toml").unwrap();
//! let peer = &cfg.peers[&"10.0.0.2".parse().unwrap()];
//! assert!(peer.rr_client);
//! // A client and no cluster_id: the router ID serves.
//! assert_eq!(cfg.speaker.cluster_id, Some("10.0.0.1".parse().unwrap()));
//! let open = peer.fsm_config(&cfg.speaker).open();
//! assert_eq!(open.asn, 65000);
//! ```
//!
//! Layout: `raw` (serde structures), `values` (value types and their checks),
//! `resolve` (names, inheritance, defaults, mesh and dynamic neighbours), `policy`
//! (`[[policy]]` onto [`rib::Policy`]), `model` (the resolved types and builders),
//! `error` (locating errors), `env` (environment overrides), `schema` (the tables and
//! keys, for documentation).

mod env;
mod error;
mod include;
mod model;
mod policy;
mod raw;
mod resolve;
mod schema;
mod values;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use rib::{Policy, RibConfig};

pub use env::Overrides;
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use model::{
    AddPath, Api, Bfd, BmpCollector, Control, DEFAULT_DYNAMIC_LIMIT, DynamicNeighbors, Fib, IpPool,
    IpipMode, Learn, LogFormat, Mesh, PeerSettings, PolicyBinding, RouteMonitoring, Secret,
    Speaker, StaticRoute, Ttl,
};
pub use schema::tables;

/// A checked, resolved configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[speaker]`; its `cluster_id` is filled in when some peer is a reflector client.
    pub speaker: Speaker,
    /// `[api]`.
    pub api: Api,
    /// `[control]`.
    pub control: Control,
    /// `[fib]`.
    pub fib: Fib,
    /// `[learn]`.
    pub learn: Learn,
    /// Every configured peer, `[[peer]]` and `[mesh]` alike, by address.
    pub peers: BTreeMap<IpAddr, PeerSettings>,
    /// `[[dynamic_neighbors]]`, in file order.
    pub dynamic_neighbors: Vec<DynamicNeighbors>,
    /// `[mesh]`, unless absent or disabled.
    pub mesh: Option<Mesh>,
    /// `[[policy]]`, by name.
    pub policies: BTreeMap<String, Arc<Policy>>,
    /// `[[route]]` and then `[[originate]]`: routes this speaker originates (announces),
    /// in file order.
    pub routes: Vec<Route>,
    /// `[[originate]]`: the node's blocks, in file order (also in `routes`).
    pub originate: Vec<Originate>,
    /// `[[bmp]]`: BMP collectors, in file order.
    pub bmp: Vec<BmpCollector>,
}

/// `[[originate]]`: one of the node's address blocks (Calico's `bird_aggr.cfg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Originate {
    /// The block, host bits cleared.
    pub prefix: ipnet::IpNet,
    /// Installed in the kernel as a blackhole route (when `[fib]` is on).
    pub blackhole: bool,
    /// Its own kernel metric (`metric`), else `[fib] metric`; with
    /// `[fib] metric_from_local_pref`, also announced as `LOCAL_PREF = 2147483647 - metric`.
    pub metric: Option<u32>,
    /// `kernel_metric`: the blackhole's metric in the kernel, whatever `metric` and
    /// `[fib]` say (BIRD 1.6 installs static routes at 0 while announcing them with
    /// Calico's LOCAL_PREF); the announcement is unchanged.
    pub kernel_metric: Option<u32>,
}

/// `[[route]]`: a route this speaker originates (a node's address block, a test prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The prefix, host bits cleared.
    pub prefix: ipnet::IpNet,
    /// Its attributes; without a next hop, each peer gets our address on its session.
    pub attrs: rib::Attrs,
}

/// How the peers of two configurations differ, by address; each list is sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Peers only in the new configuration.
    pub added: Vec<IpAddr>,
    /// Peers only in the old configuration.
    pub removed: Vec<IpAddr>,
    /// Peers in both, with different settings.
    pub changed: Vec<IpAddr>,
    /// Peers in both, with equal settings.
    pub unchanged: Vec<IpAddr>,
    /// The peers of `changed` whose change needs no new session (see
    /// [`PeerSettings::reset_key`]: policy, or what is applied to the running session or
    /// only shown, such as `description`): the speaker keeps their sessions, unless
    /// `[speaker]` changed the AS or router ID ([`Speaker::reset_key`]) or an import
    /// policy changed on a session without ROUTE-REFRESH.
    pub policy_only: Vec<IpAddr>,
    /// For each peer of `changed`, the keys that changed
    /// ([`PeerSettings::changed_keys`]).
    pub changed_keys: BTreeMap<IpAddr, Vec<&'static str>>,
}

impl Diff {
    /// No peer was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Config {
    /// Reads and resolves the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, &Overrides::default())
    }

    /// Reads and resolves the file at `path`, with `overrides` (from the environment,
    /// [`Overrides::from_env`]) in place of the file's values.
    pub fn load_with(path: impl AsRef<Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_all(path, overrides).map_err(ConfigErrors::first)
    }

    /// [`Config::load_with`], reporting every mistake of the file at once, in file order.
    pub fn load_all(path: impl AsRef<Path>, overrides: &Overrides) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            kind: ErrorKind::Io,
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_all(&text, path, overrides)
    }

    /// Resolves `text`; `path` names the file in errors, and relative `password_file`s
    /// are read from its directory.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::parse_with(text, path, &Overrides::default())
    }

    /// Resolves `text` with `overrides` in place of the file's values.
    pub fn parse_with(
        text: &str,
        path: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        Self::parse_all(text, path, overrides).map_err(ConfigErrors::first)
    }

    /// [`Config::parse_with`], reporting every mistake at once, in file order: every key
    /// that is unknown, missing or has a bad value. Checks that relate several values
    /// (names of groups and policies, duplicates) run once those pass, and stop at the
    /// first.
    pub fn parse_all(
        text: &str,
        path: impl AsRef<Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigErrors> {
        let file = path.as_ref().display().to_string();
        let assembled = include::assemble(text, path.as_ref()).map_err(ConfigErrors)?;
        let doc = match &assembled {
            Some((all, segments)) => error::Doc::parse_segments(all, file, segments.clone())?,
            None => error::Doc::parse(text, file)?,
        };
        let overrides = overrides.check(doc.file())?;
        // `[speaker]`'s AS and router ID may come from the environment instead.
        let speaker = error::KeyPath::root().key("speaker");
        let required: Vec<_> = [
            ("asn", overrides.asn.is_none()),
            ("router_id", overrides.router_id.is_none()),
        ]
        .into_iter()
        .filter(|(_, needed)| *needed)
        .map(|(key, _)| speaker.key(key))
        .collect();
        let mut raw = doc
            .deserialize_all::<raw::RawFile>(&required)
            .map_err(ConfigErrors)?;
        if let Some(id) = overrides.router_id {
            raw.speaker.router_id = Some(IpAddr::V4(id));
        }
        if let Some(asn) = overrides.asn {
            raw.speaker.asn = Some(values::Asn(asn));
        }
        if let Some(id) = overrides.cluster_id {
            raw.speaker.cluster_id = Some(id);
        }
        Ok(resolve::resolve(&doc, raw)?)
    }

    /// The configured peer at `address`.
    pub fn peer(&self, address: IpAddr) -> Option<&PeerSettings> {
        self.peers.get(&address)
    }

    /// The dynamic neighbour range an unconfigured peer at `address` falls in: the
    /// longest prefix that holds it. Configured peers come first: look them up with
    /// [`Config::peer`] before.
    pub fn dynamic_range(&self, address: IpAddr) -> Option<&DynamicNeighbors> {
        self.dynamic_range_on(address, None)
    }

    /// [`Config::dynamic_range`] for a connection that came in on `interface` (the zone of
    /// a link-local source): a range bound to an interface takes only connections from
    /// it, and is preferred to one that is not.
    pub fn dynamic_range_on(
        &self,
        address: IpAddr,
        interface: Option<&str>,
    ) -> Option<&DynamicNeighbors> {
        self.dynamic_neighbors
            .iter()
            .filter(|d| d.prefix.contains(&address))
            .filter(|d| d.interface.is_none() || d.interface.as_deref() == interface)
            .max_by_key(|d| (d.interface.is_some(), d.prefix.prefix_len()))
    }

    /// The RIB's speaker-wide settings; best-path changes are tracked when `[fib]` is
    /// enabled.
    pub fn rib_config(&self) -> RibConfig {
        let mut c = self.speaker.rib_config();
        c.track_best_changes = self.fib.enabled;
        c
    }

    /// Which peers a reload from `old` to `new` adds, removes and changes. Other sections
    /// compare with `==` (`old.speaker != new.speaker`, ...).
    pub fn diff(old: &Self, new: &Self) -> Diff {
        let mut d = Diff::default();
        for (a, p) in &new.peers {
            match old.peers.get(a) {
                None => d.added.push(*a),
                Some(o) if o == p => d.unchanged.push(*a),
                Some(o) => {
                    d.changed.push(*a);
                    d.changed_keys.insert(*a, o.changed_keys(p));
                    if o.reset_key(p).is_none() {
                        d.policy_only.push(*a);
                    }
                }
            }
        }
        d.removed = old
            .peers
            .keys()
            .filter(|a| !new.peers.contains_key(a))
            .copied()
            .collect();
        d
    }

    /// The blocks the FIB installs as blackholes (`[[originate]] blackhole = true`), each
    /// with its metric (its `kernel_metric`, else 0 with `[fib] bird16_metric`, else its
    /// `metric`, else `[fib] metric`).
    pub fn blackholes(&self) -> Vec<(ipnet::IpNet, u32)> {
        self.originate
            .iter()
            .filter(|o| o.blackhole)
            .map(|o| {
                let metric = if let Some(m) = o.kernel_metric {
                    m
                } else if self.fib.bird16_metric {
                    0
                } else {
                    o.metric.unwrap_or(self.fib.metric)
                };
                (o.prefix, metric)
            })
            .collect()
    }

    /// One line: AS, router ID, reflector role, peers, dynamic ranges, policies, the routes
    /// it originates (`[[route]]`, `[[originate]]`), its pools (`[[fib.ip_pool]]`, `[learn]
    /// pools`) and where it listens.
    pub fn summary(&self) -> String {
        let s = &self.speaker;
        let mut out = format!("AS {}, router id {}", s.asn, s.router_id);
        if let Some(c) = s.cluster_id {
            let _ = write!(out, ", route reflector (cluster id {c}");
            // Clients may be in other clusters (`cluster_id` on a peer or its group, BIRD's
            // `rr cluster id`): name those, or the line says the wrong cluster.
            let mut used: Vec<Ipv4Addr> = self
                .peers
                .values()
                .filter(|p| p.rr_client)
                .map(|p| p.cluster_id.unwrap_or(c))
                .collect();
            used.sort_unstable();
            used.dedup();
            if used.iter().any(|x| *x != c) {
                let list: Vec<String> = used.iter().map(ToString::to_string).collect();
                let _ = write!(out, "; clients' cluster ids {}", list.join(", "));
            }
            out.push(')');
        }
        let ibgp = self.peers.values().filter(|p| p.is_ibgp(s)).count();
        let clients = self.peers.values().filter(|p| p.rr_client).count();
        let _ = write!(
            out,
            "; {} peer(s) ({ibgp} iBGP, {} eBGP, {clients} rr clients",
            self.peers.len(),
            self.peers.len() - ibgp,
        );
        if let Some(m) = &self.mesh {
            let mesh = m.nodes.iter().filter(|n| !m.local.contains(n)).count();
            let _ = write!(out, ", {mesh} mesh");
        }
        let (originate, ip_pools, learn_pools) = (
            self.originate.len(),
            self.fib.ip_pools.len(),
            self.learn.pools.len(),
        );
        let _ = write!(
            out,
            "); {} dynamic ranges; {} policies; {} routes ({} [[route]], {originate} \
             [[originate]]); {} pools ({ip_pools} [[fib.ip_pool]], {learn_pools} [learn]); \
             listening on {}",
            self.dynamic_neighbors.len(),
            self.policies.len(),
            self.routes.len(),
            self.routes.len().saturating_sub(originate),
            ip_pools + learn_pools,
            match s.listen.len() {
                0 => "nothing".to_owned(),
                _ => s
                    .listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        );
        out
    }
}
