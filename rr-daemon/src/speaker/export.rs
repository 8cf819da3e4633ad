//! Export: draining update groups into per-peer sends, at the pace of the writers.
//!
//! The core does not see the sessions' queues; the shell passes a function that reads a
//! peer's unwritten UPDATE bytes, and the core adds what it hands out during the turn.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bgp_fsm::State;
use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, Notification};
use bytes::Bytes;
use rib::{Audience, Outbound, PeerId};
use tracing::{info, warn};

use super::core::{Action, Core};
use crate::session::{Command, WINDOW};

/// Unwritten UPDATE bytes a peer may have before it is reset as unable to keep up. A full
/// table is some tens of megabytes, shared with the other members of its update group.
pub(crate) const MAX_QUEUED: usize = 256 << 20;

/// Unwritten UPDATE bytes the whole process may hold, over every session: a bound that
/// [`MAX_QUEUED`] per peer does not give when there are many update groups (eBGP peers,
/// different policies), each with a peer behind. The members of a group share their
/// buffers, so a group holds what its slowest member has not written; past this bound
/// over all groups, the peers furthest behind are reset (Cease, Out of Resources) until
/// the rest fits.
pub(crate) const MAX_QUEUED_TOTAL: usize = 1 << 30;

/// How many prefixes one drain of an update group visits: a slice of export. The shell
/// encodes as many slices after a turn as the UPDATEs the turn took in call for, within
/// a bound of time, before it looks at its inputs again: requests (accepts, the control
/// API, reloads) and session events are never starved by a big table.
const DRAIN_SLICE: usize = 2048;

/// UPDATE bytes handed out between two looks at every peer's unwritten output: what the
/// process may hold beyond [`MAX_QUEUED_TOTAL`] at most before its peers furthest behind
/// are reset.
const SCAN_EVERY: usize = 16 << 20;

/// See [`SCAN_EVERY`]: the look is also taken this long after the last.
const SCAN_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// How many best-path changes one turn hands on, at most.
const BEST_SLICE: usize = 4096;

/// A peer's unwritten bytes: what the session holds (`queued`) and what this turn handed
/// it on top, which the shell adds once it carries out the sends.
struct Unwritten<'a> {
    queued: &'a dyn Fn(IpAddr) -> usize,
    handed: HashMap<IpAddr, usize>,
}

impl Unwritten<'_> {
    fn get(&self, peer: IpAddr) -> usize {
        (self.queued)(peer) + self.handed.get(&peer).copied().unwrap_or(0)
    }
}

/// A member of the group being drained, as this turn sees it.
struct Target {
    id: PeerId,
    addr: IpAddr,
    generation: u64,
    /// Unwritten bytes at the start of the turn.
    unwritten: usize,
    /// Bytes handed to it during the turn.
    handed: usize,
    /// UPDATEs handed to it during the turn (in the run included), and the prefixes
    /// they announce.
    messages: usize,
    announced: usize,
    /// The part of the drain's buffer it is to receive next, not handed yet, and the
    /// UPDATEs in it: consecutive pieces grow it, so that a member gets the drain in as
    /// few slices as its audience allows (at rack size, two: before and after its own
    /// route).
    run: Option<(Range<usize>, usize)>,
}

impl Target {
    /// Hands `bytes`, `updates` UPDATE messages, to the member's session.
    fn send(&mut self, actions: &mut VecDeque<Action>, bytes: Bytes, updates: usize) {
        self.handed += bytes.len();
        actions.push_back(Action::Command {
            peer: self.addr,
            generation: self.generation,
            command: Command::Send { bytes, updates },
        });
    }

    /// Adds `batch[r]`, `updates` UPDATE messages, to what the member receives: joined
    /// to the run when it continues it, else the run is handed over and `r` starts the
    /// next.
    fn give(
        &mut self,
        actions: &mut VecDeque<Action>,
        batch: &Bytes,
        r: Range<usize>,
        updates: usize,
    ) {
        self.messages += updates;
        if r.is_empty() {
            return;
        }
        match self.run.take() {
            Some((cur, n)) if cur.end == r.start => {
                self.run = Some((cur.start..r.end, n + updates))
            }
            Some((cur, n)) => {
                self.send(actions, batch.slice(cur), n);
                self.run = Some((r, updates));
            }
            None => self.run = Some((r, updates)),
        }
    }

    /// Hands over what is left of the run.
    fn finish(&mut self, actions: &mut VecDeque<Action>, batch: &Bytes) {
        if let Some((r, n)) = self.run.take() {
            self.send(actions, batch.slice(r), n);
        }
    }
}

