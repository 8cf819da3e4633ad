//! The pure half of the FIB: what the kernel should hold (desired) against what it holds
//! of ours (installed), and the operations that take one to the other. No I/O, no clock:
//! the shell feeds it best-path changes, originated blackholes, the start-up dump and the
//! outcome of every operation, and takes batches of operations out.
//!
//! Rules it keeps:
//! - Only routes of our own protocol number are ever touched: the installed side holds
//!   nothing else, so an operation can only name one of ours. Never a blind REPLACE that
//!   would overwrite another protocol's route of the same prefix and metric: a route of
//!   ours that changes at the same metric (the kernel's key: table, prefix, metric) is
//!   replaced in place, one atomic operation on the slot our route holds (an add there
//!   would fail with `EEXIST`; a delete and an add would leave a moment without a route,
//!   the ECMP set going from two next hops to one, say); one that moves to another metric
//!   is added at the new metric first and ours at the old one deleted after (make before
//!   break). Either way the prefix is never without a route of ours in between.
//! - Several next hops are one multipath route.
//! - Static routes ([`Reconciler::set_statics`], `[[fib.static_route]]`: BIRD's `route P
//!   via GW`, confd's route to a BGPPeer's `reachableBy` gateway) go in via their gateway
//!   as they are (no lookup: the kernel refuses a gateway it cannot reach, and the add is
//!   retried), over what BGP says for the prefix (BIRD's static routes have the higher
//!   preference); a block's blackhole goes over both.
//! - Until [`Reconciler::mark_synced`], routes adopted from the kernel that nothing
//!   desires (yet) stay: after a restart they are still forwarding, and the peers that
//!   will confirm them may not be up yet (BIRD's `persist` and kernel graceful restart).
//! - A failed operation is recorded and counted, and its prefix waits for
//!   [`Reconciler::retry_failed`]; nothing is ever fatal.
//! - Metric ([`Rules::metric_from_local_pref`], Calico 3.32): `2147483647 - LOCAL_PREF`
//!   when the best path carries LOCAL_PREF (0 for a LOCAL_PREF above 2147483647), else
//!   [`Rules::metric`]. Blocks carry their own metric.
//! - IP pools ([`Rules::pools`], the longest one holding the prefix): a pool with
//!   `install = false` keeps its routes out of the kernel (Felix owns them); IP-in-IP
//!   `always` sends every IPv4 next hop `via NH dev tunl0 onlink`, `cross-subnet` only
//!   the ones outside [`Rules::node_subnet`].
//! - Recursive gateways ([`Rules::resolve`]): any other next hop goes in via the gateway
//!   the kernel uses to reach it (itself when it is on-link). The shell looks next hops up
//!   ([`Reconciler::poll_lookups`], [`Reconciler::handle_lookup`]); a prefix whose next
//!   hop is not looked up yet waits, whatever the kernel holds for it stays meanwhile. A
//!   next hop the kernel cannot reach goes in as it is (the add fails and is retried, and
//!   [`Reconciler::retry_failed`] looks it up again); [`Reconciler::re_resolve`] looks up
//!   every next hop again and moves the routes whose gateway changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{IpPool, IpipMode};

/// The highest metric Calico maps LOCAL_PREF into (`2147483647`, `i32::MAX`).
pub const LOCAL_PREF_BASE: u32 = 2_147_483_647;

/// Calico 3.32's import rule: `krt_metric = 2147483647 - bgp_local_pref` (0 when
/// LOCAL_PREF is above 2147483647, where BIRD's signed arithmetic would wrap).
pub const fn metric_of_local_pref(local_pref: u32) -> u32 {
    LOCAL_PREF_BASE.saturating_sub(local_pref)
}

/// Calico 3.32's export rule: `bgp_local_pref = 2147483647 - krt_metric` (0 for a metric
/// above 2147483647).
pub const fn local_pref_of_metric(metric: u32) -> u32 {
    LOCAL_PREF_BASE.saturating_sub(metric)
}

/// One next hop of a kernel route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hop {
    /// The gateway.
    pub gateway: IpAddr,
    /// Through the IP-in-IP device, `onlink` (Calico's `krt_tunnel = "tunl0"`).
    pub tunnel: bool,
    /// The interface (index) of an IPv6 link-local gateway, which the kernel needs
    /// (`via fe80::2 dev eth0`; `via inet6 fe80::2 dev eth0` for an IPv4 route).
    pub dev: Option<u32>,
}

impl Hop {
    /// A plain gateway.
    pub const fn via(gateway: IpAddr) -> Self {
        Self {
            gateway,
            tunnel: false,
            dev: None,
        }
    }

    /// Through the tunnel device, on-link.
    pub const fn tunnel(gateway: IpAddr) -> Self {
        Self {
            gateway,
            tunnel: true,
            dev: None,
        }
    }

    /// A link-local gateway on interface `dev`.
    pub const fn link(gateway: IpAddr, dev: u32) -> Self {
        Self {
            gateway,
            tunnel: false,
            dev: Some(dev),
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.gateway)?;
        if let Some(d) = self.dev {
            write!(f, " dev #{d}")?;
        }
        if self.tunnel {
            f.write_str(" (tunnel, onlink)")?;
        }
        Ok(())
    }
}

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Dropped (`blackhole`): a block this node owns (Calico's `bird_aggr.cfg`).
    Blackhole,
    /// Through these next hops, sorted and without duplicates, never empty; more than one
    /// is one multipath (ECMP) route. Shared: the routes of one next hop set hold one
    /// list between them.
    Via(Arc<[Hop]>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blackhole => f.write_str("blackhole"),
            Self::Via(hops) => {
                f.write_str("via ")?;
                for (i, h) in hops.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{h}")?;
                }
                Ok(())
            }
        }
    }
}

/// How the kernel reaches a BGP next hop (`ip route get NH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Directly connected: the next hop is the gateway.
    OnLink,
    /// Through this gateway.
    Via(IpAddr),
    /// No unicast route to it (yet).
    Unreachable,
    /// An IPv6 link-local next hop, on the interface with this index (a BGP session over
    /// link-local addresses): the kernel route names the interface.
    Link(u32),
}

/// What decides the kernel form of a route, from `[fib]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Metric of routes without LOCAL_PREF (or of all, without the rule below).
    pub metric: u32,
    /// `metric = 2147483647 - LOCAL_PREF` when the best path carries LOCAL_PREF.
    pub metric_from_local_pref: bool,
    /// IP pools: tunnel mode and whether their routes are ours to install.
    pub pools: Vec<IpPool>,
    /// The node's own subnet, for `cross-subnet` pools.
    pub node_subnet: Option<IpNet>,
    /// Resolve next hops through the kernel (the shell answers lookups).
    pub resolve: bool,
}

impl Rules {
    /// Every route with `metric`, no pools, next hops as they come.
    pub fn with_metric(metric: u32) -> Self {
        Self {
            metric,
            ..Self::default()
        }
    }

