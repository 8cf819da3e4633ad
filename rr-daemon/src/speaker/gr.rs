//! Graceful restart (RFC 4724) in both roles, with its deadlines.
//!
//! - Restarting (§4.1, [`Speaker::start_restarting`](super::Speaker::start_restarting)):
//!   route selection is deferred, and nothing is sent, until every configured peer's
//!   End-of-RIB has arrived in each family of its session, or the restart time passed.
//! - Helper (§4.2): a peer whose session went down gracefully keeps its routes, marked
//!   stale, until its End-of-RIB in every family of its new session; if the session is not
//!   back within the peer's restart time, the stale routes go.
//!
//! The deadlines are plain instants: the core returns the earliest from
//! [`GracefulRestart::poll_timeout`] and hands the shell's clock back to
//! [`GracefulRestart::handle_timeout`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp_wire::{Family, FamilySet};

/// Graceful restart state: ours as a restarting speaker, and each peer's we help.
#[derive(Debug, Default)]
pub(super) struct GracefulRestart {
    /// We restart: route selection is deferred until this ends.
    deferral: Option<Deferral>,
    /// Peers that went down gracefully and whose stale routes are kept, by address.
    helping: HashMap<IpAddr, Helping>,
}

#[derive(Debug)]
struct Deferral {
    /// The restart time runs out: selection runs whatever arrived.
    until: Instant,
    /// Per peer whose session came up during the deferral: families whose End-of-RIB
    /// is still awaited.
    awaited: HashMap<IpAddr, FamilySet>,
}

#[derive(Debug)]
struct Helping {
    /// While the session is not back: when the stale routes go. `None` once it is back,
    /// when they go with the End-of-RIB instead.
    stale_until: Option<Instant>,
    /// With the session back up: families whose End-of-RIB is awaited.
    eor_awaited: FamilySet,
}

/// What ran out at [`GracefulRestart::handle_timeout`].
#[derive(Debug, Default)]
pub(super) struct Expired {
    /// The route selection deferral is over.
    pub(super) deferral: bool,
    /// Peers whose stale routes must go now.
    pub(super) stale: Vec<IpAddr>,
}

impl GracefulRestart {
    /// Restarting (route selection deferred until `until`), or not (`None`).
    pub(super) fn new(deferral_until: Option<Instant>) -> Self {
        Self {
            deferral: deferral_until.map(|until| Deferral {
                until,
                awaited: HashMap::new(),
            }),
            helping: HashMap::new(),
        }
    }

    /// Route selection is deferred (we restart).
    pub(super) fn deferring(&self) -> bool {
        self.deferral.is_some()
    }

    /// While route selection is deferred: how many of `peers` have not yet sent every
    /// End-of-RIB, and when the deferral ends at the latest.
    pub(super) fn recovery(&self, peers: impl Iterator<Item = IpAddr>) -> Option<(usize, Instant)> {
        let d = self.deferral.as_ref()?;
        let waiting = peers
            .filter(|a| !d.awaited.get(a).is_some_and(|f| f.is_empty()))
            .count();
        Some((waiting, d.until))
    }

    /// Whether every one of `peers` is up and sent End-of-RIB in each of its families.
    pub(super) fn deferral_complete(&self, mut peers: impl Iterator<Item = IpAddr>) -> bool {
        let Some(d) = &self.deferral else {
            return true;
        };
        peers.all(|a| d.awaited.get(&a).is_some_and(|f| f.is_empty()))
    }

    /// Ends the deferral: selection runs, routes go out.
    pub(super) fn end_deferral(&mut self) {
        self.deferral = None;
    }

    /// Helping `peer`: its stale routes are kept (`graceful_restart_pending`).
    pub(super) fn helping(&self, peer: IpAddr) -> bool {
        self.helping.contains_key(&peer)
    }

    /// `peer`'s session came up in `families`: while we restart, its End-of-RIB is
    /// awaited; while we help it, recovery ends with its End-of-RIB, not at a deadline.
    pub(super) fn on_established(&mut self, peer: IpAddr, families: FamilySet) {
        if let Some(h) = self.helping.get_mut(&peer) {
            h.stale_until = None;
            h.eor_awaited = families;
        }
        if let Some(d) = &mut self.deferral {
            d.awaited.insert(peer, families);
        }
    }

    /// `peer`'s session went down; if `graceful`, its routes are kept as stale for
    /// `restart`, and its new session has to bring them back.
    pub(super) fn on_down(
        &mut self,
        peer: IpAddr,
        graceful: bool,
        restart: Duration,
        now: Instant,
    ) {
        if graceful {
            let h = Helping {
                stale_until: Some(now + restart),
                eor_awaited: FamilySet::EMPTY,
            };
            self.helping.insert(peer, h);
        } else {
            self.helping.remove(&peer);
        }
    }

    /// `peer` sent End-of-RIB for `family`. Returns whether that ended our help.
    pub(super) fn on_end_of_rib(&mut self, peer: IpAddr, family: Family) -> bool {
        if let Some(d) = &mut self.deferral
            && let Some(awaited) = d.awaited.get_mut(&peer)
        {
            awaited.remove(family);
        }
        let Some(h) = self.helping.get_mut(&peer) else {
            return false;
        };
        h.eor_awaited.remove(family);
        if h.eor_awaited.is_empty() && h.stale_until.is_none() {
            self.helping.remove(&peer);
            return true;
        }
        false
    }

    /// The peer is gone from the table: nothing is awaited of it any more.
    pub(super) fn forget(&mut self, peer: IpAddr) {
        self.helping.remove(&peer);
        if let Some(d) = &mut self.deferral {
            d.awaited.remove(&peer);
        }
    }

    /// The earliest deadline.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let deferral = self.deferral.as_ref().map(|d| d.until);
        let stale = self.helping.values().filter_map(|h| h.stale_until).min();
        deferral.into_iter().chain(stale).min()
    }

    /// Takes what ran out by `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Expired {
        let mut e = Expired::default();
        if self.deferral.as_ref().is_some_and(|d| d.until <= now) {
            self.deferral = None;
            e.deferral = true;
        }
        self.helping.retain(|a, h| {
            let over = h.stale_until.is_some_and(|t| t <= now);
            if over {
                e.stale.push(*a);
            }
            !over
        });
        e
    }
}
