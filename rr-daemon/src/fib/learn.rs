//! Learning routes from the kernel (node mode, `[learn]`): which routes other programs
//! installed, and which interface prefixes, this node announces over BGP. Pure: the
//! rtnetlink watcher ([`super::watch`]) feeds kernel routes, links and addresses in, and
//! takes out the prefixes to originate and withdraw ([`Learner::poll_diff`]).
//!
//! Two sources, as in Calico's BIRD:
//!
//! - Kernel routes (BIRD's `protocol kernel { learn; }` with Calico's export filter): a
//!   route of another program (Felix's workload `/32`s, an operator's static route) in our
//!   table is announced when it lies inside a configured pool and either outside every
//!   block of ours (`[[originate]]`: a workload with a borrowed address) or with a metric
//!   below `elevated_below` (Felix marks a route elevated by its metric, and the elevated
//!   `/32` must win over the block elsewhere). Inside one of our blocks at the normal
//!   metric, the block's own announcement covers it. Routes of our protocol number (the
//!   ones we install) are never learned, nor `proto kernel` ones (the interface prefixes,
//!   which the second source covers) nor ICMP redirects.
//! - Interface prefixes (BIRD's `protocol direct`): the network of every global or
//!   site-scope address of an interface that is up and whose name matches none of the
//!   `direct_exclude` patterns (`cali*`, `kube-ipvs*`).
//!
//! A kernel route through an interface that matches a `route_exclude` pattern (Felix's
//! tunnel devices: `vxlan.calico`, `wireguard.cali`, `tunl0`) is never learned: it leads
//! to another node's block, which that node announces itself.
//!
//! A prefix that the configuration originates itself (`[[route]]`, `[[originate]]`) is
//! never learned: its configured attributes stay, and a reload keeps owning it.
//!
//! LOCAL_PREF (Calico 3.32's export rule, [`Rules::local_pref_from_metric`]): a prefix
//! announced for a kernel route carries `LOCAL_PREF = 2147483647 - metric` of the route
//! with the lowest metric among the ones that announce it (the one the kernel forwards
//! by), so that a peer following the import rule installs it with the same metric; a
//! prefix announced only for an interface address carries none. A new metric is a new
//! announcement ([`Learner::poll_diff`] lists the prefix again, [`Learner::local_pref`]
//! gives the value).
//!
//! Memory follows what the kernel holds: a link, its addresses and the routes through it
//! are forgotten when the link goes, also when the kernel sends no route deletion for
//! them (IPv4 routes of a deleted or downed device disappear silently).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use ipnet::IpNet;

/// `RTPROT_REDIRECT`: routes from ICMP redirects, never learned.
pub const RTPROT_REDIRECT: u8 = 1;
/// `RTPROT_KERNEL`: the kernel's interface routes, covered by interface prefixes instead.
pub const RTPROT_KERNEL: u8 = 2;
/// `RT_SCOPE_SITE`: the widest address scope below universe that is still announced.
pub const RT_SCOPE_SITE: u8 = 200;

/// What decides, from `[learn]` and `[fib]`; a reload may change it
/// ([`Learner::set_rules`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Kernel table to learn from (`[fib] table`).
    pub table: u32,
    /// Our protocol number (`[fib] protocol`): routes with it are ours, never learned.
    pub protocol: u8,
    /// Only routes inside one of these are learned from the kernel.
    pub pools: Vec<IpNet>,
    /// A metric below this marks a route elevated (Calico's normal metric is 1024).
    pub elevated_below: u32,
    /// Announce interface prefixes.
    pub direct: bool,
    /// Interfaces whose prefixes are never announced (`*` and `?` wildcards).
    pub direct_exclude: Vec<String>,
    /// Announce a kernel route with `LOCAL_PREF = 2147483647 - metric` (`[fib]
    /// metric_from_local_pref`, Calico 3.32).
    pub local_pref_from_metric: bool,
    /// Interfaces whose routes are never learned (`*` and `?` wildcards): Felix's tunnel
    /// devices, whose routes lead to other nodes' blocks.
    pub route_exclude: Vec<String>,
}

impl Rules {
    /// The rules of a configuration's `[learn]` and `[fib]`.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            table: config.fib.table,
            protocol: config.fib.protocol,
            pools: config.learn.pools.clone(),
            elevated_below: config.learn.elevated_below,
            direct: config.learn.direct,
            direct_exclude: config.learn.direct_exclude.clone(),
            route_exclude: config.learn.route_exclude.clone(),
            local_pref_from_metric: config.fib.metric_from_local_pref,
        }
    }
}

