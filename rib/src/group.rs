//! Update groups: peers that share an export policy and a negotiated encoding share one
//! export computation, one encoding and one Adj-RIB-Out, and receive the same `Bytes`.
//!
//! Pending work is a set of dirty prefixes, drained when the caller has room
//! ([`crate::Rib::drain_group`]): a slow group never holds up the others, and a prefix that
//! changed many times while the group was behind is sent once, in its final state.
//!
//! A group's messages go to all its members but for two exceptions, carried by
//! [`Audience`]: a route is never sent back to the peer it came from, nor to the peer its
//! ORIGINATOR_ID names (RFC 4456 §8) when that peer is a member.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bgp_wire::attr::NextHop;
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Update, UpdatePacker};
use bgp_wire::{Family, FamilySet, SessionCtx};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;

use crate::RibConfig;
use crate::addpath::{self, AddPathMode};
use crate::adj_out::{self, AdjOut, OutEntry, OutTable};
use crate::attrs::AttrSet;
use crate::dirty::DirtySet;
use crate::fx::FxHashMap;
use crate::loc::{LocRib, Path};
use crate::peer::{LocalAddrs, NextHopMode, PeerFact, PeerId, PeerKind, family_index};
use crate::policy::Policy;
use crate::reflect;

/// An update group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub(crate) u32);

/// Which members of a group a message is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every member.
    All,
    /// Every member but these (sorted, without repeats).
    AllExcept(Vec<PeerId>),
    /// This member only.
    Only(PeerId),
    /// Some members, `members` (sorted, one list shared by many messages), but `except`
    /// (sorted, a subset of `members`): the members of a catch-up (late joiners of the
    /// same turn share one walk of the Adj-RIB-Out), or, for a change made while
    /// catch-ups run, the members whose catch-up has passed the prefix or who have none
    /// (the others get the prefix from their catch-up). Shared, the list costs a message
    /// nothing however many members it names; a list of the members left out, one per
    /// message, would grow with changes times joiners (a rack's clients coming up while
    /// the first of them are served: 2,000 blocks times 2,000 members).
    Among {
        /// The members the message may be for.
        members: Arc<[PeerId]>,
        /// Those of them the message is not for.
        except: Vec<PeerId>,
    },
}

impl Audience {
    /// Whether `peer` (a member) is to receive the message.
    pub fn includes(&self, peer: PeerId) -> bool {
        match self {
            Self::All => true,
            Self::AllExcept(v) => v.binary_search(&peer).is_err(),
            Self::Only(p) => *p == peer,
            Self::Among { members, except } => {
                members.binary_search(&peer).is_ok() && except.binary_search(&peer).is_err()
            }
        }
    }

    /// This audience, one of every member or every member but some (what
    /// [`UpdateGroup::excluded`] gives), narrowed to `members` (sorted).
    fn within(self, members: &Arc<[PeerId]>) -> Self {
        let except = match self {
            Self::All => Vec::new(),
            Self::AllExcept(v) => v
                .into_iter()
                .filter(|p| members.binary_search(p).is_ok())
                .collect(),
            other => {
                debug_assert!(false, "not an audience of every member: {other:?}");
                return other;
            }
        };
        Self::Among {
            members: members.clone(),
            except,
        }
    }
}

/// Encoded UPDATE messages (one or more, back to back) for some members of a group.
///
/// The outbounds of one drain are consecutive ranges of one buffer, `batch`: a member
/// that several consecutive outbounds include can be handed their union as one slice
/// (at rack size, a member gets everything but the run of its own route: two slices
/// instead of one message per other member's route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// Who is to receive them.
    pub audience: Audience,
    /// Whole messages, headers included: `batch[range]`.
    pub bytes: Bytes,
    /// Everything the drain encoded, which `bytes` is a slice of.
    pub batch: Bytes,
    /// Where `bytes` lies in `batch`.
    pub range: std::ops::Range<usize>,
    /// How many UPDATE messages `bytes` holds (End-of-RIB markers included).
    pub messages: usize,
    /// How many prefixes they announce (withdrawals not counted), the counterpart of a
    /// receiver's count of announced NLRI.
    pub announced: usize,
}

/// What peers must share to share a group: everything export and encoding read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) kind: PeerKind,
    pub(crate) cluster_id: Ipv4Addr,
    /// The AS we present to the members (prepended towards external ones).
    pub(crate) local_as: u32,
    /// Routes from clients of `cluster_id` are reflected to this group's clients.
    pub(crate) client_to_client: bool,
    pub(crate) next_hop: NextHopMode,
    pub(crate) export: Option<Arc<Policy>>,
    pub(crate) local: LocalAddrs,
    pub(crate) four_octet_as: bool,
    pub(crate) extended_message: bool,
    pub(crate) families: FamilySet,
    pub(crate) add_path_tx: FamilySet,
    pub(crate) extended_next_hop: FamilySet,
    pub(crate) add_path: [Option<AddPathMode>; 2],
}

