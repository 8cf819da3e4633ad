//! ADD-PATH (RFC 7911): which paths of a prefix a peer is sent, and the path identifiers
//! this speaker allocates for them.
//!
//! Received path identifiers are part of the Adj-RIB-In key. Sent ones
//! are allocated per prefix when a path enters the Loc-RIB and kept for as long as the path
//! lives, so a path that stays is never re-announced under a new identifier (which a
//! receiver would take for a second path).

use crate::loc::Path;

/// Which paths of a prefix an ADD-PATH peer is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    /// Every eligible path.
    All,
    /// The best `n` eligible paths, in decision order.
    Best(u8),
    /// The paths equal to the best through the MED step of the decision process
    /// (RFC 4271 §9.1.2.2 a-c): what a multipath receiver can balance over.
    Ecmp,
}

impl AddPathMode {
    /// How many leading paths of the decision order this mode needs ranked.
    pub(crate) fn rank_depth(self) -> usize {
        match self {
            Self::Best(n) => usize::from(n),
            Self::All | Self::Ecmp => 1,
        }
    }
}

/// The paths `mode` sends, from paths in decision order whose first `eligible` are usable.
pub(crate) fn select(
    mode: Option<AddPathMode>,
    paths: &[Path],
    eligible: usize,
) -> impl Iterator<Item = &Path> {
    let usable = &paths[..eligible.min(paths.len())];
    let take = match mode {
        None => 1,
        Some(AddPathMode::Best(n)) => usize::from(n),
        Some(AddPathMode::All | AddPathMode::Ecmp) => usable.len(),
    };
    let ecmp_only = mode == Some(AddPathMode::Ecmp);
    usable
        .iter()
        .take(take)
        .filter(move |p| !ecmp_only || p.is_ecmp())
}

/// The smallest identifier not used by `paths` (from 1: some receivers treat 0 as
/// "no identifier").
pub(crate) fn alloc_tx_id(paths: &[Path]) -> u32 {
    let mut id = 1;
    // Paths per prefix are few; a scan beats any side structure.
    while paths.iter().any(|p| p.tx_id == id) {
        id += 1;
    }
    id
}
