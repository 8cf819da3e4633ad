//! `fabric`: K clients, each announcing its own /26 right after Established and learning
//! everyone else's, as the nodes of a Calico cluster do through a route reflector.
//!
//! With `--flap`, after convergence client 0 sends a Cease / Administrative Reset, closes
//! and reconnects at once; the other clients must get its block again.
//!
//! With `--targets` and `--rack-size`, the clients form racks and each holds a session
//! with every reflector of its rack (a top-of-rack topology): a session is then one
//! (client, reflector) pair, and each session must learn the K-1 other blocks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bgp_wire::nlri::Nlri;
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{Family, Frame, MessageType, Notification};
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::mpsc;

use crate::addrs;
use crate::cli::{Common, FabricArgs, NextHopArg};
use crate::encode::Sender;
use crate::report;
use crate::run::{Run, start_delay};
use crate::session::{End, MAX_MESSAGES, Peer};
use crate::stats::{AtomicTime, Clock, SessionStats, Tally, apply, secs};

/// The clients' blocks: client i has `BLOCKS + 64·i` /26.
const BLOCKS: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
const BLOCK_LEN: u8 = 26;
/// Per-client details in the JSON up to this many clients; beyond, only statistics.
const DETAIL_MAX: usize = 50;

/// Client `i`'s block.
pub(crate) fn block(i: usize) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::from(u32::from(BLOCKS) + 64 * i as u32), BLOCK_LEN)
}

/// The client whose block `n` is, if it is one of `k` clients' other than `me`.
fn block_index(n: &Nlri, k: usize, me: usize) -> Option<usize> {
    let (IpNet::V4(p), None) = (n.prefix, n.path_id) else {
        return None;
    };
    if p.prefix_len() != BLOCK_LEN {
        return None;
    }
    let off = u32::from(p.network()).checked_sub(u32::from(BLOCKS))?;
    let i = (off / 64) as usize;
    (off % 64 == 0 && i < k && i != me).then_some(i)
}

/// Everything decided before the first packet.
#[derive(Debug)]
pub(crate) struct Plan {
    target: SocketAddr,
    /// Per client: its source address.
    sources: Vec<IpAddr>,
    /// Per session: its client's index.
    client_of: Vec<usize>,
    /// Per session.
    peers: Vec<Peer>,
    /// The reflectors (just the target without --targets).
    targets: Vec<SocketAddr>,
    rack_size: usize,
    next_hops: Vec<Ipv4Addr>,
    asn: u32,
    peer_asn: u32,
    hold_time: u16,
    spread: Duration,
    settle: Duration,
    flap: bool,
    await_cease: bool,
    ready_file: Option<std::path::PathBuf>,
}