impl GroupKey {
    /// The encoding context every member shares.
    pub(crate) fn ctx(&self) -> SessionCtx {
        SessionCtx {
            four_octet_as: self.four_octet_as,
            extended_message: self.extended_message,
            ibgp: self.kind != PeerKind::Ebgp,
            families: self.families,
            add_path_rx: FamilySet::EMPTY,
            add_path_tx: self.add_path_tx,
            extended_next_hop: self.extended_next_hop,
            policy: Default::default(),
        }
    }

    /// The ADD-PATH send mode in `family`, if path identifiers are sent there.
    pub(crate) fn add_path(&self, family: Family) -> Option<AddPathMode> {
        self.add_path_tx
            .contains(family)
            .then(|| self.add_path[family_index(family)])
            .flatten()
    }
}

/// Members catching up with a group that was already advertising: they are sent the
/// group's Adj-RIB-Out from `cursor` on, then End-of-RIB. Members that join before a
/// catch-up has started share it (one walk, one encoding, one buffer for all of them):
/// a rack whose clients come up over a second is caught up in a few walks, not one per
/// client.
#[derive(Debug)]
struct Joiner {
    /// Sorted, never empty.
    peers: Vec<u32>,
    cursor: u32,
}

/// One update group.
pub(crate) struct UpdateGroup {
    pub(crate) id: u32,
    pub(crate) key: GroupKey,
    ctx: SessionCtx,
    packer: UpdatePacker,
    /// Member peers, sorted.
    pub(crate) members: Vec<u32>,
    by_router_id: FxHashMap<Ipv4Addr, Vec<u32>>,
    pub(crate) dirty: DirtySet,
    pub(crate) out: AdjOut,
    pub(crate) table: OutTable,
    /// Cursor of the first walk of the Loc-RIB, while the group is new.
    initial: Option<u32>,
    /// Members that take part in the first walk, and get End-of-RIB after it.
    initial_peers: Vec<u32>,
    joiners: Vec<Joiner>,
    /// Members that moved here from another group (a changed export policy, RFC 4271
    /// §9.2 without a reset): what they held there, withdrawn from them once their first
    /// table from this group is out where this group does not send it to them.
    held: FxHashMap<u32, Vec<Nlri>>,
    old: Vec<(u32, u32)>,
    new: Vec<(u32, u32)>,
    /// Out entries encoded recently, by id, under the entry's key (an id is reused once
    /// its entry is freed): attributes and MP_REACH_NLRI next hop. Entries keep no
    /// encoding; this keeps up to [`ENCODED_KEEP`] of them from one drain to the next, so
    /// that a rack's late members, each caught up with the same few thousand entries,
    /// cost one encoding per entry, while a big table's hundreds of thousands of
    /// entries are not all kept.
    encoded: FxHashMap<u32, Encoding>,
}

/// An out entry's encoding: the entry's key, its attributes and its MP_REACH_NLRI next
/// hop.
type Encoding = (adj_out::MemoKey, Box<[u8]>, Option<NextHop>);

/// A set encoded for a group: attributes, MP_REACH_NLRI next hop, ORIGINATOR_ID as
/// sent.
type SetEncoding = (Box<[u8]>, Option<NextHop>, Option<Ipv4Addr>);

/// Members whose table from the group is complete after a drain (sorted, except those
/// of the first walk), with their audience when a catch-up shared by several built one.
type Done = (Vec<u32>, Option<Arc<[PeerId]>>);

/// How many entries' encodings a group keeps between drains, at most.
const ENCODED_KEEP: usize = 4096;

/// Messages being assembled by one drain.
#[derive(Default)]
struct Batch {
    buckets: Vec<Bucket>,
    /// Per out entry, and whether the prefix lies ahead of the first catch-up's cursor,
    /// its announcement bucket (`None`: no member is to get it). Valid while the
    /// catch-ups stand still: cleared when they move.
    ann: FxHashMap<(u32, bool), Option<usize>>,
    /// The members a change to a prefix behind the first catch-up's cursor reaches
    /// while catch-ups run ([`Audience::Among`]): every member but those of the
    /// catch-ups queued behind it, which have yet to reach the prefix. `None`: nobody is
    /// left out.
    reach_behind: Option<Arc<[PeerId]>>,
    /// The same for a prefix ahead of the cursor: the first catch-up's members left out
    /// too.
    reach_ahead: Option<Arc<[PeerId]>>,
    /// Withdrawal buckets by what a withdrawn entry's audience depends on (its source
    /// peer and ORIGINATOR_ID, [`UpdateGroup::excluded`]) and its family: a table's
    /// entries mostly share one source, so a withdrawal of many builds the audience once
    /// per drain, not once per entry (a list allocated, hashed and compared each time).
    wd_by_source: FxHashMap<(u32, Option<Ipv4Addr>, Family), usize>,
    wd: FxHashMap<(Family, Audience), usize>,
}