    /// The rules of `[fib]`, next hops resolved through the kernel. With
    /// `bird16_metric`, every route gets metric 0: BIRD 1.6 on Calico's config installs
    /// no priority (the `krt_metric` that Calico's BGP import filter sets is a temporary
    /// attribute BIRD 1.6 drops before its kernel protocol exports the route).
    pub fn from_config(fib: &crate::config::Fib) -> Self {
        Self {
            metric: if fib.bird16_metric { 0 } else { fib.metric },
            metric_from_local_pref: fib.metric_from_local_pref && !fib.bird16_metric,
            pools: fib.ip_pools.clone(),
            node_subnet: fib.node_subnet,
            resolve: true,
        }
    }

    /// The longest pool that holds `prefix`.
    fn pool(&self, prefix: &IpNet) -> Option<&IpPool> {
        self.pools
            .iter()
            .filter(|p| p.prefix.contains(prefix))
            .max_by_key(|p| p.prefix.prefix_len())
    }

    /// Whether a route of `pool` goes to next hop `nh` through the tunnel.
    fn tunnels(&self, pool: Option<&IpPool>, nh: IpAddr) -> bool {
        let Some(pool) = pool else { return false };
        nh.is_ipv4()
            && match pool.ipip {
                IpipMode::Never => false,
                IpipMode::Always => true,
                IpipMode::CrossSubnet => !self.node_subnet.is_some_and(|s| s.contains(&nh)),
            }
    }
}

/// A best path from BGP.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Learned {
    /// Shared with every prefix of the same next hops ([`Interner`]).
    next_hops: Arc<[IpAddr]>,
    local_pref: Option<u32>,
}

/// One shared copy of each list in use: 100,000 routes through one gateway (or one ECMP
/// pair) hold one list between them instead of an allocation each. Lists no route holds
/// any more are dropped whenever the set has doubled since the last sweep.
#[derive(Debug)]
struct Interner<T> {
    set: HashSet<Arc<[T]>>,
    swept_at: usize,
}

impl<T: Eq + Hash + Clone> Interner<T> {
    fn new() -> Self {
        Self {
            set: HashSet::new(),
            swept_at: 0,
        }
    }

    /// The shared copy of `items`.
    fn get(&mut self, items: &[T]) -> Arc<[T]> {
        if let Some(a) = self.set.get(items) {
            return Arc::clone(a);
        }
        if self.set.len() >= 2 * self.swept_at.max(32) {
            // Only the set holds these: no route uses them.
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.set.shrink_to_fit();
            self.swept_at = self.set.len();
        }
        let a: Arc<[T]> = items.into();
        self.set.insert(Arc::clone(&a));
        a
    }
}

/// What a prefix should be, as far as is known.
enum Want {
    Route(KernelRoute),
    Nothing,
    /// A next hop is not looked up yet.
    Waiting,
}

/// One kernel route of ours (our table, our protocol number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRoute {
    /// The destination, host bits clear.
    pub prefix: IpNet,
    /// Where it goes.
    pub target: Target,
    /// Its metric (the kernel's priority).
    pub metric: u32,
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} metric {}", self.prefix, self.target, self.metric)
    }
}

/// One netlink operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add this route (`NLM_F_CREATE | NLM_F_EXCL`: never replaces anything).
    Add(KernelRoute),
    /// Put this route in the place of ours of the same prefix and metric
    /// (`NLM_F_CREATE | NLM_F_REPLACE`), atomically: only ever sent for a slot that a
    /// route of ours holds.
    Replace(KernelRoute),
    /// Delete this route of ours (matched by prefix, protocol, table and metric).
    Delete(KernelRoute),
    /// Delete this route of ours once its prefix's route at another metric was added (the
    /// same netlink request as [`Op::Delete`]; a failure of that add stays recorded).
    Retire(KernelRoute),
}

impl Op {
    /// The route it names.
    pub const fn route(&self) -> &KernelRoute {
        match self {
            Self::Add(r) | Self::Replace(r) | Self::Delete(r) | Self::Retire(r) => r,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(r) => write!(f, "add {r}"),
            Self::Replace(r) => write!(f, "replace ours with {r}"),
            Self::Delete(r) => write!(f, "delete {r}"),
            Self::Retire(r) => write!(f, "delete the former {r}"),
        }
    }
}

/// How an operation failed, as far as reconciling cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// `ESRCH`/`ENOENT` on a delete: the route is gone already (someone removed it).
    NotFound,
    /// Anything else (`EEXIST`: a route of another protocol holds the prefix and metric;
    /// `ENETUNREACH`: the gateway is not reachable yet; ...), with the system's error.
    Failed(String),
}

/// A batch of operations, in three phases that the shell runs one after the other (each
/// phase's operations concurrently: one prefix has at most one operation in a phase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// First: routes of ours whose prefix goes from the kernel.
    pub deletes: Vec<KernelRoute>,
    /// Then: new routes, also the new form of a route of ours that moves to another
    /// metric ([`Batch::retires`] names the old one).
    pub adds: Vec<KernelRoute>,
    /// With the adds: routes of ours changed in place (same prefix and metric).
    pub replaces: Vec<KernelRoute>,
    /// Last: routes of ours at the metric their prefix left, once the new one is in.
    pub retires: Vec<KernelRoute>,
}

impl Batch {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Operations in it.
    pub fn len(&self) -> usize {
        self.deletes.len() + self.adds.len() + self.replaces.len() + self.retires.len()
    }

    /// Every operation, in the order the phases run.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.deletes
            .iter()
            .cloned()
            .map(Op::Delete)
            .chain(self.adds.iter().cloned().map(Op::Add))
            .chain(self.replaces.iter().cloned().map(Op::Replace))
            .chain(self.retires.iter().cloned().map(Op::Retire))
    }

    fn routes(&self) -> impl Iterator<Item = &KernelRoute> {
        self.deletes
            .iter()
            .chain(&self.adds)
            .chain(&self.replaces)
            .chain(&self.retires)
    }
}

/// Counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibStats {
    /// Routes of ours in the kernel now (as far as we know).
    pub installed: usize,
    /// Prefixes we want in the kernel.
    pub desired: usize,
    /// Successful adds.
    pub added: u64,
    /// Successful deletes (a delete of a route already gone counts too).
    pub deleted: u64,
    /// Failed operations, in all.
    pub errors: u64,
    /// Prefixes whose last operation failed, waiting for a retry.
    pub failing: usize,
    /// Routes adopted from the kernel at start.
    pub adopted: usize,
}