/// Outbounds of one drain that follow each other in its buffer and are all for every
/// member or every member but a few, or all for the members of one shared list but a few
/// (a catch-up's, or those a change reaches while catch-ups run; not for one member
/// alone): handed out together, in time linear in the members plus the exceptions rather
/// than members times outbounds.
struct Segment<'a> {
    range: Range<usize>,
    messages: usize,
    announced: usize,
    /// The shared list of members ([`Audience::Among`]) the segment is for; `None` when
    /// it is for every member.
    among: Option<Arc<[PeerId]>>,
    /// Per excluded member, the outbounds of the segment it is excluded from.
    except: HashMap<PeerId, Vec<&'a Outbound>>,
    /// Where each outbound ends in the buffer, and the messages of the segment up to
    /// there: how many UPDATEs an excluded member's pieces hold.
    ends: Vec<(usize, usize)>,
}

impl<'a> Segment<'a> {
    fn new(o: &Outbound) -> Self {
        Self {
            range: o.range.start..o.range.start,
            messages: 0,
            announced: 0,
            among: match &o.audience {
                Audience::Among { members, .. } => Some(members.clone()),
                _ => None,
            },
            except: HashMap::new(),
            ends: Vec::new(),
        }
    }

    /// Whether `o` continues the segment: it follows it in the buffer, for the same
    /// members.
    fn continues(&self, o: &Outbound) -> bool {
        self.range.end == o.range.start
            && match (&self.among, &o.audience) {
                (None, Audience::All | Audience::AllExcept(_)) => true,
                (Some(m), Audience::Among { members, .. }) => Arc::ptr_eq(m, members),
                _ => false,
            }
    }

    fn push(&mut self, o: &'a Outbound) {
        self.range.end = o.range.end;
        self.messages += o.messages;
        self.announced += o.announced;
        self.ends.push((o.range.end, self.messages));
        if let Audience::AllExcept(v) | Audience::Among { except: v, .. } = &o.audience {
            for p in v {
                self.except.entry(*p).or_default().push(o);
            }
        }
    }

    /// Gives every target the segment is for its share: the segment but the outbounds
    /// it is excluded from.
    fn hand_out(&self, targets: &mut [Target], actions: &mut VecDeque<Action>, batch: &Bytes) {
        match &self.among {
            None => {
                for t in targets.iter_mut() {
                    self.give_to(t, actions, batch);
                }
            }
            Some(members) => {
                for p in members.iter() {
                    if let Ok(k) = targets.binary_search_by_key(p, |t| t.id) {
                        self.give_to(&mut targets[k], actions, batch);
                    }
                }
            }
        }
    }

    /// Gives `t` its share of the segment.
    fn give_to(&self, t: &mut Target, actions: &mut VecDeque<Action>, batch: &Bytes) {
        if t.unwritten > MAX_QUEUED {
            return;
        }
        t.announced += self.announced;
        let Some(skipped) = self.except.get(&t.id) else {
            t.give(actions, batch, self.range.clone(), self.messages);
            return;
        };
        let mut at = self.range.start;
        for o in skipped {
            t.announced -= o.announced;
            let n = self.messages_before(o.range.start) - self.messages_before(at);
            t.give(actions, batch, at..o.range.start, n);
            at = o.range.end;
        }
        let n = self.messages - self.messages_before(at);
        t.give(actions, batch, at..self.range.end, n);
    }

    /// The segment's messages before `at`, its start or the end of one of its outbounds.
    fn messages_before(&self, at: usize) -> usize {
        match self.ends.binary_search_by_key(&at, |&(end, _)| end) {
            Ok(k) => self.ends[k].1,
            Err(_) => {
                debug_assert_eq!(at, self.range.start, "not a boundary of the segment");
                0
            }
        }
    }
}

/// Hands the outbounds of one drain to the targets (sorted by id), in order: each member
/// gets every outbound whose audience includes it, consecutive ones joined into one
/// slice of `batch`.
fn distribute(
    drained: &[Outbound],
    batch: &Bytes,
    targets: &mut [Target],
    actions: &mut VecDeque<Action>,
) {
    let mut segment: Option<Segment<'_>> = None;
    for o in drained {
        if let Audience::Only(p) = &o.audience {
            if let Some(seg) = segment.take() {
                seg.hand_out(targets, actions, batch);
            }
            if let Ok(k) = targets.binary_search_by_key(p, |t| t.id)
                && targets[k].unwritten <= MAX_QUEUED
            {
                let t = &mut targets[k];
                t.announced += o.announced;
                t.give(actions, batch, o.range.clone(), o.messages);
            }
            continue;
        }
        let mut seg = match segment.take() {
            Some(seg) if seg.continues(o) => seg,
            Some(seg) => {
                seg.hand_out(targets, actions, batch);
                Segment::new(o)
            }
            None => Segment::new(o),
        };
        seg.push(o);
        segment = Some(seg);
    }
    if let Some(seg) = segment {
        seg.hand_out(targets, actions, batch);
    }
    for t in targets.iter_mut() {
        t.finish(actions, batch);
    }
}