/// Checks the arguments against the network rule and derives every session.
pub(crate) fn prepare(c: &Common, a: &FabricArgs, initial_netns: bool) -> Result<Plan, String> {
    c.check()?;
    let clients = usize::try_from(a.clients).map_err(|_| "--clients: too many")?;
    let (targets, rack_size) = if a.targets.is_empty() {
        (vec![c.target], clients)
    } else {
        let size = a.rack_size.unwrap_or(a.clients) as usize;
        if !clients.is_multiple_of(size) {
            return Err(format!(
                "--rack-size {size} does not divide --clients {clients}"
            ));
        }
        let racks = clients / size;
        if !a.targets.len().is_multiple_of(racks) {
            return Err(format!(
                "{} --targets for {racks} racks: each rack needs the same number",
                a.targets.len()
            ));
        }
        (a.targets.clone(), size)
    };
    for t in &targets {
        addrs::check_allowed("--targets", t.ip(), initial_netns)?;
    }
    let per_rack = targets.len() / (clients / rack_size);
    let sources = addrs::sources(c.source, a.clients, targets[0], initial_netns)?;
    let mut peers = Vec::with_capacity(sources.len() * per_rack);
    let mut client_of = Vec::with_capacity(sources.len() * per_rack);
    let mut next_hops = Vec::with_capacity(sources.len());
    for (i, &s) in sources.iter().enumerate() {
        let rack = i / rack_size;
        for &target in &targets[rack * per_rack..(rack + 1) * per_rack] {
            if target.is_ipv4() != s.is_ipv4() {
                return Err(format!(
                    "--targets {target} and --source are of different families"
                ));
            }
            peers.push(Peer {
                source: s,
                target,
                asn: c.asn,
                peer_asn: c.peer_asn(),
                hold_time: c.hold_time,
                router_id: addrs::router_id(s)?,
            });
            client_of.push(i);
        }
        next_hops.push(addrs::next_hop(c.next_hop, s, i as u64)?);
    }
    if c.next_hop == NextHopArg::SelfAddr && sources[0].is_loopback() {
        eprintln!(
            "bgp-load fabric: note: next hops are the clients' loopback addresses, which RFC \
             4271 §6.3 receivers (rr-daemon among them) ignore; --next-hop sets others"
        );
    }
    Ok(Plan {
        target: c.target,
        sources,
        client_of,
        peers,
        targets,
        rack_size,
        next_hops,
        asn: c.asn,
        peer_asn: c.peer_asn(),
        hold_time: c.hold_time,
        spread: Duration::from_millis(c.connect_spread_ms),
        settle: Duration::from_millis(c.settle_ms),
        flap: a.flap,
        await_cease: a.await_cease,
        ready_file: a.ready_file.clone(),
    })
}

impl Plan {
    pub(crate) fn sessions(&self) -> usize {
        self.peers.len()
    }
}

/// What the other clients saw of client 0's flap.
#[derive(Debug, Default)]
struct FlapSeen {
    /// Holds client 0's block now.
    holds: AtomicBool,
    /// Saw it withdrawn after the Cease.
    withdrawn: AtomicBool,
    /// First announcement of it after the Cease.
    announced_at: AtomicTime,
}

