//! Graceful restart (RFC 4724) in both roles, with its deadlines.
//!
//! - Restarting (§4.1, [`Speaker::start_restarting`](super::Speaker::start_restarting)):
//!   route selection is deferred, and nothing is sent, until every configured peer is up
//!   and each one that negotiated graceful restart without setting the Restart State bit
//!   itself sent End-of-RIB in every family of its session, or the restart time passed.
//!   Peers that restart too (R bit set) are not waited for: two restarting speakers that
//!   waited for each other would both wait out the timer (the Calico upgrade storm).
//!   Recovery, which the FIB waits for before it removes stale kernel routes, goes on
//!   until those peers' End-of-RIB too, bounded by the same deadline.
//! - Helper (§4.2): a peer whose session went down gracefully keeps its routes, marked
//!   stale, for the restart time it advertised (capped by ours). When its session is back,
//!   the new OPEN decides: no graceful restart capability, a family missing from it, or
//!   the family's Forwarding State bit clear, and that family's stale routes go at once.
//!   The others go with the peer's End-of-RIB, or when the stale time (the End-of-RIB
//!   wait) runs out.
//!
//! - Long-lived graceful restart (RFC 9494), as BIRD 2 has it: when the restart time
//!   of a peer that is not back runs out and both sides advertised LLGR, its routes of
//!   the families both sides have it for stay, as LLGR-stale (see
//!   [`rib::Rib::llgr_begin`]), for the long-lived stale time (the smaller of the
//!   peer's and ours); the session back, they go as stale routes do.
//!
//! The deadlines are plain instants: the core returns the earliest from
//! [`GracefulRestart::poll_timeout`] and hands the shell's clock back to
//! [`GracefulRestart::handle_timeout`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp_wire::capability::{GracefulRestart as GrCapability, LlgrFamily};
use bgp_wire::{Family, FamilySet};

/// Graceful restart state: ours as a restarting speaker, and each peer's we help.
#[derive(Debug, Default)]
pub(super) struct GracefulRestart {
    /// We restart: recovery (and, while `selecting`, route selection) waits.
    deferral: Option<Deferral>,
    /// Peers that went down gracefully and whose stale routes are kept, by address.
    helping: HashMap<IpAddr, Helping>,
}

#[derive(Debug)]
struct Deferral {
    /// The restart time runs out: selection runs, recovery ends, whatever arrived.
    until: Instant,
    /// Route selection is still deferred.
    selecting: bool,
    /// Per peer whose session came up during the deferral: what is still awaited.
    awaited: HashMap<IpAddr, Awaited>,
}

#[derive(Debug)]
struct Awaited {
    /// Families whose End-of-RIB is still awaited (empty: nothing, or a peer without
    /// graceful restart, which is not waited for).
    families: FamilySet,
    /// Route selection waits for it: the peer negotiated graceful restart and does not
    /// restart itself.
    selection: bool,
}

#[derive(Debug)]
struct Helping {
    /// When the stale routes go: the restart time while the session is down, the stale
    /// time once it is back.
    stale_until: Instant,
    /// The session is back (the End-of-RIB wait runs).
    back: bool,
    /// With the session back up: families whose End-of-RIB is awaited.
    eor_awaited: FamilySet,
    /// Long-lived graceful restart once the restart time is over: for how long, and for
    /// which families (none: the stale routes go at the restart time).
    long_lived: (Duration, FamilySet),
    /// The restart time is over and the long-lived stale time runs.
    in_long_lived: bool,
}

/// What ran out at [`GracefulRestart::handle_timeout`].
#[derive(Debug, Default)]
pub(super) struct Expired {
    /// Route selection was still deferred and runs now.
    pub(super) selection: bool,
    /// Peers whose stale routes must go now.
    pub(super) stale: Vec<IpAddr>,
    /// Peers whose restart time is over and whose stale routes of these families stay,
    /// long-lived (RFC 9494); the others go.
    pub(super) long_lived: Vec<(IpAddr, FamilySet)>,
}

/// What a helper does with a peer's stale routes when its session comes back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reopened {
    /// We were not helping the peer.
    NotHelping,
    /// Stale routes of these families go at once (the new OPEN has no graceful restart
    /// capability for them, or their Forwarding State bit is clear); the others wait for
    /// End-of-RIB. `help_over`: nothing is left to wait for.
    Sweep {
        /// The families whose stale routes go now.
        families: Vec<Family>,
        /// Recovery for the peer is over.
        help_over: bool,
    },
}

impl GracefulRestart {
    /// Restarting (route selection deferred until `until`), or not (`None`).
    pub(super) fn new(deferral_until: Option<Instant>) -> Self {
        Self {
            deferral: deferral_until.map(|until| Deferral {
                until,
                selecting: true,
                awaited: HashMap::new(),
            }),
            helping: HashMap::new(),
        }
    }

    /// Route selection is deferred (we restart).
    pub(super) fn deferring(&self) -> bool {
        self.deferral.as_ref().is_some_and(|d| d.selecting)
    }

    /// Our restart's recovery is not over: selection is deferred, or some peer's
    /// End-of-RIB is still awaited (and the restart time is not over).
    pub(super) fn recovering(&self) -> bool {
        self.deferral.is_some()
    }

    /// While route selection is deferred: how many of `peers` have not yet sent every
    /// End-of-RIB, and when the deferral ends at the latest.
    pub(super) fn recovery(&self, peers: impl Iterator<Item = IpAddr>) -> Option<(usize, Instant)> {
        let d = self.deferral.as_ref()?;
        let waiting = peers
            .filter(|a| !d.awaited.get(a).is_some_and(|w| w.families.is_empty()))
            .count();
        Some((waiting, d.until))
    }

