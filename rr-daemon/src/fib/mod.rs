//! Kernel routes (node mode): the best paths of the Loc-RIB go into a kernel table with our
//! route protocol number (12, BIRD's, by default: Calico's Felix recognises routes by it)
//! and a metric; our blocks (`[[originate]] blackhole = true`) go in as blackholes, and
//! `[[fib.static_route]]`s via their gateways.
//!
//! ```text
//!  Speaker::subscribe() ──BestChange──┐
//!  [[originate]] blackholes (watch) ──┼─▶ task (run): Reconciler (reconcile.rs, pure)
//!  Speaker::peers(), ::deferring() ───┘        │ poll_batch()       ▲ handle_result()
//!      (until the initial sync is over)        ▼                    │
//!                                        Kernel (netlink.rs): deletes, then adds, many
//!                                        requests in flight on one rtnetlink socket
//! ```
//!
//! Start: the task dumps our table for routes of our protocol number and adopts them
//! (they survived our last exit: routes are never removed when the daemon stops, BIRD's
//! `persist`). A route that comes back as it was costs no operation. Adopted routes
//! that nothing desires are removed only once the initial sync is over. After a
//! graceful restart (`--graceful-restart`) that is the end of the speaker's recovery
//! ([`Speaker::recovering`]): every configured peer up and the End-of-RIB of each one
//! that negotiated graceful restart in, or the restart time over; meanwhile no best path
//! goes out until route selection runs, and then only what changed is programmed.
//! Otherwise ([`InitialSync`]): every configured peer Established and no best-path
//! change for [`SETTLE`]. Either way at most [`SYNC_TIMEOUT`] after the start.
//!
//! Metric, tunnel and gateway of each route: see [`reconcile`] (Calico 3.32's
//! `2147483647 - LOCAL_PREF`, IP pools with `tunl0`, gateways resolved through the kernel).
//! Next hops are looked up with `ip route get`'s request before their routes go out, and
//! all of them again every [`RESOLVE_EVERY`]: a route whose gateway changed moves.
//!
//! Reload (SIGHUP): a new `[fib]` applies at once, without a restart ([`changes`] says
//! what changed, in the log). A new metric, IP pool, node subnet or LOCAL_PREF rule moves
//! the routes it concerns (in place, or make before break: see [`reconcile`]); a new table
//! puts every route of ours into it and then deletes ours from the old one; a new protocol
//! number or tunnel device deletes ours and adds them again (the kernel's slot is the
//! same). Only routes of ours are ever deleted.

pub mod learn;
pub mod netlink;
pub mod reconcile;
pub mod watcher;

pub use reconcile::{local_pref_of_metric, metric_of_local_pref};

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rib::BestChange;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::Fib;
use crate::speaker::{PeerState, Speaker};
use netlink::Kernel;
use reconcile::KernelRoute;
use reconcile::Reconciler;

/// Quiet time (no best-path change, every configured peer up) that ends the initial sync.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The initial sync ends at the latest this long after the start (BIRD's default
/// graceful restart time, the longest a restarting peer takes).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long changes gather before a batch goes to the kernel.
pub const BATCH_DELAY: Duration = Duration::from_millis(5);
/// Operations in one batch at most.
pub const BATCH_MAX: usize = 4096;
/// How often failed routes are tried again (BIRD's kernel scan time is 2 s).
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How often every next hop is looked up again (BIRD rescans on kernel table changes;
/// we poll).
pub const RESOLVE_EVERY: Duration = Duration::from_secs(10);
/// Failures logged one by one per batch; the rest are counted in one line.
const LOG_FAILURES: usize = 10;

/// What the FIB task reports (`GET /v1/fib`, `rr-daemon ctl fib`, the `rr_fib_*` metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibReport {
    /// `[fib] table`.
    pub table: u32,
    /// `[fib] protocol`.
    pub protocol: u8,
    /// The initial sync is over: adopted routes nothing asks for are gone.
    pub synced: bool,
    /// Routes of ours in the kernel now (as far as we know).
    pub installed: usize,
    /// Prefixes we want in the kernel.
    pub desired: usize,
    /// Desired prefixes not (yet) in the kernel as desired: queued, in flight or failing.
    pub pending: usize,
    /// Prefixes whose last operation failed, retried every 2 s.
    pub failing: usize,
    /// Successful netlink adds since the start.
    pub adds: u64,
    /// Successful netlink deletes since the start (a route already gone counts).
    pub deletes: u64,
    /// Failed netlink operations since the start.
    pub errors: u64,
    /// Routes adopted from the kernel at the start.
    pub adopted: usize,
    /// Batches sent to the kernel since the start.
    pub batches: u64,
    /// Every route of ours in the kernel (`PREFIX via GW metric M`, `PREFIX blackhole
    /// metric M`).
    pub routes: Vec<String>,
    /// The failing prefixes with their last error.
    pub failed: Vec<FibFailure>,
}