impl FlapSeen {
    /// Held client 0's block throughout: never withdrawn, never sent again.
    fn unchanged(&self) -> bool {
        self.announced_at.get().is_none()
            && self.holds.load(Ordering::Acquire)
            && !self.withdrawn.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct State {
    run: Run,
    k: usize,
    seen: Vec<FlapSeen>,
    cease_at: AtomicTime,
    reestablished_at: AtomicTime,
    /// Client 0 holds the K-1 other blocks again after its reconnection.
    full_again_at: AtomicTime,
    /// `--await-cease`: the target's ending of the sessions is awaited, not an error.
    awaiting: AtomicBool,
    /// How each client's session ended while awaited: when, the Cease subcode if it was a
    /// Cease, and in words.
    endings: std::sync::Mutex<Vec<Option<Ending>>>,
}

/// How one session ended under `--await-cease`.
#[derive(Clone, Debug)]
struct Ending {
    at: u64,
    cease: Option<u8>,
    what: String,
}

impl State {
    fn endings(&self) -> std::sync::MutexGuard<'_, Vec<Option<Ending>>> {
        self.endings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended_count(&self) -> usize {
        self.endings().iter().flatten().count()
    }
}

enum Cmd {
    Flap,
}

/// Runs the plan until done or the deadline.
pub(crate) async fn execute(plan: Plan, deadline: Instant) -> report::Fabric {
    let started = Instant::now();
    // Clients (blocks) and sessions: the same without --targets.
    let k = plan.sources.len();
    let n = plan.sessions();
    let clock = Clock {
        base: Instant::now(),
    };
    let stats = plan
        .peers
        .iter()
        .map(|p| SessionStats::new(p.source))
        .collect();
    let st = Arc::new(State {
        run: Run::new("fabric", clock, deadline, stats),
        k,
        seen: (0..n).map(|_| FlapSeen::default()).collect(),
        cease_at: AtomicTime::default(),
        reestablished_at: AtomicTime::default(),
        full_again_at: AtomicTime::default(),
        awaiting: AtomicBool::new(false),
        endings: std::sync::Mutex::new(vec![None; k]),
    });
    let mut cmds = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        cmds.push(tx);
        let delay = start_delay(i, n, plan.spread);
        let client = plan.client_of[i];
        let c = Client {
            st: st.clone(),
            i,
            client,
            peer: plan.peers[i].clone(),
            next_hop: plan.next_hops[client],
            local_as: plan.asn,
        };
        tokio::spawn(c.run(delay, rx));
    }
    let run = &st.run;
    let progress = || progress_line(&st);

    let up = run.wait_until(|| run.up_count(0..n) == n, &progress).await;
    let all_up_at = run.all_established_at(0..n);
    let complete = run
        .wait_until(
            || run.sessions.iter().all(|s| s.full_at.get().is_some()),
            &progress,
        )
        .await;

    if plan.flap && complete {
        let _ = cmds[0].send(Cmd::Flap);
        let grace = plan.settle.as_nanos() as u64;
        run.wait_until(
            || {
                let Some(re) = st.reestablished_at.get() else {
                    return false;
                };
                let settled = run.now() >= re + grace;
                st.full_again_at.get().is_some()
                    && st.seen[1..]
                        .iter()
                        .all(|s| s.announced_at.get().is_some() || (settled && s.unchanged()))
            },
            &progress,
        )
        .await;
    }
    if up {
        run.pause(plan.settle, &progress).await;
    }
    if plan.await_cease && complete {
        st.awaiting.store(true, Ordering::Release);
        if let Some(f) = &plan.ready_file
            && let Err(e) = std::fs::write(f, b"ready\n")
        {
            run.errors
                .push(format!("cannot create --ready-file {}: {e}", f.display()));
        }
        let progress = || {
            format!(
                "awaiting the target's Ceases: {} of {k} sessions ended",
                st.ended_count()
            )
        };
        run.wait_through_losses(|| st.ended_count() == k, &progress)
            .await;
    }

    let timed_out = run.timed_out();
    let report = build_report(&plan, &st, all_up_at, timed_out, started);
    run.close_all().await;
    drop(cmds);
    report
}

/// One session's task.
struct Client {
    st: Arc<State>,
    /// The session.
    i: usize,
    /// Its client (whose block it announces).
    client: usize,
    peer: Peer,
    next_hop: Ipv4Addr,
    local_as: u32,
}

impl Client {
    async fn run(self, delay: Duration, mut cmd: mpsc::UnboundedReceiver<Cmd>) {
        let (st, i) = (&*self.st, self.i);
        let run = &st.run;
        let start = (Instant::now() + delay).min(run.deadline);
        tokio::time::sleep_until(start.into()).await;
        let mut tally = Tally::new(st.k);
        let mut faulted = false;
        let mut cmd_open = true;
        // At most two sessions: the first, and the one after a flap.
        for incarnation in 0..2 {
            let Some(mut s) = run.establish(i, &self.peer).await else {
                return;
            };
            if incarnation == 1 {
                st.reestablished_at.set_once(run.now());
            }
            let tx = Sender {
                ctx: s.ctx,
                local_as: self.local_as,
                next_hop: self.next_hop,
            };
            match tx.announce_one(block(self.client)) {
                Ok(out) => s.send(out.bytes),
                Err(e) => return run.session_error(i, &e),
            }
            let mut flap = false;
            for _ in 0..MAX_MESSAGES {
                tokio::select! {
                    r = s.recv(run.deadline) => match r {
                        Ok(f) if f.ty == MessageType::UPDATE => {
                            self.update(&s.ctx, &f, &mut tally, &mut faulted);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if st.awaiting.load(Ordering::Acquire) && !matches!(e, End::Deadline) {
                                // What --await-cease waits for: recorded, no error.
                                run.sessions[i].up.store(false, Ordering::Release);
                                let cease = match &e {
                                    End::Notified(n) if n.code == bgp_wire::ErrorCode::CEASE => Some(n.subcode),
                                    _ => None,
                                };
                                st.endings()[i] = Some(Ending { at: run.now(), cease, what: e.describe() });
                            } else {
                                run.ended(i, &e);
                            }
                            return;
                        }
                    },
                    c = cmd.recv(), if cmd_open => match c {
                        Some(Cmd::Flap) => {
                            flap = true;
                            break;
                        }
                        None => cmd_open = false,
                    },
                }
            }
            if !flap {
                run.ended(i, &End::Down("message limit reached".into()));
                return;
            }
            st.cease_at.set(run.now());
            run.sessions[i].up.store(false, Ordering::Release);
            let n = Notification::cease_with_communication(
                subcode::cease::ADMIN_RESET,
                "bgp-load: flap",
            );
            s.close(n, Duration::from_secs(1)).await;
            tally.clear();
            run.sessions[i].count.store(0, Ordering::Relaxed);
        }
    }