impl Core {
    /// Encodes one slice of every update group's pending work whose writers have room,
    /// and hands it to the members ([`Action::Command`] with [`Command::Send`]). `queued` reads a peer's unwritten UPDATE bytes. Returns
    /// whether work remains that could go out now (the caller turns again at once);
    /// `false` when everything is out or every group with work waits for its writers.
    pub(crate) fn flush(&mut self, now: Instant, queued: &dyn Fn(IpAddr) -> usize) -> bool {
        if self.gr.recovering() {
            let statics: Vec<IpAddr> = self
                .peers
                .values()
                .filter(|p| !p.dynamic)
                .map(|p| p.address())
                .collect();
            if self.gr.deferring() {
                // Every configured peer up and, unless it restarts too, done with its
                // initial table: selection can run.
                if !self.gr.selection_complete(statics.iter().copied()) {
                    return false;
                }
                info!("graceful restart: every peer's End-of-RIB received, sending routes");
                self.gr.end_selection();
                self.end_restart();
            }
            if self.gr.recovery_complete(statics.into_iter()) {
                info!("graceful restart: recovery over");
                self.gr.end_recovery();
            }
        }
        let mut unwritten = Unwritten {
            queued,
            handed: HashMap::new(),
        };
        // A member handed enough to pass its bound, or one already past it.
        let mut suspect = false;
        for g in self.rib.pending_groups() {
            let members = self.rib.group_members(g);
            if !self.has_room(&members, &unwritten) {
                continue;
            }
            let drained = self.rib.drain_group(g, DRAIN_SLICE);
            let Some(batch) = drained.first().map(|o| o.batch.clone()) else {
                continue;
            };
            // The members the drain has output for, each looked up once per turn, not
            // once per message: a rack's group sends thousands of small UPDATEs to
            // thousands of members. A drain of late joiners' catch-ups alone looks up
            // those joiners only (each shared list of members once).
            let everyone = drained
                .iter()
                .any(|o| matches!(o.audience, Audience::All | Audience::AllExcept(_)));
            let wanted = if everyone {
                members
            } else {
                let mut v: Vec<PeerId> = Vec::new();
                // A drain's outbounds share a few lists (a catch-up's, those a change
                // reaches while catch-ups run), each taken once.
                let mut seen: Vec<&Arc<[PeerId]>> = Vec::new();
                for o in &drained {
                    match &o.audience {
                        Audience::Only(p) => v.push(*p),
                        Audience::Among { members, .. }
                            if !seen.iter().any(|s| Arc::ptr_eq(s, members)) =>
                        {
                            v.extend(members.iter().copied());
                            seen.push(members);
                        }
                        _ => {}
                    }
                }
                v.sort_unstable();
                v.dedup();
                v
            };
            let mut targets: Vec<Target> = wanted
                .into_iter()
                .filter_map(|m| {
                    let addr = *self.by_id.get(&m)?;
                    let generation = self.peers.get(&addr)?.generation;
                    let unwritten = unwritten.get(addr);
                    Some(Target {
                        id: m,
                        addr,
                        generation,
                        unwritten,
                        handed: 0,
                        messages: 0,
                        announced: 0,
                        run: None,
                    })
                })
                .collect();
            // Past MAX_QUEUED a member is reset below and gets nothing more: what it
            // misses now it gets with its next session.
            distribute(&drained, &batch, &mut targets, &mut self.actions);
            for t in &targets {
                suspect |= t.unwritten + t.handed > MAX_QUEUED;
            }
            for t in targets.iter().filter(|t| t.handed > 0) {
                self.handed_since_scan += t.handed;
                *unwritten.handed.entry(t.addr).or_default() += t.handed;
                if let Some(p) = self.peers.get_mut(&t.addr) {
                    p.counters.sent(t.messages, t.announced);
                }
            }
        }
        // Every peer is looked at when one of this turn's members passed its own bound,
        // or once [`SCAN_EVERY`] bytes went out or [`SCAN_PERIOD`] passed since the last
        // look (a rack's turns hand out a few kilobytes to thousands of members; looking
        // at all of them each turn was most of the cost).
        let due = self.handed_since_scan >= SCAN_EVERY
            || self.last_scan.is_none_or(|t| now >= t + SCAN_PERIOD);
        if suspect || due {
            self.handed_since_scan = 0;
            self.last_scan = Some(now);
            self.reset_laggards(now, &unwritten);
        }
        self.rib
            .pending_groups()
            .into_iter()
            .any(|g| self.has_room(&self.rib.group_members(g), &unwritten))
    }

