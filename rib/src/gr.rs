//! Graceful restart, helper side (RFC 4724 §4.2): a restarting peer's routes stay in use,
//! marked stale, until it refreshes them and sends End-of-RIB, or the caller's stale timer
//! runs out. The caller owns time; this module only marks and sweeps.

use bgp_wire::Family;
use bgp_wire::nlri::Nlri;

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