    fn update(&self, ctx: &bgp_wire::SessionCtx, f: &Frame, tally: &mut Tally, faulted: &mut bool) {
        let (st, i) = (&*self.st, self.i);
        let run = &st.run;
        let now = run.now();
        let me = &run.sessions[i];
        let v = UpdateView::parse(f.body(), ctx);
        me.updates.fetch_add(1, Ordering::Relaxed);
        me.last_update_at.set(now);
        if v.treatment() != Treatment::Normal {
            me.unexpected.fetch_add(1, Ordering::Relaxed);
            if !*faulted {
                *faulted = true;
                run.session_error(
                    i,
                    &format!("UPDATE fault, {:?}: {:?}", v.treatment(), v.issues()),
                );
            }
            if v.treatment() == Treatment::SessionReset {
                return;
            }
        }
        if v.end_of_rib() == Some(Family::Ipv4Unicast) {
            me.end_of_rib_at.set_once(now);
            return;
        }
        let flapping = i != 0 && st.cease_at.get().is_some();
        let seen = &st.seen[i];
        let a = apply(
            &v,
            tally,
            |n| block_index(n, st.k, self.client),
            |idx, announced| {
                if flapping && idx == Some(0) {
                    if announced {
                        seen.announced_at.set_once(now);
                    } else {
                        seen.withdrawn.store(true, Ordering::Release);
                    }
                }
            },
        );
        if a.unexpected > 0 {
            me.unexpected.fetch_add(a.unexpected, Ordering::Relaxed);
        }
        let c = tally.count();
        me.count.store(c, Ordering::Relaxed);
        if i != 0 {
            seen.holds.store(tally.holds(0), Ordering::Release);
        }
        if c == st.k as u64 - 1 {
            me.full_at.set_once(now);
            if i == 0 && st.reestablished_at.get().is_some() {
                st.full_again_at.set_once(now);
            }
        }
    }
}

fn progress_line(st: &State) -> String {
    let run = &st.run;
    let k = st.k;
    let n = run.sessions.len();
    let full = run
        .sessions
        .iter()
        .filter(|s| s.full_at.get().is_some())
        .count();
    let min = run
        .sessions
        .iter()
        .map(SessionStats::count)
        .min()
        .unwrap_or(0);
    let unexpected: u64 = run.sessions.iter().map(SessionStats::unexpected).sum();
    let mut line = format!(
        "up {}/{n}, sessions holding all {}: {full}/{n}, min count {min}, unexpected \
         {unexpected}",
        run.up_count(0..n),
        k - 1
    );
    if st.cease_at.get().is_some() {
        let again = st.seen[1..]
            .iter()
            .filter(|s| s.announced_at.get().is_some())
            .count();
        line.push_str(&format!(
            ", flap: re-established {}, block 0 sent again to {again}/{}",
            st.reestablished_at.get().is_some(),
            k - 1
        ));
    }
    line
}

fn build_report(
    plan: &Plan,
    st: &State,
    all_up_at: Option<u64>,
    timed_out: bool,
    started: Instant,
) -> report::Fabric {
    let run = &st.run;
    let k = st.k;
    let n = run.sessions.len();
    let want = k as u64 - 1;
    let times: Vec<f64> = run
        .sessions
        .iter()
        .filter_map(|s| s.full_at.get().map(secs))
        .collect();
    let all_complete_s = (times.len() == n).then(|| times.iter().copied().fold(0.0, f64::max));
    let multi = plan.targets.len() > 1;
    let incomplete: Vec<String> = run
        .sessions
        .iter()
        .zip(&plan.peers)
        .filter(|(s, _)| s.count() != want)
        .map(|(s, p)| {
            if multi {
                format!("{}->{}", s.address, p.target)
            } else {
                s.address.to_string()
            }
        })
        .collect();
    let unexpected: u64 = run.sessions.iter().map(SessionStats::unexpected).sum();
    let end_of_rib = run
        .sessions
        .iter()
        .filter(|s| s.end_of_rib_at.get().is_some())
        .count();
    let per_client = (n <= DETAIL_MAX).then(|| {
        run.sessions
            .iter()
            .map(|s| report::Client {
                address: s.address.to_string(),
                count: s.count(),
                complete_s: s.full_at.get().map(secs),
                end_of_rib: s.end_of_rib_at.get().is_some(),
                unexpected: s.unexpected(),
            })
            .collect()
    });
    let mut ok = all_complete_s.is_some() && incomplete.is_empty() && unexpected == 0;

    let flap = plan.flap.then(|| {
        let cease = st.cease_at.get();
        // Nothing to judge when the run never converged far enough to flap.
        let others = if cease.is_some() { &st.seen[1..] } else { &[] };
        let reannounced: Vec<f64> = others
            .iter()
            .filter_map(|s| s.announced_at.secs_since(cease))
            .collect();
        let not_updated: Vec<String> = others
            .iter()
            .zip(&run.sessions[1..])
            .filter(|(s, _)| s.announced_at.get().is_none() && !s.unchanged())
            .map(|(_, x)| x.address.to_string())
            .collect();
        let unchanged = others.iter().filter(|s| s.unchanged()).count();
        let all_updated_s = (not_updated.is_empty() && !reannounced.is_empty())
            .then(|| reannounced.iter().copied().fold(0.0, f64::max));
        report::Flap {
            client: run.sessions[0].address.to_string(),
            performed: cease.is_some(),
            reestablished_s: st.reestablished_at.secs_since(cease),
            all_updated_s,
            client_complete_s: st.full_again_at.secs_since(cease),
            saw_withdrawal: others
                .iter()
                .filter(|s| s.withdrawn.load(Ordering::Acquire))
                .count(),
            reannounced: reannounced.len(),
            unchanged,
            not_updated,
        }
    });
    if let Some(f) = &flap {
        ok &= f.performed
            && f.reestablished_s.is_some()
            && f.client_complete_s.is_some()
            && f.not_updated.is_empty();
    }
    let cease = plan.await_cease.then(|| {
        let endings = st.endings().clone();
        let times: Vec<u64> = endings
            .iter()
            .flatten()
            .filter(|e| e.cease.is_some())
            .map(|e| e.at)
            .collect();
        let (first, last) = (times.iter().min().copied(), times.iter().max().copied());
        let without: Vec<String> = endings
            .iter()
            .zip(&run.sessions)
            .filter(|(e, _)| e.as_ref().is_none_or(|e| e.cease.is_none()))
            .map(|(e, s)| {
                let how = e
                    .as_ref()
                    .map_or("still up (no ending)", |e| e.what.as_str());
                format!("{}: {how}", s.address)
            })
            .collect();
        report::Cease {
            awaited: st.awaiting.load(Ordering::Acquire),
            received: times.len(),
            admin_shutdown: endings
                .iter()
                .flatten()
                .filter(|e| e.cease == Some(subcode::cease::ADMIN_SHUTDOWN))
                .count(),
            first_s: first.map(secs),
            last_s: last.map(secs),
            spread_s: first.zip(last).map(|(f, l)| secs(l - f)),
            without_cease_count: without.len(),
            without_cease: without.into_iter().take(DETAIL_MAX).collect(),
        }
    });
    if let Some(c) = &cease {
        ok &= c.awaited && c.received == k;
    }
    ok &= !timed_out && run.errors.is_empty();
    report::Fabric {
        common: report::Common {
            mode: "fabric",
            ok,
            timed_out,
            errors: run.errors.list(),
            sessions: n,
            sessions_up_s: all_up_at.map(secs),
            elapsed_s: secs(started.elapsed().as_nanos() as u64),
            target: plan.target.to_string(),
            source: plan.sources[0].to_string(),
            asn: plan.asn,
            peer_asn: plan.peer_asn,
            hold_time: plan.hold_time,
        },
        clients: k,
        targets: plan.targets.iter().map(ToString::to_string).collect(),
        rack_size: plan.rack_size,
        all_complete_s,
        established_s: report::Summary::of(
            run.sessions
                .iter()
                .filter_map(|s| s.established_at.get().map(secs)),
        ),
        complete_s: report::Summary::of(times),
        updates: report::Summary::of(
            run.sessions
                .iter()
                .map(|s| s.updates.load(Ordering::Relaxed) as f64),
        ),
        incomplete,
        unexpected,
        end_of_rib,
        per_client,
        flap,
        cease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Mode};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::try_parse_from(["bgp-load", "fabric"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Mode::Fabric(a) = &cli.mode else {
            unreachable!()
        };
        prepare(&cli.common, a, true)
    }

    #[test]
    fn test_racks_of_clients_with_their_reflectors() {
        let targets = "127.10.0.1:179,127.10.0.2:179,127.10.0.3:179,127.10.0.4:179";
        let p = plan(&["--clients", "4", "--rack-size", "2", "--targets", targets]).unwrap();
        assert_eq!(p.sessions(), 8);
        let pairs: Vec<(usize, String)> = p
            .client_of
            .iter()
            .zip(&p.peers)
            .map(|(&c, peer)| (c, peer.target.ip().to_string()))
            .collect();
        assert_eq!(
            pairs,
            [
                (0, "127.10.0.1"),
                (0, "127.10.0.2"),
                (1, "127.10.0.1"),
                (1, "127.10.0.2"),
                (2, "127.10.0.3"),
                (2, "127.10.0.4"),
                (3, "127.10.0.3"),
                (3, "127.10.0.4"),
            ]
            .map(|(c, t)| (c, t.to_owned()))
        );
        // Both sessions of a client come from its one address.
        assert_eq!(p.peers[2].source, p.peers[3].source);
        assert_ne!(p.peers[1].source, p.peers[2].source);
        // Racks that do not divide, reflectors that do not share out, a flap.
        let e = plan(&["--clients", "5", "--rack-size", "2", "--targets", targets]);
        assert!(e.unwrap_err().contains("does not divide"));
        let e = plan(&["--clients", "6", "--rack-size", "2", "--targets", targets]);
        assert!(e.unwrap_err().contains("each rack needs the same number"));
        let e = plan(&[
            "--clients",
            "4",
            "--rack-size",
            "2",
            "--targets",
            targets,
            "--flap",
        ]);
        assert!(e.is_err());
        assert!(plan(&["--clients", "4", "--targets", targets]).is_err());
    }

    #[test]
    fn test_blocks_and_their_index() {
        assert_eq!(block(0).to_string(), "100.64.0.0/26");
        assert_eq!(block(5).to_string(), "100.64.1.64/26");
        assert_eq!(block(65_535).to_string(), "100.127.255.192/26");
        let n = |p: Ipv4Net| Nlri::new(IpNet::V4(p));
        assert_eq!(block_index(&n(block(7)), 10, 0), Some(7));
        // Our own block, one beyond the clients, a wrong length.
        assert_eq!(block_index(&n(block(7)), 10, 7), None);
        assert_eq!(block_index(&n(block(10)), 10, 0), None);
        assert_eq!(
            block_index(&n("100.64.0.0/24".parse().unwrap()), 10, 1),
            None
        );
        assert_eq!(block_index(&n("10.0.0.0/26".parse().unwrap()), 10, 1), None);
    }
}
