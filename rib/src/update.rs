//! Applying a received UPDATE: RFC 7606 treatments, loop checks, import policy, and the
//! max-prefix limit.

use std::sync::Arc;

use bgp_wire::attr::NextHop;
use bgp_wire::nlri::Nlri;
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, Family, Notification};
use ipnet::IpNet;

use crate::attrs::{AttrSet, AttrStore, Attrs};
use crate::best::Ineligible;
use crate::fx::FxHashMap;
use crate::peer::{PeerId, PeerKind};
use crate::rib::Rib;

/// What the session layer must act on after an UPDATE. The RIB decides; the session
/// layer carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The peer sent more routes than its limit: with `warn_only` unset, send Cease
    /// subcode 1 (RFC 4486 §4) and drop the session.
    MaxPrefixExceeded {
        /// The configured limit.
        limit: u32,
        /// Only a warning was asked for.
        warn_only: bool,
    },
    /// Send this NOTIFICATION and close the session (RFC 4271 §6.3, Event 28). Nothing
    /// was changed.
    ///
    /// The update's RFC 7606 treatment was a session reset, or an AFI/SAFI disable, which
    /// this RIB carries out as a reset: RFC 4760 §7 lets the speaker end the session
    /// instead of ignoring the family for the rest of it, and one session with one
    /// family less is a state nobody would see in `ctl`. The notification is the view's
    /// ([`UpdateView::notification`]), with the RFC's UPDATE Message Error subcode should
    /// the view have kept no issue to build it from.
    SessionReset(Notification),
    /// The peer is unknown or not up; nothing was changed.
    NotEstablished,
}

/// The outcome of [`Rib::apply_update`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Applied {
    /// Routes announced (including those treated as withdrawn).
    pub announced: usize,
    /// Routes withdrawn that were present.
    pub withdrawn: usize,
    /// The update was the End-of-RIB marker of this family (RFC 4724 §2).
    pub end_of_rib: Option<Family>,
    /// Announced paths not stored because the peer already has
    /// [`crate::addpath::MAX_PATHS_PER_PEER`] paths for the prefix (ADD-PATH).
    pub ignored_paths: usize,
    /// Announced routes the import policy rejected (RFC 8212's default for eBGP
    /// included). Without soft-reconfiguration inbound they are not stored, and what the
    /// peer had sent before for the prefix is gone (implicit withdrawal).
    pub rejected: usize,
    /// Something the session layer must act on.
    pub signal: Option<Signal>,
}

impl Rib {
    /// Applies an UPDATE received from `peer`, parsed once with the session's context.
    ///
    /// RFC 7606 treatments are decided here, once for every caller: a session reset or an
    /// AFI/SAFI disable changes nothing and returns [`Signal::SessionReset`] with the
    /// NOTIFICATION to send; treat-as-withdraw withdraws what the update announces (the
    /// paths stay listed as [`Ineligible::TreatedAsWithdrawn`]); attribute-discard uses
    /// the attributes that survived. The caller only logs the last two. End-of-RIB ends the
    /// graceful-restart wait for its family (RFC 4724 §4.2).
    pub fn apply_update(&mut self, peer: PeerId, view: &UpdateView<'_>) -> Applied {
        let mut out = Applied::default();
        let Some(kind) = self
            .peer(peer)
            .filter(|p| p.session.is_some() && peer != PeerId::LOCAL)
            .and_then(|_| self.facts.get(peer.0 as usize))
            .map(|f| f.kind)
        else {
            out.signal = Some(Signal::NotEstablished);
            return out;
        };
        if let Some(n) = reset(view) {
            out.signal = Some(Signal::SessionReset(n));
            return out;
        }
        if let Some(f) = view.end_of_rib() {
            self.sweep_stale(peer, Some(f));
            out.end_of_rib = Some(f);
            return out;
        }
        out.withdrawn += self.withdraw_all(peer, view.withdrawals());
        if view.treatment() == Treatment::TreatAsWithdraw {
            let empty = self.attrs.intern(Attrs::default());
            for n in view.announced() {
                let reason = Some(Ineligible::TreatedAsWithdrawn);
                if !self.upsert(
                    peer.0,
                    n.prefix,
                    n.path_id.unwrap_or(0),
                    empty.clone(),
                    reason,
                ) {
                    out.ignored_paths += 1;
                } else {
                    self.note_received(peer.0, &n.prefix, n.path_id.unwrap_or(0), None);
                }
                out.announced += 1;
            }
            self.attrs.release(empty);
        } else {
            self.announce(peer, kind, view, &mut out);
        }
        out.signal = self.check_max_prefix(peer);
        out
    }

