//! Graceful restart, helper side (RFC 4724 §4.2): a restarting peer's routes stay in use,
//! marked stale, until it refreshes them and sends End-of-RIB, or the caller's stale timer
//! runs out. The caller owns time; this module only marks and sweeps.

use bgp_wire::attr::Community;
use bgp_wire::nlri::Nlri;
use bgp_wire::{Family, FamilySet};

use crate::peer::PeerId;
use crate::rib::Rib;

impl Rib {
    /// The session went down. With `graceful` (the peer negotiated graceful restart and
    /// the drop was not a NOTIFICATION that rules it out, RFC 4724 §4.2 and RFC 8538) and
    /// [`crate::PeerConfig::graceful_restart`] set, the peer's routes stay, marked stale
    /// and still eligible; otherwise they are withdrawn. Either way the peer is sent
    /// nothing until it is up again.
    pub fn peer_down(&mut self, peer: PeerId, graceful: bool) {
        if peer == PeerId::LOCAL {
            return;
        }
        self.leave_group(peer);
        let Some(Some(st)) = self.peers.get_mut(peer.0 as usize) else {
            return;
        };
        st.session = None;
        st.over_limit = false;
        let keep = graceful && st.cfg.graceful_restart;
        let keys = st.adj_in.keys();
        if keep {
            for (slot, rx) in keys {
                let dest = self.loc.dest_mut(slot);
                if let Some(p) = dest
                    .paths
                    .iter_mut()
                    .find(|p| p.peer == peer.0 && p.rx_id == rx)
                {
                    // Stale paths stay eligible and keep their rank: nothing to send.
                    p.set_stale(true);
                }
            }
        } else {
            for (slot, rx) in keys {
                self.remove_at(peer.0, slot, rx);
            }
            if let Some(Some(st)) = self.peers.get_mut(peer.0 as usize) {
                st.adj_in.clear();
            }
        }
    }

    /// The caller's stale timer for `peer` ran out (or the peer came back without the
    /// graceful restart state, RFC 4724 §4.2): withdraw every route still stale.
    pub fn stale_timer_expired(&mut self, peer: PeerId) {
        self.sweep_stale(peer, None);
    }

    /// The peer came back and its new OPEN keeps no forwarding state for `family` (no
    /// graceful restart capability, the family missing from it, or its Forwarding State
    /// bit clear, RFC 4724 §4.2): withdraw its routes of `family` that are still stale.
    pub fn sweep_stale_family(&mut self, peer: PeerId, family: Family) {
        self.sweep_stale(peer, Some(family));
    }

    /// Withdraws `peer`'s stale routes of `family` (all families for `None`).
    pub(crate) fn sweep_stale(&mut self, peer: PeerId, family: Option<Family>) {
        let Some(Some(st)) = self.peers.get(peer.0 as usize) else {
            return;
        };
        let stale: Vec<(u32, u32)> = st
            .adj_in
            .keys()
            .into_iter()
            .filter(|&(slot, rx)| {
                let d = self.loc.dest(slot);
                family.is_none_or(|f| Nlri::new(d.prefix).family() == f)
                    && d.paths
                        .iter()
                        .any(|p| p.peer == peer.0 && p.rx_id == rx && p.is_stale())
            })
            .collect();
        for (slot, rx) in stale {
            self.remove_at(peer.0, slot, rx);
        }
    }

    /// The peer's graceful restart time ran out and long-lived graceful restart (RFC
    /// 9494 §4.2) goes on for `families`: its stale routes of those families stay, still
    /// stale, as LLGR-stale routes: with the LLGR_STALE community, and with NO_EXPORT and
    /// LOCAL_PREF 0 (§4.6), so that they may still go to internal peers that do not know
    /// LLGR, never outside the AS, and lose to every internal path that is not stale.
    /// Those carrying NO_LLGR, and those of other families, are withdrawn (§4.3). Returns
    /// how many routes are kept.
    pub fn llgr_begin(&mut self, peer: PeerId, families: FamilySet) -> usize {
        let Some(Some(st)) = self.peers.get(peer.0 as usize) else {
            return 0;
        };
        let mut keep = Vec::new();
        let mut drop = Vec::new();
        for (slot, rx) in st.adj_in.keys() {
            let d = self.loc.dest(slot);
            let Some(p) = d
                .paths
                .iter()
                .find(|p| p.peer == peer.0 && p.rx_id == rx && p.is_stale())
            else {
                continue;
            };
            if !families.contains(Nlri::new(d.prefix).family())
                || p.attrs.has_community(Community::NO_LLGR)
            {
                drop.push((slot, rx));
            } else if !p.attrs.has_community(Community::LLGR_STALE) {
                let mut a = p.attrs.to_attrs();
                for c in [Community::LLGR_STALE, Community::NO_EXPORT] {
                    if let Err(i) = a.communities.binary_search(&c) {
                        a.communities.insert(i, c);
                    }
                }
                a.local_pref = Some(0);
                keep.push((slot, rx, d.prefix, p.reason, a));
            }
        }
        for (slot, rx) in drop {
            self.remove_at(peer.0, slot, rx);
        }
        let kept = keep.len();
        for (slot, rx, prefix, reason, attrs) in keep {
            let attrs = self.attrs.intern(attrs);
            self.upsert(peer.0, prefix, rx, attrs, reason);
            // Still stale: the peer's End-of-RIB, or the long-lived stale time, ends it.
            if let Some(p) = self
                .loc
                .dest_mut(slot)
                .paths
                .iter_mut()
                .find(|p| p.peer == peer.0 && p.rx_id == rx)
            {
                p.set_stale(true);
            }
        }
        kept
    }

    /// How many of `peer`'s routes are stale.
    pub fn stale_count(&self, peer: PeerId) -> usize {
        self.count_stale(peer, None)
    }

    /// How many of `peer`'s routes of `family` are stale.
    pub fn stale_count_of(&self, peer: PeerId, family: Family) -> usize {
        self.count_stale(peer, Some(family))
    }

    fn count_stale(&self, peer: PeerId, family: Option<Family>) -> usize {
        let Some(Some(st)) = self.peers.get(peer.0 as usize) else {
            return 0;
        };
        st.adj_in
            .keys()
            .into_iter()
            .filter(|&(slot, rx)| {
                let d = self.loc.dest(slot);
                family.is_none_or(|f| Nlri::new(d.prefix).family() == f)
                    && d.paths
                        .iter()
                        .any(|p| p.peer == peer.0 && p.rx_id == rx && p.is_stale())
            })
            .count()
    }
}
