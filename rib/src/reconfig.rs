//! Changing a peer's configuration while its session stays up: a new export policy or
//! next-hop mode moves the peer to another update group and sends it the difference; a
//! new import policy is reported, for the caller to ask the peer for its routes again
//! (ROUTE-REFRESH, RFC 2918); a new max-prefix limit applies from the next UPDATE.

use std::sync::Arc;

use crate::peer::{PeerConfig, PeerId};
use crate::policy::Policy;
use crate::rib::Rib;

/// What [`Rib::reconfigure`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Reconfigured {
    /// The export side changed (export policy, next-hop mode): an established peer moved
    /// to the update group of its new settings, is sent that group's table and then
    /// End-of-RIB, and has withdrawn what it held before and the new group does not send
    /// it. Nothing is withdrawn and announced again in between.
    pub export: bool,
    /// The import policy changed. Routes already received keep the old policy's verdict
    /// and changes until the peer sends them again: ask it with ROUTE-REFRESH (RFC 2918),
    /// or reset the session when it cannot refresh. Only the post-policy attributes are
    /// kept, so the RIB cannot re-import on its own.
    pub import: bool,
}

/// [`Rib::reconfigure`] refused: the change needs a new session. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("changing {0} needs a new session")]
pub struct NeedsReset(
    /// The [`PeerConfig`] field that differs.
    pub &'static str,
);

fn same_policy(a: &Option<Arc<Policy>>, b: &Option<Arc<Policy>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

impl Rib {
    /// Replaces the configuration of `peer` without touching its session, where that is
    /// possible: the export policy, the next-hop mode, the import policy and the
    /// max-prefix limit. A change of anything else (the AS, the reflector role, the
    /// cluster ID, ADD-PATH, graceful restart, soft-reconfiguration inbound, the address) is [`NeedsReset`]. An unknown
    /// peer is `NeedsReset("address")`.
    pub fn reconfigure(
        &mut self,
        peer: PeerId,
        cfg: PeerConfig,
    ) -> Result<Reconfigured, NeedsReset> {
        let Some(st) = self.peer(peer).filter(|_| peer != PeerId::LOCAL) else {
            return Err(NeedsReset("address"));
        };
        let old = &st.cfg;
        let fixed = [
            ("address", old.address == cfg.address),
            ("remote_as", old.remote_as == cfg.remote_as),
            ("local_as", old.local_as == cfg.local_as),
            ("allow_local_as", old.allow_local_as == cfg.allow_local_as),
            ("rr_client", old.rr_client == cfg.rr_client),
            ("cluster_id", old.cluster_id == cfg.cluster_id),
            (
                "client_to_client",
                old.client_to_client == cfg.client_to_client,
            ),
            ("add_path_send", old.add_path_send == cfg.add_path_send),
            (
                "graceful_restart",
                old.graceful_restart == cfg.graceful_restart,
            ),
            (
                "soft_reconfiguration_inbound",
                old.soft_reconfiguration_inbound == cfg.soft_reconfiguration_inbound,
            ),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(NeedsReset(field));
        }
        let done = Reconfigured {
            export: !same_policy(&old.export, &cfg.export) || old.next_hop != cfg.next_hop,
            import: !same_policy(&old.import, &cfg.import),
        };
        let session = st.session;
        if let Some(Some(st)) = self.peers.get_mut(peer.0 as usize) {
            st.cfg = cfg;
        }
        if done.export
            && let Some(session) = session
        {
            let held = self.group_of(peer).map_or_else(Vec::new, |g| {
                self.groups[g.0 as usize]
                    .as_ref()
                    .map_or_else(Vec::new, |g| g.held_by(peer.0, &self.loc, &self.facts))
            });
            self.leave_group(peer);
            if let Some(g) = self.join_group(peer, session)
                && let Some(Some(g)) = self.groups.get_mut(g.0 as usize)
            {
                g.set_held(peer.0, held);
            }
        }
        Ok(done)
    }
}
