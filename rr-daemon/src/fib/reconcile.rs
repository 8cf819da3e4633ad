//! The pure half of the FIB: what the kernel should hold (desired) against what it holds
//! of ours (installed), and the operations that take one to the other. No I/O, no clock:
//! the shell feeds it best-path changes, originated blackholes, the start-up dump and the
//! outcome of every operation, and takes batches of operations out.
//!
//! Rules it keeps:
//! - Only routes of our own protocol number are ever touched: the installed side holds
//!   nothing else, so an operation can only name one of ours. A change is "delete ours,
//!   then add", never a blind REPLACE that would overwrite another protocol's route of the
//!   same prefix and metric.
//! - Several next hops are one multipath route.
//! - Until [`Reconciler::mark_synced`], routes adopted from the kernel that nothing
//!   desires (yet) stay: after a restart they are still forwarding, and the peers that
//!   will confirm them may not be up yet (BIRD's `persist` and kernel graceful restart).
//! - A failed operation is recorded and counted, and its prefix waits for
//!   [`Reconciler::retry_failed`]; nothing is ever fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Where a route sends packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Dropped (`blackhole`): a block this node owns (Calico's `bird_aggr.cfg`).
    Blackhole,
    /// Through these gateways, sorted and without duplicates, never empty; more than one
    /// is one multipath (ECMP) route.
    Via(Vec<IpAddr>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blackhole => f.write_str("blackhole"),
            Self::Via(gws) => {
                f.write_str("via ")?;
                for (i, g) in gws.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{g}")?;
                }
                Ok(())
            }
        }
    }
}

/// One kernel route of ours (our table, our protocol number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRoute {
    /// The destination, host bits clear.
    pub prefix: IpNet,
    /// Where it goes.
    pub target: Target,
    /// Its metric (the kernel's priority).
    pub metric: u32,
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} metric {}", self.prefix, self.target, self.metric)
    }
}

/// One netlink operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Add this route (`NLM_F_CREATE | NLM_F_EXCL`: never replaces anything).
    Add(KernelRoute),
    /// Delete this route of ours (matched by prefix, protocol, table and metric).
    Delete(KernelRoute),
}

impl Op {
    /// The route it names.
    pub const fn route(&self) -> &KernelRoute {
        match self {
            Self::Add(r) | Self::Delete(r) => r,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(r) => write!(f, "add {r}"),
            Self::Delete(r) => write!(f, "delete {r}"),
        }
    }
}

/// How an operation failed, as far as reconciling cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// `ESRCH`/`ENOENT` on a delete: the route is gone already (someone removed it).
    NotFound,
    /// Anything else (`EEXIST`: a route of another protocol holds the prefix and metric;
    /// `ENETUNREACH`: the gateway is not reachable yet; ...), with the system's error.
    Failed(String),
}

/// A batch of operations: every delete before any add, so that one prefix's change is
/// "delete ours, then add" even when the shell runs each half concurrently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// To delete first.
    pub deletes: Vec<KernelRoute>,
    /// To add once the deletes are done.
    pub adds: Vec<KernelRoute>,
}

impl Batch {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.adds.is_empty()
    }

    /// Operations in it.
    pub fn len(&self) -> usize {
        self.deletes.len() + self.adds.len()
    }
}

/// Counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibStats {
    /// Routes of ours in the kernel now (as far as we know).
    pub installed: usize,
    /// Prefixes we want in the kernel.
    pub desired: usize,
    /// Successful adds.
    pub added: u64,
    /// Successful deletes (a delete of a route already gone counts too).
    pub deleted: u64,
    /// Failed operations, in all.
    pub errors: u64,
    /// Prefixes whose last operation failed, waiting for a retry.
    pub failing: usize,
    /// Routes adopted from the kernel at start.
    pub adopted: usize,
}