struct Bucket {
    /// Out entry id for announcements, `None` for withdrawals.
    entry: Option<u32>,
    /// Late joiners' catch-up from the Adj-RIB-Out: sent before the drain's changes, so
    /// that the changes to prefixes it has passed land last (those to prefixes ahead of
    /// it are not for its members: it reads them there when it comes to them). Which
    /// catch-up of the drain (they go out in turn), and whether some of its members are
    /// left out (those go after the rest, so that a member gets the catch-up in few
    /// slices).
    catch_up: Option<(u32, bool)>,
    family: Family,
    audience: Audience,
    nlri: Vec<Nlri>,
}

impl Batch {
    fn bucket(&mut self, entry: Option<u32>, family: Family, audience: Audience) -> usize {
        self.buckets.push(Bucket {
            entry,
            catch_up: None,
            family,
            audience,
            nlri: Vec::new(),
        });
        self.buckets.len() - 1
    }

    fn wd_bucket(&mut self, family: Family, audience: Audience) -> usize {
        let next = self.buckets.len();
        let i = *self.wd.entry((family, audience.clone())).or_insert(next);
        if i == next {
            self.bucket(None, family, audience);
        }
        i
    }

    fn withdraw(&mut self, family: Family, audience: Audience, nlri: Nlri) {
        let i = self.wd_bucket(family, audience);
        self.buckets[i].nlri.push(nlri);
    }
}

/// What a drain reads besides the group.
pub(crate) struct DrainCtx<'a> {
    pub(crate) cfg: &'a RibConfig,
    pub(crate) facts: &'a [PeerFact],
}

impl UpdateGroup {
    pub(crate) fn new(id: u32, key: GroupKey) -> Self {
        let ctx = key.ctx();
        let multi = Family::ALL.iter().any(|f| key.add_path(*f).is_some());
        Self {
            id,
            packer: UpdatePacker::new(&ctx),
            ctx,
            members: Vec::new(),
            by_router_id: FxHashMap::default(),
            dirty: DirtySet::default(),
            out: if multi {
                AdjOut::Multi(FxHashMap::default())
            } else {
                AdjOut::Single(Vec::new())
            },
            table: OutTable::default(),
            initial: Some(0),
            initial_peers: Vec::new(),
            joiners: Vec::new(),
            held: FxHashMap::default(),
            old: Vec::new(),
            new: Vec::new(),
            encoded: FxHashMap::default(),
            key,
        }
    }

    /// Adds a member. One that arrives before the group has sent anything takes part in
    /// the first walk; a later one is sent the Adj-RIB-Out on its own first.
    pub(crate) fn join(&mut self, peer: u32, router_id: Ipv4Addr) {
        if let Err(at) = self.members.binary_search(&peer) {
            self.members.insert(at, peer);
        }
        self.by_router_id.entry(router_id).or_default().push(peer);
        if self.initial == Some(0) {
            self.initial_peers.push(peer);
        } else {
            self.enqueue(peer);
        }
    }

    /// Puts `peer` in the catch-up at the back of the queue if that one has not started,
    /// else in a new one behind it.
    fn enqueue(&mut self, peer: u32) {
        match self.joiners.last_mut() {
            Some(j) if j.cursor == 0 => {
                if let Err(at) = j.peers.binary_search(&peer) {
                    j.peers.insert(at, peer);
                }
            }
            _ => self.joiners.push(Joiner {
                peers: vec![peer],
                cursor: 0,
            }),
        }
    }

    /// Takes `peer` out of every catch-up, dropping those left empty.
    fn dequeue(&mut self, peer: u32) {
        for j in &mut self.joiners {
            j.peers.retain(|p| *p != peer);
        }
        self.joiners.retain(|j| !j.peers.is_empty());
    }

    /// Sends `peer`, a member, the group's table again, then End-of-RIB: the answer to a
    /// ROUTE-REFRESH (RFC 2918). The member stays in the group, so changes pending for the
    /// group (withdrawals above all) still reach it; a member that asks again while its
    /// catch-up runs starts over at the back of the queue, so it cannot hold up the others.
    /// A member still in the first walk gets everything with it and needs nothing more.
    pub(crate) fn rejoin(&mut self, peer: u32) {
        if self.members.binary_search(&peer).is_err() || self.initial_peers.contains(&peer) {
            return;
        }
        self.dequeue(peer);
        self.enqueue(peer);
    }

    /// Removes a member; returns whether the group is now empty.
    pub(crate) fn leave(&mut self, peer: u32) -> bool {
        self.members.retain(|m| *m != peer);
        for v in self.by_router_id.values_mut() {
            v.retain(|m| *m != peer);
        }
        self.by_router_id.retain(|_, v| !v.is_empty());
        self.initial_peers.retain(|m| *m != peer);
        self.dequeue(peer);
        self.held.remove(&peer);
        self.members.is_empty()
    }