/// The reconciler. See the module documentation.
#[derive(Debug)]
pub struct Reconciler {
    rules: Rules,
    /// Best paths from BGP that are not ours to originate.
    learned: BTreeMap<IpNet, Learned>,
    /// Our blocks with their metrics, installed as blackholes whatever BGP says.
    blackholes: BTreeMap<IpNet, u32>,
    /// Static routes: gateway and metric, installed whatever BGP says.
    statics: BTreeMap<IpNet, (IpAddr, u32)>,
    /// How the kernel reaches each next hop looked up.
    resolved: BTreeMap<IpAddr, Resolution>,
    /// Next hops to look up (again), whatever the dirty prefixes need.
    to_look_up: BTreeSet<IpAddr>,
    /// Next hops handed out for a lookup, not yet answered.
    looking_up: BTreeSet<IpAddr>,
    /// Ours in the kernel.
    installed: BTreeMap<IpNet, KernelRoute>,
    /// Installed routes adopted at start that nothing has desired since: kept until the
    /// initial sync is over. A route desired once (or installed by us) is not in here,
    /// and goes as soon as it is no longer desired.
    unconfirmed: BTreeSet<IpNet>,
    /// Prefixes whose desired and installed states may differ.
    dirty: BTreeSet<IpNet>,
    /// Prefixes with operations handed out and not yet reported.
    in_flight: BTreeSet<IpNet>,
    /// Prefixes whose last operation failed, with the last error.
    failed: BTreeMap<IpNet, String>,
    /// Shared next hop lists of `learned`.
    next_hop_sets: Interner<IpAddr>,
    /// Shared hop lists of `installed`.
    hop_sets: Interner<Hop>,
    synced: bool,
    stats: FibStats,
}

impl Reconciler {
    /// A reconciler that installs every route with `metric` via its BGP next hops.
    pub fn new(metric: u32) -> Self {
        Self::with_rules(Rules::with_metric(metric))
    }

    /// A reconciler following `rules`.
    pub fn with_rules(rules: Rules) -> Self {
        Self {
            rules,
            learned: BTreeMap::new(),
            blackholes: BTreeMap::new(),
            statics: BTreeMap::new(),
            resolved: BTreeMap::new(),
            to_look_up: BTreeSet::new(),
            looking_up: BTreeSet::new(),
            installed: BTreeMap::new(),
            unconfirmed: BTreeSet::new(),
            dirty: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            failed: BTreeMap::new(),
            next_hop_sets: Interner::new(),
            hop_sets: Interner::new(),
            synced: false,
            stats: FibStats::default(),
        }
    }

    /// Takes what the kernel holds of ours at start (the dump of our table filtered by our
    /// protocol number). Each is kept until the initial sync is over; the ones that are
    /// desired as they are cost no operation at all.
    pub fn adopt(&mut self, routes: impl IntoIterator<Item = KernelRoute>) {
        for mut r in routes {
            let p = r.prefix;
            if let Target::Via(hops) = &r.target {
                r.target = Target::Via(self.hop_sets.get(hops));
            }
            if let Some(old) = self.installed.insert(p, r) {
                // Two of ours for one prefix (different metrics): keep one in view, the
                // other stays in the kernel untouched; rare and harmless.
                let _ = old;
            } else {
                self.stats.adopted += 1;
            }
            self.unconfirmed.insert(p);
            self.dirty.insert(p);
        }
    }

    /// A best-path change from the RIB: `next_hops` empty means no route (gone, or only
    /// one this speaker originates, which BGP never installs: see
    /// [`Reconciler::set_blackholes`]); `local_pref` is the best path's LOCAL_PREF if it
    /// carries one.
    pub fn handle_best_change(
        &mut self,
        prefix: IpNet,
        next_hops: &[IpAddr],
        local: bool,
        local_pref: Option<u32>,
    ) {
        let prefix = prefix.trunc();
        let mut gws: Vec<IpAddr> = next_hops
            .iter()
            .copied()
            .filter(|g| g.is_ipv4() == prefix.addr().is_ipv4() || g.is_ipv6())
            .collect();
        gws.sort_unstable();
        gws.dedup();
        let changed = if local || gws.is_empty() {
            self.learned.remove(&prefix).is_some()
        } else if self
            .learned
            .get(&prefix)
            .is_some_and(|l| *l.next_hops == *gws && l.local_pref == local_pref)
        {
            false
        } else {
            let new = Learned {
                next_hops: self.next_hop_sets.get(&gws),
                local_pref,
            };
            self.learned.insert(prefix, new);
            true
        };
        if changed {
            self.dirty.insert(prefix);
        }
    }

    /// The blocks to install as blackholes (`[[originate]] blackhole = true`) with their
    /// metrics, all of them: ones no longer listed go (or fall back to what BGP says).
    pub fn set_blackholes(&mut self, blocks: impl IntoIterator<Item = (IpNet, u32)>) {
        let new: BTreeMap<IpNet, u32> = blocks.into_iter().map(|(p, m)| (p.trunc(), m)).collect();
        for (p, m) in self.blackholes.iter().chain(&new) {
            if self.blackholes.get(p) != Some(m) || new.get(p) != Some(m) {
                self.dirty.insert(*p);
            }
        }
        self.blackholes = new;
    }

    /// The static routes (`[[fib.static_route]]`): prefix, gateway and metric, all of
    /// them: ones no longer listed go (or fall back to what BGP says).
    pub fn set_statics(&mut self, routes: impl IntoIterator<Item = (IpNet, IpAddr, u32)>) {
        let new: BTreeMap<IpNet, (IpAddr, u32)> = routes
            .into_iter()
            .map(|(p, g, m)| (p.trunc(), (g, m)))
            .collect();
        for (p, v) in self.statics.iter().chain(&new) {
            if self.statics.get(p) != Some(v) || new.get(p) != Some(v) {
                self.dirty.insert(*p);
            }
        }
        self.statics = new;
    }

    /// The rules changed (a reload of `[fib]`): every prefix is looked at again, and the
    /// routes whose kernel form changed move (metric, tunnel, pools), the others cost
    /// nothing. Returns whether anything changed.
    pub fn set_rules(&mut self, rules: Rules) -> bool {
        if rules == self.rules {
            return false;
        }
        self.rules = rules;
        self.dirty.extend(self.learned.keys().copied());
        self.dirty.extend(self.blackholes.keys().copied());
        self.dirty.extend(self.statics.keys().copied());
        self.dirty.extend(self.installed.keys().copied());
        true
    }

    /// The rules in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Forgets every route of ours in the kernel and returns them (the shell removes them
    /// itself: the table or the protocol number changed); what is desired is installed
    /// afresh. Call between batches (nothing in flight).
    pub fn forget_installed(&mut self) -> Vec<KernelRoute> {
        debug_assert!(self.in_flight.is_empty());
        self.unconfirmed.clear();
        self.failed.clear();
        let old = std::mem::take(&mut self.installed);
        self.dirty.extend(old.keys().copied());
        self.dirty.extend(self.learned.keys().copied());
        self.dirty.extend(self.blackholes.keys().copied());
        self.dirty.extend(self.statics.keys().copied());
        old.into_values().collect()
    }

    /// The first full desired set is known: adopted routes that nothing desires are stale
    /// now, and go with the next batches.
    pub fn mark_synced(&mut self) {
        if !self.synced {
            self.synced = true;
            self.dirty.extend(std::mem::take(&mut self.unconfirmed));
        }
    }