/// A prefix whose last kernel operation failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibFailure {
    /// The prefix.
    pub prefix: IpNet,
    /// What the kernel said.
    pub error: String,
}

/// Asks the FIB task for a [`FibReport`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct FibHandle(mpsc::Sender<oneshot::Sender<FibReport>>);

/// The FIB task's end of a [`FibHandle`], passed to [`run`].
#[derive(Debug)]
pub struct FibRequests(mpsc::Receiver<oneshot::Sender<FibReport>>);

impl FibRequests {
    /// The next request, to answer with a report (for a task other than [`run`] that
    /// programs routes); `None` once every handle is gone.
    pub async fn next(&mut self) -> Option<oneshot::Sender<FibReport>> {
        self.0.recv().await
    }
}

impl FibHandle {
    /// A handle and the requests it sends.
    pub fn new() -> (Self, FibRequests) {
        let (tx, rx) = mpsc::channel(16);
        (Self(tx), FibRequests(rx))
    }

    /// The report; `None` when the FIB task has ended (it could not open netlink).
    pub async fn report(&self) -> Option<FibReport> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.ok()?;
        rx.await.ok()
    }
}

fn report(fib: &Fib, rec: &Reconciler, batches: u64) -> FibReport {
    let s = rec.stats();
    let as_desired = rec
        .installed()
        .filter(|r| rec.desired(&r.prefix).as_ref() == Some(*r))
        .count();
    FibReport {
        table: fib.table,
        protocol: fib.protocol,
        synced: rec.synced(),
        installed: s.installed,
        desired: s.desired,
        pending: s.desired.saturating_sub(as_desired),
        failing: s.failing,
        adds: s.added,
        deletes: s.deleted,
        errors: s.errors,
        adopted: s.adopted,
        batches,
        routes: rec.installed().map(ToString::to_string).collect(),
        failed: rec
            .failures()
            .map(|(p, e)| FibFailure {
                prefix: *p,
                error: e.to_owned(),
            })
            .collect(),
    }
}

/// When the first full desired set is known. Pure: time comes in as `now`.
#[derive(Clone, Debug)]
pub struct InitialSync {
    deadline: Instant,
    quiet_until: Instant,
    ready_since: Option<Instant>,
    done: bool,
}

impl InitialSync {
    /// Starts waiting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            deadline: now + SYNC_TIMEOUT,
            quiet_until: now + SETTLE,
            ready_since: None,
            done: false,
        }
    }

    /// A best-path change arrived.
    pub fn on_change(&mut self, now: Instant) {
        self.quiet_until = now + SETTLE;
    }

    /// What the speaker said: whether every configured peer is Established and the
    /// graceful restart deferral (if we restart) is over.
    pub fn on_speaker(&mut self, ready: bool, now: Instant) {
        match (ready, self.ready_since) {
            (true, None) => self.ready_since = Some(now),
            (false, _) => self.ready_since = None,
            (true, Some(_)) => {}
        }
    }

    /// Whether the initial sync is over (and stays over).
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.done {
            let settled = self
                .ready_since
                .is_some_and(|t| now >= t + SETTLE && now >= self.quiet_until);
            self.done = settled || now >= self.deadline;
        }
        self.done
    }
}

