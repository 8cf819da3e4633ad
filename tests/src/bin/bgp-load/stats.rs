//! What the sessions record while they run, readable by the coordinator at any moment:
//! instants on one clock, per-session counters, the bitmap a receiver keeps, and the
//! list of errors.
//!
//! Each session's reader task is the only writer of its counters; the coordinator and the
//! progress line only read them. Everything shared is an atomic (or, for errors, a mutex
//! taken only on the error path), so that the reader's per-UPDATE work stays uncontended.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Treatment, UpdateView};

/// The run's clock: every recorded instant is a duration since `base`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) base: Instant,
}

impl Clock {
    pub(crate) fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `t` on this clock (0 if before its base).
    pub(crate) fn ns_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

/// An instant that is set once (or reset), as nanoseconds since the clock's base.
#[derive(Debug)]
pub(crate) struct AtomicTime(AtomicU64);

const UNSET: u64 = u64::MAX;

impl Default for AtomicTime {
    fn default() -> Self {
        Self(AtomicU64::new(UNSET))
    }
}

impl AtomicTime {
    /// Sets the instant if it was not set yet.
    pub(crate) fn set_once(&self, ns: u64) {
        let _ = self
            .0
            .compare_exchange(UNSET, ns, Ordering::AcqRel, Ordering::Acquire);
    }

    pub(crate) fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            UNSET => None,
            ns => Some(ns),
        }
    }

    /// Seconds from `since` to this instant, if both are set.
    pub(crate) fn secs_since(&self, since: Option<u64>) -> Option<f64> {
        Some(secs(self.get()?.checked_sub(since?)?))
    }
}

/// Nanoseconds as seconds, rounded to microseconds for the JSON.
pub(crate) fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e6
}

/// What one session recorded. Each on cache lines of its own: a receiver's task writes
/// its counters for every UPDATE, and the tasks of neighbouring receivers run on both
/// cores at once.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct SessionStats {
    pub(crate) address: IpAddr,
    pub(crate) established_at: AtomicTime,
    /// Set while the session is established; cleared when it goes down.
    pub(crate) up: AtomicBool,
    /// Prefixes held now.
    pub(crate) count: AtomicU64,
    /// Announcements of prefixes that were not expected, and withdrawals of prefixes not
    /// held.
    pub(crate) unexpected: AtomicU64,
    /// UPDATEs received, End-of-RIB included.
    pub(crate) updates: AtomicU64,
    /// UPDATEs applied from another receiver's reading ([`crate::replay`]).
    pub(crate) replayed: AtomicU64,
    /// Of those, UPDATEs taken many at a time ([`crate::replay::Cursor::replay_run`]).
    pub(crate) replayed_in_runs: AtomicU64,
    /// First IPv4 unicast End-of-RIB.
    pub(crate) end_of_rib_at: AtomicTime,
    /// First time the count reached the full table.
    pub(crate) full_at: AtomicTime,
    /// First time the count was back to 0 once withdrawals were under way.
    pub(crate) zero_at: AtomicTime,
    /// Last UPDATE received.
    pub(crate) last_update_at: AtomicTime,
}

impl SessionStats {
    pub(crate) fn new(address: IpAddr) -> Self {
        Self {
            address,
            established_at: AtomicTime::default(),
            up: AtomicBool::new(false),
            count: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            replayed_in_runs: AtomicU64::new(0),
            end_of_rib_at: AtomicTime::default(),
            full_at: AtomicTime::default(),
            zero_at: AtomicTime::default(),
            last_update_at: AtomicTime::default(),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn unexpected(&self) -> u64 {
        self.unexpected.load(Ordering::Relaxed)
    }
}

/// Errors of the run, kept to a bounded number (the rest only counted).
#[derive(Debug, Default)]
pub(crate) struct Errors {
    inner: Mutex<(Vec<String>, u64)>,
}

/// At most this many error strings go into the JSON.
const MAX_ERRORS: usize = 100;

impl Errors {
    pub(crate) fn push(&self, e: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() < MAX_ERRORS {
            g.0.push(e);
        } else {
            g.1 += 1;
        }
    }

    pub(crate) fn list(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = g.0.clone();
        if g.1 > 0 {
            v.push(format!("... and {} more errors", g.1));
        }
        v
    }

    pub(crate) fn is_empty(&self) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.is_empty() && g.1 == 0
    }
}

/// A receiver's routes: one bit per expected prefix.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    bits: Vec<u64>,
    count: u64,
}

