//! `table`: one injector, K receivers.
//!
//! Phases, each bounded by the run's deadline:
//! 1. every session comes up (`sessions_up_s`);
//! 2. the injector sends the whole table and End-of-RIB in one go; each receiver notes the
//!    instant its bitmap holds all N (`announce`);
//! 3. with `--late-receiver`, one more receiver connects and must learn the table;
//! 4. with `--withdraw` (or `--refresh`), the injector withdraws everything, receiver 1
//!    sending a ROUTE-REFRESH at the same moment under `--refresh`; each receiver notes
//!    the instant it is back to 0 (`withdraw`);
//! 5. a settling pause, then the final counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgp_wire::route_refresh::{RefreshSubtype, RouteRefresh};
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{Afi, Family, FamilySet, MessageType, Safi, SessionCtx};
use bytes::BytesMut;

use crate::addrs;
use crate::cli::{Common, TableArgs};
use crate::encode::{self, Sender, Stream};
use crate::generate::Table;
use crate::index::PrefixIndex;
use crate::report;
use crate::run::{Run, start_delay};
use crate::session::{End, MAX_MESSAGES, Peer};
use crate::stats::{Applied, AtomicTime, Clock, SessionStats, Tally, apply, secs};
use crate::{light, replay};

/// Everything decided before the first packet.
#[derive(Debug)]
pub(crate) struct Plan {
    target: SocketAddr,
    sources: Vec<IpAddr>,
    peers: Vec<Peer>,
    next_hop: std::net::Ipv4Addr,
    asn: u32,
    peer_asn: u32,
    hold_time: u16,
    spread: Duration,
    settle: Duration,
    n: u64,
    receivers: usize,
    withdraw: bool,
    late: bool,
    refresh: bool,
    seed: u64,
    pause_file: Option<std::path::PathBuf>,
    full_check: bool,
}

