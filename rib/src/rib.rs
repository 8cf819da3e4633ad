//! The RIB: peers, routes in and the decision, tying the per-concern modules together.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bgp_wire::Family;
use ipnet::IpNet;

use crate::RibConfig;
use crate::addpath;
use crate::adj_in::AdjRibIn;
use crate::attrs::{AttrSet, AttrStore, Attrs};
use crate::best::{AllReachable, Decider, Ineligible, NextHopResolver};
use crate::dirty::DirtySet;
use crate::fx::FxHashMap;
use crate::group::{GroupId, GroupKey, UpdateGroup};
use crate::loc::{LocRib, Path};
use crate::peer::{NO_GROUP, PeerConfig, PeerFact, PeerId, PeerKind, Session, family_index};

/// A configured peer.
pub(crate) struct PeerState {
    pub(crate) cfg: PeerConfig,
    pub(crate) session: Option<Session>,
    pub(crate) adj_in: AdjRibIn,
    /// With soft-reconfiguration inbound: the attributes as received of the routes
    /// (Loc-RIB slot, received path id) whose import policy changed them (the others
    /// are stored as received).
    pub(crate) received: FxHashMap<(u32, u32), Arc<AttrSet>>,
    /// The max-prefix limit was reported crossed and the count has not gone back under.
    pub(crate) over_limit: bool,
    /// The slot after the last one this peer withdrew a path from: where its next
    /// withdrawal is looked for first (see `Rib::withdraw_all`).
    pub(crate) next_withdrawn: u32,
}

/// Adj-RIB-In, Loc-RIB and Adj-RIB-Out of one speaker.
pub struct Rib {
    pub(crate) cfg: RibConfig,
    pub(crate) resolver: Box<dyn NextHopResolver>,
    pub(crate) attrs: AttrStore,
    pub(crate) loc: LocRib,
    /// Indexed by peer; index 0 is [`PeerId::LOCAL`].
    pub(crate) peers: Vec<Option<PeerState>>,
    /// Indices of `peers` whose peer was removed, taken again by [`Rib::add_peer`]: a
    /// speaker that accepts and drops dynamic neighbours all day keeps a table as large
    /// as its most peers at once, not as its connections ever made.
    free_peers: Vec<u32>,
    /// The hot part of each peer, beside `peers` so the decision borrows only this.
    pub(crate) facts: Vec<PeerFact>,
    pub(crate) groups: Vec<Option<UpdateGroup>>,
    group_index: FxHashMap<GroupKey, u32>,
    pub(crate) fib: Option<DirtySet>,
    /// Every cluster ID in use (the speaker's and per-peer overrides): a route holding any
    /// of them has been through this reflector.
    cluster_ids: Vec<Ipv4Addr>,
    /// How many leading paths per prefix must be exactly ranked (ADD-PATH best-N).
    depth: usize,
}

impl Rib {
    /// An empty RIB.
    pub fn new(cfg: RibConfig) -> Self {
        let local = PeerFact {
            kind: PeerKind::Local,
            address: std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            router_id: cfg.router_id,
            cluster_id: cfg.cluster_id(),
            group: NO_GROUP,
        };
        Self {
            fib: cfg.track_best_changes.then(DirtySet::default),
            cluster_ids: vec![cfg.cluster_id()],
            cfg,
            resolver: Box::new(AllReachable),
            attrs: AttrStore::default(),
            loc: LocRib::default(),
            peers: vec![None],
            free_peers: Vec::new(),
            facts: vec![local],
            groups: Vec::new(),
            group_index: FxHashMap::default(),
            depth: 1,
        }
    }

    /// The speaker's settings.
    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    /// Replaces the next-hop resolver; call [`Rib::next_hops_changed`] when what it
    /// answers changes.
    pub fn set_resolver(&mut self, resolver: Box<dyn NextHopResolver>) {
        self.resolver = resolver;
        self.next_hops_changed();
    }

