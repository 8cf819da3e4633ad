//! Every BFD session of the daemon in one sans-IO structure: demultiplexing of received
//! packets (§6.3: by Your Discriminator, else by the sender's address), one timer heap
//! for all sessions, and the queues of packets to send and state changes to report.
//!
//! The heap holds at most one live entry per session: the session's next deadline (its
//! next transmission, or the end of its detection time). A received packet that pushes
//! the detection time back does not touch the heap: the entry fires early, finds nothing
//! due, and is pushed again at the new deadline. So a packet costs a hash lookup and no
//! heap work, and thousands of sessions at 300 ms cost one heap of thousands of entries,
//! not a task or a timer each. Entries made stale by a deadline that moved earlier are
//! skipped when they come up, and the heap is rebuilt if they ever outnumber the
//! sessions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use super::packet::{DecodeError, Packet, State};
use super::session::{Change, Discard, Session, SessionConfig};
use bgp_fsm::rng::Rng;

/// What identifies a session before its discriminators are known: the peer's address
/// and single hop (RFC 5881) or multihop (RFC 5883).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The peer's address.
    pub peer: IpAddr,
    /// Multihop (port 4784) rather than single hop (3784).
    pub multihop: bool,
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// To whom, and single or multihop.
    pub key: Key,
    /// Our source address, when configured; else the route's.
    pub local: Option<IpAddr>,
    /// The packet.
    pub bytes: Vec<u8>,
}

/// A state change of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Which session.
    pub key: Key,
    /// What changed.
    pub change: Change,
    /// The remote side's state as last heard (AdminDown: the peer took the session down
    /// on purpose, which is no path failure, RFC 5882 §3.2).
    pub remote: State,
}

/// Why a received datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not a valid BFD Control packet.
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// A single-hop packet whose TTL or hop limit is not 255 (RFC 5881 §5).
    #[error("TTL {0:?} on a single-hop session")]
    Ttl(Option<u8>),
    /// No session of ours matches it.
    #[error("no such session")]
    NoSession,
    /// The session refused it.
    #[error("{0}")]
    Session(#[from] Discard),
}

struct Slot {
    key: Key,
    local: Option<IpAddr>,
    session: Session,
    /// The time of the session's live heap entry.
    scheduled: Option<Instant>,
}

/// All sessions.
pub struct Endpoint {
    slots: HashMap<u32, Slot>,
    by_key: HashMap<Key, u32>,
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: Rng,
}

impl Endpoint {
    /// No sessions; `seed` makes discriminators and jitter (pseudo-)random.
    pub fn new(seed: u64) -> Self {
        Self {
            slots: HashMap::new(),
            by_key: HashMap::new(),
            heap: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: Rng::new(seed),
        }
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Entries in the timer heap, live and stale.
    #[cfg(test)]
    pub(super) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The session of `key`.
    pub fn session(&self, key: Key) -> Option<&Session> {
        let d = self.by_key.get(&key)?;
        self.slots.get(d).map(|s| &s.session)
    }

    /// Adds the session of `key`, or reconfigures it (timers by a Poll Sequence while
    /// Up). A new source address applies from the next packet.
    pub fn set(&mut self, now: Instant, key: Key, local: Option<IpAddr>, cfg: SessionConfig) {
        let disc = match self.by_key.get(&key) {
            Some(&d) => {
                if let Some(slot) = self.slots.get_mut(&d) {
                    slot.local = local;
                    slot.session.reconfigure(now, cfg);
                }
                d
            }
            None => {
                let d = self.new_discriminator();
                let seed = self.rng.next_u64();
                let session = Session::new(now, d, cfg, seed);
                self.slots.insert(
                    d,
                    Slot {
                        key,
                        local,
                        session,
                        scheduled: None,
                    },
                );
                self.by_key.insert(key, d);
                d
            }
        };
        self.after(now, disc, None);
    }

    /// Removes the session of `key`, telling the remote side AdminDown if it is heard.
    /// Returns whether it existed.
    pub fn remove(&mut self, key: Key) -> bool {
        let Some(d) = self.by_key.remove(&key) else {
            return false;
        };
        if let Some(mut slot) = self.slots.remove(&d)
            && slot.session.remote_disc() != 0
        {
            let bytes = slot.session.admin_down_packet();
            self.transmits.push_back(Transmit {
                key,
                local: slot.local,
                bytes,
            });
        }
        self.compact();
        true
    }

    fn new_discriminator(&mut self) -> u32 {
        loop {
            let d = self.rng.next_u64() as u32;
            if d != 0 && !self.slots.contains_key(&d) {
                return d;
            }
        }
    }

    /// A datagram arrived from `from` on the single-hop (`multihop` false) or multihop
    /// port, with the TTL or hop limit `ttl` (`None` if the kernel did not say).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: IpAddr,
        multihop: bool,
        ttl: Option<u8>,
        raw: &[u8],
    ) -> Result<(), Dropped> {
        let p = Packet::decode(raw)?;
        if !multihop && ttl != Some(255) {
            return Err(Dropped::Ttl(ttl));
        }
        let key = Key {
            peer: from,
            multihop,
        };
        let disc = if p.your_disc != 0 {
            p.your_disc
        } else {
            *self.by_key.get(&key).ok_or(Dropped::NoSession)?
        };
        let slot = self.slots.get_mut(&disc).ok_or(Dropped::NoSession)?;
        if slot.key != key {
            // Our discriminator, but from another address or port: not this session's.
            return Err(Dropped::NoSession);
        }
        let change = slot.session.handle_packet(now, &p, raw)?;
        self.after(now, disc, change);
        Ok(())
    }

    /// The earliest deadline of all sessions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Handles every deadline that passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each entry taken is either stale or pushed again past `now`.
        for _ in 0..self.heap.len() {
            let Some(&Reverse((t, d))) = self.heap.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.heap.pop();
            let Some(slot) = self.slots.get_mut(&d) else {
                continue;
            };
            if slot.scheduled != Some(t) {
                continue;
            }
            slot.scheduled = None;
            let change = slot.session.handle_timeout(now);
            self.after(now, d, change);
        }
    }

    /// Records a change, queues what the session has to send, and keeps its heap entry
    /// no later than its deadline.
    fn after(&mut self, now: Instant, disc: u32, change: Option<Change>) {
        let Some(slot) = self.slots.get_mut(&disc) else {
            return;
        };
        if let Some(change) = change {
            self.events.push_back(Event {
                key: slot.key,
                change,
                remote: slot.session.remote_state(),
            });
        }
        while let Some(bytes) = slot.session.poll_transmit(now) {
            self.transmits.push_back(Transmit {
                key: slot.key,
                local: slot.local,
                bytes,
            });
        }
        let due = slot.session.deadline();
        if slot.scheduled.is_none_or(|s| due < s) {
            slot.scheduled = Some(due);
            self.heap.push(Reverse((due, disc)));
            if self.heap.len() > 2 * self.slots.len() + 64 {
                self.compact();
            }
        }
    }

    /// Drops stale heap entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.heap.len() <= 2 * self.slots.len() + 64 {
            return;
        }
        let slots = &self.slots;
        self.heap
            .retain(|Reverse((t, d))| slots.get(d).is_some_and(|s| s.scheduled == Some(*t)));
    }

    /// The next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next state change.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How many sessions are in each state: AdminDown, Down, Init, Up.
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for s in self.slots.values() {
            c[s.session.state() as usize] += 1;
        }
        c
    }
}