/// What the configuration originates itself; changes with a reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Our blocks (`[[originate]]`).
    pub blocks: Vec<IpNet>,
    /// Every prefix the configuration originates (`[[route]]` and `[[originate]]`).
    pub configured: BTreeSet<IpNet>,
}

impl Scope {
    /// The scope of a configuration.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            blocks: config.originate.iter().map(|o| o.prefix).collect(),
            configured: config.routes.iter().map(|r| r.prefix).collect(),
        }
    }
}

/// The kind of a kernel route (`rtm_type`), as far as learning cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Forwarded: via a gateway or out of an interface.
    Unicast,
    /// Dropped: blackhole, unreachable, prohibit (announced like BIRD does).
    Reject,
    /// Local, broadcast, multicast, ...: never learned.
    Other,
}

/// A kernel route as the watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRoute {
    /// Destination.
    pub prefix: IpNet,
    /// Table.
    pub table: u32,
    /// Protocol number (`rtm_protocol`).
    pub protocol: u8,
    /// Metric (`RTA_PRIORITY`).
    pub metric: u32,
    /// Kind.
    pub kind: RouteKind,
    /// Output interface (`RTA_OIF`, or the first next hop's), if any.
    pub oif: Option<u32>,
}

/// An interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenLink {
    /// `ifindex`.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// An interface address: `addr` carries the prefix length (`192.0.2.101/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeenAddr {
    /// The interface's `ifindex`.
    pub index: u32,
    /// The address with its prefix length.
    pub addr: IpNet,
    /// `ifa_scope` (0 universe, 200 site, 253 link, 254 host).
    pub scope: u8,
}

/// Why a route is announced or not (for the log and the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Inside a pool, outside every block of ours (a borrowed address).
    OutsideBlocks,
    /// Inside a pool with an elevated metric.
    Elevated,
    /// An interface prefix.
    Interface,
    /// Installed with our protocol number: we put it there.
    OurProtocol,
    /// A `proto kernel` route or an ICMP redirect.
    KernelProtocol,
    /// In another table.
    OtherTable,
    /// Local, broadcast, multicast.
    Kind,
    /// Outside every pool.
    NotInPool,
    /// Inside a block of ours at the normal metric: the block covers it.
    InBlock,
    /// The configuration originates this prefix itself.
    Configured,
    /// The interface matches a `direct_exclude` pattern.
    Excluded,
    /// The route's interface matches a `route_exclude` pattern (or is not known yet while
    /// there are patterns).
    RouteExcluded,
    /// Interface prefixes are off (`direct = false`).
    DirectOff,
    /// The interface is down, or unknown.
    LinkDown,
    /// A link- or host-scope address (`fe80::/64`, `127.0.0.1/8`).
    AddressScope,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutsideBlocks => "inside a pool, outside our blocks",
            Self::Elevated => "inside a pool, elevated metric",
            Self::Interface => "interface prefix",
            Self::OurProtocol => "our own route",
            Self::KernelProtocol => "kernel or redirect route",
            Self::OtherTable => "another table",
            Self::Kind => "local, broadcast or multicast",
            Self::NotInPool => "outside every pool",
            Self::InBlock => "inside one of our blocks at the normal metric",
            Self::Configured => "originated by the configuration",
            Self::Excluded => "interface excluded",
            Self::RouteExcluded => "route through an excluded interface",
            Self::DirectOff => "interface prefixes are off",
            Self::LinkDown => "interface down",
            Self::AddressScope => "link or host scope",
        })
    }
}

/// Announce or not, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Originate it.
    Announce(Why),
    /// Leave it out.
    Skip(Why),
}

impl Verdict {
    /// Whether it is announced.
    pub const fn announce(self) -> bool {
        matches!(self, Self::Announce(_))
    }
}

/// Whether the kernel route is worth remembering at all, whatever the scope says.
fn relevant(rules: &Rules, r: &SeenRoute) -> Result<(), Why> {
    if r.table != rules.table {
        return Err(Why::OtherTable);
    }
    if r.protocol == rules.protocol {
        return Err(Why::OurProtocol);
    }
    if matches!(r.protocol, RTPROT_KERNEL | RTPROT_REDIRECT) {
        return Err(Why::KernelProtocol);
    }
    if r.kind == RouteKind::Other {
        return Err(Why::Kind);
    }
    Ok(())
}