    /// Runs the decision process again for every prefix, after the resolver's answers
    /// changed (RFC 4271 §9.1.2.1: reachability and IGP cost are inputs).
    pub fn next_hops_changed(&mut self) {
        let slots: Vec<u32> = self.loc.iter().map(|(s, _)| s).collect();
        for s in slots {
            self.reselect(s);
        }
    }

    /// Configures a peer. Its routes are accepted once it is up ([`Rib::peer_up`]).
    pub fn add_peer(&mut self, cfg: PeerConfig) -> PeerId {
        let local_as = cfg.local_as.unwrap_or(self.cfg.local_as);
        let kind = match (cfg.remote_as == local_as, cfg.rr_client) {
            (false, _) => PeerKind::Ebgp,
            (true, true) => PeerKind::Client,
            (true, false) => PeerKind::NonClient,
        };
        if let Some(c) = cfg.cluster_id
            && !self.cluster_ids.contains(&c)
        {
            self.cluster_ids.push(c);
        }
        let fact = PeerFact {
            kind,
            address: cfg.address,
            router_id: Ipv4Addr::UNSPECIFIED,
            cluster_id: cfg.cluster_id.unwrap_or(self.cfg.cluster_id()),
            group: NO_GROUP,
        };
        let state = Some(PeerState {
            cfg,
            session: None,
            adj_in: AdjRibIn::default(),
            received: FxHashMap::default(),
            over_limit: false,
            next_withdrawn: 0,
        });
        // A removed peer's index, if there is one: nothing refers to it any more (its
        // routes went with it, it left its group).
        if let Some(i) = self.free_peers.pop() {
            self.facts[i as usize] = fact;
            self.peers[i as usize] = state;
            return PeerId(i);
        }
        self.facts.push(fact);
        self.peers.push(state);
        PeerId(self.peers.len() as u32 - 1)
    }

    /// How many peer slots the RIB holds (configured peers plus free slots of removed
    /// ones, plus [`PeerId::LOCAL`]): bounded by the most peers ever configured at once.
    pub fn peer_slots(&self) -> usize {
        self.peers.len()
    }

    /// Sends `peer` everything its update group advertises again, then End-of-RIB per
    /// family, as for a peer that just came up: the answer to a ROUTE-REFRESH (RFC 2918).
    /// The peer keeps its place in its group, so nothing pending for it is lost. Returns
    /// `false` when the peer is not up.
    pub fn refresh(&mut self, peer: PeerId) -> bool {
        let Some(g) = self.group_of(peer) else {
            return false;
        };
        if let Some(Some(g)) = self.groups.get_mut(g.0 as usize) {
            g.rejoin(peer.0);
        }
        true
    }

