//! Export: draining update groups into per-peer sends, at the pace of the writers.
//!
//! The core does not see the sessions' queues; the shell passes a function that reads a
//! peer's unwritten UPDATE bytes, and the core adds what it hands out during the turn.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use bgp_fsm::State;
use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, Notification};
use bytes::Bytes;
use rib::PeerId;
use tracing::{info, warn};

use super::core::{Action, Core};
use super::peers::Peer;
use crate::session::{Command, WINDOW};

/// Unwritten UPDATE bytes a peer may have before it is reset as unable to keep up. A full
/// table is some tens of megabytes, shared with the other members of its update group.
pub(crate) const MAX_QUEUED: usize = 256 << 20;

/// How many prefixes one drain of an update group visits before the core looks at its
/// inputs again: requests (accepts, the control API, reloads) and session events are
/// never starved by a big table.
const DRAIN_SLICE: usize = 2048;

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
    messages: usize,
    announced: usize,
}

impl Target {
    /// Hands `bytes` to the member's session.
    fn send(&mut self, actions: &mut VecDeque<Action>, bytes: Bytes) {
        self.handed += bytes.len();
        actions.push_back(Action::Command {
            peer: self.addr,
            generation: self.generation,
            command: Command::Send(bytes),
        });
    }
}

impl Core {
    /// Encodes one slice of every update group's pending work whose writers have room,
    /// hands it to the members ([`Action::Command`] with [`Command::Send`]), and passes
    /// best-path changes on. `queued` reads a peer's unwritten UPDATE bytes. Returns
    /// whether work remains that could go out now (the caller turns again at once);
    /// `false` when everything is out or every group with work waits for its writers.
    pub(crate) fn flush(&mut self, now: Instant, queued: &dyn Fn(IpAddr) -> usize) -> bool {
        if self.gr.deferring() {
            // Every configured peer up and done with its initial table: selection can run.
            let statics = self
                .peers
                .values()
                .filter(|p| !p.dynamic)
                .map(Peer::address);
            if !self.gr.deferral_complete(statics) {
                return false;
            }
            info!("graceful restart: every peer's End-of-RIB received, sending routes");
            self.gr.end_deferral();
        }
        let mut unwritten = Unwritten {
            queued,
            handed: HashMap::new(),
        };
        for g in self.rib.pending_groups() {
            // Each member looked up once per turn, not once per message: a rack's group
            // sends thousands of small UPDATEs to thousands of members.
            let mut targets: Vec<Target> = self
                .rib
                .group_members(g)
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
                    })
                })
                .collect();
            if !targets.iter().any(|t| t.unwritten < WINDOW) {
                continue;
            }
            let drained = self.rib.drain_group(g, DRAIN_SLICE);
            let Some(batch) = drained.first().map(|o| o.batch.clone()) else {
                continue;
            };
            for t in &mut targets {
                // Past MAX_QUEUED it is reset below; what it misses now it gets with its
                // next session.
                if t.unwritten > MAX_QUEUED {
                    continue;
                }
                // Consecutive outbounds that include the member go as one slice.
                let mut run: Option<std::ops::Range<usize>> = None;
                let id = t.id;
                for o in drained.iter().filter(|o| o.audience.includes(id)) {
                    t.messages += o.messages;
                    t.announced += o.announced;
                    run = match run {
                        Some(r) if r.end == o.range.start => Some(r.start..o.range.end),
                        Some(r) => {
                            t.send(&mut self.actions, batch.slice(r));
                            Some(o.range.clone())
                        }
                        None => Some(o.range.clone()),
                    };
                }
                if let Some(r) = run {
                    t.send(&mut self.actions, batch.slice(r));
                }
            }
            for t in targets.iter().filter(|t| t.handed > 0) {
                *unwritten.handed.entry(t.addr).or_default() += t.handed;
                if let Some(p) = self.peers.get_mut(&t.addr) {
                    p.counters.sent(t.messages, t.announced);
                }
            }
        }
        self.reset_laggards(now, &unwritten);
        // A slice per turn: a million withdrawals must not become a million queued
        // actions at once (80 MB at the peak of a full table's withdrawal).
        for _ in 0..BEST_SLICE {
            let Some(c) = self.rib.poll_best_change() else {
                break;
            };
            self.actions.push_back(Action::BestChange(c));
        }
        self.rib.best_changes_pending() > 0
            || self
                .rib
                .pending_groups()
                .into_iter()
                .any(|g| self.has_room(&self.rib.group_members(g), &unwritten))
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
    /// they come back by themselves and get the table afresh.
    fn reset_laggards(&mut self, now: Instant, unwritten: &Unwritten<'_>) {
        for p in self.peers.values_mut() {
            if p.session.state == State::Established && unwritten.get(p.address()) > MAX_QUEUED {
                warn!(peer = %p.address(), "peer cannot keep up: resetting the session");
                let n = Notification::new(ErrorCode::CEASE, subcode::cease::OUT_OF_RESOURCES);
                self.actions.push_back(Action::Command {
                    peer: p.address(),
                    generation: p.generation,
                    command: Command::Reset(n),
                });
                p.set_state(State::Idle, now);
            }
        }
    }
}
