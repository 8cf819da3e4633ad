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

/// The most paths one peer may have for one prefix: with ADD-PATH (RFC 7911) a peer
/// names its paths with identifiers of its choice, and without a bound one prefix could
/// hold four billion of them. Paths beyond it are ignored (not stored) and counted in
/// [`crate::Applied::ignored_paths`]; the peer's other paths are unaffected. A reflector
/// sending us every path it has for a prefix stays far below it.
pub const MAX_PATHS_PER_PEER: usize = 64;

/// The identifier to send a new path of a prefix under, given the largest one its paths
/// use (`max_used`, found in the pass that looked the path up): the next one, in O(1).
/// Identifiers are never 0 (some receivers treat 0 as "no identifier"). Only once a
/// prefix has used up the whole range (four billion paths came and went) does it fall
/// back to the smallest identifier free among `paths`.
pub(crate) fn alloc_tx_id(max_used: u32, paths: &[Path]) -> u32 {
    if let Some(next) = max_used.checked_add(1) {
        return next;
    }
    let mut used: Vec<u32> = paths.iter().map(|p| p.tx_id).collect();
    used.sort_unstable();
    // Bounded by the paths: unique identifiers, so one of 1..=len+1 is free.
    let mut id = 1;
    for u in used {
        if u == id {
            id += 1;
        } else if u > id {
            break;
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{AttrStore, Attrs};

    fn path(tx: u32) -> Path {
        let set = AttrStore::default().intern(Attrs::default());
        Path::new(set, 1, tx, tx, None)
    }

    #[test]
    fn identifiers_follow_the_largest_and_wrap_to_the_smallest_free() {
        assert_eq!(alloc_tx_id(0, &[]), 1);
        assert_eq!(alloc_tx_id(7, &[path(7), path(2)]), 8);
        let full = [path(u32::MAX), path(1), path(3), path(2)];
        assert_eq!(alloc_tx_id(u32::MAX, &full), 4);
        let gap = [path(u32::MAX), path(2)];
        assert_eq!(alloc_tx_id(u32::MAX, &gap), 1);
    }
}