/// The reconciler. See the module documentation.
#[derive(Debug)]
pub struct Reconciler {
    metric: u32,
    /// Best paths from BGP that are not ours to originate: prefix -> gateways.
    learned: BTreeMap<IpNet, Vec<IpAddr>>,
    /// Our blocks, installed as blackholes whatever BGP says about them.
    blackholes: BTreeSet<IpNet>,
    /// Ours in the kernel.
    installed: BTreeMap<IpNet, KernelRoute>,
    /// Installed routes adopted at start that nothing has desired since: kept until the
    /// initial sync is over. A route desired once (or installed by us) is not in here,
    /// and goes as soon as it is no longer desired.
    unconfirmed: BTreeSet<IpNet>,
    /// Prefixes whose desired and installed states may differ.
    dirty: BTreeSet<IpNet>,
    /// Prefixes with operations handed out and not yet reported.
    in_flight: BTreeSet<IpNet>,
    /// Prefixes whose last operation failed, with the last error.
    failed: BTreeMap<IpNet, String>,
    synced: bool,
    stats: FibStats,
}

impl Reconciler {
    /// A reconciler that installs routes with `metric`.
    pub fn new(metric: u32) -> Self {
        Self {
            metric,
            learned: BTreeMap::new(),
            blackholes: BTreeSet::new(),
            installed: BTreeMap::new(),
            unconfirmed: BTreeSet::new(),
            dirty: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            failed: BTreeMap::new(),
            synced: false,
            stats: FibStats::default(),
        }
    }

    /// Takes what the kernel holds of ours at start (the dump of our table filtered by our
    /// protocol number). Each is kept until the initial sync is over; the ones that are
    /// desired as they are cost no operation at all.
    pub fn adopt(&mut self, routes: impl IntoIterator<Item = KernelRoute>) {
        for r in routes {
            let p = r.prefix;
            if let Some(old) = self.installed.insert(p, r) {
                // Two of ours for one prefix (different metrics): keep one in view, the
                // other stays in the kernel untouched; rare and harmless.
                let _ = old;
            } else {
                self.stats.adopted += 1;
            }
            self.unconfirmed.insert(p);
            self.dirty.insert(p);
        }
    }

    /// A best-path change from the RIB: `next_hops` empty means no route (gone, or only
    /// one this speaker originates, which BGP never installs: see
    /// [`Reconciler::set_blackholes`]).
    pub fn handle_best_change(&mut self, prefix: IpNet, next_hops: &[IpAddr], local: bool) {
        let prefix = prefix.trunc();
        let mut gws: Vec<IpAddr> = next_hops
            .iter()
            .copied()
            .filter(|g| g.is_ipv4() == prefix.addr().is_ipv4() || g.is_ipv6())
            .collect();
        gws.sort_unstable();
        gws.dedup();
        let changed = if local || gws.is_empty() {
            self.learned.remove(&prefix).is_some()
        } else {
            self.learned.insert(prefix, gws.clone()) != Some(gws)
        };
        if changed {
            self.dirty.insert(prefix);
        }
    }

    /// The blocks to install as blackholes (`[[originate]] blackhole = true`), all of
    /// them: ones no longer listed go (or fall back to what BGP says).
    pub fn set_blackholes(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        let new: BTreeSet<IpNet> = prefixes.into_iter().map(|p| p.trunc()).collect();
        for p in self.blackholes.symmetric_difference(&new) {
            self.dirty.insert(*p);
        }
        self.blackholes = new;
    }

    /// The first full desired set is known: adopted routes that nothing desires are stale
    /// now, and go with the next batches.
    pub fn mark_synced(&mut self) {
        if !self.synced {
            self.synced = true;
            self.dirty.extend(std::mem::take(&mut self.unconfirmed));
        }
    }

    /// Whether [`Reconciler::mark_synced`] was called.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Puts every failed prefix back to work (the shell calls it now and then).
    pub fn retry_failed(&mut self) {
        self.dirty.extend(self.failed.keys().copied());
    }

    /// What `prefix` should be in the kernel.
    pub fn desired(&self, prefix: &IpNet) -> Option<KernelRoute> {
        let target = if self.blackholes.contains(prefix) {
            Target::Blackhole
        } else {
            Target::Via(self.learned.get(prefix)?.clone())
        };
        Some(KernelRoute {
            prefix: *prefix,
            target,
            metric: self.metric,
        })
    }