    /// Imports what the update announces, in the NLRI field and in MP_REACH_NLRI, and
    /// counts it in `out`.
    fn announce(&mut self, peer: PeerId, kind: PeerKind, view: &UpdateView<'_>, out: &mut Applied) {
        let has_v4 = view.nlri().next().is_some();
        let mp = view.mp_reach();
        if !has_v4 && mp.is_none() {
            return;
        }
        let mut import = Import::default();
        if has_v4 {
            // RFC 7606 §3(d) made a missing NEXT_HOP a treat-as-withdraw already.
            let nh = view.next_hop().map(NextHop::V4);
            self.import_all(peer, kind, view, nh, view.nlri(), &mut import, out);
        }
        if let Some(mp) = mp {
            self.import_all(peer, kind, view, mp.next_hop(), mp.nlri(), &mut import, out);
        }
        import.clear(&mut self.attrs);
    }

    /// Removes the paths of `peer` that `nlri` withdraws; returns how many were there.
    ///
    /// Finding a prefix's slot is a probe of the Loc-RIB's index, a random access into a
    /// table of a million entries (the withdrawal of a million-prefix table spent most of
    /// its time there). Two things make it cheaper:
    /// - a peer mostly withdraws in the order it announced, and slots are handed out in
    ///   arrival order: the slot after the peer's last withdrawn one is compared first
    ///   (a destination next to the one just read), and the index is probed only when
    ///   that is not the prefix;
    /// - the probes of a chunk of prefixes are made before any of them is removed, so
    ///   that they are independent of one another and the processor overlaps their cache
    ///   misses (a probe between two removals waited for its miss alone).
    fn withdraw_all(&mut self, peer: PeerId, nlri: impl Iterator<Item = Nlri>) -> usize {
        const CHUNK: usize = 32;
        let mut hint = self.peer(peer).map_or(0, |p| p.next_withdrawn);
        let mut nlri = nlri.peekable();
        let mut removed = 0;
        let mut chunk = [(None, 0u32); CHUNK];
        let mut missed: [Option<IpNet>; CHUNK] = [None; CHUNK];
        while nlri.peek().is_some() {
            let mut k = 0;
            for ((c, m), n) in chunk.iter_mut().zip(missed.iter_mut()).zip(nlri.by_ref()) {
                let rx = n.path_id.unwrap_or(0);
                (*c, *m) = if self.loc.holds_at(hint, &n.prefix) {
                    hint += 1;
                    ((Some(hint - 1), rx), None)
                } else {
                    ((None, rx), Some(n.prefix))
                };
                k += 1;
            }
            for (c, m) in chunk[..k].iter_mut().zip(&missed[..k]) {
                if let Some(prefix) = m {
                    c.0 = self.loc.slot(prefix);
                }
            }
            // A slot freed by a removal of this chunk is no longer live, and nothing
            // here takes it again: a second withdrawal of its prefix finds no path there.
            for &(slot, rx) in &chunk[..k] {
                let Some(slot) = slot else { continue };
                hint = slot + 1;
                if self.remove_at(peer.0, slot, rx) {
                    removed += 1;
                }
            }
        }
        if let Some(Some(st)) = self.peers.get_mut(peer.0 as usize) {
            st.next_withdrawn = hint;
        }
        removed
    }