    /// Whether [`Reconciler::mark_synced`] was called.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Puts every failed prefix back to work (the shell calls it now and then), and
    /// looks up again the next hops the kernel could not reach.
    pub fn retry_failed(&mut self) {
        self.dirty.extend(self.failed.keys().copied());
        self.to_look_up.extend(
            self.resolved
                .iter()
                .filter(|(_, r)| **r == Resolution::Unreachable)
                .map(|(nh, _)| *nh),
        );
    }

    /// Looks up every next hop in use again (the shell calls it now and then): routes
    /// whose gateway changed move, the others cost nothing.
    pub fn re_resolve(&mut self) {
        self.to_look_up.extend(self.resolved.keys().copied());
    }

    /// Next hops to look up now: each must be answered with [`Reconciler::handle_lookup`].
    pub fn poll_lookups(&mut self) -> Vec<IpAddr> {
        let mut out: BTreeSet<IpAddr> = std::mem::take(&mut self.to_look_up);
        if self.rules.resolve {
            for p in &self.dirty {
                let Some(l) = self.learned.get(p) else {
                    continue;
                };
                let pool = self.rules.pool(p);
                for nh in l.next_hops.iter() {
                    if !self.rules.tunnels(pool, *nh) && !self.resolved.contains_key(nh) {
                        out.insert(*nh);
                    }
                }
            }
        }
        out.retain(|nh| !self.looking_up.contains(nh));
        self.looking_up.extend(&out);
        out.into_iter().collect()
    }

    /// Whether [`Reconciler::poll_lookups`] would return something.
    pub fn has_lookups(&self) -> bool {
        self.to_look_up
            .iter()
            .any(|nh| !self.looking_up.contains(nh))
            || self.waiting().next().is_some()
    }

    /// Next hops of dirty prefixes that are not looked up yet.
    fn waiting(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.dirty
            .iter()
            .filter(|_| self.rules.resolve)
            .filter_map(|p| Some((p, self.learned.get(p)?)))
            .flat_map(move |(p, l)| {
                let pool = self.rules.pool(p);
                l.next_hops
                    .iter()
                    .copied()
                    .filter(move |nh| !self.rules.tunnels(pool, *nh))
            })
            .filter(|nh| !self.resolved.contains_key(nh) && !self.looking_up.contains(nh))
    }

    /// How the kernel reaches `next_hop` (the answer to a lookup). A change moves every
    /// learned route that uses it.
    pub fn handle_lookup(&mut self, next_hop: IpAddr, resolution: Resolution) {
        self.looking_up.remove(&next_hop);
        let old = self.resolved.insert(next_hop, resolution);
        if old.is_some_and(|o| o != resolution) {
            for (p, l) in &self.learned {
                if l.next_hops.contains(&next_hop) {
                    self.dirty.insert(*p);
                }
            }
        }
    }

    /// What `prefix` should be in the kernel (`None` also while a next hop of it is not
    /// looked up yet).
    pub fn desired(&self, prefix: &IpNet) -> Option<KernelRoute> {
        match self.want(prefix) {
            Want::Route(r) => Some(r),
            Want::Nothing | Want::Waiting => None,
        }
    }

    fn want(&self, prefix: &IpNet) -> Want {
        if let Some(m) = self.blackholes.get(prefix) {
            return Want::Route(KernelRoute {
                prefix: *prefix,
                target: Target::Blackhole,
                metric: *m,
            });
        }
        if let Some((gw, m)) = self.statics.get(prefix) {
            return Want::Route(KernelRoute {
                prefix: *prefix,
                target: Target::Via(Arc::from([Hop::via(*gw)])),
                metric: *m,
            });
        }
        let Some(l) = self.learned.get(prefix) else {
            return Want::Nothing;
        };
        let pool = self.rules.pool(prefix);
        if pool.is_some_and(|p| !p.install) {
            return Want::Nothing;
        }
        let mut hops = Vec::with_capacity(l.next_hops.len());
        for nh in l.next_hops.iter() {
            let hop = if self.rules.tunnels(pool, *nh) {
                Hop::tunnel(*nh)
            } else if self.rules.resolve {
                match self.resolved.get(nh) {
                    None => return Want::Waiting,
                    Some(Resolution::Via(g)) if g.is_ipv4() == nh.is_ipv4() => Hop::via(*g),
                    Some(Resolution::Link(dev)) => Hop::link(*nh, *dev),
                    Some(_) => Hop::via(*nh),
                }
            } else {
                Hop::via(*nh)
            };
            hops.push(hop);
        }
        hops.sort_unstable();
        hops.dedup();
        let metric = match l.local_pref {
            Some(lp) if self.rules.metric_from_local_pref => metric_of_local_pref(lp),
            _ => self.rules.metric,
        };
        Want::Route(KernelRoute {
            prefix: *prefix,
            target: Target::Via(hops.into()),
            metric,
        })
    }

    /// Whether there is work: [`Reconciler::poll_batch`] would return something.
    pub fn has_work(&self) -> bool {
        self.dirty
            .iter()
            .any(|p| !self.in_flight.contains(p) && !matches!(self.want(p), Want::Waiting))
    }

    /// Up to about `max` operations for prefixes whose state differs; every one must be
    /// reported back with [`Reconciler::handle_result`]. A prefix with operations in
    /// flight waits for their results.
    pub fn poll_batch(&mut self, max: usize) -> Batch {
        let mut batch = Batch::default();
        let mut done = Vec::new();
        for p in &self.dirty {
            if batch.len() >= max {
                break;
            }
            if self.in_flight.contains(p) {
                continue;
            }
            let want = match self.want(p) {
                // Stays dirty until its next hops are looked up.
                Want::Waiting => continue,
                Want::Route(mut r) => {
                    if let Target::Via(hops) = &r.target {
                        r.target = Target::Via(self.hop_sets.get(hops));
                    }
                    Some(r)
                }
                Want::Nothing => None,
            };
            done.push(*p);
            if want.is_some() {
                self.unconfirmed.remove(p);
            }
            let have = self.installed.get(p);
            match (want, have) {
                (Some(w), Some(h)) if w == *h => {}
                // The slot is ours: change it in place.
                (Some(w), Some(h)) if w.metric == h.metric => batch.replaces.push(w),
                // Make before break.
                (Some(w), Some(h)) => {
                    batch.retires.push(h.clone());
                    batch.adds.push(w);
                }
                (Some(w), None) => batch.adds.push(w),
                (None, Some(h)) if self.synced || !self.unconfirmed.contains(p) => {
                    batch.deletes.push(h.clone());
                }
                // Adopted and not (yet) desired: kept until the initial sync is over.
                (None, _) => {}
            }
        }
        for p in done {
            self.dirty.remove(&p);
        }
        for r in batch.routes() {
            self.in_flight.insert(r.prefix);
        }
        batch
    }