/// Checks the arguments against the network rule and derives every session.
pub(crate) fn prepare(c: &Common, a: &TableArgs, initial_netns: bool) -> Result<Plan, String> {
    c.check()?;
    let receivers = usize::try_from(a.receivers).map_err(|e| e.to_string())?;
    let count = 1 + a.receivers + u64::from(a.late_receiver);
    let sources = addrs::sources(c.source, count, c.target, initial_netns)?;
    let peers = sources
        .iter()
        .map(|&s| {
            Ok(Peer {
                source: s,
                target: c.target,
                asn: c.asn,
                peer_asn: c.peer_asn(),
                hold_time: c.hold_time,
                router_id: addrs::router_id(s)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let next_hop = addrs::next_hop(c.next_hop, sources[0], 0)?;
    Ok(Plan {
        target: c.target,
        sources,
        peers,
        next_hop,
        asn: c.asn,
        peer_asn: c.peer_asn(),
        hold_time: c.hold_time,
        spread: Duration::from_millis(c.connect_spread_ms),
        settle: Duration::from_millis(c.settle_ms),
        n: a.prefixes,
        receivers,
        withdraw: a.withdraw || a.refresh,
        late: a.late_receiver,
        refresh: a.refresh,
        seed: a.seed,
        pause_file: a.pause_file.clone(),
        full_check: a.full_check,
    })
}

impl Plan {
    pub(crate) fn sessions(&self) -> usize {
        self.sources.len()
    }
}

/// The run's state beyond [`Run`].
#[derive(Debug)]
struct State {
    run: Run,
    n: u64,
    index: PrefixIndex,
    /// The injector's first announcing UPDATE went out.
    announce_at: AtomicTime,
    /// The injector's first withdrawing UPDATE went out.
    withdraw_at: AtomicTime,
    /// Receivers note reaching 0 only from here on.
    withdrawing: AtomicBool,
    /// UPDATEs other than End-of-RIB that reached the injector.
    injector_received: AtomicU64,
    /// Every receiver parses every UPDATE in full (`--full-check`), not receiver 1 alone.
    full_check: bool,
    /// The UPDATEs read so far, for receivers that get the same ones ([`replay`]); none
    /// under `--full-check` (nobody replays) or for a table too big for its steps.
    log: Option<replay::Log>,
    /// Receiver 1 sent its ROUTE-REFRESH; what it received afterwards.
    refresh_at: AtomicTime,
    refresh_updates: AtomicU64,
    refresh_announced: AtomicU64,
    /// Route refresh negotiated on receiver 1's session.
    refresh_negotiated: AtomicBool,
}

/// Runs the plan until done or the deadline; returns the report and whether everything
/// completed exactly.
pub(crate) async fn execute(plan: Plan, deadline: Instant) -> report::Table {
    let started = Instant::now();
    let (table, stream, withdrawal) = match build(&plan) {
        Ok(t) => t,
        Err(e) => {
            // Not an argument error: report it like any other failure.
            return failed_report(&plan, e, started);
        }
    };
    let generate_s = secs(started.elapsed().as_nanos() as u64);
    eprintln!(
        "bgp-load table: {} prefixes in {} groups, {} UPDATEs ({} bytes), {} withdrawing \
         UPDATEs; generated in {generate_s:.3}s",
        plan.n,
        table.groups.len(),
        stream.messages,
        stream.bytes.len(),
        withdrawal.messages,
    );
    if plan.next_hop.is_loopback() {
        eprintln!(
            "bgp-load table: note: next hop {} is a loopback address, which RFC 4271 §6.3 \
             receivers (rr-daemon among them) ignore; --next-hop sets another",
            plan.next_hop
        );
    }

    let clock = Clock {
        base: Instant::now(),
    };
    let stats = plan.sources.iter().map(|&a| SessionStats::new(a)).collect();
    let st = Arc::new(State {
        run: Run::new("table", clock, deadline, stats),
        n: plan.n,
        index: PrefixIndex::new(&table.prefixes),
        announce_at: AtomicTime::default(),
        withdraw_at: AtomicTime::default(),
        withdrawing: AtomicBool::new(false),
        injector_received: AtomicU64::new(0),
        refresh_at: AtomicTime::default(),
        refresh_updates: AtomicU64::new(0),
        refresh_announced: AtomicU64::new(0),
        refresh_negotiated: AtomicBool::new(false),
        full_check: plan.full_check,
        log: (!plan.full_check && plan.n < replay::MAX_POSITIONS)
            .then(|| replay::Log::new(plan.n as usize)),
    });
    let groups = table.groups.len();
    drop(table);

    let k = plan.receivers;
    let first = 1 + k; // sessions started at once: injector and receivers
    for i in 0..first {
        let delay = start_delay(i, first, plan.spread);
        tokio::spawn(session_task(st.clone(), i, plan.peers[i].clone(), delay));
    }
    let run = &st.run;
    let receivers = 1..=k;
    let progress = || progress_line(&st, first);

    // 1. Sessions up.
    let up = run
        .wait_until(|| run.up_count(0..first) == first, &progress)
        .await;
    let all_up_at = run.all_established_at(0..first);

    // 2. Announce.
    let mut complete = false;
    if up {
        st.announce_at.set(run.now());
        run.send(0, stream.bytes.clone());
        complete = run
            .wait_until(
                || {
                    receivers
                        .clone()
                        .all(|i| run.sessions[i].full_at.get().is_some())
                },
                &progress,
            )
            .await;
    }

    // 3. The late receiver.
    let late = plan.late.then_some(first);
    if let (true, Some(l)) = (complete, late) {
        tokio::spawn(session_task(
            st.clone(),
            l,
            plan.peers[l].clone(),
            Duration::ZERO,
        ));
        run.wait_until(|| run.sessions[l].full_at.get().is_some(), &progress)
            .await;
    }
    let all_receivers: Vec<usize> = receivers.clone().chain(late).collect();
    let announce_end = plan.withdraw.then(|| snapshot(&st, &all_receivers));

    // 4. Withdraw (with a ROUTE-REFRESH from receiver 1), once the pause file exists.
    let mut pause_s = None;
    if let (true, true, Some(f)) = (plan.withdraw, up, &plan.pause_file) {
        eprintln!(
            "bgp-load table: waiting for {} before withdrawing",
            f.display()
        );
        let from = run.now();
        if run.wait_until(|| f.exists(), &progress).await {
            pause_s = Some(secs(run.now() - from));
        }
    }
    if plan.withdraw && up {
        if plan.refresh {
            let mut rr = BytesMut::new();
            RouteRefresh {
                afi: Afi::IPV4,
                subtype: RefreshSubtype::NORMAL,
                safi: Safi::UNICAST,
            }
            .encode(&mut rr);
            st.refresh_at.set(run.now());
            run.send(1, rr.freeze());
        }
        st.withdrawing.store(true, Ordering::Release);
        st.withdraw_at.set(run.now());
        run.send(0, withdrawal.bytes.clone());
        run.wait_until(
            || {
                all_receivers
                    .iter()
                    .all(|&i| run.sessions[i].zero_at.get().is_some())
            },
            &progress,
        )
        .await;
    }

    // 5. Settle: a pause; under --refresh, until receiver 1 was quiet that long.
    if plan.refresh && up {
        let quiet = plan.settle.as_nanos() as u64;
        run.wait_until(
            || {
                let last = run.sessions[1].last_update_at.get().unwrap_or(0);
                run.now().saturating_sub(last) >= quiet
            },
            &progress,
        )
        .await;
    } else if up {
        run.pause(plan.settle, &progress).await;
    }

    let timed_out = run.timed_out();
    let final_counts = snapshot(&st, &all_receivers);
    let report = build_report(
        &plan,
        &st,
        Built {
            groups,
            sizes: sizes(&stream, &withdrawal),
            generate_s,
            all_up_at,
            announce_end,
            final_counts,
            late,
            timed_out,
            started,
            pause_s,
        },
    );
    run.close_all().await;
    report
}

/// Generates the table and encodes both streams for the session we expect: 4-octet AS
/// (required at OPEN), no ADD-PATH and no extended messages (we offer neither).
fn build(plan: &Plan) -> Result<(Table, Stream, Stream), String> {
    let n = usize::try_from(plan.n).map_err(|e| e.to_string())?;
    let table = Table::generate(n, plan.seed, &[plan.asn, plan.peer_asn])?;
    let ctx = SessionCtx {
        ibgp: plan.asn == plan.peer_asn,
        families: FamilySet::only(Family::Ipv4Unicast),
        ..SessionCtx::default()
    };
    let tx = Sender {
        ctx,
        local_as: plan.asn,
        next_hop: plan.next_hop,
    };
    let stream = tx.announce_table(&table)?;
    let withdrawal = encode::withdraw_table(&ctx, &table)?;
    Ok((table, stream, withdrawal))
}

/// One session, from its first connection attempt to its end.
async fn session_task(st: Arc<State>, i: usize, peer: Peer, delay: Duration) {
    let run = &st.run;
    let start = (Instant::now() + delay).min(run.deadline);
    tokio::time::sleep_until(start.into()).await;
    let Some(mut s) = run.establish(i, &peer).await else {
        return;
    };
    if i == 1 {
        st.refresh_negotiated
            .store(s.route_refresh, Ordering::Release);
    }
    let full_check = i == 1 || st.full_check;
    // Receivers that replay keep no tally until they must ([`replay`]).
    let shared = !full_check && st.log.is_some();
    let mut rx = (i > 0).then(|| Receiver {
        tally: Tally::new(if shared { 0 } else { st.n as usize }),
        shared,
        ctx: s.ctx,
        faulted: false,
        next: 0,
        full_check,
        keys: light::Keys::default(),
        cursor: replay::Cursor::default(),
        steps: replay::Steps::default(),
    });
    let mut end = End::Down("message limit reached".into());
    let ctx = s.ctx;
    // The last read and its time on the run's clock: a read brings many UPDATEs.
    let mut read: Option<(Instant, u64)> = None;
    let mut on_clock = |t: Instant| match read {
        Some((at, ns)) if at == t => ns,
        _ => {
            let ns = run.clock.ns_at(t);
            read = Some((t, ns));
            ns
        }
    };
    for _ in 0..MAX_MESSAGES {
        // A receiver without a tally takes the log's UPDATEs many at a time.
        if let Some(r) = rx.as_mut().filter(|r| r.shared) {
            let (unread, t) = s.unread();
            if !unread.is_empty() {
                let taken = r.take_run(&st, i, unread, on_clock(t));
                s.skip(taken);
            }
        }
        match s.recv_in_place(run.deadline).await {
            Ok(m) if m.ty == MessageType::UPDATE => match rx.as_mut() {
                Some(r) => r.update(&st, i, m.body(), on_clock(m.read_at)),
                None => injector_update(&st, &ctx, m.body()),
            },
            // A ROUTE-REFRESH asks the injector for its table again; the table is not
            // re-sent (the target has it), and receivers have nothing to send.
            Ok(_) => {}
            Err(e) => {
                end = e;
                break;
            }
        }
    }
    run.ended(i, &end);
}

/// The injector must stay silent; whatever it receives is counted.
fn injector_update(st: &State, ctx: &SessionCtx, body: &[u8]) {
    let v = UpdateView::parse(body, ctx);
    if v.end_of_rib().is_none() {
        st.injector_received.fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds `n` to a receiver's counter: its task is the counter's only writer, so a load
/// and a store, no locked add.
fn add_own(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Notes what a receiver's UPDATEs did: `unexpected` prefixes among them, its count
/// `c` after them, and whether it held the whole table (`full`) or nothing (`zero`) after
/// one of them.
fn outcome(st: &State, i: usize, unexpected: u64, c: u64, full: bool, zero: bool) {
    let (run, me) = (&st.run, &st.run.sessions[i]);
    if unexpected > 0 {
        me.unexpected.fetch_add(unexpected, Ordering::Relaxed);
    }
    me.count.store(c, Ordering::Relaxed);
    // The clock is read once per instant reached, not per UPDATE.
    if full && me.full_at.get().is_none() {
        me.full_at.set_once(run.now());
    }
    if zero && me.zero_at.get().is_none() && st.withdrawing.load(Ordering::Acquire) {
        me.zero_at.set_once(run.now());
    }
}

/// An UPDATE without attributes or prefixes: the IPv4 unicast End-of-RIB (RFC 4724 §2).
const END_OF_RIB: [u8; 4] = [0, 0, 0, 0];

/// A receiver's own state, owned by its task.
struct Receiver {
    tally: Tally,
    ctx: SessionCtx,
    /// An UPDATE fault was reported already (one error per session is enough).
    faulted: bool,
    /// The table position after the last prefix found: where the next is looked for
    /// first ([`PrefixIndex::get_near`]).
    next: usize,
    /// Parses every UPDATE in full; otherwise plain ones are read the short way
    /// ([`light`]).
    full_check: bool,
    /// The prefixes of the UPDATE read the short way last.
    keys: light::Keys,
    /// The receiver's place in the run's log of UPDATEs ([`replay`]).
    cursor: replay::Cursor,
    /// What the UPDATE it read itself last did, for the log.
    steps: replay::Steps,
    /// Every UPDATE so far was replayed or recorded with the log's outcome: the receiver's
    /// tally is the log's as of its place, and `tally` is empty ([`replay`]).
    shared: bool,
}

impl Receiver {
    /// Applies an UPDATE (`body`: without its header) read from the target at `read_at`
    /// (on the run's clock).
    fn update(&mut self, st: &State, i: usize, body: &[u8], read_at: u64) {
        let run = &st.run;
        let me = &run.sessions[i];
        add_own(&me.updates, 1);
        me.last_update_at.set(read_at);
        // Every UPDATE but the empty one (IPv4 End-of-RIB) takes a place in the log, at
        // every receiver, whether it changes anything or not.
        let place = st.log.as_ref().filter(|_| body != END_OF_RIB);
        let Some((a, c)) = self.take(st, i, body, place) else {
            return;
        };
        if i == 1 && st.refresh_at.get().is_some() {
            st.refresh_updates.fetch_add(1, Ordering::Relaxed);
            st.refresh_announced
                .fetch_add(a.announced, Ordering::Relaxed);
        }
        outcome(st, i, a.unexpected, c, c == st.n, c == 0);
    }

    /// Takes the UPDATEs at the front of `unread` (read at `read_at`) that the log has,
    /// byte for byte, at the receiver's places ([`replay::Cursor::replay_run`]), if it
    /// keeps no tally; the bytes taken.
    fn take_run(&mut self, st: &State, i: usize, unread: &[u8], read_at: u64) -> usize {
        let Some(log) = st.log.as_ref().filter(|_| self.shared) else {
            return 0;
        };
        let (mut updates, mut unexpected, mut count) = (0, 0, 0);
        let (mut full, mut zero) = (false, false);
        let taken = self.cursor.replay_run(log, unread, |(a, c)| {
            updates += 1;
            unexpected += a.unexpected;
            count = c;
            full |= c == st.n;
            zero |= c == 0;
        });
        if updates > 0 {
            let me = &st.run.sessions[i];
            for counter in [&me.updates, &me.replayed, &me.replayed_in_runs] {
                add_own(counter, updates);
            }
            me.last_update_at.set(read_at);
            outcome(st, i, unexpected, count, full, zero);
        }
        taken
    }

    /// Applies an UPDATE: what it did and the receiver's count after it; `None` when it
    /// changed nothing. Replayed when it can be, else read.
    fn take(
        &mut self,
        st: &State,
        i: usize,
        body: &[u8],
        place: Option<&replay::Log>,
    ) -> Option<(Applied, u64)> {
        let me = &st.run.sessions[i];
        if let Some(log) = place.filter(|_| !self.full_check) {
            let replayed = if self.shared {
                self.cursor.replay_shared(log, body)
            } else {
                self.cursor
                    .replay(log, body, &mut self.tally, &mut self.next)
                    .map(|a| (a, self.tally.count()))
            };
            if replayed.is_some() {
                add_own(&me.replayed, 1);
                return replayed;
            }
            if self.shared {
                if let Some(r) = self.record_shared(st, log, body) {
                    return Some(r);
                }
                // A tally of its own from here on, then the UPDATE as any other.
                if let Some(a) = self
                    .cursor
                    .replay(log, body, &mut self.tally, &mut self.next)
                {
                    return Some((a, self.tally.count()));
                }
            }
        }
        self.steps.clear(place.is_some() && self.cursor.in_step());
        let plain = !self.full_check && light::read(body, self.ctx.ibgp, &mut self.keys);
        let a = if !plain {
            self.apply_full(st, i, body)
        } else if body == END_OF_RIB {
            me.end_of_rib_at.set_once(st.run.now());
            None
        } else {
            Some(self.apply_plain(st))
        };
        if let Some(log) = place {
            // One that changed nothing (a fault that resets the session, an End-of-RIB
            // in MP_UNREACH_NLRI): every receiver reads it itself.
            if a.is_none() {
                self.steps.fault();
            }
            self.cursor.record(log, body, &self.steps);
        }
        a.map(|a| (a, self.tally.count()))
    }

    /// For a receiver without a tally, at a place nobody recorded: reads a plain UPDATE
    /// into steps and records them, the log's tally taking them; the log's outcome, if
    /// the record is this UPDATE's. Otherwise the receiver keeps a tally of its own from
    /// then on, having applied the UPDATE if it read it.
    fn record_shared(
        &mut self,
        st: &State,
        log: &replay::Log,
        body: &[u8],
    ) -> Option<(Applied, u64)> {
        let at = self.cursor.place();
        if !self.cursor.unrecorded(log) || !light::read(body, self.ctx.ibgp, &mut self.keys) {
            self.keep_tally(st, log, at);
            return None;
        }
        self.steps.clear(true);
        let steps = &mut self.steps;
        plain_positions(st, &self.keys, &mut self.next, |i, announced| {
            steps.push(i, announced);
        });
        self.cursor.record(log, body, &self.steps);
        if let Some(r) = self.cursor.recorded_shared(log, body) {
            return Some(r);
        }
        // Another UPDATE took the place, or the log is full: the tally before it, then
        // this one's steps.
        self.keep_tally(st, log, at);
        let a = self.steps.apply(&mut self.tally);
        Some((a, self.tally.count()))
    }

    /// Gives a receiver without a tally its own: the one it has before log place `at`.
    fn keep_tally(&mut self, st: &State, log: &replay::Log, at: usize) {
        if !self.shared {
            return;
        }
        self.shared = false;
        let n = st.n as usize;
        // Only places with steps were passed without a tally: it can always be rebuilt.
        let own = replay::Cursor::own_tally(log, n, at);
        debug_assert!(
            own.is_some(),
            "a receiver without a tally passed a place without steps"
        );
        self.tally = own.unwrap_or_else(|| Tally::new(n));
    }

    /// Applies an UPDATE read the short way (its prefixes in `self.keys`): what [`apply`]
    /// does, from the base fields. Its steps go to `self.steps`.
    fn apply_plain(&mut self, st: &State) -> Applied {
        let mut a = Applied::default();
        let (tally, steps) = (&mut self.tally, &mut self.steps);
        plain_positions(st, &self.keys, &mut self.next, |i, announced| {
            steps.push(i, announced);
            if announced {
                a.announced += 1;
                match i {
                    Some(i) => tally.insert(i),
                    None => a.unexpected += 1,
                }
            } else {
                a.withdrawn += 1;
                if !i.is_some_and(|i| tally.remove(i)) {
                    a.unexpected += 1;
                }
            }
        });
        a
    }

    /// Parses an UPDATE in full and applies it; `None` when it changed nothing
    /// (End-of-RIB, or a session reset). Its steps go to `self.steps`.
    fn apply_full(&mut self, st: &State, i: usize, body: &[u8]) -> Option<Applied> {
        let run = &st.run;
        let me = &run.sessions[i];
        let v = UpdateView::parse(body, &self.ctx);
        if v.treatment() != Treatment::Normal {
            self.steps.fault();
            me.unexpected.fetch_add(1, Ordering::Relaxed);
            if !self.faulted {
                self.faulted = true;
                run.session_error(
                    i,
                    &format!("UPDATE fault, {:?}: {:?}", v.treatment(), v.issues()),
                );
            }
            if v.treatment() == Treatment::SessionReset {
                return None;
            }
        }
        if v.end_of_rib() == Some(Family::Ipv4Unicast) {
            me.end_of_rib_at.set_once(run.now());
            return None;
        }
        let next = std::cell::Cell::new(self.next);
        let near = |n: &bgp_wire::nlri::Nlri| {
            let mut at = next.get();
            let i = st.index.get_near(n, &mut at);
            next.set(at);
            i
        };
        let steps = &mut self.steps;
        let a = apply(&v, &mut self.tally, near, |i, announced| {
            steps.push(i, announced);
        });
        self.next = next.get();
        Some(a)
    }
}

/// The table positions of the prefixes of an UPDATE read the short way, withdrawals
/// first (`None`: not the table's), each handed to `each` with whether it is announced.
fn plain_positions(
    st: &State,
    keys: &light::Keys,
    next: &mut usize,
    mut each: impl FnMut(Option<usize>, bool),
) {
    for &key in &keys.withdrawn {
        each(st.index.get_near_key(key, next), false);
    }
    for &key in &keys.announced {
        each(st.index.get_near_key(key, next), true);
    }
}

/// Counts and unexpected counts of `who`, now.
fn snapshot(st: &State, who: &[usize]) -> Vec<(u64, u64)> {
    who.iter()
        .map(|&i| (st.run.sessions[i].count(), st.run.sessions[i].unexpected()))
        .collect()
}

fn progress_line(st: &State, first: usize) -> String {
    let run = &st.run;
    let rx = &run.sessions[1..first];
    let min = rx.iter().map(SessionStats::count).min().unwrap_or(0);
    let max = rx.iter().map(SessionStats::count).max().unwrap_or(0);
    let full = rx.iter().filter(|s| s.full_at.get().is_some()).count();
    let unexpected: u64 = rx.iter().map(SessionStats::unexpected).sum();
    let mut line = format!(
        "up {}/{}, receivers holding all {}: {full}/{}, counts {min}..{max}, unexpected {unexpected}",
        run.up_count(0..run.sessions.len()),
        run.sessions.len(),
        st.n,
        first - 1,
    );
    if st.withdrawing.load(Ordering::Relaxed) {
        let zero = rx.iter().filter(|s| s.zero_at.get().is_some()).count();
        line.push_str(&format!(", back to 0: {zero}/{}", first - 1));
    }
    line
}

/// What the report needs besides the plan and the state.
struct Built {
    groups: usize,
    sizes: (usize, usize, usize, usize),
    generate_s: f64,
    all_up_at: Option<u64>,
    announce_end: Option<Vec<(u64, u64)>>,
    final_counts: Vec<(u64, u64)>,
    late: Option<usize>,
    timed_out: bool,
    started: Instant,
    pause_s: Option<f64>,
}

fn sizes(s: &Stream, w: &Stream) -> (usize, usize, usize, usize) {
    (s.messages, s.bytes.len(), w.messages, w.bytes.len())
}

fn common(
    plan: &Plan,
    errors: Vec<String>,
    ok: bool,
    timed_out: bool,
    started: Instant,
) -> report::Common {
    report::Common {
        mode: "table",
        ok,
        timed_out,
        errors,
        sessions: plan.sessions(),
        sessions_up_s: None,
        elapsed_s: secs(started.elapsed().as_nanos() as u64),
        target: plan.target.to_string(),
        source: plan.sources[0].to_string(),
        asn: plan.asn,
        peer_asn: plan.peer_asn,
        hold_time: plan.hold_time,
    }
}

fn failed_report(plan: &Plan, e: String, started: Instant) -> report::Table {
    report::Table {
        common: common(plan, vec![e], false, false, started),
        prefixes: plan.n,
        receivers: plan.receivers,
        seed: plan.seed,
        generated: report::Generated {
            groups: 0,
            updates: 0,
            bytes: 0,
            withdraw_updates: 0,
            withdraw_bytes: 0,
            generate_s: 0.0,
        },
        announce: report::Phase {
            all_complete_s: None,
            complete_s: report::Summary::default(),
            receivers: Vec::new(),
        },
        pause_s: None,
        withdraw: None,
        injector_received: 0,
        replayed_updates: 0,
        replayed_in_runs: 0,
        late_receiver: None,
        refresh: None,
    }
}

fn build_report(plan: &Plan, st: &State, b: Built) -> report::Table {
    let run = &st.run;
    let n = st.n;
    let rx: Vec<usize> = (1..=plan.receivers).chain(b.late).collect();
    // A counter summed over the sessions.
    let total = |c: fn(&SessionStats) -> &AtomicU64| -> u64 {
        run.sessions
            .iter()
            .map(|s| c(s).load(Ordering::Relaxed))
            .sum()
    };
    // End-of-RIB on the receiver's own scale: the target sends one after its initial
    // table, which for receivers 1..=K is empty (they come up before the announcement).
    let eor = |s: &SessionStats| {
        (
            s.end_of_rib_at.get().is_some(),
            s.end_of_rib_at.secs_since(s.established_at.get()),
        )
    };
    // The announce phase: counts at its end (or final ones when nothing followed).
    let announce_counts = b.announce_end.as_ref().unwrap_or(&b.final_counts);
    let announce_at = st.announce_at.get();
    let mut announce_rx = Vec::new();
    for (j, &i) in rx.iter().enumerate() {
        if Some(i) == b.late {
            continue;
        }
        let s = &run.sessions[i];
        let (end_of_rib, end_of_rib_s) = eor(s);
        announce_rx.push(report::Receiver {
            address: s.address.to_string(),
            count: announce_counts[j].0,
            complete_s: s.full_at.secs_since(announce_at),
            end_of_rib,
            end_of_rib_s,
            unexpected: announce_counts[j].1,
            updates: s.updates.load(Ordering::Relaxed),
        });
    }
    let announce = phase(announce_rx);
    let mut ok = announce
        .receivers
        .iter()
        .all(|r| r.count == n && r.unexpected == 0)
        && announce.all_complete_s.is_some();

    let late_receiver = b.late.map(|l| {
        let s = &run.sessions[l];
        let est = s.established_at.get();
        let j = rx.len() - 1;
        let after = match (s.end_of_rib_at.get(), s.full_at.get()) {
            (Some(e), Some(f)) => Some(e >= f),
            (Some(_), None) => Some(false),
            _ => None,
        };
        report::Late {
            address: s.address.to_string(),
            established_s: s.established_at.secs_since(announce_at),
            count: announce_counts[j].0,
            complete_s: s.full_at.secs_since(est),
            end_of_rib: s.end_of_rib_at.get().is_some(),
            end_of_rib_s: s.end_of_rib_at.secs_since(est),
            end_of_rib_after_table: after,
            unexpected: announce_counts[j].1,
        }
    });
    if let Some(l) = &late_receiver {
        ok &= l.count == n && l.unexpected == 0 && l.complete_s.is_some();
    }

    let withdraw = b.announce_end.as_ref().map(|before| {
        let at = st.withdraw_at.get();
        let list = rx
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let s = &run.sessions[i];
                let (end_of_rib, _) = eor(s);
                report::Receiver {
                    address: s.address.to_string(),
                    count: b.final_counts[j].0,
                    complete_s: s.zero_at.secs_since(at),
                    end_of_rib,
                    end_of_rib_s: None,
                    unexpected: b.final_counts[j].1 - before[j].1,
                    updates: s.updates.load(Ordering::Relaxed),
                }
            })
            .collect();
        phase(list)
    });
    if let Some(w) = &withdraw {
        ok &= w
            .receivers
            .iter()
            .all(|r| r.count == 0 && r.unexpected == 0)
            && w.all_complete_s.is_some();
    }

    let refresh = (plan.refresh).then(|| {
        let final_count = b.final_counts[0].0;
        let negotiated = st.refresh_negotiated.load(Ordering::Acquire);
        report::Refresh {
            receiver: run.sessions[1].address.to_string(),
            route_refresh_negotiated: negotiated,
            updates_after: st.refresh_updates.load(Ordering::Relaxed),
            announced_after: st.refresh_announced.load(Ordering::Relaxed),
            final_count,
            expected: 0,
            ok: negotiated && final_count == 0,
        }
    });
    if let Some(r) = &refresh {
        ok &= r.ok;
    }

    ok &= !b.timed_out && run.errors.is_empty();
    let mut common = common(plan, run.errors.list(), ok, b.timed_out, b.started);
    common.sessions_up_s = b.all_up_at.map(secs);
    let (updates, bytes, withdraw_updates, withdraw_bytes) = b.sizes;
    report::Table {
        common,
        prefixes: n,
        receivers: plan.receivers,
        seed: plan.seed,
        generated: report::Generated {
            groups: b.groups,
            updates,
            bytes,
            withdraw_updates,
            withdraw_bytes,
            generate_s: b.generate_s,
        },
        announce,
        pause_s: b.pause_s,
        withdraw,
        injector_received: st.injector_received.load(Ordering::Relaxed),
        replayed_updates: total(|s| &s.replayed),
        replayed_in_runs: total(|s| &s.replayed_in_runs),
        late_receiver,
        refresh,
    }
}

fn phase(receivers: Vec<report::Receiver>) -> report::Phase {
    let times: Vec<f64> = receivers.iter().filter_map(|r| r.complete_s).collect();
    let all = (times.len() == receivers.len()).then(|| times.iter().copied().fold(0.0, f64::max));
    report::Phase {
        all_complete_s: all,
        complete_s: report::Summary::of(times),
        receivers,
    }
}
