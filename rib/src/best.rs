//! The decision process: RFC 4271 §9.1.2.2 with the RFC 4456 §9 tie-breaks, written as the
//! RFC writes it, an elimination over the set of candidate paths.
//!
//! One step comes before the RFC's: a path this speaker originates (`Rib::originate`, a
//! node's address block) beats every path learned from a peer, whatever their attributes.
//! RFC 4271 §9.1.1 leaves the degree of preference to local policy, and every speaker a
//! Calico node might be replaced by or peer with ranks its own routes first: BIRD by
//! protocol preference (static 200 over BGP 100), FRR by weight (32768 for local routes)
//! and then its "local route" step, GoBGP by preferring local paths. Without it a peer
//! announcing our own block with a lower MED or a higher LOCAL_PREF would take it from us,
//! and we would withdraw the block we own.
//!
//! Elimination (rather than a pairwise comparator) is what makes the result independent of
//! the order routes arrived in: the MED step compares only paths from the same neighbour
//! AS, so "better than" is not transitive and a comparator-based sort would depend on the
//! order of its input. Each step removes the paths that are worse on one criterion, and a
//! removed path records that criterion: that is why it lost.

use std::cmp::Reverse;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bgp_wire::attr::NextHop;

use crate::loc::{Path, Paths};
use crate::peer::{PeerFact, PeerKind};

/// Resolves next hops to an IGP cost (RFC 4271 §9.1.2.1): the caller's view of its
/// routing table. The RIB never resolves anything itself. `Send`, because a daemon keeps
/// its RIB in a task of its own.
pub trait NextHopResolver: Send {
    /// The IGP cost to `next_hop`, or `None` when it is unreachable (which makes the path
    /// ineligible, RFC 4271 §9.1.2.1).
    fn resolve(&self, next_hop: IpAddr) -> Option<u32>;
}

/// The default resolver: every next hop reachable at cost 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllReachable;

impl NextHopResolver for AllReachable {
    fn resolve(&self, _: IpAddr) -> Option<u32> {
        Some(0)
    }
}

impl<F: Fn(IpAddr) -> Option<u32> + Send> NextHopResolver for F {
    fn resolve(&self, next_hop: IpAddr) -> Option<u32> {
        self(next_hop)
    }
}

/// Why a path can never be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ineligible {
    /// CLUSTER_LIST holds one of our cluster IDs: the route went round (RFC 4456 §8).
    ClusterLoop,
    /// ORIGINATOR_ID is our router ID: our own route came back (RFC 4456 §8).
    OriginatorIsUs,
    /// Our AS is in the AS_PATH of a route from an external peer (RFC 4271 §9.1.2).
    AsLoop,
    /// The resolver cannot reach the next hop (RFC 4271 §9.1.2.1).
    NextHopUnreachable,
    /// The next hop is our own address on the session (RFC 4271 §6.3).
    NextHopIsLocal,
    /// The import policy refused it (or there is none on an eBGP session, RFC 8212).
    RejectedByImport,
    /// The UPDATE that carried it was malformed and treated as a withdrawal (RFC 7606 §2).
    TreatedAsWithdrawn,
}

/// The decision step that eliminated a path (RFC 4271 §9.1.2.2, RFC 4456 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Criterion {
    /// Learned from a peer while a path this speaker originates exists: local routes win
    /// before any attribute is compared (see the module documentation).
    LocallyOriginated,
    /// Lower LOCAL_PREF (§9.1.1, §9.1.2.2 preamble).
    LocalPref,
    /// Longer AS_PATH (§9.1.2.2 a).
    AsPathLength,
    /// Higher ORIGIN (§9.1.2.2 b).
    Origin,
    /// Higher MED than a path from the same neighbour AS, or from any AS with
    /// always-compare-med (§9.1.2.2 c).
    Med,
    /// Learned over iBGP while an eBGP path remains (§9.1.2.2 d).
    PeerType,
    /// Higher IGP cost to the next hop (§9.1.2.2 e).
    IgpCost,
    /// Higher BGP identifier, ORIGINATOR_ID standing in for it (§9.1.2.2 f, RFC 4456 §9).
    RouterId,
    /// Longer CLUSTER_LIST (RFC 4456 §9).
    ClusterListLength,
    /// Higher peer address (§9.1.2.2 g).
    PeerAddress,
    /// Higher received ADD-PATH identifier from the same peer (RFC 7911): the last,
    /// deterministic tie-break.
    PathId,
}