    /// Whether an update group has output to encode ([`Core::flush`]).
    pub(crate) fn export_pending(&self) -> bool {
        !self.rib.pending_groups().is_empty()
    }

    /// Our restart is over: sessions that connect from now on no longer claim it.
    pub(super) fn end_restart(&mut self) {
        for (peer, p) in &self.peers {
            self.actions.push_back(Action::Command {
                peer: *peer,
                generation: p.generation,
                command: Command::EndRestart,
            });
        }
    }

    /// Passes up to `room` best-path changes on ([`Action::BestChange`]): as many as
    /// every subscriber can take now. The others wait in the RIB, one per prefix in its
    /// latest state, however often it changed meanwhile.
    pub(crate) fn best_changes(&mut self, room: usize) {
        // At most a slice per turn however much room there is: a million withdrawals
        // must not become a million queued actions at once (80 MB at the peak of a full
        // table's withdrawal).
        for _ in 0..room.min(BEST_SLICE) {
            let Some(c) = self.rib.poll_best_change() else {
                return;
            };
            self.actions.push_back(Action::BestChange(c));
        }
    }

    /// Whether best-path changes wait for [`Core::best_changes`].
    pub(crate) fn best_changes_pending(&self) -> bool {
        self.rib.pending_best_changes() > 0
    }

    /// Whether a member of a group can take more output: a group goes at the pace of its
    /// fastest member, and one that falls [`MAX_QUEUED`] behind is reset rather than
    /// holding the others back.
    fn has_room(&self, members: &[PeerId], unwritten: &Unwritten<'_>) -> bool {
        members.iter().any(|m| {
            self.by_id
                .get(m)
                .is_some_and(|a| unwritten.get(*a) < WINDOW)
        })
    }

    /// Resets peers whose unwritten output passed the bound (RFC 4486 Out of Resources):
    /// they come back by themselves and get the table afresh. Then, while the process
    /// holds more than [`MAX_QUEUED_TOTAL`], the peer furthest behind goes the same way.
    fn reset_laggards(&mut self, now: Instant, unwritten: &Unwritten<'_>) {
        let mut reset = Vec::new();
        // (unwritten, address, group) of the established peers that stay.
        let mut behind = Vec::new();
        for p in self.peers.values() {
            if p.session.state != State::Established {
                continue;
            }
            let n = unwritten.get(p.address());
            if n > MAX_QUEUED {
                warn!(peer = %p.address(), "peer cannot keep up: resetting the session");
                reset.push(p.address());
            } else if n > 0 {
                behind.push((n, p.address(), self.rib.group_of(p.id)));
            }
        }
        // Largest first; the address decides ties, so that a run replays exactly.
        behind.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // Bounded: each round removes one peer.
        while process_total(&behind) > MAX_QUEUED_TOTAL {
            let (n, addr, _) = behind.remove(0);
            warn!(peer = %addr, unwritten = n, bound = MAX_QUEUED_TOTAL, "unwritten output of the whole process over its bound: resetting the peer furthest behind");
            reset.push(addr);
        }
        for addr in reset {
            if let Some(p) = self.peers.get_mut(&addr) {
                let n = Notification::new(ErrorCode::CEASE, subcode::cease::OUT_OF_RESOURCES);
                self.actions.push_back(Action::Command {
                    peer: addr,
                    generation: p.generation,
                    command: Command::Reset(n),
                });
                p.set_state(State::Idle, now);
            }
        }
    }
}

/// What the process holds for `behind` (unwritten bytes, peer, group), largest first: per
/// update group the bytes of its member furthest behind (members share their buffers);
/// a peer in no group counts alone.
fn process_total(behind: &[(usize, IpAddr, Option<rib::GroupId>)]) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(behind.len());
    let mut total = 0usize;
    for (n, _, g) in behind {
        // Largest first: the first member seen is its group's furthest behind.
        if g.is_none_or(|g| seen.insert(g)) {
            total = total.saturating_add(*n);
        }
    }
    total
}