    /// The outcome of one operation of a batch, reported in the order of the phases
    /// ([`Batch::ops`]).
    pub fn handle_result(&mut self, op: &Op, result: Result<(), OpError>) {
        let p = op.route().prefix;
        match (op, result) {
            (Op::Add(r) | Op::Replace(r), Ok(())) => {
                self.installed.insert(p, r.clone());
                self.failed.remove(&p);
                self.stats.added += 1;
            }
            (Op::Delete(r), Ok(()) | Err(OpError::NotFound)) => {
                if self.installed.get(&p) == Some(r) {
                    self.installed.remove(&p);
                }
                self.failed.remove(&p);
                self.stats.deleted += 1;
            }
            (Op::Retire(r), Ok(()) | Err(OpError::NotFound)) => {
                if self.installed.get(&p) == Some(r) {
                    // The add at the new metric failed: the prefix stays failing.
                    self.installed.remove(&p);
                }
                self.stats.deleted += 1;
            }
            (_, Err(e)) => {
                self.stats.errors += 1;
                let msg = match e {
                    OpError::NotFound => "no such route".to_owned(),
                    OpError::Failed(m) => m,
                };
                self.failed.insert(p, msg);
            }
        }
    }

    /// Marks the batch's prefixes as settled: call once every operation of the batch was
    /// reported. A prefix that changed meanwhile is still dirty and goes out again.
    pub fn batch_done(&mut self, batch: &Batch) {
        for r in batch.routes() {
            self.in_flight.remove(&r.prefix);
        }
    }

    /// The last error of each prefix that is failing.
    pub fn failures(&self) -> impl Iterator<Item = (&IpNet, &str)> {
        self.failed.iter().map(|(p, e)| (p, e.as_str()))
    }

    /// Counters.
    pub fn stats(&self) -> FibStats {
        let desired = self.learned.len()
            + self
                .blackholes
                .keys()
                .chain(
                    self.statics
                        .keys()
                        .filter(|p| !self.blackholes.contains_key(p)),
                )
                .filter(|p| !self.learned.contains_key(p))
                .count();
        FibStats {
            installed: self.installed.len(),
            desired,
            failing: self.failed.len(),
            ..self.stats
        }
    }

    /// Ours in the kernel, as far as we know.
    pub fn installed(&self) -> impl Iterator<Item = &KernelRoute> {
        self.installed.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn via(p: &str, gws: &[&str], metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: net(p),
            target: Target::Via(gws.iter().map(|g| Hop::via(ip(g))).collect()),
            metric,
        }
    }