/// Whether a kernel route of another program is announced; `link` is its output
/// interface, if known.
pub fn decide_route(
    rules: &Rules,
    scope: &Scope,
    r: &SeenRoute,
    link: Option<&SeenLink>,
) -> Verdict {
    if let Err(why) = relevant(rules, r) {
        return Verdict::Skip(why);
    }
    if !rules.route_exclude.is_empty() && r.oif.is_some() {
        // An interface not known yet is not announced: its link arrives and decides.
        let excluded = link.is_none_or(|l| {
            rules
                .route_exclude
                .iter()
                .any(|p| pattern_matches(p, &l.name))
        });
        if excluded {
            return Verdict::Skip(Why::RouteExcluded);
        }
    }
    if scope.configured.contains(&r.prefix) {
        return Verdict::Skip(Why::Configured);
    }
    if !rules.pools.iter().any(|p| p.contains(&r.prefix)) {
        return Verdict::Skip(Why::NotInPool);
    }
    if !scope.blocks.iter().any(|b| b.contains(&r.prefix)) {
        return Verdict::Announce(Why::OutsideBlocks);
    }
    if r.metric < rules.elevated_below {
        return Verdict::Announce(Why::Elevated);
    }
    Verdict::Skip(Why::InBlock)
}

/// Whether the prefix of address `a` on `link` (`None`: not known yet) is announced.
pub fn decide_direct(
    rules: &Rules,
    scope: &Scope,
    link: Option<&SeenLink>,
    a: &SeenAddr,
) -> Verdict {
    if !rules.direct {
        return Verdict::Skip(Why::DirectOff);
    }
    if a.scope > RT_SCOPE_SITE {
        return Verdict::Skip(Why::AddressScope);
    }
    let Some(link) = link.filter(|l| l.up) else {
        return Verdict::Skip(Why::LinkDown);
    };
    if rules
        .direct_exclude
        .iter()
        .any(|p| pattern_matches(p, &link.name))
    {
        return Verdict::Skip(Why::Excluded);
    }
    if scope.configured.contains(&a.addr.trunc()) {
        return Verdict::Skip(Why::Configured);
    }
    Verdict::Announce(Why::Interface)
}

/// BIRD's interface patterns: `*` any run of characters, `?` any one character.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative glob with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What changed: prefixes to originate and to withdraw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Newly wanted.
    pub originate: Vec<IpNet>,
    /// No longer wanted.
    pub withdraw: Vec<IpNet>,
}

impl Diff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.originate.is_empty() && self.withdraw.is_empty()
    }
}

/// The whole kernel state at one moment (a full dump).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every link.
    pub links: Vec<SeenLink>,
    /// Every address.
    pub addrs: Vec<SeenAddr>,
    /// Every route (all tables: the irrelevant ones are dropped).
    pub routes: Vec<SeenRoute>,
}

/// Counts, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Links known.
    pub links: usize,
    /// Addresses known.
    pub addrs: usize,
    /// Kernel routes of other programs known (in our table).
    pub routes: usize,
    /// Prefixes announced.
    pub announced: usize,
}

/// The learned state: what the kernel holds (only what can matter) and what is announced.
#[derive(Debug)]
pub struct Learner {
    rules: Rules,
    scope: Scope,
    links: HashMap<u32, SeenLink>,
    /// Relevant kernel routes by prefix; one per metric (the kernel's key in a table,
    /// TOS aside).
    routes: HashMap<IpNet, Vec<SeenRoute>>,
    /// Relevant routes per output interface, so that a deleted link without routes (a
    /// `cali*` veth of a workload that left) costs no scan.
    oif_routes: HashMap<u32, usize>,
    /// Addresses by their network.
    addrs: HashMap<IpNet, Vec<SeenAddr>>,
    /// Announced prefixes, with the LOCAL_PREF they were announced with.
    announced: BTreeMap<IpNet, Option<u32>>,
    /// Prefixes whose wanted state may have changed since the last [`Learner::poll_diff`].
    dirty: BTreeSet<IpNet>,
    /// Our protocol numbers before a reload changed it: the FIB deletes those routes of
    /// ours, and until it has they must not look like another program's.
    former_protocols: Vec<u8>,
}