    /// What `peer`, a member, holds from this group as far as the group knows: every
    /// advertised path it is not excluded from, and what it still held from a group before
    /// this one. A member still catching up holds less; withdrawing the rest from it too
    /// is harmless.
    pub(crate) fn held_by(&self, peer: u32, loc: &LocRib, facts: &[PeerFact]) -> Vec<Nlri> {
        let mut v = self.held.get(&peer).cloned().unwrap_or_default();
        let mut state = Vec::new();
        for slot in self.out.slots() {
            state.clear();
            self.out.get(slot, &mut state);
            let prefix = loc.dest(slot).prefix;
            for &(tx, id) in &state {
                let Some(e) = self.table.get(id) else {
                    continue;
                };
                if self
                    .excluded(e.src(), e.originator, facts)
                    .includes(PeerId(peer))
                {
                    let path_id = self.key.add_path(e.family()).map(|_| tx);
                    v.push(Nlri { path_id, prefix });
                }
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Records what `peer`, which just joined, held in its previous group: see `held`.
    pub(crate) fn set_held(&mut self, peer: u32, held: Vec<Nlri>) {
        if !held.is_empty() && self.members.binary_search(&peer).is_ok() {
            self.held.insert(peer, held);
        }
    }

    /// Withdraws from each member of `done` (its table from this group complete) what it
    /// held from its previous group and this group does not send it.
    fn withdraw_held(&mut self, done: &[u32], loc: &LocRib, dc: &DrainCtx<'_>, batch: &mut Batch) {
        let mut state = Vec::new();
        for &peer in done {
            let Some(held) = self.held.remove(&peer) else {
                continue;
            };
            for n in held {
                let family = n.family();
                state.clear();
                if let Some(slot) = loc.slot(&n.prefix) {
                    self.out.get(slot, &mut state);
                }
                let mode = self.key.add_path(family);
                let sent = state.iter().any(|&(tx, id)| {
                    (mode.is_none() || n.path_id == Some(tx))
                        && self.table.get(id).is_some_and(|e| {
                            self.excluded(e.src(), e.originator, dc.facts)
                                .includes(PeerId(peer))
                        })
                });
                // Ours must carry a path id exactly where this group sends them.
                let n = Nlri {
                    path_id: mode.map(|_| n.path_id.unwrap_or(0)),
                    prefix: n.prefix,
                };
                if !sent && self.has_family(family) {
                    batch.withdraw(family, Audience::Only(PeerId(peer)), n);
                }
            }
        }
    }

    /// Whether the group handles `family`.
    pub(crate) fn has_family(&self, family: Family) -> bool {
        self.key.families.contains(family)
    }

    /// Whether the first walk has yet to reach `slot` (marking it dirty would be
    /// redundant).
    pub(crate) fn walk_covers(&self, slot: u32) -> bool {
        self.initial.is_some_and(|c| slot >= c)
    }

    /// Work waiting: dirty prefixes, or a walk or dump in progress.
    pub(crate) fn pending(&self) -> usize {
        self.dirty.len() + usize::from(self.initial.is_some()) + self.joiners.len()
    }

    /// Prefix slots still to visit: dirty prefixes, the rest of the first walk and of each
    /// member's catch-up (an upper bound for those two: free slots are counted).
    pub(crate) fn backlog(&self, slot_count: u32) -> usize {
        let walk = self
            .initial
            .map_or(0, |c| slot_count.saturating_sub(c) as usize);
        // One walk per catch-up, however many members share it.
        let dumps: usize = self
            .joiners
            .iter()
            .map(|j| slot_count.saturating_sub(j.cursor) as usize)
            .sum();
        self.dirty.len() + walk + dumps
    }

    /// Releases everything the group holds in the Loc-RIB; returns the input attribute
    /// sets its Adj-RIB-Out held, for the intern table.
    pub(crate) fn dissolve(mut self, loc: &mut LocRib) -> Vec<Arc<AttrSet>> {
        for slot in self.dirty.drain() {
            loc.dest_mut(slot).refs -= 1;
            loc.try_free(slot);
        }
        for slot in self.out.slots() {
            loc.dest_mut(slot).refs -= 1;
            loc.try_free(slot);
        }
        self.table.release_all()
    }

    /// Members a route must not be sent to: its source, and the peer its ORIGINATOR_ID
    /// names.
    fn excluded(&self, src: u32, originator: Option<Ipv4Addr>, facts: &[PeerFact]) -> Audience {
        let mut v: Vec<PeerId> = Vec::new();
        if facts.get(src as usize).is_some_and(|f| f.group == self.id) {
            v.push(PeerId(src));
        }
        if let Some(peers) = originator.and_then(|o| self.by_router_id.get(&o)) {
            v.extend(peers.iter().map(|p| PeerId(*p)));
        }
        if v.is_empty() {
            return Audience::All;
        }
        v.sort_unstable();
        v.dedup();
        Audience::AllExcept(v)
    }

    /// Whether a route from `src` (with ORIGINATOR_ID `originator`) must not go to member
    /// `peer`: [`UpdateGroup::excluded`] for one member, without building the list (a
    /// late joiner's catch-up asks it for every route).
    pub(crate) fn excludes(
        &self,
        src: u32,
        originator: Option<Ipv4Addr>,
        peer: u32,
        facts: &[PeerFact],
    ) -> bool {
        (src == peer && facts.get(src as usize).is_some_and(|f| f.group == self.id))
            || originator
                .and_then(|o| self.by_router_id.get(&o))
                .is_some_and(|v| v.contains(&peer))
    }

    fn entry_audience(&self, id: u32, facts: &[PeerFact]) -> Audience {
        match self.table.get(id) {
            Some(e) => self.excluded(e.src(), e.originator, facts),
            None => Audience::All,
        }
    }

    /// The out entry for sending `path` of `prefix`, computed on first use (and encoded
    /// for this drain).
    fn export(
        &mut self,
        path: &Path,
        prefix: &IpNet,
        family: Family,
        dc: &DrainCtx<'_>,
    ) -> Option<u32> {
        let mask = match &self.key.export {
            // RFC 8212: no export policy, nothing to an external peer.
            None if self.key.kind == PeerKind::Ebgp => return None,
            None => 0,
            Some(p) => p.evaluate(prefix, &*path.attrs, path.attrs.route_len())?,
        };
        let src_id = dc.facts.get(path.peer as usize)?.router_id;
        let memo = (path.attrs.id(), path.peer, src_id, mask, family);
        if let Some(id) = self.table.lookup(&memo) {
            return Some(id);
        }
        let (bytes, mp, originator) = self.encode_set(&path.attrs, path.peer, mask, family, dc)?;
        let id = self.table.insert(path.attrs.clone(), memo, originator);
        self.encoded.insert(id, (memo, bytes, mp));
        Some(id)
    }

    /// The attributes the group sends for the out entry `e` (for operators: the
    /// group's Adj-RIB-Out as sent, without encoding it).
    pub(crate) fn sent_attrs(
        &self,
        e: &OutEntry,
        cfg: &RibConfig,
        facts: &[PeerFact],
    ) -> Option<crate::attrs::Attrs> {
        let fact = facts.get(e.src() as usize)?;
        let mut out = reflect::transform(cfg, &self.key, fact, &e.attrs, e.family())?;
        if let Some(p) = &self.key.export {
            p.apply(e.mask, &mut out);
        }
        Some(out)
    }

    /// What the group sends for `attrs` from `src` under export rule `mask` in `family`:
    /// the encoded attributes, the MP_REACH_NLRI next hop and the ORIGINATOR_ID; `None`
    /// when the route cannot be sent.
    fn encode_set(
        &self,
        attrs: &AttrSet,
        src: u32,
        mask: u64,
        family: Family,
        dc: &DrainCtx<'_>,
    ) -> Option<SetEncoding> {
        let fact = dc.facts.get(src as usize)?;
        let plan = reflect::plan(dc.cfg, &self.key, fact, attrs, family)?;
        // Rule mask 0: no export rule changes anything (none matched, or no policy).
        if mask == 0
            && let Some(direct) = adj_out::encode_direct(attrs, &plan, family, &self.ctx)
        {
            let originator = plan.sent_originator(attrs);
            return direct.map(|(bytes, mp)| (bytes, mp, originator));
        }
        let mut out = plan.apply(attrs);
        if let Some(p) = &self.key.export {
            p.apply(mask, &mut out);
        }
        let originator = out.originator_id;
        let (bytes, mp) = adj_out::encode(out, family, &self.ctx)?;
        Some((bytes, mp, originator))
    }

    /// Brings the group's Adj-RIB-Out for `slot` in line with the Loc-RIB, queueing the
    /// difference.
    fn process(&mut self, slot: u32, loc: &mut LocRib, dc: &DrainCtx<'_>, batch: &mut Batch) {
        let mut new = std::mem::take(&mut self.new);
        let mut old = std::mem::take(&mut self.old);
        new.clear();
        old.clear();
        let dest = loc.dest(slot);
        let prefix = dest.prefix;
        let family = match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        };
        let mode = self.key.add_path(family);
        if self.has_family(family) {
            let eligible = usize::from(dest.eligible);
            for p in addpath::select(mode, &dest.paths, eligible) {
                if let Some(id) = self.export(p, &prefix, family, dc) {
                    new.push((if mode.is_some() { p.tx_id } else { 0 }, id));
                }
            }
            new.sort_unstable();
        }
        self.out.get(slot, &mut old);
        if old != new {
            let path_id = |tx: u32| if mode.is_some() { Some(tx) } else { None };
            let nlri = |tx: u32| Nlri {
                path_id: path_id(tx),
                prefix,
            };
            for &(tx, id) in &new {
                self.table.incref(id);
                let was = old.iter().find(|o| o.0 == tx).map(|o| o.1);
                if was == Some(id) {
                    continue;
                }
                let ahead = self.joiners.first().is_some_and(|j| slot >= j.cursor);
                let b = match batch.ann.get(&(id, ahead)) {
                    Some(b) => *b,
                    None => {
                        let aud = self.entry_audience(id, dc.facts);
                        let reach = if ahead {
                            &batch.reach_ahead
                        } else {
                            &batch.reach_behind
                        };
                        let aud = match reach {
                            Some(members) => aud.within(members),
                            None => aud,
                        };
                        let b = (!self.nobody(&aud)).then(|| batch.bucket(Some(id), family, aud));
                        batch.ann.insert((id, ahead), b);
                        b
                    }
                };
                if let Some(b) = b {
                    batch.buckets[b].nlri.push(nlri(tx));
                }
                // A member that had the old path but must not have the new one.
                if let Some(was) = was {
                    let (a_new, a_old) = (
                        self.entry_audience(id, dc.facts),
                        self.entry_audience(was, dc.facts),
                    );
                    if let Audience::AllExcept(ex) = a_new {
                        for m in ex.into_iter().filter(|m| a_old.includes(*m)) {
                            batch.withdraw(family, Audience::Only(m), nlri(tx));
                        }
                    }
                }
            }
            for &(tx, id) in &old {
                self.table.decref(id);
                if new.iter().any(|n| n.0 == tx) {
                    continue;
                }
                let source = self.table.get(id).map(|e| (e.src(), e.originator, family));
                let b = match source.and_then(|k| batch.wd_by_source.get(&k)) {
                    Some(&b) => b,
                    None => {
                        let aud = self.entry_audience(id, dc.facts);
                        let b = batch.wd_bucket(family, aud);
                        if let Some(k) = source {
                            batch.wd_by_source.insert(k, b);
                        }
                        b
                    }
                };
                batch.buckets[b].nlri.push(nlri(tx));
            }
            self.out.set(slot, &new);
            let d = loc.dest_mut(slot);
            match (old.is_empty(), new.is_empty()) {
                (true, false) => d.refs += 1,
                (false, true) => d.refs -= 1,
                _ => {}
            }
        }
        self.new = new;
        self.old = old;
    }

    /// Does up to `budget` prefixes of pending work and returns the messages, in the
    /// order they must be sent.
    ///
    /// Changes to what members hold come first and never wait for a first walk or a
    /// member's catch-up: while either runs, changes get at least half of the budget, so a
    /// late joiner (or a peer that asks for ROUTE-REFRESH in a loop) cannot hold back a
    /// withdrawal from the rest of the group, and the walk and the catch-ups still move.
    pub(crate) fn drain(
        &mut self,
        loc: &mut LocRib,
        dc: &DrainCtx<'_>,
        budget: usize,
    ) -> Vec<Outbound> {
        let budget = budget.max(1);
        let mut batch = Batch::default();
        let mut done = 0usize;
        let mut eor: Vec<Done> = Vec::new();
        let walking = self.initial.is_some() || !self.joiners.is_empty();
        let changes = if walking { budget.div_ceil(2) } else { budget };
        self.drain_dirty(loc, dc, &mut batch, &mut done, changes);
        if let Some(mut cur) = self.initial {
            // Slots behind the cursor are covered by the dirty set.
            let end = loc.slot_count();
            while cur < end && done < budget {
                if loc.is_live(cur) {
                    self.process(cur, loc, dc, &mut batch);
                    done += 1;
                }
                cur += 1;
            }
            if cur >= end {
                self.initial = None;
                eor.push((std::mem::take(&mut self.initial_peers), None));
            } else {
                self.initial = Some(cur);
            }
        }
        if self.initial.is_none() {
            // A catch-up reads the Adj-RIB-Out, which the first walk fills.
            self.dump_joiners(loc, dc, &mut batch, &mut done, budget, &mut eor);
        }
        // What the walk and the catch-ups left of the budget.
        self.drain_dirty(loc, dc, &mut batch, &mut done, budget);
        if !self.held.is_empty() {
            let done: Vec<u32> = eor.iter().flat_map(|d| d.0.iter().copied()).collect();
            self.withdraw_held(&done, loc, dc, &mut batch);
        }
        let out = self.encode(batch, &eor, dc);
        if self.encoded.len() > ENCODED_KEEP {
            // Emptied, its room kept: a big table's drains fill it again at once.
            self.encoded.clear();
        }
        self.table.collect();
        out
    }

    /// Brings dirty prefixes up to date until `done` reaches `budget`.
    fn drain_dirty(
        &mut self,
        loc: &mut LocRib,
        dc: &DrainCtx<'_>,
        batch: &mut Batch,
        done: &mut usize,
        budget: usize,
    ) {
        self.note_catch_ups(batch);
        while *done < budget {
            let Some(slot) = self.dirty.pop() else { break };
            loc.dest_mut(slot).refs -= 1;
            self.process(slot, loc, dc, batch);
            loc.try_free(slot);
            *done += 1;
        }
    }

    /// Records in `batch` which members the changes processed next reach: all but those
    /// whose catch-up has yet to reach the prefix. A catch-up reads the Adj-RIB-Out when it
    /// comes to a prefix, so it sends them the prefix as changed; the change sent to them
    /// too would reach them twice (a rack's clients that come up together announce
    /// their routes in the turn they join). Withdrawals still go to them: a member that
    /// asked for a refresh holds what it had.
    fn note_catch_ups(&self, batch: &mut Batch) {
        batch.ann.clear();
        batch.reach_behind = None;
        batch.reach_ahead = None;
        let Some((first, rest)) = self.joiners.split_first() else {
            return;
        };
        let mut behind: Vec<u32> = rest.iter().flat_map(|j| j.peers.iter().copied()).collect();
        behind.sort_unstable();
        behind.dedup();
        let reach = |behind: &[u32]| -> Option<Arc<[PeerId]>> {
            (!behind.is_empty()).then(|| {
                self.members
                    .iter()
                    .filter(|m| behind.binary_search(m).is_err())
                    .map(|m| PeerId(*m))
                    .collect()
            })
        };
        batch.reach_behind = reach(&behind);
        behind.extend_from_slice(&first.peers);
        behind.sort_unstable();
        behind.dedup();
        batch.reach_ahead = reach(&behind);
    }

    /// Whether `aud`, an audience of a change, leaves out every member.
    fn nobody(&self, aud: &Audience) -> bool {
        match aud {
            Audience::AllExcept(v) => v.len() >= self.members.len(),
            Audience::Among { members, except } => except.len() >= members.len(),
            Audience::All | Audience::Only(_) => false,
        }
    }

    /// Sends late members what the group has advertised, from the Adj-RIB-Out: each
    /// catch-up walks the Adj-RIB-Out once for all its members, one bucket per out entry.
    fn dump_joiners(
        &mut self,
        loc: &LocRib,
        dc: &DrainCtx<'_>,
        batch: &mut Batch,
        done: &mut usize,
        budget: usize,
        eor: &mut Vec<Done>,
    ) {
        let end = loc.slot_count();
        let mut state = Vec::new();
        let mut seq = 0u32;
        while let Some(j) = self.joiners.first_mut() {
            let mut cur = j.cursor;
            let peers = std::mem::take(&mut j.peers);
            let members: Option<Arc<[PeerId]>> =
                (peers.len() > 1).then(|| peers.iter().map(|p| PeerId(*p)).collect());
            // Per out entry, its bucket, or `None` when no member of the catch-up is to
            // get it.
            let mut buckets: FxHashMap<u32, Option<usize>> = FxHashMap::default();
            while cur < end && *done < budget {
                state.clear();
                self.out.get(cur, &mut state);
                if !state.is_empty() {
                    *done += 1;
                    let prefix = loc.dest(cur).prefix;
                    for &(tx, id) in &state {
                        let Some(e) = self.table.get(id) else {
                            continue;
                        };
                        let family = e.family();
                        let b = match buckets.get(&id) {
                            Some(b) => *b,
                            None => {
                                let aud = self.catch_up_audience(
                                    e.src(),
                                    e.originator,
                                    &peers,
                                    members.as_ref(),
                                    dc.facts,
                                );
                                let b = aud.map(|aud| {
                                    let some_left_out = matches!(
                                        &aud,
                                        Audience::Among { except, .. } if !except.is_empty()
                                    );
                                    let b = batch.bucket(Some(id), family, aud);
                                    batch.buckets[b].catch_up = Some((seq, some_left_out));
                                    b
                                });
                                buckets.insert(id, b);
                                b
                            }
                        };
                        let Some(b) = b else {
                            continue;
                        };
                        let path_id = self.key.add_path(family).map(|_| tx);
                        batch.buckets[b].nlri.push(Nlri { path_id, prefix });
                    }
                }
                cur += 1;
            }
            if cur < end {
                let j = &mut self.joiners[0];
                j.peers = peers;
                j.cursor = cur;
                return;
            }
            eor.push((peers, members));
            self.joiners.remove(0);
            seq += 1;
        }
    }

    /// Which members of a catch-up (`peers`; `members`, the same as an audience, when
    /// there are several) a route from `src` with ORIGINATOR_ID `originator` goes to;
    /// `None` when to none of them.
    fn catch_up_audience(
        &self,
        src: u32,
        originator: Option<Ipv4Addr>,
        peers: &[u32],
        members: Option<&Arc<[PeerId]>>,
        facts: &[PeerFact],
    ) -> Option<Audience> {
        let Some(members) = members else {
            let p = *peers.first()?;
            return (!self.excludes(src, originator, p, facts))
                .then_some(Audience::Only(PeerId(p)));
        };
        let except: Vec<PeerId> = match self.excluded(src, originator, facts) {
            Audience::AllExcept(v) => v
                .into_iter()
                .filter(|p| members.binary_search(p).is_ok())
                .collect(),
            _ => Vec::new(),
        };
        (except.len() < members.len()).then(|| Audience::Among {
            members: members.clone(),
            except,
        })
    }

    /// Packs the batch into messages, consecutive ones for the same audience sharing one
    /// `Bytes`, then the End-of-RIB markers (RFC 4724 §2) of members whose initial
    /// advertisement is complete.
    fn encode(&mut self, batch: Batch, eor: &[Done], dc: &DrainCtx<'_>) -> Vec<Outbound> {
        let mut out = Encoded::default();
        // Catch-ups first (each in turn, what all its members get before what some are
        // left out of), then withdrawals (some go to the member an announcement below
        // skips), then announcements: a prefix changed by this drain ends in its new state
        // at every member, a joiner included.
        let rank = |b: &Bucket| match (b.catch_up, b.entry) {
            (Some((seq, some_left_out)), _) => (0, seq, some_left_out),
            (None, None) => (1, 0, false),
            (None, Some(_)) => (2, 0, false),
        };
        let mut order: Vec<&Bucket> = batch.buckets.iter().collect();
        order.sort_by_key(|b| rank(b));
        for b in order {
            out.switch(Some(&b.audience));
            // Neither can fail: the out entry was checked to fit a message with a
            // longest prefix when it was built.
            let written = match b.entry.filter(|id| self.table.get(*id).is_some()) {
                Some(id) => {
                    let key = self.table.get(id).map(OutEntry::key);
                    if let Some(e) = self.table.get(id)
                        && self.encoded.get(&id).is_none_or(|c| Some(c.0) != key)
                        && let Some((bytes, mp, _)) =
                            self.encode_set(&e.attrs, e.src(), e.mask, e.family(), dc)
                    {
                        self.encoded.insert(id, (e.key(), bytes, mp));
                    }
                    match self.encoded.get(&id).filter(|c| Some(c.0) == key) {
                        Some((_, bytes, mp)) => {
                            out.announced += b.nlri.len();
                            self.packer.announce(
                                b.family,
                                bytes,
                                mp.as_ref(),
                                &b.nlri,
                                &mut out.buf,
                            )
                        }
                        None => Ok(0),
                    }
                }
                None => self.packer.withdraw(b.family, &b.nlri, &mut out.buf),
            };
            out.messages += written.unwrap_or(0);
        }
        let complete: usize = eor.iter().map(|d| d.0.len()).sum();
        if complete > 0 {
            let all = complete == self.members.len();
            let audiences: Vec<Audience> = if all {
                vec![Audience::All]
            } else {
                eor.iter()
                    .filter_map(|(peers, members)| match (peers.as_slice(), members) {
                        ([], _) => None,
                        ([p], _) => Some(Audience::Only(PeerId(*p))),
                        (_, Some(m)) => Some(Audience::Among {
                            members: m.clone(),
                            except: Vec::new(),
                        }),
                        (_, None) => {
                            let mut v: Vec<PeerId> = peers.iter().map(|p| PeerId(*p)).collect();
                            v.sort_unstable();
                            Some(Audience::Among {
                                members: v.into(),
                                except: Vec::new(),
                            })
                        }
                    })
                    .collect()
            };
            for a in audiences {
                out.switch(Some(&a));
                for f in self.key.families.iter() {
                    if Update::end_of_rib(f)
                        .encode(&self.ctx, &mut out.buf)
                        .is_ok()
                    {
                        out.messages += 1;
                    }
                }
            }
        }
        out.switch(None);
        out.finish()
    }
}

/// Messages being packed into one buffer, cut into runs of the same audience.
#[derive(Default)]
struct Encoded {
    /// Closed runs: audience, where in `buf`, messages, announced prefixes.
    runs: Vec<(Audience, std::ops::Range<usize>, usize, usize)>,
    buf: BytesMut,
    audience: Option<Audience>,
    /// Where the current run starts in `buf`.
    start: usize,
    messages: usize,
    announced: usize,
}

impl Encoded {
    /// Closes the current run if the audience changes.
    fn switch(&mut self, next: Option<&Audience>) {
        if self.audience.as_ref() == next {
            return;
        }
        let (messages, announced) = (
            std::mem::take(&mut self.messages),
            std::mem::take(&mut self.announced),
        );
        let end = self.buf.len();
        if let Some(a) = self.audience.take()
            && end > self.start
        {
            self.runs.push((a, self.start..end, messages, announced));
        }
        self.start = end;
        self.audience = next.cloned();
    }

    /// The runs as outbounds, slices of one frozen buffer.
    fn finish(self) -> Vec<Outbound> {
        let batch = self.buf.freeze();
        self.runs
            .into_iter()
            .map(|(audience, range, messages, announced)| Outbound {
                audience,
                bytes: batch.slice(range.clone()),
                batch: batch.clone(),
                range,
                messages,
                announced,
            })
            .collect()
    }
}