/// What differs between two `[fib]` sections, one phrase each (`metric 1024 -> 100`), for
/// the log of a reload; empty when nothing does. `enabled` is not among them: turning
/// `[fib]` on or off takes the next start (the caller says so).
pub fn changes(old: &Fib, new: &Fib) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} -> {b}"));
        }
    };
    field("table", old.table.to_string(), new.table.to_string());
    field(
        "protocol",
        old.protocol.to_string(),
        new.protocol.to_string(),
    );
    field("metric", old.metric.to_string(), new.metric.to_string());
    field(
        "metric_from_local_pref",
        old.metric_from_local_pref.to_string(),
        new.metric_from_local_pref.to_string(),
    );
    field(
        "bird16_metric",
        old.bird16_metric.to_string(),
        new.bird16_metric.to_string(),
    );
    let subnet = |f: &Fib| {
        f.node_subnet
            .map_or_else(|| "none".to_owned(), |n| n.to_string())
    };
    field("node_subnet", subnet(old), subnet(new));
    field(
        "tunnel_device",
        old.tunnel_device.clone(),
        new.tunnel_device.clone(),
    );
    let pools = |f: &Fib| {
        let v: Vec<String> = f
            .ip_pools
            .iter()
            .map(|p| {
                let ipip = match p.ipip {
                    crate::config::IpipMode::Never => "never",
                    crate::config::IpipMode::Always => "always",
                    crate::config::IpipMode::CrossSubnet => "cross-subnet",
                };
                format!(
                    "{} ipip={ipip}{}",
                    p.prefix,
                    if p.install { "" } else { " install=false" }
                )
            })
            .collect();
        format!("[{}]", v.join(", "))
    };
    field("ip_pool", pools(old), pools(new));
    let statics = |f: &Fib| {
        let v: Vec<String> = f
            .statics()
            .iter()
            .map(|(p, g, m)| format!("{p} via {g} metric {m}"))
            .collect();
        format!("[{}]", v.join(", "))
    };
    field("static_route", statics(old), statics(new));
    out
}

/// The FIB task: programs `changes` (from [`Speaker::subscribe`], taken right after the
/// start) and the blackholes of `blackholes` into the kernel as `config` says (and says
/// again on every reload), until `changes` closes, and answers `requests`
/// ([`FibHandle::report`]). Nothing is removed from the kernel when it ends.
pub async fn run(
    mut config: watch::Receiver<Fib>,
    speaker: Speaker,
    configured: Vec<IpAddr>,
    mut changes: mpsc::Receiver<BestChange>,
    mut blackholes: watch::Receiver<Vec<(IpNet, u32)>>,
    requests: FibRequests,
) -> Result<(), netlink::KernelError> {
    let mut fib = config.borrow_and_update().clone();
    let mut requests = requests.0;
    let mut batches = 0u64;
    let started = Instant::now();
    let mut kernel = Kernel::open(fib.table, fib.protocol, fib.tunnel_device.clone())?;
    // Routes of ours in a table we left, deleted once the new one is programmed.
    let mut leftover: Option<(Kernel, Vec<KernelRoute>)> = None;
    let mut rec = Reconciler::with_rules(reconcile::Rules::from_config(&fib));
    let found = kernel.dump().await?;
    info!(
        routes = found.len(),
        table = fib.table,
        protocol = fib.protocol,
        "fib: adopted our routes from the kernel"
    );
    rec.adopt(found);
    rec.set_blackholes(blackholes.borrow_and_update().iter().copied());
    rec.set_statics(fib.statics());
    let mut sync = InitialSync::new(started);
    // Started with `--graceful-restart`: the initial sync is graceful restart's recovery,
    // over with the End-of-RIBs (or the restart time), not after a quiet second.
    let gr_recovery = speaker.recovering().await.unwrap_or(false);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let mut retry = tokio::time::interval(RETRY_EVERY);
    let mut resolve = tokio::time::interval(RESOLVE_EVERY);
    let mut open = true;
    while open {
        tokio::select! {
            c = changes.recv() => match c {
                Some(c) => {
                    // Gather what follows for a moment: batches, not single routes.
                    tokio::time::sleep(BATCH_DELAY).await;
                    take(&mut rec, &c);
                    let mut n = 1;
                    while n < BATCH_MAX && let Ok(c) = changes.try_recv() {
                        take(&mut rec, &c);
                        n += 1;
                    }
                    sync.on_change(Instant::now());
                }
                None => open = false,
            },
            r = blackholes.changed() => {
                if r.is_ok() {
                    rec.set_blackholes(blackholes.borrow_and_update().iter().copied());
                }
            }
            _ = check.tick(), if !rec.synced() => {
                let now = Instant::now();
                let (over, by) = if gr_recovery {
                    let recovered = !speaker.recovering().await.unwrap_or(false);
                    let over = recovered || sync.poll(now);
                    if over {
                        // The best paths of the recovery's end were sent before the answer:
                        // take them all before anything adopted counts as stale.
                        while let Ok(c) = changes.try_recv() {
                            take(&mut rec, &c);
                        }
                    }
                    let by = if recovered {
                        "graceful restart recovery over (End-of-RIBs in)"
                    } else {
                        "timeout"
                    };
                    (over, by)
                } else {
                    if !sync.poll(now) {
                        let ready = speaker_ready(&speaker, &configured).await;
                        sync.on_speaker(ready, now);
                    }
                    (sync.poll(now), "peers up and quiet, or timeout")
                };
                if over {
                    info!(
                        after_ms = started.elapsed().as_millis() as u64,
                        by,
                        "fib: initial sync over, removing stale routes of ours"
                    );
                    rec.mark_synced();
                }
            }
            r = config.changed() => {
                if r.is_ok() {
                    let new = config.borrow_and_update().clone();
                    if let Some(l) =
                        reconfigure(&mut fib, new, &mut kernel, &mut rec, &mut batches).await
                    {
                        leftover = Some(l);
                    }
                    rec.set_statics(fib.statics());
                }
            }
            _ = retry.tick() => rec.retry_failed(),
            _ = resolve.tick() => rec.re_resolve(),
            Some(r) = requests.recv() => {
                let _ = r.send(report(&fib, &rec, batches));
            }
        }
        while rec.has_lookups() || rec.has_work() {
            let lookups = rec.poll_lookups();
            if !lookups.is_empty() {
                for (nh, r) in kernel.resolve_all(&lookups).await {
                    debug!(next_hop = %nh, resolution = ?r, "fib: next hop looked up");
                    rec.handle_lookup(nh, r);
                }
                continue;
            }
            let batch = rec.poll_batch(BATCH_MAX);
            let t = Instant::now();
            let results = kernel.apply_batch(&batch).await;
            batches += 1;
            let mut failed = 0;
            for (op, r) in results {
                if let Err(reconcile::OpError::Failed(e)) = &r {
                    failed += 1;
                    if failed <= LOG_FAILURES {
                        warn!(route = %op, "fib: {e} (will retry)");
                    }
                }
                rec.handle_result(&op, r);
            }
            rec.batch_done(&batch);
            if failed > LOG_FAILURES {
                warn!(
                    "fib: {} more operations failed (will retry)",
                    failed - LOG_FAILURES
                );
            }
            let s = rec.stats();
            debug!(
                ops = batch.len(),
                failed,
                ms = t.elapsed().as_millis() as u64,
                installed = s.installed,
                errors = s.errors,
                "fib: batch done"
            );
        }
        // The new table holds what it should (as far as it can): ours leave the old one.
        if let Some((old, routes)) = leftover.take() {
            let gone = delete_all(&old, routes, &mut batches).await;
            info!(
                routes = gone,
                table = old.table(),
                "fib: our routes left the old table"
            );
        }
    }
    Ok(())
}