    /// Whether there is work: [`Reconciler::poll_batch`] would return something.
    pub fn has_work(&self) -> bool {
        self.dirty.iter().any(|p| !self.in_flight.contains(p))
    }

    /// Up to about `max` operations for prefixes whose state differs; every one must be
    /// reported back with [`Reconciler::handle_result`]. A prefix with operations in
    /// flight waits for their results.
    pub fn poll_batch(&mut self, max: usize) -> Batch {
        let mut batch = Batch::default();
        let mut done = Vec::new();
        for p in &self.dirty {
            if batch.len() >= max {
                break;
            }
            if self.in_flight.contains(p) {
                continue;
            }
            done.push(*p);
            let want = self.desired(p);
            if want.is_some() {
                self.unconfirmed.remove(p);
            }
            let have = self.installed.get(p);
            match (want, have) {
                (Some(w), Some(h)) if w == *h => {}
                (Some(w), Some(h)) => {
                    batch.deletes.push(h.clone());
                    batch.adds.push(w);
                }
                (Some(w), None) => batch.adds.push(w),
                (None, Some(h)) if self.synced || !self.unconfirmed.contains(p) => {
                    batch.deletes.push(h.clone());
                }
                // Adopted and not (yet) desired: kept until the initial sync is over.
                (None, _) => {}
            }
        }
        for p in done {
            self.dirty.remove(&p);
        }
        for r in batch.deletes.iter().chain(&batch.adds) {
            self.in_flight.insert(r.prefix);
        }
        batch
    }

    /// The outcome of one operation of a batch. Report every delete of a prefix before its
    /// add.
    pub fn handle_result(&mut self, op: &Op, result: Result<(), OpError>) {
        let p = op.route().prefix;
        match (op, result) {
            (Op::Add(r), Ok(())) => {
                self.installed.insert(p, r.clone());
                self.failed.remove(&p);
                self.stats.added += 1;
            }
            (Op::Delete(r), Ok(()) | Err(OpError::NotFound)) => {
                if self.installed.get(&p) == Some(r) {
                    self.installed.remove(&p);
                }
                self.failed.remove(&p);
                self.stats.deleted += 1;
            }
            (_, Err(e)) => {
                self.stats.errors += 1;
                let msg = match e {
                    OpError::NotFound => "no such route".to_owned(),
                    OpError::Failed(m) => m,
                };
                self.failed.insert(p, msg);
            }
        }
    }

    /// Marks the batch's prefixes as settled: call once every operation of the batch was
    /// reported. A prefix that changed meanwhile is still dirty and goes out again.
    pub fn batch_done(&mut self, batch: &Batch) {
        for r in batch.deletes.iter().chain(&batch.adds) {
            self.in_flight.remove(&r.prefix);
        }
    }

    /// The last error of each prefix that is failing.
    pub fn failures(&self) -> impl Iterator<Item = (&IpNet, &str)> {
        self.failed.iter().map(|(p, e)| (p, e.as_str()))
    }

    /// Counters.
    pub fn stats(&self) -> FibStats {
        let desired = self.learned.len()
            + self
                .blackholes
                .iter()
                .filter(|p| !self.learned.contains_key(p))
                .count();
        FibStats {
            installed: self.installed.len(),
            desired,
            failing: self.failed.len(),
            ..self.stats
        }
    }

    /// Ours in the kernel, as far as we know.
    pub fn installed(&self) -> impl Iterator<Item = &KernelRoute> {
        self.installed.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn via(p: &str, gws: &[&str], metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: net(p),
            target: Target::Via(gws.iter().map(|g| ip(g)).collect()),
            metric,
        }
    }

    fn blackhole(p: &str, metric: u32) -> KernelRoute {
        KernelRoute {
            prefix: net(p),
            target: Target::Blackhole,
            metric,
        }
    }

    /// Reports every operation of `b` as done, deletes first; returns them.
    fn apply_ok(r: &mut Reconciler, b: &Batch) -> Vec<Op> {
        let ops: Vec<Op> = b
            .deletes
            .iter()
            .map(|d| Op::Delete(d.clone()))
            .chain(b.adds.iter().map(|a| Op::Add(a.clone())))
            .collect();
        for op in &ops {
            r.handle_result(op, Ok(()));
        }
        r.batch_done(b);
        ops
    }