    /// Removes a peer and every route it sent.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.peer_down(peer, false);
        if let Some(slot) = self.peers.get_mut(peer.0 as usize)
            && peer != PeerId::LOCAL
            && slot.take().is_some()
        {
            if let Some(f) = self.facts.get_mut(peer.0 as usize) {
                f.group = NO_GROUP;
            }
            self.free_peers.push(peer.0);
        }
    }

    /// The configuration of `peer`.
    pub fn peer_config(&self, peer: PeerId) -> Option<&PeerConfig> {
        Some(&self.peers.get(peer.0 as usize)?.as_ref()?.cfg)
    }

    /// The session came up: the peer joins the update group of peers with the same export
    /// policy and encoding (created if needed) and will be sent the table, then
    /// End-of-RIB per family (RFC 4724 §2). Returns the group.
    pub fn peer_up(&mut self, peer: PeerId, session: Session) -> Option<GroupId> {
        if self.peer(peer)?.session.is_some() {
            self.leave_group(peer);
        }
        // Routes kept from an earlier session (graceful restart) were decided and encoded
        // with the identifier of that session (ORIGINATOR_ID, RFC 4456 §8; the decision's
        // tie-break): a peer that comes back as another router has them all withdrawn.
        let old_id = self.facts.get(peer.0 as usize)?.router_id;
        if old_id != Ipv4Addr::UNSPECIFIED && old_id != session.router_id {
            self.peer_down(peer, false);
        }
        let st = self.peers.get_mut(peer.0 as usize)?.as_mut()?;
        st.session = Some(session);
        self.facts.get_mut(peer.0 as usize)?.router_id = session.router_id;
        self.join_group(peer, session)
    }

    /// Puts `peer` (up with `session`, in no group) into the update group of peers with
    /// the same export policy and encoding, created if needed.
    pub(crate) fn join_group(&mut self, peer: PeerId, session: Session) -> Option<GroupId> {
        let st = self.peers.get(peer.0 as usize)?.as_ref()?;
        let fact = self.facts.get_mut(peer.0 as usize)?;
        let cfg = &st.cfg;
        let ctx = &session.ctx;
        let mut add_path_tx = ctx.add_path_tx;
        for f in ctx.add_path_tx.iter() {
            if cfg.add_path(f).is_none() {
                add_path_tx.remove(f);
            }
        }
        let key = GroupKey {
            kind: fact.kind,
            cluster_id: cfg.cluster_id.unwrap_or(self.cfg.cluster_id()),
            local_as: cfg.local_as.unwrap_or(self.cfg.local_as),
            client_to_client: cfg.client_to_client.unwrap_or(self.cfg.client_to_client),
            next_hop: cfg.next_hop,
            export: cfg.export.clone(),
            local: session.local,
            four_octet_as: ctx.four_octet_as,
            extended_message: ctx.extended_message,
            families: ctx.families,
            add_path_tx,
            extended_next_hop: ctx.extended_next_hop,
            add_path: Family::ALL.map(|f| cfg.add_path(f).filter(|_| add_path_tx.contains(f))),
        };
        for f in add_path_tx.iter() {
            if let Some(m) = cfg.add_path_send[family_index(f)] {
                self.depth = self.depth.max(m.rank_depth());
            }
        }
        let gid = match self.group_index.get(&key) {
            Some(&g) => g,
            None => {
                let g = match self.groups.iter().position(Option::is_none) {
                    Some(i) => i as u32,
                    None => {
                        self.groups.push(None);
                        self.groups.len() as u32 - 1
                    }
                };
                self.groups[g as usize] = Some(UpdateGroup::new(g, key.clone()));
                self.group_index.insert(key, g);
                g
            }
        };
        fact.group = gid;
        if let Some(Some(g)) = self.groups.get_mut(gid as usize) {
            g.join(peer.0, session.router_id);
        }
        Some(GroupId(gid))
    }

    pub(crate) fn peer(&self, peer: PeerId) -> Option<&PeerState> {
        self.peers.get(peer.0 as usize)?.as_ref()
    }

    /// Takes `peer` out of its group, dissolving the group if it was the last member.
    pub(crate) fn leave_group(&mut self, peer: PeerId) {
        let Some(fact) = self.facts.get_mut(peer.0 as usize) else {
            return;
        };
        let gid = std::mem::replace(&mut fact.group, NO_GROUP);
        let Some(slot) = self.groups.get_mut(gid as usize) else {
            return;
        };
        if slot.as_mut().is_some_and(|g| g.leave(peer.0))
            && let Some(g) = slot.take()
        {
            self.group_index.remove(&g.key);
            for set in g.dissolve(&mut self.loc) {
                self.attrs.release(set);
            }
        }
    }

    /// Adds or replaces the path (`peer`, `rx_id`) of `prefix` and reruns the decision.
    /// Returns `false` when the path was new and `peer` already has
    /// [`addpath::MAX_PATHS_PER_PEER`] paths for the prefix: it is not stored.
    pub(crate) fn upsert(
        &mut self,
        peer: u32,
        prefix: IpNet,
        rx_id: u32,
        attrs: Arc<AttrSet>,
        reason: Option<Ineligible>,
    ) -> bool {
        let slot = self.loc.slot_or_insert(prefix);
        let before = self.fib_before(slot);
        let dest = self.loc.dest_mut(slot);
        // One pass: the path if present, the peer's paths, the largest identifier sent.
        let mut found = None;
        let mut from_peer = 0usize;
        let mut max_tx = 0u32;
        for (i, p) in dest.paths.iter().enumerate() {
            max_tx = max_tx.max(p.tx_id);
            if p.peer == peer {
                from_peer += 1;
                if p.rx_id == rx_id {
                    found = Some(i);
                }
            }
        }
        if let Some(i) = found {
            let p = &mut dest.paths[i];
            if Arc::ptr_eq(&p.attrs, &attrs) && p.reason == reason && !p.is_stale() {
                // A repeat of what we have: nothing changes (RFC 4271 §9.1.4 implicit
                // withdraw of an identical route).
                self.attrs.release(attrs);
                return true;
            }
            let old = std::mem::replace(&mut p.attrs, attrs);
            p.reason = reason;
            p.set_stale(false);
            self.attrs.release(old);
        } else {
            if from_peer >= addpath::MAX_PATHS_PER_PEER {
                self.attrs.release(attrs);
                return false;
            }
            let tx = addpath::alloc_tx_id(max_tx, &dest.paths);
            dest.paths.push(Path::new(attrs, peer, rx_id, tx, reason));
            if let Some(Some(st)) = self.peers.get_mut(peer as usize) {
                st.adj_in.insert(slot, rx_id);
            }
        }
        self.reselect_from(slot, before);
        true
    }

    /// Records the attributes as received of the stored path (`peer`, `rx_id`) of
    /// `prefix` when the import policy changed them (`Some`), or that it did not.
    pub(crate) fn note_received(
        &mut self,
        peer: u32,
        prefix: &IpNet,
        rx_id: u32,
        received: Option<Arc<AttrSet>>,
    ) {
        let Some(slot) = self.loc.slot(prefix) else {
            if let Some(set) = received {
                self.attrs.release(set);
            }
            return;
        };
        let Some(Some(st)) = self.peers.get_mut(peer as usize) else {
            if let Some(set) = received {
                self.attrs.release(set);
            }
            return;
        };
        let old = match received {
            Some(set) => st.received.insert((slot, rx_id), set),
            None => st.received.remove(&(slot, rx_id)),
        };
        if let Some(old) = old {
            self.attrs.release(old);
        }
    }

    /// Removes the path (`peer`, `rx_id`) of `prefix`; returns whether it was there.
    pub(crate) fn remove(&mut self, peer: u32, prefix: &IpNet, rx_id: u32) -> bool {
        let Some(slot) = self.loc.slot(prefix) else {
            return false;
        };
        self.remove_at(peer, slot, rx_id)
    }

    pub(crate) fn remove_at(&mut self, peer: u32, slot: u32, rx_id: u32) -> bool {
        let before = self.fib_before(slot);
        let dest = self.loc.dest_mut(slot);
        let Some(i) = dest
            .paths
            .iter()
            .position(|p| p.peer == peer && p.rx_id == rx_id)
        else {
            return false;
        };
        let p = dest.paths.remove(i);
        self.attrs.release(p.attrs);
        if let Some(Some(st)) = self.peers.get_mut(peer as usize) {
            st.adj_in.remove(slot, rx_id);
            if let Some(old) = st.received.remove(&(slot, rx_id)) {
                self.attrs.release(old);
            }
        }
        self.reselect_from(slot, before);
        self.loc.try_free(slot);
        true
    }

    /// What the FIB stream compares a destination against after a change, when it is on.
    fn fib_before(&self, slot: u32) -> Option<FibKey> {
        self.fib
            .as_ref()
            .map(|_| fib_key(self.loc.dest(slot).best_paths()))
    }

    /// Reruns the decision for `slot` (its paths unchanged, their inputs changed).
    pub(crate) fn reselect(&mut self, slot: u32) {
        let before = self.fib_before(slot);
        self.reselect_from(slot, before);
    }

    /// Reruns the decision for `slot` and marks it for every group, and for the FIB
    /// stream if its best paths differ from `before`.
    fn reselect_from(&mut self, slot: u32, before: Option<FibKey>) {
        let decider = Decider::new(&self.facts, self.resolver.as_ref(), &self.cfg, self.depth);
        let dest = self.loc.dest_mut(slot);
        dest.eligible = decider.rank(&mut dest.paths);
        let family = bgp_wire::nlri::Nlri::new(dest.prefix).family();
        for g in self.groups.iter_mut().flatten() {
            if g.has_family(family) && !g.walk_covers(slot) && g.dirty.insert(slot) {
                dest.refs += 1;
            }
        }
        if let (Some(fib), Some(before)) = (self.fib.as_mut(), before)
            && before != fib_key(dest.best_paths())
            && fib.insert(slot)
        {
            dest.refs += 1;
        }
    }

    /// Whether `attrs` from a peer of `kind` went round: our ORIGINATOR_ID or one of our
    /// cluster IDs (RFC 4456 §8), or our AS from outside (RFC 4271 §9.1.2) more often
    /// than the peer's [`PeerConfig::allow_local_as`] allows.
    pub(crate) fn loop_check(
        &self,
        peer: PeerId,
        kind: PeerKind,
        attrs: &AttrSet,
    ) -> Option<Ineligible> {
        if attrs.originator_id() == Some(self.cfg.router_id) {
            return Some(Ineligible::OriginatorIsUs);
        }
        if attrs
            .cluster_list()
            .iter()
            .any(|c| self.cluster_ids.contains(c))
        {
            return Some(Ineligible::ClusterLoop);
        }
        let cfg = self.peer(peer).map(|p| &p.cfg);
        let local_as = cfg.and_then(|c| c.local_as).unwrap_or(self.cfg.local_as);
        let allowed = cfg.map_or(0, |c| usize::from(c.allow_local_as));
        if kind == PeerKind::Ebgp
            && (attrs.as_path_count(self.cfg.local_as) > allowed
                || attrs.as_path_count(local_as) > allowed)
        {
            return Some(Ineligible::AsLoop);
        }
        None
    }

    /// Whether `next_hop` is one of our own addresses on the session with `peer`: such a
    /// route is ignored (RFC 4271 §6.3: semantically incorrect NEXT_HOP, no NOTIFICATION).
    pub(crate) fn next_hop_is_ours(
        &self,
        peer: PeerId,
        next_hop: Option<&bgp_wire::attr::NextHop>,
    ) -> Option<Ineligible> {
        let local = self.peer(peer)?.session.as_ref()?.local;
        let ours = match next_hop? {
            bgp_wire::attr::NextHop::V4(a) => local.v4 == Some(*a),
            bgp_wire::attr::NextHop::V6 { global, .. } => local.v6 == Some(*global),
        };
        ours.then_some(Ineligible::NextHopIsLocal)
    }

    /// Originates `prefix` with `attrs` (for a node agent: its address blocks). Without a
    /// next hop, each peer is sent the session's local address.
    pub fn originate(&mut self, prefix: IpNet, attrs: Attrs) {
        let set = self.attrs.intern(attrs);
        // One path per prefix from LOCAL: never over the bound.
        let _ = self.upsert(PeerId::LOCAL.0, prefix.trunc(), 0, set, None);
    }

    /// Stops originating `prefix`.
    pub fn withdraw_local(&mut self, prefix: IpNet) {
        self.remove(PeerId::LOCAL.0, &prefix.trunc(), 0);
    }
}

/// What the FIB cares about in a destination: the usable best paths' identities and
/// attribute sets (inline for one path: compared on every change of every prefix).
type FibKey = smallvec::SmallVec<[(u32, u32, u64); 1]>;

/// The [`FibKey`] of a destination's best paths.
fn fib_key<'a>(paths: impl Iterator<Item = &'a Path>) -> FibKey {
    paths.map(|p| (p.peer, p.rx_id, p.attrs.id())).collect()
}