/// Applies a reloaded `[fib]`: new rules move the routes they concern; a new table,
/// protocol number or tunnel device reopens the kernel side. Returns the routes of ours
/// to delete from the old table once the new one is programmed (a table move: make before
/// break). A protocol number or tunnel device change in the same table deletes ours at
/// once (the new ones take the same slots).
async fn reconfigure(
    fib: &mut Fib,
    new: Fib,
    kernel: &mut Kernel,
    rec: &mut Reconciler,
    batches: &mut u64,
) -> Option<(Kernel, Vec<KernelRoute>)> {
    let what = changes(fib, &new);
    if what.is_empty() {
        // Nothing, or only `enabled`, which takes the next start.
        return None;
    }
    info!(changes = %what.join("; "), "fib: [fib] reloaded");
    let moved = new.table != fib.table
        || new.protocol != fib.protocol
        || new.tunnel_device != fib.tunnel_device;
    let mut leftover = None;
    if moved {
        let reopened = match Kernel::open(new.table, new.protocol, new.tunnel_device.clone()) {
            Ok(k) => k,
            Err(e) => {
                // The old table stays programmed as it was; a later reload may do better.
                warn!("fib: {e}: the reload of [fib] is refused");
                return None;
            }
        };
        let old = std::mem::replace(kernel, reopened);
        let routes = rec.forget_installed();
        rec.set_rules(reconcile::Rules::from_config(&new));
        if new.table != fib.table {
            leftover = Some((old, routes));
        } else {
            let gone = delete_all(&old, routes, batches).await;
            info!(routes = gone, "fib: our routes deleted, to be added again");
        }
        // What the new table holds of ours already (an earlier run) is adopted.
        match kernel.dump().await {
            Ok(found) => rec.adopt(found),
            Err(e) => warn!("fib: {e}"),
        }
    } else {
        rec.set_rules(reconcile::Rules::from_config(&new));
    }
    *fib = new;
    leftover
}