    /// Runs batches to the end, every operation succeeding; returns them all.
    fn run_ok(r: &mut Reconciler) -> Vec<Op> {
        let mut ops = Vec::new();
        while r.has_work() {
            let b = r.poll_batch(1000);
            ops.extend(apply_ok(r, &b));
        }
        ops
    }

    #[test]
    fn test_best_change_adds_route_with_metric() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("192.168.0.64/26"), &[ip("10.0.0.2")], false);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("192.168.0.64/26", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().installed, 1);
        assert!(!r.has_work());
    }

    #[test]
    fn test_ecmp_is_one_multipath_route() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(
            net("10.1.0.0/24"),
            &[ip("10.0.0.3"), ip("10.0.0.2"), ip("10.0.0.3")],
            false,
        );
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.2", "10.0.0.3"], 1024))]
        );
    }

    #[test]
    fn test_change_is_delete_then_add_never_replace() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        run_ok(&mut r);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false);
        let b = r.poll_batch(10);
        assert_eq!(b.deletes, vec![via("10.1.0.0/24", &["10.0.0.2"], 1024)]);
        assert_eq!(b.adds, vec![via("10.1.0.0/24", &["10.0.0.3"], 1024)]);
    }

    #[test]
    fn test_withdraw_deletes_ours() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        run_ok(&mut r);
        r.handle_best_change(net("10.1.0.0/24"), &[], false);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Delete(via("10.1.0.0/24", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().installed, 0);
    }

    #[test]
    fn test_local_best_is_not_installed_but_blackhole_is() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("192.168.0.0/26"), &[], true);
        assert!(run_ok(&mut r).is_empty());
        r.set_blackholes([net("192.168.0.0/26")]);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(blackhole("192.168.0.0/26", 1024))]
        );
        // A peer's path for our own block does not displace the blackhole.
        r.handle_best_change(net("192.168.0.0/26"), &[ip("10.0.0.2")], false);
        assert!(run_ok(&mut r).is_empty());
        // Dropping the block falls back to what BGP says.
        r.set_blackholes([]);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Delete(blackhole("192.168.0.0/26", 1024)),
                Op::Add(via("192.168.0.0/26", &["10.0.0.2"], 1024)),
            ]
        );
    }

    #[test]
    fn test_adopted_routes_kept_until_synced_then_stale_removed() {
        let mut r = Reconciler::new(1024);
        let live = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        let stale = via("10.2.0.0/24", &["10.0.0.2"], 1024);
        let hole = blackhole("192.168.0.0/26", 1024);
        r.adopt([live.clone(), stale.clone(), hole.clone()]);
        r.set_blackholes([net("192.168.0.0/26")]);
        // Before the sync: nothing is touched, the blackhole is already right.
        assert!(run_ok(&mut r).is_empty());
        // The live one comes back as it was: no operation at all.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        assert!(run_ok(&mut r).is_empty());
        r.mark_synced();
        assert_eq!(run_ok(&mut r), vec![Op::Delete(stale)]);
        assert_eq!(r.stats().adopted, 3);
        assert_eq!(r.stats().installed, 2);
    }

    #[test]
    fn test_adopted_route_confirmed_then_withdrawn_goes_before_sync() {
        let mut r = Reconciler::new(1024);
        let live = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([live.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        assert!(run_ok(&mut r).is_empty());
        r.handle_best_change(net("10.1.0.0/24"), &[], false);
        assert_eq!(run_ok(&mut r), vec![Op::Delete(live)]);
        assert!(!r.synced());
    }

    #[test]
    fn test_adopted_route_with_other_gateway_is_replaced_before_sync() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([old.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Delete(old),
                Op::Add(via("10.1.0.0/24", &["10.0.0.3"], 1024))
            ]
        );
    }

    #[test]
    fn test_adopted_route_with_other_metric_is_replaced() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 100);
        r.adopt([old.clone()]);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Delete(old),
                Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 1024))
            ]
        );
    }

    #[test]
    fn test_error_recorded_counted_and_retried() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        r.handle_best_change(net("10.2.0.0/24"), &[ip("10.0.0.2")], false);
        let b = r.poll_batch(10);
        assert_eq!(b.adds.len(), 2);
        let bad = Op::Add(b.adds[0].clone());
        r.handle_result(
            &bad,
            Err(OpError::Failed("File exists (os error 17)".into())),
        );
        r.handle_result(&Op::Add(b.adds[1].clone()), Ok(()));
        r.batch_done(&b);
        assert!(!r.has_work());
        let s = r.stats();
        assert_eq!((s.errors, s.failing, s.installed), (1, 1, 1));
        assert_eq!(
            r.failures().collect::<Vec<_>>(),
            vec![(&net("10.1.0.0/24"), "File exists (os error 17)")]
        );
        r.retry_failed();
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("10.1.0.0/24", &["10.0.0.2"], 1024))]
        );
        assert_eq!(r.stats().failing, 0);
        assert_eq!(r.stats().installed, 2);
    }

    #[test]
    fn test_failed_retry_after_withdraw_does_nothing() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        let b = r.poll_batch(10);
        r.handle_result(
            &Op::Add(b.adds[0].clone()),
            Err(OpError::Failed("x".into())),
        );
        r.batch_done(&b);
        r.handle_best_change(net("10.1.0.0/24"), &[], false);
        r.retry_failed();
        assert!(run_ok(&mut r).is_empty());
    }

    #[test]
    fn test_delete_of_missing_route_counts_as_gone() {
        let mut r = Reconciler::new(1024);
        let old = via("10.1.0.0/24", &["10.0.0.2"], 1024);
        r.adopt([old.clone()]);
        r.mark_synced();
        let b = r.poll_batch(10);
        r.handle_result(&Op::Delete(old), Err(OpError::NotFound));
        r.batch_done(&b);
        assert_eq!(r.stats().installed, 0);
        assert_eq!(r.stats().errors, 0);
    }

    #[test]
    fn test_in_flight_prefix_waits_and_coalesces() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.2")], false);
        let b = r.poll_batch(10);
        // Changes while the add is in flight: nothing more for that prefix yet.
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.3")], false);
        r.handle_best_change(net("10.1.0.0/24"), &[ip("10.0.0.4")], false);
        assert!(!r.has_work());
        assert!(r.poll_batch(10).is_empty());
        r.handle_result(&Op::Add(b.adds[0].clone()), Ok(()));
        r.batch_done(&b);
        assert_eq!(
            run_ok(&mut r),
            vec![
                Op::Delete(via("10.1.0.0/24", &["10.0.0.2"], 1024)),
                Op::Add(via("10.1.0.0/24", &["10.0.0.4"], 1024)),
            ]
        );
    }

    #[test]
    fn test_batches_are_bounded() {
        let mut r = Reconciler::new(1024);
        for i in 0..1000u32 {
            let p = IpNet::new(IpAddr::from((10u32 << 24 | i << 8).to_be_bytes()), 24).unwrap();
            r.handle_best_change(p, &[ip("10.0.0.2")], false);
        }
        let b = r.poll_batch(256);
        assert_eq!(b.len(), 256);
        apply_ok(&mut r, &b);
        assert_eq!(run_ok(&mut r).len(), 1000 - 256);
        assert_eq!(r.stats().installed, 1000);
    }

    #[test]
    fn test_ipv6_route_with_ipv6_gateway() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("fd00:1::/64"), &[ip("fd00::2")], false);
        assert_eq!(
            run_ok(&mut r),
            vec![Op::Add(via("fd00:1::/64", &["fd00::2"], 1024))]
        );
    }

    #[test]
    fn test_ipv6_route_with_ipv4_gateway_is_not_installed() {
        let mut r = Reconciler::new(1024);
        r.handle_best_change(net("fd00:1::/64"), &[ip("10.0.0.2")], false);
        assert!(run_ok(&mut r).is_empty());
    }
}