    #[allow(clippy::too_many_arguments)]
    fn import_all(
        &mut self,
        peer: PeerId,
        kind: PeerKind,
        view: &UpdateView<'_>,
        next_hop: Option<NextHop>,
        nlri: impl Iterator<Item = Nlri>,
        import: &mut Import,
        out: &mut Applied,
    ) {
        let set = self.attrs.intern_set(AttrSet::from_view(view, next_hop));
        let reason = self
            .loop_check(peer, kind, &set)
            .or_else(|| self.next_hop_is_ours(peer, next_hop.as_ref()));
        let (policy, keep_rejected) = self.peer(peer).map_or((None, false), |p| {
            (p.cfg.import.clone(), p.cfg.soft_reconfiguration_inbound)
        });
        import.clear(&mut self.attrs);
        for n in nlri {
            out.announced += 1;
            let rx = n.path_id.unwrap_or(0);
            let (chosen, why) = match (&reason, &policy) {
                (Some(r), _) => (set.clone(), Some(*r)),
                // RFC 8212: no import policy on an external session accepts nothing.
                (None, None) if kind == PeerKind::Ebgp => {
                    (set.clone(), Some(Ineligible::RejectedByImport))
                }
                (None, None) => (set.clone(), None),
                (None, Some(p)) => match p.evaluate(&n.prefix, &*set, set.route_len()) {
                    None => (set.clone(), Some(Ineligible::RejectedByImport)),
                    Some(0) => (set.clone(), None),
                    Some(mask) => {
                        let modified = import.cache.entry(mask).or_insert_with(|| None);
                        let m = match modified {
                            Some(m) => m.clone(),
                            None => {
                                let mut a = set.to_attrs();
                                p.apply(mask, &mut a);
                                let m = self.attrs.intern(a);
                                *modified = Some(m.clone());
                                m
                            }
                        };
                        (m, None)
                    }
                },
            };
            if why == Some(Ineligible::RejectedByImport) {
                out.rejected += 1;
                if !keep_rejected {
                    // Not stored; an earlier route of the peer for it is replaced by
                    // nothing (RFC 4271 §9.1.4 implicit withdrawal, then rejection).
                    self.attrs.release(chosen);
                    if self.remove(peer.0, &n.prefix, rx) {
                        out.withdrawn += 1;
                    }
                    continue;
                }
            }
            let modified = !Arc::ptr_eq(&chosen, &set);
            if !self.upsert(peer.0, n.prefix, rx, chosen, why) {
                out.ignored_paths += 1;
            } else if keep_rejected {
                // Kept as received, for listing the peer's routes before policy.
                self.note_received(peer.0, &n.prefix, rx, modified.then(|| set.clone()));
            }
        }
        self.attrs.release(set);
    }

    fn check_max_prefix(&mut self, peer: PeerId) -> Option<Signal> {
        let st = self.peers.get_mut(peer.0 as usize)?.as_mut()?;
        let mp = st.cfg.max_prefix?;
        let n = st.adj_in.len();
        if n > mp.limit as usize {
            if !st.over_limit {
                st.over_limit = true;
                return Some(Signal::MaxPrefixExceeded {
                    limit: mp.limit,
                    warn_only: mp.warn_only,
                });
            }
        } else {
            st.over_limit = false;
        }
        None
    }
}

/// The NOTIFICATION that ends the session for `view`, if its treatment calls for one.
fn reset(view: &UpdateView<'_>) -> Option<Notification> {
    let fallback = match view.treatment() {
        Treatment::SessionReset => subcode::update::MALFORMED_ATTRIBUTE_LIST,
        // RFC 4760 §7: a session ended for a bad MP attribute says so.
        Treatment::AfiSafiDisable => subcode::update::OPTIONAL_ATTRIBUTE,
        Treatment::Normal | Treatment::AttributeDiscard | Treatment::TreatAsWithdraw => {
            return None;
        }
    };
    let n = view.notification();
    Some(n.unwrap_or_else(|| Notification::new(ErrorCode::UPDATE_MESSAGE, fallback)))
}

/// Attribute sets made by the import policy within one update, by rule mask.
#[derive(Default)]
struct Import {
    cache: FxHashMap<u64, Option<Arc<AttrSet>>>,
}

impl Import {
    /// Empties the cache (between families, whose next hops differ), releasing the sets.
    fn clear(&mut self, store: &mut AttrStore) {
        for set in self.cache.drain().filter_map(|(_, s)| s) {
            store.release(set);
        }
    }
}