/// Where a path stands in the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathStatus {
    /// The best path.
    Best,
    /// Eligible, and lost to the best path at this step.
    Lost(Criterion),
    /// Not eligible.
    Ineligible(Ineligible),
}

impl Ineligible {
    /// Why the path can never be chosen, in the operator's words: what `ctl route` and the
    /// API's `reason` show.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::ClusterLoop => "CLUSTER_LIST holds our cluster ID (reflection loop)",
            Self::OriginatorIsUs => "ORIGINATOR_ID is our router ID (our own route came back)",
            Self::AsLoop => "our AS is in the AS_PATH",
            Self::NextHopUnreachable => "next hop unreachable",
            Self::NextHopIsLocal => "next hop is our own address",
            Self::RejectedByImport => {
                "rejected by the import policy (or no policy on an eBGP session, RFC 8212)"
            }
            Self::TreatedAsWithdrawn => "malformed UPDATE, treated as withdrawn (RFC 7606)",
        }
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl Criterion {
    /// The decision step the path lost at, in the operator's words: what `ctl route` and
    /// the API's `reason` show.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::LocallyOriginated => "learned, while this speaker originates the prefix",
            Self::LocalPref => "lower LOCAL_PREF",
            Self::AsPathLength => "longer AS_PATH",
            Self::Origin => "worse ORIGIN",
            Self::Med => "higher MED (same neighbour AS, or always-compare-med)",
            Self::PeerType => "learned over iBGP while an eBGP path exists",
            Self::IgpCost => "higher IGP cost to the next hop",
            Self::RouterId => "higher router ID (or ORIGINATOR_ID)",
            Self::ClusterListLength => "longer CLUSTER_LIST",
            Self::PeerAddress => "higher peer address",
            Self::PathId => "higher path ID from the same peer",
        }
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl PathStatus {
    /// `best`, `lost` or `ineligible`: the API's `status`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Lost(_) => "lost",
            Self::Ineligible(_) => "ineligible",
        }
    }

    /// Why a path that is not the best is not, in the operator's words: the
    /// [`Criterion`] it lost at or why it is [`Ineligible`] (their `Display`). `None` for
    /// the best path.
    pub const fn reason(self) -> Option<&'static str> {
        match self {
            Self::Best => None,
            Self::Lost(c) => Some(c.reason()),
            Self::Ineligible(i) => Some(i.reason()),
        }
    }
}

/// What the decision reads of one eligible path, gathered once per run.
#[derive(Clone, Copy, Debug)]
struct Cand {
    /// Originated by this speaker rather than learned from a peer.
    local: bool,
    local_pref: u32,
    as_len: u32,
    origin: u8,
    med: u32,
    neighbor_as: Option<u32>,
    peer_type: u8,
    igp: u32,
    router_id: Ipv4Addr,
    cluster_len: usize,
    address: IpAddr,
    tie: (u32, u32),
}

/// The decision process with its inputs.
pub(crate) struct Decider<'a> {
    pub(crate) facts: &'a [PeerFact],
    pub(crate) resolver: &'a dyn NextHopResolver,
    pub(crate) always_compare_med: bool,
    pub(crate) missing_med_worst: bool,
    pub(crate) default_local_pref: u32,
    /// How many leading paths must be in exact decision order (ADD-PATH best-N).
    pub(crate) depth: usize,
}

impl<'a> Decider<'a> {
    /// The decision process with the speaker's options, over the peers' facts.
    pub(crate) fn new(
        facts: &'a [PeerFact],
        resolver: &'a dyn NextHopResolver,
        cfg: &crate::RibConfig,
        depth: usize,
    ) -> Self {
        Self {
            facts,
            resolver,
            always_compare_med: cfg.always_compare_med,
            missing_med_worst: cfg.missing_med_worst,
            default_local_pref: cfg.default_local_pref,
            depth,
        }
    }