/// Deletes `routes` (of ours) through `kernel`; returns how many are gone.
async fn delete_all(kernel: &Kernel, routes: Vec<KernelRoute>, batches: &mut u64) -> usize {
    let mut gone = 0;
    for chunk in routes.chunks(BATCH_MAX) {
        let batch = reconcile::Batch {
            deletes: chunk.to_vec(),
            ..reconcile::Batch::default()
        };
        *batches += 1;
        for (op, r) in kernel.apply_batch(&batch).await {
            match r {
                Ok(()) | Err(reconcile::OpError::NotFound) => gone += 1,
                Err(reconcile::OpError::Failed(e)) => warn!(route = %op, "fib: {e}"),
            }
        }
    }
    gone
}

fn take(rec: &mut Reconciler, c: &BestChange) {
    rec.handle_best_change(c.prefix, &c.next_hops, c.local, c.local_pref);
}

/// Every configured peer Established and the speaker past its graceful restart deferral.
async fn speaker_ready(speaker: &Speaker, configured: &[IpAddr]) -> bool {
    let Ok(peers) = speaker.peers().await else {
        return false;
    };
    let up = configured.iter().all(|a| {
        peers
            .iter()
            .any(|p| p.address == *a && p.state == PeerState::Established)
    });
    up && !speaker.deferring().await.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_initial_sync_waits_for_peers_and_quiet() {
        let t0 = Instant::now();
        let mut s = InitialSync::new(t0);
        assert!(!s.poll(t0 + Duration::from_secs(5)));
        s.on_speaker(true, t0 + Duration::from_secs(5));
        s.on_change(t0 + Duration::from_millis(5500));
        assert!(!s.poll(t0 + Duration::from_millis(6000)));
        assert!(s.poll(t0 + Duration::from_millis(6500)));
        // Over for good.
        s.on_speaker(false, t0 + Duration::from_secs(7));
        assert!(s.poll(t0 + Duration::from_secs(7)));
    }

    #[test]
    fn test_initial_sync_peer_down_restarts_wait() {
        let t0 = Instant::now();
        let mut s = InitialSync::new(t0);
        s.on_speaker(true, t0);
        s.on_speaker(false, t0 + Duration::from_millis(900));
        assert!(!s.poll(t0 + Duration::from_secs(2)));
        s.on_speaker(true, t0 + Duration::from_secs(2));
        assert!(s.poll(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn test_changes_name_each_changed_key() {
        let old = Fib {
            enabled: true,
            table: 254,
            protocol: 12,
            metric: 1024,
            metric_from_local_pref: true,
            bird16_metric: false,
            node_subnet: None,
            tunnel_device: "tunl0".into(),
            ip_pools: Vec::new(),
            static_routes: Vec::new(),
        };
        assert!(changes(&old, &old).is_empty());
        let new = Fib {
            table: 100,
            metric: 2000,
            ip_pools: vec![crate::config::IpPool {
                prefix: "10.80.0.0/16".parse().unwrap(),
                ipip: crate::config::IpipMode::CrossSubnet,
                install: false,
            }],
            static_routes: vec![crate::config::StaticRoute {
                prefix: "10.225.0.4/32".parse().unwrap(),
                via: "192.0.2.1".parse().unwrap(),
                metric: None,
            }],
            ..old.clone()
        };
        assert_eq!(
            changes(&old, &new),
            vec![
                "table 254 -> 100".to_owned(),
                "metric 1024 -> 2000".to_owned(),
                "ip_pool [] -> [10.80.0.0/16 ipip=cross-subnet install=false]".to_owned(),
                "static_route [] -> [10.225.0.4/32 via 192.0.2.1 metric 2000]".to_owned(),
            ]
        );
    }

    #[test]
    fn test_initial_sync_times_out() {
        let t0 = Instant::now();
        let mut s = InitialSync::new(t0);
        assert!(!s.poll(t0 + SYNC_TIMEOUT - Duration::from_secs(1)));
        assert!(s.poll(t0 + SYNC_TIMEOUT));
    }
}