    /// Whether route selection may run: every one of `peers` came up, and each one that
    /// selection waits for sent End-of-RIB in each of its families.
    pub(super) fn selection_complete(&self, mut peers: impl Iterator<Item = IpAddr>) -> bool {
        let Some(d) = &self.deferral else {
            return true;
        };
        peers.all(|a| {
            d.awaited
                .get(&a)
                .is_some_and(|w| !w.selection || w.families.is_empty())
        })
    }

    /// Whether recovery is complete: every one of `peers` came up and each one that
    /// negotiated graceful restart sent End-of-RIB in each of its families.
    pub(super) fn recovery_complete(&self, mut peers: impl Iterator<Item = IpAddr>) -> bool {
        let Some(d) = &self.deferral else {
            return true;
        };
        peers.all(|a| d.awaited.get(&a).is_some_and(|w| w.families.is_empty()))
    }

    /// Ends the selection deferral: selection runs, routes go out.
    pub(super) fn end_selection(&mut self) {
        if let Some(d) = &mut self.deferral {
            d.selecting = false;
        }
    }

    /// Ends recovery (and the selection deferral with it).
    pub(super) fn end_recovery(&mut self) {
        self.deferral = None;
    }

    /// Helping `peer`: its stale routes are kept (`graceful_restart_pending`).
    pub(super) fn helping(&self, peer: IpAddr) -> bool {
        self.helping.contains_key(&peer)
    }

    /// `peer`'s session came up in `families`, the peer's graceful restart capability
    /// being `cap`. While we restart, its End-of-RIB is awaited (by selection only if it
    /// does not restart itself). While we help it, the new OPEN decides which stale
    /// routes go at once; the others wait for End-of-RIB until `stale_time` from `now`.
    pub(super) fn on_established(
        &mut self,
        peer: IpAddr,
        families: FamilySet,
        cap: Option<&GrCapability>,
        llgr: Option<&[LlgrFamily]>,
        stale_time: Duration,
        now: Instant,
    ) -> Reopened {
        if let Some(d) = &mut self.deferral {
            let w = match cap {
                None => Awaited {
                    families: FamilySet::EMPTY,
                    selection: false,
                },
                Some(c) => Awaited {
                    families,
                    selection: !c.restart_state,
                },
            };
            d.awaited.insert(peer, w);
        }
        let Some(h) = self.helping.get_mut(&peer) else {
            return Reopened::NotHelping;
        };
        // RFC 4724 §4.2: a family not in the new capability, or whose forwarding state
        // was not kept, loses its stale routes at once; so does one not negotiated at all
        // (its End-of-RIB would never come).
        let kept = cap.map_or(FamilySet::EMPTY, |c| {
            let mut kept = FamilySet::EMPTY;
            for f in &c.families {
                if let Some(family) = Family::from_afi_safi(f.afi, f.safi)
                    && f.forwarding
                    && families.contains(family)
                {
                    kept.insert(family);
                }
            }
            kept
        });
        // RFC 9494 §4.2: after the restart time, the LLGR capability's bits count.
        let kept = if h.in_long_lived
            && let Some(l) = llgr
        {
            let mut kept = kept;
            for f in l {
                if let Some(family) = Family::from_afi_safi(f.afi, f.safi)
                    && f.forwarding
                    && families.contains(family)
                {
                    kept.insert(family);
                }
            }
            kept
        } else {
            kept
        };
        let swept: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| !kept.contains(*f))
            .collect();
        let help_over = kept.is_empty();
        if help_over {
            self.helping.remove(&peer);
        } else {
            h.back = true;
            h.eor_awaited = kept;
            h.stale_until = now + stale_time;
        }
        Reopened::Sweep {
            families: swept,
            help_over,
        }
    }

    /// `peer`'s session went down; if `graceful`, its routes are kept as stale for
    /// `restart`, then, in the families of `long_lived`, for its duration as long-lived
    /// stale routes; its new session has to bring them back.
    pub(super) fn on_down(
        &mut self,
        peer: IpAddr,
        graceful: bool,
        restart: Duration,
        long_lived: (Duration, FamilySet),
        now: Instant,
    ) {
        if graceful {
            let h = Helping {
                stale_until: now + restart,
                back: false,
                eor_awaited: FamilySet::EMPTY,
                long_lived,
                in_long_lived: false,
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
            awaited.families.remove(family);
        }
        let Some(h) = self.helping.get_mut(&peer) else {
            return false;
        };
        h.eor_awaited.remove(family);
        if h.back && h.eor_awaited.is_empty() {
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
        let stale = self.helping.values().map(|h| h.stale_until).min();
        deferral.into_iter().chain(stale).min()
    }

    /// Takes what ran out by `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Expired {
        let mut e = Expired::default();
        if let Some(d) = &self.deferral
            && d.until <= now
        {
            e.selection = d.selecting;
            self.deferral = None;
        }
        self.helping.retain(|a, h| {
            if h.stale_until > now {
                return true;
            }
            let (time, families) = h.long_lived;
            if !h.back && !h.in_long_lived && !families.is_empty() {
                h.in_long_lived = true;
                h.stale_until += time;
                e.long_lived.push((*a, families));
                // The long-lived stale time may be over too (a clock that jumped).
                if h.stale_until > now {
                    return true;
                }
            }
            e.stale.push(*a);
            false
        });
        e
    }
}