    fn cand(&self, p: &Path) -> Result<Cand, Ineligible> {
        if let Some(r) = p.reason {
            return Err(r);
        }
        let a = &p.attrs;
        let igp = match a.next_hop() {
            // Locally originated without a next hop: ourselves.
            None => 0,
            Some(NextHop::V4(v4)) => self.resolve(IpAddr::V4(v4))?,
            Some(NextHop::V6 { global, .. }) => self.resolve(IpAddr::V6(global))?,
        };
        let fact = self.facts.get(p.peer as usize);
        let kind = fact.map_or(PeerKind::Local, |f| f.kind);
        Ok(Cand {
            local: kind == PeerKind::Local,
            local_pref: a.local_pref().unwrap_or(self.default_local_pref),
            as_len: a.route_len(),
            origin: a.origin().0,
            // RFC 4271 §9.1.2.2 c: a missing MED is the lowest value unless configured
            // otherwise.
            med: a
                .med()
                .unwrap_or(if self.missing_med_worst { u32::MAX } else { 0 }),
            neighbor_as: a.neighbor_as(),
            peer_type: match kind {
                PeerKind::Local => 0,
                PeerKind::Ebgp => 1,
                PeerKind::Client | PeerKind::NonClient => 2,
            },
            igp,
            router_id: a
                .originator_id()
                .unwrap_or(fact.map_or(Ipv4Addr::UNSPECIFIED, |f| f.router_id)),
            cluster_len: a.cluster_list().len(),
            address: fact.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |f| f.address),
            tie: (p.rx_id, p.peer),
        })
    }

    fn resolve(&self, nh: IpAddr) -> Result<u32, Ineligible> {
        self.resolver
            .resolve(nh)
            .ok_or(Ineligible::NextHopUnreachable)
    }

    /// Puts `paths` in decision order and marks the ECMP set; returns how many are
    /// eligible (they come first, the best at index 0).
    pub(crate) fn rank(&self, paths: &mut Paths) -> u16 {
        match paths.len() {
            0 => return 0,
            1 => {
                let ok = self.cand(&paths[0]).is_ok();
                paths[0].set_ecmp(ok);
                return u16::from(ok);
            }
            _ => {}
        }
        let cands: Vec<Result<Cand, Ineligible>> = paths.iter().map(|p| self.cand(p)).collect();
        let eligible: Vec<usize> = (0..paths.len()).filter(|&i| cands[i].is_ok()).collect();
        let ok: Vec<Cand> = eligible
            .iter()
            .filter_map(|&i| cands[i].as_ref().ok().copied())
            .collect();
        let mut order: Vec<usize> = Vec::with_capacity(paths.len());
        let mut ecmp = vec![false; paths.len()];
        if !ok.is_empty() {
            let mut taken = vec![false; ok.len()];
            let rounds = self.depth.max(1).min(ok.len());
            for round in 0..rounds {
                let mut alive: Vec<bool> = taken.iter().map(|t| !t).collect();
                let mut lost = vec![None; ok.len()];
                let mut med_alive = Vec::new();
                let w = eliminate(
                    &ok,
                    &mut alive,
                    &mut lost,
                    self.always_compare_med,
                    &mut med_alive,
                );
                if round == 0 {
                    for (k, &m) in med_alive.iter().enumerate() {
                        ecmp[eligible[k]] = m;
                    }
                }
                taken[w] = true;
                order.push(eligible[w]);
            }
            // The rest of the eligible paths need no exact order; a fixed one keeps the
            // output deterministic.
            let mut rest: Vec<usize> = (0..ok.len())
                .filter(|&k| !taken[k])
                .map(|k| eligible[k])
                .collect();
            rest.sort_by_key(|&i| sort_key(&paths[i], self.facts));
            order.extend(rest);
        }
        let n_ok = order.len();
        let mut bad: Vec<usize> = (0..paths.len()).filter(|&i| cands[i].is_err()).collect();
        bad.sort_by_key(|&i| sort_key(&paths[i], self.facts));
        order.extend(bad);
        let mut old: Vec<Option<Path>> = std::mem::take(paths).into_iter().map(Some).collect();
        for i in order {
            if let Some(mut p) = old[i].take() {
                p.set_ecmp(ecmp[i]);
                paths.push(p);
            }
        }
        u16::try_from(n_ok).unwrap_or(u16::MAX)
    }

    /// Why each path of a ranked list stands where it does.
    pub(crate) fn explain(&self, paths: &[Path]) -> Vec<PathStatus> {
        let cands: Vec<Result<Cand, Ineligible>> = paths.iter().map(|p| self.cand(p)).collect();
        let ok: Vec<Cand> = cands
            .iter()
            .filter_map(|c| c.as_ref().ok().copied())
            .collect();
        let mut alive = vec![true; ok.len()];
        let mut lost = vec![None; ok.len()];
        let w = if ok.is_empty() {
            usize::MAX
        } else {
            eliminate(
                &ok,
                &mut alive,
                &mut lost,
                self.always_compare_med,
                &mut Vec::new(),
            )
        };
        let mut k = 0;
        cands
            .iter()
            .map(|c| match c {
                Err(r) => PathStatus::Ineligible(*r),
                Ok(_) => {
                    let s = if k == w {
                        PathStatus::Best
                    } else {
                        PathStatus::Lost(lost[k].unwrap_or(Criterion::PathId))
                    };
                    k += 1;
                    s
                }
            })
            .collect()
    }
}