    fn blackhole(p: &str, metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: net(p),
            target: Target::Blackhole,
            metric,
        }
    }

    /// Reports every operation of `b` as done, deletes first; returns them.
    fn apply_ok(r: &mut Reconciler, b: &Batch) -> Vec<Op> {
        let ops: Vec<Op> = b.ops().collect();
        for op in &ops {
            r.handle_result(op, Ok(()));
        }
        r.batch_done(b);
        ops
    }

    /// Runs batches to the end, every operation succeeding; returns them all.
    fn run_ok(r: &mut Reconciler) -> Vec<Op> {
        let mut ops = Vec::new();
        while r.has_work() {
            let b = r.poll_batch(1000);
            ops.extend(apply_ok(r, &b));
        }
        ops
    }

    #[test]
    fn test_best_change_adds_route_with_metric() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("192.168.0.64/26"), &[ip("10.0.0.2")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("192.168.0.64/26", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().installed, 1);
        assert!(!r.has_work());
    }

    #[test]
    fn test_ecmp_is_one_multipath_route() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(
            net("10.1.0.0/24"),
            &[ip("10.0.0.3"), ip("10.0.0.2"), ip("10.0.0.3")],
            false,
            None,
        );
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.2", "10.0.0.3"], 1024))]
        );
    }

    #[test]
    fn test_change_replaces_only_our_own_slot() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        // A new prefix is an add (EXCL): never a replace of what another program holds.
        let b = r.poll_batch(10);
        assert_eq!(b.adds, vec![via("10.1.0.0/24", &["10.0.0.2"], 1024)]);
        assert!(b.replaces.is_empty() && b.deletes.is_empty());
        // It failed (another protocol's route at that slot): the retry adds again.
        r.handle_result(
            &Op::Add(b.adds[0].clone()),
            Err(OpError::Failed("File exists".into())),
        );
        r.batch_done(&b);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.3"], 1024))]
        );
        // Ours holds the slot now: a change there replaces it in place.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        let b = r.poll_batch(10);
        assert!(b.deletes.is_empty() && b.adds.is_empty() && b.retires.is_empty());
        assert_eq!(b.replaces, vec![via("10.1.0.0/24", &["10.0.0.2"], 1024)]);
    }

    #[test]
    fn test_withdraw_deletes_ours() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        run_ok(&mut r);
        r.handle_best_change(net("10.1.0.0/24"), &[], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Delete(via("10.1.0.0/24", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().installed, 0);
    }

    #[test]
    fn test_local_best_is_not_installed_but_blackhole_is() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("192.168.0.0/26"), &[], true, None);
        assert!(run_ok(&mut r).is_empty());
        r.set_blackholes([(net("192.168.0.0/26"), 1024)]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(blackhole("192.168.0.0/26", 1024))]
        );
        // A peer's path for our own block does not displace the blackhole.
        r.handle_best_change(net("192.168.0.0/26"), &[ip("10.0.0.2")], false, None);
        assert!(run_ok(&mut r).is_empty());
        // Dropping the block falls back to what BGP says.
        r.set_blackholes([]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("192.168.0.0/26", &["10.0.0.2"], 1024))]
        );
    }

    #[test]
    fn test_adopted_routes_kept_until_synced_then_stale_removed() {
        let mut r = Reconciler::new(1024);
        let live = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        let stale = via("10.2.0.0/24", &["10.0.0.2"], 1024);
        let hole = blackhole("192.168.0.0/26", 1024);
        r.adopt([live.clone(), stale.clone(), hole.clone()]);
        r.set_blackholes([(net("192.168.0.0/26"), 1024)]);
        // Before the sync: nothing is touched, the blackhole is already right.
        assert!(run_ok(&mut r).is_empty());
        // The live one comes back as it was: no operation at all.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        assert!(run_ok(&mut r).is_empty());
        r.mark_synced();
        assert_eq!(run_ok(&mut r), vec![Op::Delete(stale)]);
        assert_eq!(r.stats().adopted, 3);
        assert_eq!(r.stats().installed, 2);
    }

    #[test]
    fn test_adopted_route_confirmed_then_withdrawn_goes_before_sync() {
        let mut r = Reconciler::new(1024);
        let live = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([live.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        assert!(run_ok(&mut r).is_empty());
        r.handle_best_change(net("10.1.0.0/24"), &[], false, None);
        assert_eq!(run_ok(&mut r), vec![Op::Delete(live)]);
        assert!(!r.synced());
    }

    #[test]
    fn test_adopted_route_with_other_gateway_is_replaced_before_sync() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([old.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("10.1.0.0/24", &["10.0.0.3"], 1024))]
        );
    }

    #[test]
    fn test_adopted_route_with_other_metric_is_replaced() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 100);
        r.adopt([old.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 1024)),
                Op::Retire(old)
            ]
        );
    }

    #[test]
    fn test_error_recorded_counted_and_retried() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        r.handle_best_change(net("10.2.0.0/24"), &[ip("10.0.0.2")], false, None);
        let b = r.poll_batch(10);
        assert_eq!(b.adds.len(), 2);
        let bad = Op::Add(b.adds[0].clone());
        r.handle_result(
            &bad,
            Err(OpError::Failed("File exists (os error 17)".into())),
        );
        r.handle_result(&Op::Add(b.adds[1].clone()), Ok(()));
        r.batch_done(&b);
        assert!(!r.has_work());
        let s = r.stats();
        assert_eq!((s.errors, s.failing, s.installed), (1, 1, 1));
        assert_eq!(
            r.failures().collect::<Vec<_>>(),
            vec![(&net("10.1.0.0/24"), "File exists (os error 17)")]
        );
        r.retry_failed();
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().failing, 0);
        assert_eq!(r.stats().installed, 2);
    }

    #[test]
    fn test_failed_retry_after_withdraw_does_nothing() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        let b = r.poll_batch(10);
        r.handle_result(
            &Op::Add(b.adds[0].clone()),
            Err(OpError::Failed("x".into())),
        );
        r.batch_done(&b);
        r.handle_best_change(net("10.1.0.0/24"), &[], false, None);
        r.retry_failed();
        assert!(run_ok(&mut r).is_empty());
    }

    #[test]
    fn test_delete_of_missing_route_counts_as_gone() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([old.clone()]);
        r.mark_synced();
        let b = r.poll_batch(10);
        r.handle_result(&Op::Delete(old), Err(OpError::NotFound));
        r.batch_done(&b);
        assert_eq!(r.stats().installed, 0);
        assert_eq!(r.stats().errors, 0);
    }

    #[test]
    fn test_in_flight_prefix_waits_and_coalesces() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        let b = r.poll_batch(10);
        // Changes while the add is in flight: nothing more for that prefix yet.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false, None);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.4")], false, None);
        assert!(!r.has_work());
        assert!(r.poll_batch(10).is_empty());
        r.handle_result(&Op::Add(b.adds[0].clone()), Ok(()));
        r.batch_done(&b);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("10.1.0.0/24", &["10.0.0.4"], 1024))]
        );
    }

    #[test]
    fn test_batches_are_bounded() {
        let mut r = Reconciler::new(1024);
        for i in 0..1000u32 {
            let p = IpNet::new(IpAddr::from((10u32 << 24 | i << 8).to_be_bytes()), 24).unwrap();
            r.handle_best_change(p, &[ip("10.0.0.2")], false, None);
        }
        let b = r.poll_batch(256);
        assert_eq!(b.len(), 256);
        apply_ok(&mut r, &b);
        assert_eq!(run_ok(&mut r).len(), 1000 - 256);
        assert_eq!(r.stats().installed, 1000);
    }

    #[test]
    fn test_ecmp_two_paths_then_one_is_replaced_in_place() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(
            net("fd00:200::/64"),
            &[ip("fd00::2"), ip("fd00::3")],
            false,
            None,
        );
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("fd00:200::/64", &["fd00::2", "fd00::3"], 1024))]
        );
        r.handle_best_change(net("fd00:200::/64"), &[ip("fd00::3")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("fd00:200::/64", &["fd00::3"], 1024))]
        );
    }

    #[test]
    fn test_failed_add_at_new_metric_stays_failing_after_retire() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 100);
        r.adopt([old.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        let b = r.poll_batch(10);
        let new = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        assert_eq!(
            (b.adds.clone(), b.retires.clone()),
            (vec![new.clone()], vec![old.clone()])
        );
        r.handle_result(
            &Op::Add(new.clone()),
            Err(OpError::Failed("File exists".into())),
        );
        r.handle_result(&Op::Retire(old), Ok(()));
        r.batch_done(&b);
        let s = r.stats();
        assert_eq!((s.installed, s.failing), (0, 1));
        r.retry_failed();
        assert_eq!(run_ok(&mut r), vec![Op::Add(new)]);
        assert_eq!(r.stats().failing, 0);
    }

    #[test]
    fn test_new_rules_move_routes_and_forget_installed_reinstalls() {
        let mut r = Reconciler::new(1024);
        r.set_blackholes([(net("192.168.0.0/26"), 1024)]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, None);
        r.handle_best_change(net("10.2.0.0/24"), &[ip("10.0.0.2")], false, Some(100));
        run_ok(&mut r);
        // Same rules: nothing.
        assert!(!r.set_rules(Rules::with_metric(1024)));
        assert!(run_ok(&mut r).is_empty());
        // A new metric: the BGP routes move, make before break; the block keeps its own.
        assert!(r.set_rules(Rules::with_metric(50)));
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 50)),
                Op::Add(via("10.2.0.0/24", &["10.0.0.2"], 50)),
                Op::Retire(via("10.1.0.0/24", &["10.0.0.2"], 1024)),
                Op::Retire(via("10.2.0.0/24", &["10.0.0.2"], 1024)),
            ]
        );
        // A pool left to Felix: its route goes.
        assert!(r.set_rules(Rules {
            pools: vec![pool("10.2.0.0/16", IpipMode::Never, false)],
            ..Rules::with_metric(50)
        }));
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Delete(via("10.2.0.0/24", &["10.0.0.2"], 50))]
        );
        // Another table: the shell removes the old ones, everything is added again.
        let mut old = r.forget_installed();
        old.sort();
        assert_eq!(
            old,
            vec![
                via("10.1.0.0/24", &["10.0.0.2"], 50),
                blackhole("192.168.0.0/26", 1024),
            ]
        );
        assert_eq!(r.stats().installed, 0);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 50)),
                Op::Add(blackhole("192.168.0.0/26", 1024)),
            ]
        );
    }

    #[test]
    fn test_routes_of_one_next_hop_share_one_list() {
        let mut r = Reconciler::new(1024);
        for i in 0..1000u32 {
            let p = IpNet::new(IpAddr::from((10u32 << 24 | i << 8).to_be_bytes()), 24).unwrap();
            r.handle_best_change(p, &[ip("10.0.0.2")], false, None);
        }
        run_ok(&mut r);
        let lists: HashSet<*const Hop> = r
            .installed()
            .map(|k| match &k.target {
                Target::Via(h) => h.as_ptr(),
                Target::Blackhole => std::ptr::null(),
            })
            .collect();
        assert_eq!(lists.len(), 1);
        // Lists nobody holds go at a sweep.
        let mut i = Interner::new();
        for n in 0..1000u16 {
            let _ = i.get(&[n]);
        }
        let kept = i.get(&[7]);
        assert!(i.set.len() < 100, "{}", i.set.len());
        assert!(Arc::ptr_eq(&kept, &i.get(&[7])));
    }

    #[test]
    fn test_ipv6_route_with_ipv6_gateway() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("fd00:1::/64"), &[ip("fd00::2")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("fd00:1::/64", &["fd00::2"], 1024))]
        );
    }

    #[test]
    fn test_ipv6_route_with_ipv4_gateway_is_not_installed() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("fd00:1::/64"), &[ip("10.0.0.2")], false, None);
        assert!(run_ok(&mut r).is_empty());
    }

    fn pool(prefix: &str, ipip: IpipMode, install: bool) -> IpPool {
        IpPool {
            prefix: net(prefix),
            ipip,
            install,
        }
    }

    fn with_hops(p: &str, hops: &[Hop], metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: net(p),
            target: Target::Via(hops.into()),
            metric,
        }
    }

    /// Runs lookups and batches to the end, every lookup answered by `kernel`, every
    /// operation succeeding; returns the operations.
    fn run_resolving(r: &mut Reconciler, kernel: impl Fn(IpAddr) -> Resolution) -> Vec<Op> {
        let mut ops = Vec::new();
        while r.has_lookups() || r.has_work() {
            for nh in r.poll_lookups() {
                r.handle_lookup(nh, kernel(nh));
            }
            let b = r.poll_batch(1000);
            ops.extend(apply_ok(r, &b));
        }
        ops
    }

    #[test]
    fn test_bird16_metric_installs_everything_with_metric_zero() {
        // BIRD 1.6 on Calico's config: no priority on any route, whatever LOCAL_PREF says.
        let fib = crate::config::Fib {
            enabled: true,
            table: 254,
            protocol: 12,
            metric: 1024,
            metric_from_local_pref: true,
            bird16_metric: true,
            node_subnet: None,
            tunnel_device: "tunl0".into(),
            ip_pools: Vec::new(),
            static_routes: vec![crate::config::StaticRoute {
                prefix: net("10.225.0.4/32"),
                via: ip("10.224.0.1"),
                metric: None,
            }],
        };
        assert_eq!(
            fib.statics(),
            [(net("10.225.0.4/32"), ip("10.224.0.1"), 0)],
            "BIRD 1.6's static routes carry no metric"
        );
        let mut r = Reconciler::with_rules(Rules {
            resolve: false,
            ..Rules::from_config(&fib)
        });
        r.set_blackholes([(net("192.168.0.0/26"), 0)]);
        r.handle_best_change(
            net("192.168.0.64/26"),
            &[ip("10.0.0.2")],
            false,
            Some(2_147_482_623),
        );
        r.handle_best_change(net("10.3.0.0/24"), &[ip("10.0.0.2")], false, None);
        let mut ops = run_ok(&mut r);
        ops.sort_by_key(|o| format!("{o:?}"));
        let mut want = vec![
            Op::Add(blackhole("192.168.0.0/26", 0)),
            Op::Add(via("192.168.0.64/26", &["10.0.0.2"], 0)),
            Op::Add(via("10.3.0.0/24", &["10.0.0.2"], 0)),
        ];
        want.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(ops, want);
    }

    #[test]
    fn test_metric_follows_local_pref() {
        let mut r = Reconciler::with_rules(Rules {
            metric_from_local_pref: true,
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, Some(200));
        // Calico's default: LOCAL_PREF 2147482623 is metric 1024.
        r.handle_best_change(
            net("10.2.0.0/24"),
            &[ip("10.0.0.2")],
            false,
            Some(2_147_482_623),
        );
        // No LOCAL_PREF (eBGP): the configured metric.
        r.handle_best_change(net("10.3.0.0/24"), &[ip("10.0.0.2")], false, None);
        // Above 2147483647: 0, not a wrapped value.
        r.handle_best_change(net("10.4.0.0/24"), &[ip("10.0.0.2")], false, Some(u32::MAX));
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 2_147_483_447)),
                Op::Add(via("10.2.0.0/24", &["10.0.0.2"], 1024)),
                Op::Add(via("10.3.0.0/24", &["10.0.0.2"], 1024)),
                Op::Add(via("10.4.0.0/24", &["10.0.0.2"], 0)),
            ]
        );
        // A new LOCAL_PREF is a new metric: delete ours, add.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, Some(100));
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 2_147_483_547)),
                Op::Retire(via("10.1.0.0/24", &["10.0.0.2"], 2_147_483_447)),
            ]
        );
        assert_eq!(local_pref_of_metric(1024), 2_147_482_623);
        assert_eq!(metric_of_local_pref(local_pref_of_metric(77)), 77);
    }

    #[test]
    fn test_metric_rule_off_uses_configured_metric() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false, Some(200));
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 1024))]
        );
    }

    #[test]
    fn test_static_route_via_its_gateway_over_bgp_and_gone_with_its_entry() {
        let mut r = Reconciler::with_rules(Rules {
            resolve: true,
            ..Rules::with_metric(1024)
        });
        // A static route needs no lookup: it goes in via its gateway as it is.
        r.set_statics([(net("10.225.0.4/32"), ip("192.0.2.1"), 1024)]);
        assert!(r.poll_lookups().is_empty());
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.225.0.4/32", &["192.0.2.1"], 1024))]
        );
        // BGP's path for the same prefix does not displace it (BIRD: static over BGP).
        r.handle_best_change(net("10.225.0.4/32"), &[ip("10.225.0.4")], false, None);
        r.handle_lookup(ip("10.225.0.4"), Resolution::OnLink);
        assert!(run_ok(&mut r).is_empty());
        assert_eq!(r.stats().desired, 1);
        // A new gateway: replaced in place.
        r.set_statics([(net("10.225.0.4/32"), ip("192.0.2.2"), 1024)]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("10.225.0.4/32", &["192.0.2.2"], 1024))]
        );
        // Gone from the list: BGP's route takes the prefix, then nothing.
        r.set_statics([]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Replace(via("10.225.0.4/32", &["10.225.0.4"], 1024))]
        );
        r.handle_best_change(net("10.225.0.4/32"), &[], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Delete(via("10.225.0.4/32", &["10.225.0.4"], 1024))]
        );
        // A block's blackhole goes over a static route of the same prefix.
        r.set_statics([(net("192.168.0.0/26"), ip("192.0.2.1"), 1024)]);
        r.set_blackholes([(net("192.168.0.0/26"), 1024)]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(blackhole("192.168.0.0/26", 1024))]
        );
    }

    #[test]
    fn test_blackhole_metric_per_block() {
        let mut r = Reconciler::new(1024);
        r.set_blackholes([(net("192.168.0.0/26"), 1024), (net("192.168.1.0/26"), 7)]);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(blackhole("192.168.0.0/26", 1024)),
                Op::Add(blackhole("192.168.1.0/26", 7)),
            ]
        );
        r.set_blackholes([(net("192.168.0.0/26"), 1024), (net("192.168.1.0/26"), 8)]);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(blackhole("192.168.1.0/26", 8)),
                Op::Retire(blackhole("192.168.1.0/26", 7)),
            ]
        );
    }

    #[test]
    fn test_ipip_always_pool_goes_through_tunnel_onlink() {
        let mut r = Reconciler::with_rules(Rules {
            pools: vec![pool("192.168.0.0/16", IpipMode::Always, true)],
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("192.168.0.64/26"), &[ip("192.0.2.102")], false, None);
        // Outside every pool: a plain route.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("192.0.2.102")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["192.0.2.102"], 1024)),
                Op::Add(with_hops(
                    "192.168.0.64/26",
                    &[Hop::tunnel(ip("192.0.2.102"))],
                    1024
                )),
            ]
        );
    }

    #[test]
    fn test_ipip_cross_subnet_tunnels_only_outside_node_subnet() {
        let mut r = Reconciler::with_rules(Rules {
            pools: vec![pool("192.168.0.0/16", IpipMode::CrossSubnet, true)],
            node_subnet: Some(net("192.0.2.0/24")),
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("192.168.0.64/26"), &[ip("192.0.2.102")], false, None);
        r.handle_best_change(net("192.168.0.128/26"), &[ip("198.51.100.7")], false, None);
        // ECMP over both kinds: one multipath route, one hop tunnelled.
        r.handle_best_change(
            net("192.168.1.0/26"),
            &[ip("192.0.2.102"), ip("198.51.100.7")],
            false,
            None,
        );
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("192.168.0.64/26", &["192.0.2.102"], 1024)),
                Op::Add(with_hops(
                    "192.168.0.128/26",
                    &[Hop::tunnel(ip("198.51.100.7"))],
                    1024
                )),
                Op::Add(with_hops(
                    "192.168.1.0/26",
                    &[Hop::via(ip("192.0.2.102")), Hop::tunnel(ip("198.51.100.7"))],
                    1024
                )),
            ]
        );
    }

    #[test]
    fn test_pool_not_installed_is_left_to_felix() {
        let mut r = Reconciler::with_rules(Rules {
            pools: vec![
                pool("192.168.0.0/16", IpipMode::Always, false),
                // A longer pool inside it that is ours.
                pool("192.168.7.0/24", IpipMode::Never, true),
            ],
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("192.168.0.64/26"), &[ip("192.0.2.102")], false, None);
        r.handle_best_change(net("192.168.7.0/26"), &[ip("192.0.2.102")], false, None);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("192.168.7.0/26", &["192.0.2.102"], 1024))]
        );
        // An adopted route of ours inside Felix's pool goes once the sync is over.
        let old = with_hops("192.168.0.64/26", &[Hop::tunnel(ip("192.0.2.102"))], 1024);
        let mut r2 = Reconciler::with_rules(r.rules.clone());
        r2.adopt([old.clone()]);
        r2.handle_best_change(net("192.168.0.64/26"), &[ip("192.0.2.102")], false, None);
        assert!(run_ok(&mut r2).is_empty());
        r2.mark_synced();
        assert_eq!(run_ok(&mut r2), vec![Op::Delete(old)]);
    }

    /// A link-local next hop (a session over link-local addresses) goes in with the
    /// interface the kernel reaches it on: for an IPv4 route, `via inet6 fe80::2 dev N`.
    #[test]
    fn test_link_local_next_hops_name_their_interface() {
        let mut r = Reconciler::with_rules(Rules {
            resolve: true,
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("198.51.100.0/24"), &[ip("fe80::2")], false, None);
        r.handle_best_change(net("2001:db8:200::/48"), &[ip("fe80::2")], false, None);
        assert_eq!(r.poll_lookups(), vec![ip("fe80::2")]);
        r.handle_lookup(ip("fe80::2"), Resolution::Link(7));
        let hop = Hop::link(ip("fe80::2"), 7);
        let ops = run_ok(&mut r);
        assert_eq!(ops.len(), 2, "{ops:?}");
        for p in ["198.51.100.0/24", "2001:db8:200::/48"] {
            assert!(
                ops.contains(&Op::Add(with_hops(p, &[hop], 1024))),
                "{ops:?}"
            );
        }
        assert_eq!(hop.to_string(), "fe80::2 dev #7");
    }

    #[test]
    fn test_gateway_resolved_recursively_and_moves_when_it_changes() {
        let mut r = Reconciler::with_rules(Rules {
            resolve: true,
            ..Rules::with_metric(1024)
        });
        // Multihop: 198.51.100.7 is reached via 192.0.2.1; 192.0.2.102 is on-link.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("198.51.100.7")], false, None);
        r.handle_best_change(net("10.2.0.0/24"), &[ip("192.0.2.102")], false, None);
        // Not looked up yet: nothing goes out.
        assert!(!r.has_work());
        assert!(r.poll_batch(10).is_empty());
        let mut lookups = r.poll_lookups();
        lookups.sort();
        assert_eq!(lookups, vec![ip("192.0.2.102"), ip("198.51.100.7")]);
        // Asked once only.
        assert!(r.poll_lookups().is_empty() && !r.has_lookups());
        r.handle_lookup(ip("198.51.100.7"), Resolution::Via(ip("192.0.2.1")));
        r.handle_lookup(ip("192.0.2.102"), Resolution::OnLink);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Add(via("10.1.0.0/24", &["192.0.2.1"], 1024)),
                Op::Add(via("10.2.0.0/24", &["192.0.2.102"], 1024)),
            ]
        );
        // Looked up again: unchanged costs nothing, a new gateway moves the route.
        r.re_resolve();
        let ops = run_resolving(&mut r, |nh| {
            if nh == ip("198.51.100.7") {
                Resolution::Via(ip("192.0.2.2"))
            } else {
                Resolution::OnLink
            }
        });
        assert_eq!(
            ops,
            vec![Op::Replace(via("10.1.0.0/24", &["192.0.2.2"], 1024))]
        );
    }

    #[test]
    fn test_unreachable_next_hop_goes_in_as_is_and_is_looked_up_again() {
        let mut r = Reconciler::with_rules(Rules {
            resolve: true,
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("10.1.0.0/24"), &[ip("198.51.100.7")], false, None);
        let nh = r.poll_lookups();
        r.handle_lookup(nh[0], Resolution::Unreachable);
        let b = r.poll_batch(10);
        assert_eq!(b.adds, vec![via("10.1.0.0/24", &["198.51.100.7"], 1024)]);
        r.handle_result(
            &Op::Add(b.adds[0].clone()),
            Err(OpError::Failed("Network is unreachable".into())),
        );
        r.batch_done(&b);
        r.retry_failed();
        assert_eq!(r.poll_lookups(), vec![ip("198.51.100.7")]);
        r.handle_lookup(ip("198.51.100.7"), Resolution::Via(ip("192.0.2.1")));
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["192.0.2.1"], 1024))]
        );
    }

    #[test]
    fn test_tunnel_hops_need_no_lookup() {
        let mut r = Reconciler::with_rules(Rules {
            resolve: true,
            pools: vec![pool("192.168.0.0/16", IpipMode::Always, true)],
            ..Rules::with_metric(1024)
        });
        r.handle_best_change(net("192.168.0.64/26"), &[ip("198.51.100.7")], false, None);
        assert!(!r.has_lookups());
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(with_hops(
                "192.168.0.64/26",
                &[Hop::tunnel(ip("198.51.100.7"))],
                1024
            ))]
        );
    }
}