impl Learner {
    /// Nothing known, nothing announced.
    pub fn new(rules: Rules, scope: Scope) -> Self {
        Self {
            rules,
            scope,
            links: HashMap::new(),
            routes: HashMap::new(),
            oif_routes: HashMap::new(),
            addrs: HashMap::new(),
            announced: BTreeMap::new(),
            dirty: BTreeSet::new(),
            former_protocols: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// A route appeared or changed (`RTM_NEWROUTE`).
    pub fn route_added(&mut self, r: SeenRoute) {
        if relevant(&self.rules, &r).is_err() || self.former_protocols.contains(&r.protocol) {
            return;
        }
        self.dirty.insert(r.prefix);
        let same = self.routes.entry(r.prefix).or_default();
        if let Some(old) = same.iter_mut().find(|o| o.metric == r.metric) {
            let old_oif = std::mem::replace(old, r.clone()).oif;
            dec(&mut self.oif_routes, old_oif);
        } else {
            same.push(r.clone());
        }
        if let Some(i) = r.oif {
            *self.oif_routes.entry(i).or_default() += 1;
        }
    }

    /// A route went (`RTM_DELROUTE`).
    pub fn route_deleted(&mut self, r: &SeenRoute) {
        if relevant(&self.rules, r).is_err() || self.former_protocols.contains(&r.protocol) {
            return;
        }
        let Some(same) = self.routes.get_mut(&r.prefix) else {
            return;
        };
        if let Some(i) = same.iter().position(|o| o.metric == r.metric) {
            let old = same.swap_remove(i);
            dec(&mut self.oif_routes, old.oif);
            if same.is_empty() {
                self.routes.remove(&r.prefix);
            }
            self.dirty.insert(r.prefix);
        }
    }

    /// A link appeared or changed (`RTM_NEWLINK`): name, up or down.
    pub fn link_changed(&mut self, l: SeenLink) {
        let index = l.index;
        let up = l.up;
        let changed = self.links.get(&index) != Some(&l);
        let renamed = self.links.get(&index).map(|o| &o.name) != Some(&l.name);
        self.links.insert(index, l);
        if renamed && !self.rules.route_exclude.is_empty() && self.oif_routes.contains_key(&index) {
            // Routes through it are decided by its name.
            for (p, v) in &self.routes {
                if v.iter().any(|r| r.oif == Some(index)) {
                    self.dirty.insert(*p);
                }
            }
        }
        if changed {
            self.touch_link_addrs(index);
            if !up {
                // IPv4 routes through a downed device go without a deletion message.
                self.forget_routes_via(index);
            }
        }
    }

    /// A link went (`RTM_DELLINK`): its addresses and routes go with it.
    pub fn link_deleted(&mut self, index: u32) {
        if self.links.remove(&index).is_none() {
            return;
        }
        self.forget_routes_via(index);
        let mut gone = Vec::new();
        self.addrs.retain(|net, v| {
            let before = v.len();
            v.retain(|a| a.index != index);
            if v.len() != before {
                gone.push(*net);
            }
            !v.is_empty()
        });
        self.dirty.extend(gone);
    }

    /// An address appeared (`RTM_NEWADDR`).
    pub fn addr_added(&mut self, a: SeenAddr) {
        let net = a.addr.trunc();
        let v = self.addrs.entry(net).or_default();
        v.retain(|o| !(o.index == a.index && o.addr == a.addr));
        v.push(a);
        self.dirty.insert(net);
    }

    /// An address went (`RTM_DELADDR`).
    pub fn addr_deleted(&mut self, a: &SeenAddr) {
        let net = a.addr.trunc();
        if let Some(v) = self.addrs.get_mut(&net) {
            v.retain(|o| !(o.index == a.index && o.addr == a.addr));
            if v.is_empty() {
                self.addrs.remove(&net);
            }
            self.dirty.insert(net);
        }
    }

    /// A reload changed the rules: every prefix known is decided again. Routes are
    /// kept only for the table and protocol number of the rules in force, so the caller
    /// follows a change of either with a full dump ([`Learner::resync`]). Routes of a
    /// former protocol number of ours are never learned (the FIB removes them). Returns
    /// whether anything changed.
    pub fn set_rules(&mut self, rules: Rules) -> bool {
        if rules == self.rules {
            return false;
        }
        if rules.protocol != self.rules.protocol {
            self.former_protocols.push(self.rules.protocol);
            self.former_protocols.retain(|p| *p != rules.protocol);
            self.former_protocols.dedup();
        }
        self.rules = rules;
        self.dirty.extend(self.routes.keys().copied());
        self.dirty.extend(self.addrs.keys().copied());
        self.dirty.extend(self.announced.keys().copied());
        true
    }

    /// The configuration changed what it originates.
    pub fn set_scope(&mut self, scope: Scope) {
        if scope != self.scope {
            self.scope = scope;
            self.dirty.extend(self.routes.keys().copied());
            self.dirty.extend(self.addrs.keys().copied());
            self.dirty.extend(self.announced.keys().copied());
        }
    }

    /// Replaces everything known with a dump: what the notifications missed (a receive
    /// buffer overrun) is corrected here. The links are replaced only `with_links`
    /// (otherwise `snap.links` is ignored and the known ones stay).
    pub fn resync(&mut self, snap: Snapshot, with_links: bool) {
        self.dirty.extend(self.routes.keys().copied());
        self.dirty.extend(self.addrs.keys().copied());
        if with_links {
            self.links.clear();
        }
        self.routes.clear();
        self.oif_routes.clear();
        self.addrs.clear();
        for l in snap.links.into_iter().filter(|_| with_links) {
            self.links.insert(l.index, l);
        }
        for a in snap.addrs {
            self.addr_added(a);
        }
        for r in snap.routes {
            self.route_added(r);
        }
        self.compact();
    }

    /// The prefixes to originate (new, or announced with another LOCAL_PREF now) and to
    /// withdraw since the last call; from then on they count as announced or withdrawn.
    pub fn poll_diff(&mut self) -> Diff {
        let mut d = Diff::default();
        for p in std::mem::take(&mut self.dirty) {
            let want = self.wanted(&p).then(|| self.local_pref(&p));
            match (want, self.announced.get(&p)) {
                (Some(lp), Some(old)) if lp == *old => {}
                (Some(lp), _) => {
                    self.announced.insert(p, lp);
                    d.originate.push(p);
                }
                (None, Some(_)) => {
                    self.announced.remove(&p);
                    d.withdraw.push(p);
                }
                (None, None) => {}
            }
        }
        self.compact();
        d
    }

    /// What is announced now.
    pub fn announced(&self) -> impl ExactSizeIterator<Item = &IpNet> {
        self.announced.keys()
    }

    /// The LOCAL_PREF `prefix` is announced with: `2147483647 - metric` of the kernel
    /// route with the lowest metric among those that announce it, when the rule is on;
    /// `None` without the rule or for an interface prefix alone.
    pub fn local_pref(&self, prefix: &IpNet) -> Option<u32> {
        if !self.rules.local_pref_from_metric {
            return None;
        }
        self.routes
            .get(prefix)
            .into_iter()
            .flatten()
            .filter(|r| {
                let link = r.oif.and_then(|i| self.links.get(&i));
                decide_route(&self.rules, &self.scope, r, link).announce()
            })
            .map(|r| r.metric)
            .min()
            .map(super::local_pref_of_metric)
    }

    /// Counts.
    pub fn stats(&self) -> Stats {
        Stats {
            links: self.links.len(),
            addrs: self.addrs.values().map(Vec::len).sum(),
            routes: self.routes.values().map(Vec::len).sum(),
            announced: self.announced.len(),
        }
    }

    /// Why `prefix` is announced or not: the first announcing source, else the reason of
    /// the first source; `None` when the kernel holds nothing for it.
    pub fn explain(&self, prefix: &IpNet) -> Option<Verdict> {
        let mut verdicts =
            self.routes
                .get(prefix)
                .into_iter()
                .flatten()
                .map(|r| {
                    let link = r.oif.and_then(|i| self.links.get(&i));
                    decide_route(&self.rules, &self.scope, r, link)
                })
                .chain(
                    self.addrs.get(prefix).into_iter().flatten().map(|a| {
                        decide_direct(&self.rules, &self.scope, self.links.get(&a.index), a)
                    }),
                )
                .peekable();
        let first = *verdicts.peek()?;
        Some(verdicts.find(|v| v.announce()).unwrap_or(first))
    }

    fn wanted(&self, prefix: &IpNet) -> bool {
        self.explain(prefix).is_some_and(Verdict::announce)
    }

    fn touch_link_addrs(&mut self, index: u32) {
        for (net, v) in &self.addrs {
            if v.iter().any(|a| a.index == index) {
                self.dirty.insert(*net);
            }
        }
    }

    fn forget_routes_via(&mut self, index: u32) {
        if self.oif_routes.remove(&index).is_none() {
            return;
        }
        let dirty = &mut self.dirty;
        self.routes.retain(|p, v| {
            let before = v.len();
            v.retain(|r| r.oif != Some(index));
            if v.len() != before {
                dirty.insert(*p);
            }
            !v.is_empty()
        });
    }

    /// Gives back the memory of maps that shrank a lot (20,000 veths come and go).
    fn compact(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 64 && m.capacity() > 4 * m.len() {
                m.shrink_to(2 * m.len());
            }
        }
        shrink(&mut self.links);
        shrink(&mut self.routes);
        shrink(&mut self.oif_routes);
        shrink(&mut self.addrs);
    }
}

fn dec(counts: &mut HashMap<u32, usize>, oif: Option<u32>) {
    if let Some(i) = oif
        && let Some(n) = counts.get_mut(&i)
    {
        *n -= 1;
        if *n == 0 {
            counts.remove(&i);
        }
    }
}

#[cfg(test)]
mod tests;