fn sort_key(p: &Path, facts: &[PeerFact]) -> (IpAddr, u32, u32) {
    let addr = facts
        .get(p.peer as usize)
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |f| f.address);
    (addr, p.rx_id, p.peer)
}

/// Keeps the alive paths with the least `key`, recording `crit` on the others.
fn keep_min<K: Ord>(
    c: &[Cand],
    alive: &mut [bool],
    lost: &mut [Option<Criterion>],
    crit: Criterion,
    key: impl Fn(&Cand) -> K,
) {
    let Some(best) = (0..c.len()).filter(|&i| alive[i]).map(|i| key(&c[i])).min() else {
        return;
    };
    for i in 0..c.len() {
        if alive[i] && key(&c[i]) != best {
            alive[i] = false;
            lost[i] = Some(crit);
        }
    }
}

/// Runs the elimination over the alive candidates and returns the winner. `med_alive`
/// receives who survived through the MED step (the ECMP set).
fn eliminate(
    c: &[Cand],
    alive: &mut [bool],
    lost: &mut [Option<Criterion>],
    always_compare_med: bool,
    med_alive: &mut Vec<bool>,
) -> usize {
    use Criterion as K;
    // Our own routes first (false < true: a local path is the least).
    keep_min(c, alive, lost, K::LocallyOriginated, |x| !x.local);
    keep_min(c, alive, lost, K::LocalPref, |x| Reverse(x.local_pref));
    keep_min(c, alive, lost, K::AsPathLength, |x| x.as_len);
    keep_min(c, alive, lost, K::Origin, |x| x.origin);
    // §9.1.2.2 c: a path is out if a path from the same neighbour AS has a lower MED.
    // Decided on the set as it stands, all at once, so the order of paths is irrelevant.
    let out: Vec<usize> = (0..c.len())
        .filter(|&i| alive[i])
        .filter(|&i| {
            (0..c.len()).any(|j| {
                alive[j]
                    && (always_compare_med || c[j].neighbor_as == c[i].neighbor_as)
                    && c[j].med < c[i].med
            })
        })
        .collect();
    for i in out {
        alive[i] = false;
        lost[i] = Some(K::Med);
    }
    med_alive.clear();
    med_alive.extend_from_slice(alive);
    keep_min(c, alive, lost, K::PeerType, |x| x.peer_type);
    keep_min(c, alive, lost, K::IgpCost, |x| x.igp);
    keep_min(c, alive, lost, K::RouterId, |x| x.router_id);
    keep_min(c, alive, lost, K::ClusterListLength, |x| x.cluster_len);
    keep_min(c, alive, lost, K::PeerAddress, |x| x.address);
    keep_min(c, alive, lost, K::PathId, |x| x.tie);
    alive.iter().position(|a| *a).unwrap_or(0)
}