impl Tally {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            bits: vec![0; n.div_ceil(64)],
            count: 0,
        }
    }

    pub(crate) const fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn holds(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Marks prefix `i` held; a duplicate announcement is not an error.
    pub(crate) fn insert(&mut self, i: usize) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.bits[w] & b == 0 {
            self.bits[w] |= b;
            self.count += 1;
        }
    }

    /// Clears prefix `i`; returns whether it was held.
    pub(crate) fn remove(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let held = self.bits[w] & b != 0;
        self.bits[w] &= !b;
        self.count -= u64::from(held);
        held
    }

    pub(crate) fn clear(&mut self) {
        self.bits.fill(0);
        self.count = 0;
    }
}

/// What one UPDATE did to a tally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) announced: u64,
    pub(crate) withdrawn: u64,
    pub(crate) unexpected: u64,
}

/// Applies an UPDATE to `tally`: `index` maps a prefix to its bit, or `None` for a prefix
/// that must not arrive here. An announcement of such a prefix, or a withdrawal of a
/// prefix not held, is unexpected. `each` sees every prefix (index, announced?).
///
/// Under treat-as-withdraw (RFC 7606) the announced prefixes are withdrawals.
pub(crate) fn apply(
    view: &UpdateView<'_>,
    tally: &mut Tally,
    index: impl Fn(&Nlri) -> Option<usize>,
    mut each: impl FnMut(Option<usize>, bool),
) -> Applied {
    let mut a = Applied::default();
    let withdraw = |n: Nlri, tally: &mut Tally, a: &mut Applied| {
        a.withdrawn += 1;
        let i = index(&n);
        if !i.is_some_and(|i| tally.remove(i)) {
            a.unexpected += 1;
        }
        i
    };
    for n in view.withdrawals() {
        let i = withdraw(n, tally, &mut a);
        each(i, false);
    }
    if view.treatment() >= Treatment::TreatAsWithdraw {
        for n in view.announced() {
            let i = withdraw(n, tally, &mut a);
            each(i, false);
        }
        return a;
    }
    for n in view.announced() {
        a.announced += 1;
        let i = index(&n);
        match i {
            Some(i) => tally.insert(i),
            None => a.unexpected += 1,
        }
        each(i, true);
    }
    a
}

/// Sleeps until `deadline`, at most `step`; false once the deadline has passed.
pub(crate) async fn tick(deadline: Instant, step: Duration) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    tokio::time::sleep((deadline - now).min(step)).await;
    true
}

#[cfg(test)]
mod tests {
    use bgp_wire::attr::{AsPath, Origin, PathAttribute};
    use bgp_wire::update::Update;
    use bytes::BytesMut;

    use super::*;
    use crate::light::tests::ctx;

    fn update(withdrawn: &[&str], nlri: &[&str]) -> BytesMut {
        let n = |v: &[&str]| v.iter().map(|p| Nlri::new(p.parse().unwrap())).collect();
        let attributes = if nlri.is_empty() {
            Vec::new()
        } else {
            vec![
                PathAttribute::Origin(Origin::IGP),
                PathAttribute::AsPath(AsPath::default()),
                PathAttribute::NextHop("192.0.2.1".parse().unwrap()),
                PathAttribute::LocalPref(100),
            ]
        };
        let u = Update {
            withdrawn: n(withdrawn),
            attributes,
            nlri: n(nlri),
        };
        let mut out = BytesMut::new();
        u.encode(&ctx(), &mut out).unwrap();
        out
    }

    #[test]
    fn test_apply_counts_unexpected_not_duplicates() {
        let ours = ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"];
        let index = |n: &Nlri| ours.iter().position(|p| n.prefix == p.parse().unwrap());
        let mut tally = Tally::new(ours.len());
        let run = |b: BytesMut, tally: &mut Tally| {
            let v = UpdateView::parse(&b[19..], &ctx());
            apply(&v, tally, index, |_, _| {})
        };
        // Two of ours and one stranger.
        let a = run(update(&[], &[ours[0], ours[1], "10.0.0.0/8"]), &mut tally);
        assert_eq!((a.announced, a.unexpected, tally.count()), (3, 1, 2));
        // A duplicate is not an error.
        let a = run(update(&[], &[ours[0]]), &mut tally);
        assert_eq!((a.unexpected, tally.count()), (0, 2));
        // Withdrawing one held and one not held.
        let a = run(update(&[ours[1], ours[2]], &[]), &mut tally);
        assert_eq!((a.withdrawn, a.unexpected, tally.count()), (2, 1, 1));
        assert!(tally.holds(0) && !tally.holds(1));
    }

    #[test]
    fn test_tally_counts_duplicates_once() {
        let mut t = Tally::new(130);
        t.insert(0);
        t.insert(129);
        t.insert(129);
        assert_eq!(t.count(), 2);
        assert!(t.holds(129));
        assert!(t.remove(129));
        assert!(!t.remove(129));
        assert_eq!(t.count(), 1);
        t.clear();
        assert_eq!(t.count(), 0);
    }
}
