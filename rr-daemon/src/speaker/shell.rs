//! The tokio shell around the [`Core`]: it owns the listeners and their accept loops, the
//! session tasks' handles, the request and event channels, the clock and one sleep reset
//! to the core's deadline, and carries out the core's [`Action`]s.

use std::collections::HashMap;
use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rib::BestChange;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::core::{Action, Core};
use super::status::CoreTimings;
use super::why::Md5Counters;
use super::{Request, SpeakerError};
use crate::bmp::collector as bmp;
use crate::config::{Config, Secret};
use crate::session::{self, Command, SessionEvent, SessionHandle, Writers};
use crate::sockopt;
use crate::traffic::Traffic;

/// Session events taken in one turn of the shell before the core encodes: batches, not
/// single routes, and still a bounded turn; a turn also ends once its events carried
/// [`TURN_BYTES`] of UPDATEs (an event carries a read's).
const EVENT_BATCH: usize = 4096;

/// UPDATE bytes a turn of the shell takes at most before export ([`EXPORT_PACE`]) and the
/// next request: about a tenth of a second of the core's work on a million-prefix table
/// (26 MB of UPDATEs). BFD's notices are taken between its events, and a request that
/// comes ends it. With export paced to the intake, that table reached 100 clients in
/// 1.45 s with this bound against 1.53 s with 16 MiB (and 1.7 s with 1 MiB), 10 clients
/// as fast or faster.
const TURN_BYTES: usize = 4 << 20;

/// After a turn, export encodes a slice (at most a group's `DRAIN_SLICE` prefixes, some
/// 50 kB of UPDATEs) per this many UPDATE bytes the turn took in, so that what comes in
/// goes out as it comes: the writers and the clients work on the other core while the
/// core takes in the rest. One slice per turn left a table's export nearly all for after
/// its intake, with a core idle meanwhile: 100 clients of a million prefixes took 1.83 s
/// instead of 1.45 s.
const EXPORT_PACE: usize = 32 << 10;

/// How long the slices after a turn may take at most; they also stop for a request that
/// comes (the control API answers within a slice), and BFD's notices are taken between
/// them. With many update groups a turn's pace can mean that many times its work. The
/// rest is owed to the next turn. A million-prefix table's export to 100 clients took 7%
/// longer with 50 ms, 17% with 20 ms (`docs/benchmarks.md`, session 11).
const EXPORT_TURN: Duration = Duration::from_millis(200);

/// Requests taken in one turn of the shell, and what the request channel holds: a turn
/// takes every waiting request. Most
/// are accepted connections, each a few microseconds of the core's; taken 64 a turn, the
/// connections of a rack connecting at once waited behind turns of export (the last of
/// 2,000 Established after 1.4 s instead of 0.3 s, with [`STORM_HOLD_MAX`]).
const REQUEST_BATCH: usize = 1024;

/// Sessions gone since the most at once before the allocator's free memory is handed
/// back to the system ([`crate::memory::give_back`]): a wave of dynamic neighbours that
/// left (a scan that never sent OPEN, a cluster scaled down). Half of a smaller peak is
/// enough, down to 64.
const TRIM_AFTER: usize = 1000;

/// How long export waits, once the RIB has output after a quiet spell, before it encodes:
/// the changes that come meanwhile go out with it. A rack's clients connect and announce
/// within a second or so; encoding and handing out each one's route alone costs every
/// other member a message and a write of its own each time (K² of them), where this
/// batches them at the price of a few milliseconds on the first change. Once export is
/// busy (output left behind for writers with no room, or more to encode) it goes on at
/// once; right after a turn that wrote to many sessions, a change waits longer
/// ([`EXPORT_REST_PER_SEND`]).
const EXPORT_COALESCE: Duration = Duration::from_millis(5);

/// After export has handed out what was pending, the next change waits this long per
/// send (a write to a session) of the busiest turn since export last had nothing left,
/// about what the next turn will cost: it goes out at the later of that and
/// [`EXPORT_COALESCE`] after it came, and at most [`EXPORT_REST_MAX`] after the turn (a
/// group of 2,000 members: 50 ms; of 10: 0.25 ms, so nothing). What arrives meanwhile
/// goes out with it. Every member of a big group is a write and a wakeup of its own (and
/// of its client), each time: a rack's 2,000 clients connecting one by one over 20 s,
/// each route handed out alone to all the others 5 ms after it came, kept most of a core
/// busy writing (45% of the reflector's samples in `writev`). A change after a quiet
/// spell still goes out after [`EXPORT_COALESCE`]. The rest is the speaker's, not a
/// group's: a change for a small group that comes right after a big group's turn waits
/// too (50 ms at most), as does a withdrawal after BFD saw a link go down; output already
/// being handed out ([`Shell::export_busy`]) never waits.
const EXPORT_REST_PER_SEND: Duration = Duration::from_micros(25);

/// See [`EXPORT_REST_PER_SEND`]: a change waits no longer than this after the export
/// before it, whatever the group's size.
const EXPORT_REST_MAX: Duration = Duration::from_millis(50);

/// When export may encode the next change after its last turn ([`EXPORT_REST_PER_SEND`]).
#[derive(Debug, Default)]
struct Rest {
    /// Until when a change waits; `None` before the first turn.
    until: Option<Instant>,
}

impl Rest {
    /// Export handed out everything it could at `ended`, its busiest turn since the last
    /// note in `sends` sends to sessions.
    fn note(&mut self, ended: Instant, sends: usize) {
        let rest = EXPORT_REST_PER_SEND
            .saturating_mul(u32::try_from(sends).unwrap_or(u32::MAX))
            .min(EXPORT_REST_MAX);
        self.until = Some(ended + rest);
    }

    /// When a change that came at `now`, with export idle, goes out.
    fn due(&self, now: Instant) -> Instant {
        let coalesced = now + EXPORT_COALESCE;
        self.until.map_or(coalesced, |u| u.max(coalesced))
    }
}

/// While sessions come up in numbers ([`STORM_UPS`] Established within [`STORM_WINDOW`]:
/// a rack's clients connecting at once), export holds its output until they stop, for at
/// most this long after the output came. Every route a client announces must reach every
/// other client either way, but handed out while the rest still connect it took the
/// cores from their handshakes: the last of 2,000 clients connecting at once was
/// Established after 1.4-1.9 s here, and 0.3 s with the hold. Routine changes, a single
/// flap among them, never wait for it.
const STORM_HOLD_MAX: Duration = Duration::from_secs(1);

/// See [`STORM_HOLD_MAX`].
const STORM_UPS: usize = 64;

/// See [`STORM_HOLD_MAX`].
const STORM_WINDOW: Duration = Duration::from_millis(100);

/// A storm is over once no session became Established for this long: the hold ends with
/// the handshakes. Held a whole window after a hundred clients came up at once, one of
/// them then sending a million routes, the table arrived before the new members' first
/// export, and that cost 1.5 s more CPU (7.5 s instead of 6.0 s) and 0.7 s more time
/// (why is not known yet: the RIB alone, in `rib/benches/reflect.rs`, shows no
/// difference). 10 ms was too short for the rack: a pause in the clients' connects ended
/// the hold early and the last of 2,000 came up after 1.2 s.
const STORM_GAP: Duration = Duration::from_millis(40);

/// The instants of the last [`STORM_UPS`] sessions that became Established.
#[derive(Debug, Default)]
struct Ups {
    /// A ring; `next` is the oldest once it is full.
    at: Vec<Instant>,
    next: usize,
}

impl Ups {
    /// A session became Established at `now`.
    fn note(&mut self, now: Instant) {
        if self.at.len() < STORM_UPS {
            self.at.push(now);
        } else {
            self.at[self.next] = now;
            self.next = (self.next + 1) % STORM_UPS;
        }
    }

    /// While sessions come up in numbers at `now`: when that ends unless more come.
    fn storm_ends(&self, now: Instant) -> Option<Instant> {
        if self.at.len() < STORM_UPS {
            return None;
        }
        let newest = self.at[(self.next + STORM_UPS - 1) % STORM_UPS];
        let ends = (self.at[self.next] + STORM_WINDOW).min(newest + STORM_GAP);
        (now < ends).then_some(ends)
    }
}

/// How long a shutdown waits for the sessions' Ceases to go out, all together.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds the listeners, builds the core, starts the configured peers' sessions and the
/// shell's task. Returns the request channel and the task.
pub(super) async fn start(
    config: Config,
    restarting: bool,
) -> Result<(mpsc::Sender<Request>, JoinHandle<()>), SpeakerError> {
    let (tx, rx) = mpsc::channel(REQUEST_BATCH);
    let mut listeners = Vec::new();
    for addr in &config.speaker.listen {
        listeners.push(Listener::bind(*addr, &tx)?);
    }
    let (events_tx, events_rx) = mpsc::channel(4096);
    let (bfd_tx, bfd_rx) = mpsc::unbounded_channel();
    let (bmp_tx, bmp_rx) = mpsc::channel(64);
    let sys_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| config.speaker.router_id.to_string());
    let bmp_tasks = config
        .bmp
        .iter()
        .enumerate()
        .map(|(i, c)| bmp::spawn(i as u64, c.clone(), sys_name.clone(), bmp_tx.clone()))
        .collect();
    let bfd = crate::bfd::spawn(bfd_tx);
    let mut shell = Shell {
        bfd,
        core: Core::new(config, Instant::now(), restarting),
        listeners,
        requests_tx: tx.downgrade(),
        sessions: HashMap::new(),
        events_tx,
        writers: Arc::new(Writers::default()),
        subscribers: Vec::new(),
        sessions_peak: 0,
        first_subscriber: false,
        traffic: HashMap::new(),
        timings: CoreTimings::default(),
        collectors: Vec::new(),
        bmp_tasks,
        export_at: None,
        export_busy: false,
        export_since: None,
        export_sends: 0,
        sends: 0,
        rest: Rest::default(),
        ups: Ups::default(),
    };
    read_md5(&mut shell.core, Instant::now());
    let _ = shell.carry_out();
    let task = tokio::spawn(shell.run(rx, events_rx, bfd_rx, bmp_rx));
    Ok((tx, task))
}

async fn accept_loop(listener: Arc<TcpListener>, tx: mpsc::Sender<Request>) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                if tx.send(Request::Inbound(stream, from)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: log, breathe, go on.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One `[speaker] listen` address: its socket and its accept loop.
struct Listener {
    addr: SocketAddr,
    /// Shared with the accept loop; the shell keeps it to set the peers' TCP-MD5 keys.
    socket: Arc<TcpListener>,
    task: JoinHandle<()>,
}

impl Listener {
    fn bind(addr: SocketAddr, tx: &mpsc::Sender<Request>) -> Result<Self, SpeakerError> {
        let socket =
            sockopt::listen(addr).map_err(|source| SpeakerError::Listen { addr, source })?;
        info!(%addr, "listening");
        let socket = Arc::new(socket);
        let task = tokio::spawn(accept_loop(socket.clone(), tx.clone()));
        Ok(Self { addr, socket, task })
    }
}

impl Drop for Listener {
    /// The accept loop holds the socket: ending it closes the socket.
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shell {
    core: Core,
    /// The listening sockets, which carry the TCP-MD5 keys of the peers and dynamic
    /// neighbour ranges that have a password.
    listeners: Vec<Listener>,
    /// For the accept loops of listeners bound at a reload; weak, so that the request
    /// channel still closes when every [`super::Speaker`] handle is gone.
    requests_tx: mpsc::WeakSender<Request>,
    /// The running sessions by peer, with their generations. The handle's `queued` is
    /// shared with the session task, which counts down what it writes: the core reads it
    /// through [`Shell::flush`] to pace each peer.
    sessions: HashMap<IpAddr, (u64, SessionHandle)>,
    /// Cloned into every session task spawned.
    events_tx: mpsc::Sender<SessionEvent>,
    /// Wakes the shell when a session's output queue drains (see [`Writers`]).
    writers: Arc<Writers>,
    /// Best-path subscribers ([`super::Speaker::subscribe`]), each on a bounded channel.
    subscribers: Vec<mpsc::Sender<BestChange>>,
    /// Whether a subscriber came yet. Until one does, best-path changes wait in the RIB
    /// (one per prefix, in its latest state) instead of being dropped: the sessions start
    /// with the speaker, and a peer that is already up (a BIRD waiting passively) can send
    /// its table before the daemon's FIB subscription is handled. They only exist with
    /// `track_best_changes` on, which the daemon sets when it subscribes its FIB. From the
    /// first subscription on, changes nobody takes are dropped.
    first_subscriber: bool,
    /// The BFD task (on its own thread: BFD packets never wait for the RIB).
    bfd: crate::bfd::Handle,
    /// The most sessions at once since memory was last given back ([`TRIM_AFTER`]).
    sessions_peak: usize,
    /// Each peer's message counters, kept across its sessions while it is configured.
    traffic: HashMap<IpAddr, Arc<Traffic>>,
    /// Time spent in the core, for `/metrics`.
    timings: CoreTimings,
    /// The BMP collectors connected now ([`crate::bmp`]).
    collectors: Vec<bmp::Attach>,
    /// The BMP collectors' tasks.
    bmp_tasks: Vec<JoinHandle<()>>,
    /// When the core's pending output is encoded next ([`EXPORT_COALESCE`]); `None`
    /// while it has none.
    export_at: Option<Instant>,
    /// The last turn of export left output behind: the next one starts at once.
    export_busy: bool,
    /// Since when the core has had output pending, for [`STORM_HOLD_MAX`].
    export_since: Option<Instant>,
    /// Sends to sessions of export's busiest turn since it last handed out everything
    /// it could (or since our graceful restart's turns).
    export_sends: usize,
    /// Sends to sessions ever carried out (wrapping): a turn's are the difference.
    sends: usize,
    /// When export may go on after its last turn ([`EXPORT_REST_PER_SEND`]).
    rest: Rest,
    /// Sessions Established lately, for [`STORM_HOLD_MAX`].
    ups: Ups,
}

/// Waits until every subscriber's channel has room for one more change.
async fn subscribers_room(subscribers: &[mpsc::Sender<BestChange>]) {
    for s in subscribers {
        // Taken and given back at once: only the wait counts. A closed channel is
        // dropped at the next turn.
        let _ = s.reserve().await;
    }
}

/// Gives back a map's table once it is under a quarter full: a map keeps the capacity of
/// its most entries at once, as many slots as the largest wave of dynamic neighbours.
pub(super) fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// The shell's loop. Each turn takes what is ready (a bounded number of requests and
    /// session events) and the core's expired deadlines, then has the core encode a
    /// slice of output for every update group whose writers have room, one more per
    /// [`EXPORT_PACE`] UPDATE bytes the turn took in. While work
    /// remains that can go out now it turns again at once, yielding between turns;
    /// otherwise it sleeps until a request, an event, a writer with room again, or the
    /// core's next deadline. Progress never waits for an unrelated event.
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<SessionEvent>,
        mut bfd: mpsc::UnboundedReceiver<crate::bfd::Notice>,
        mut bmp: mpsc::Receiver<bmp::ToCore>,
    ) {
        let writers = self.writers.clone();
        // UPDATE bytes of an event taken while waiting: the next turn's export counts them.
        let mut waited = 0;
        // Slices of export the intake called for and not encoded yet ([`EXPORT_PACE`]).
        let mut owed: usize = 0;
        loop {
            self.timeout();
            for _ in 0..REQUEST_BATCH {
                match requests.try_recv() {
                    Ok(r) => {
                        if self.on_request(r).await.is_break() {
                            return;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.shutdown().await;
                        return;
                    }
                }
            }
            let now = Instant::now();
            let (mut taken, mut bytes) = (0, std::mem::take(&mut waited));
            for _ in 0..EVENT_BATCH {
                match events.try_recv() {
                    Ok(e) => {
                        bytes += e.update_bytes();
                        self.on_event(now, e);
                        taken += 1;
                        // A request that came waits for one event, not for the turn.
                        if bytes >= TURN_BYTES || !requests.is_empty() {
                            break;
                        }
                        // A long turn does not hold up what BFD saw (a link down).
                        while let Ok(n) = bfd.try_recv() {
                            self.on_bfd(n);
                        }
                    }
                    Err(_) => break,
                }
            }
            if taken > 0 {
                self.timings.batch.observe(now.elapsed().as_secs_f64());
            }
            // Export keeps pace with what the turn took in; a request that comes, or
            // EXPORT_TURN, leaves the rest owed to the next turn.
            owed = owed.saturating_add(1 + bytes / EXPORT_PACE);
            let until = Instant::now() + EXPORT_TURN;
            let mut more = false;
            while owed > 0 {
                owed -= 1;
                more = self.export();
                if !more {
                    owed = 0;
                }
                if !more || !requests.is_empty() || Instant::now() >= until {
                    break;
                }
                while let Ok(n) = bfd.try_recv() {
                    self.on_bfd(n);
                }
            }
            self.best_changes();
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.export_at)
                .min();
            let best_waiting = self.core.best_changes_pending() && !self.subscribers.is_empty();
            tokio::select! {
                r = requests.recv() => match r {
                    Some(r) => {
                        if self.on_request(r).await.is_break() {
                            return;
                        }
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some(e) = events.recv() => {
                    let now = Instant::now();
                    waited += e.update_bytes();
                    self.on_event(now, e);
                    self.timings.batch.observe(now.elapsed().as_secs_f64());
                }
                Some(n) = bfd.recv() => self.on_bfd(n),
                Some(m) = bmp.recv() => self.on_bmp(m),
                () = writers.room() => {}
                () = subscribers_room(&self.subscribers), if best_waiting => {}
                () = sleep_until(deadline) => {}
            }
        }
    }

    /// Hands the core the clock if one of its deadlines passed.
    fn timeout(&mut self) {
        let now = Instant::now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            let _ = self.carry_out();
        }
    }

    /// Hands the core what a BFD session saw (a session down resets its peer's).
    fn on_bfd(&mut self, n: crate::bfd::Notice) {
        self.core.handle_bfd(n);
        let _ = self.carry_out();
    }

    fn on_event(&mut self, now: Instant, e: SessionEvent) {
        if matches!(e.news, bgp_fsm::News::Established { .. }) {
            self.ups.note(now);
        }
        // The histogram is per UPDATE: an event's time is shared among those it carries.
        let updates = e.updates().count();
        let started = (updates > 0).then(Instant::now);
        self.core.handle_event(now, e);
        if let Some(t) = started {
            let each = t.elapsed().as_secs_f64() / updates as f64;
            for _ in 0..updates {
                self.timings.update.observe(each);
            }
        }
        let _ = self.carry_out();
        self.trim();
    }

    /// Gives the allocator's free memory back once many sessions have gone since the
    /// most at once: their buffers would otherwise stay with the process.
    fn trim(&mut self) {
        let n = self.sessions.len();
        self.sessions_peak = self.sessions_peak.max(n);
        // A thousand gone, or half of a smaller peak (down to the last 64): the memory of
        // the last sessions of a wave goes back too, with a few trims per wave.
        let step = TRIM_AFTER.min(self.sessions_peak / 2).max(64);
        if self.sessions_peak >= n + step {
            info!(
                sessions = n,
                peak = self.sessions_peak,
                "many sessions gone: memory handed back"
            );
            shrink(&mut self.sessions);
            shrink(&mut self.traffic);
            self.core.shrink_tables();
            crate::memory::give_back();
            self.sessions_peak = n;
        }
    }

    /// One turn of export when it is due ([`EXPORT_COALESCE`]); whether more can go out
    /// at once. During our graceful restart every turn goes to the core, which decides
    /// there when selection may run.
    fn export(&mut self) -> bool {
        if self.core.recovering() {
            // Every turn flushes while our restart lasts: no rest, nothing to count.
            self.export_sends = 0;
            return self.flush();
        }
        if !self.core.export_pending() {
            self.export_at = None;
            self.export_since = None;
            self.export_busy = false;
            // Output that went with its sessions (down meanwhile) ends the turns too.
            if self.export_sends > 0 {
                self.rest
                    .note(Instant::now(), std::mem::take(&mut self.export_sends));
            }
            return false;
        }
        let now = Instant::now();
        let since = *self.export_since.get_or_insert(now);
        if let Some(ends) = self.ups.storm_ends(now) {
            let at = ends.min(since + STORM_HOLD_MAX);
            if now < at {
                self.export_at = Some(at);
                return false;
            }
        }
        let due = if self.export_busy {
            now
        } else {
            self.rest.due(now)
        };
        let at = *self.export_at.get_or_insert(due);
        if now < at {
            return false;
        }
        let more = self.flush();
        if !more {
            self.export_at = None;
            self.export_since = None;
            self.export_busy = self.core.export_pending();
            self.rest
                .note(Instant::now(), std::mem::take(&mut self.export_sends));
        }
        more
    }

    /// One turn of export; see [`Core::flush`].
    fn flush(&mut self) -> bool {
        let sessions = &self.sessions;
        let queued = |a: IpAddr| {
            sessions
                .get(&a)
                .map_or(0, |(_, h)| h.queued.load(Ordering::Relaxed))
        };
        let more = self.core.flush(Instant::now(), &queued);
        let before = self.sends;
        let _ = self.carry_out();
        self.export_sends = self.export_sends.max(self.sends.wrapping_sub(before));
        more
    }

    /// Hands the subscribers as many best-path changes as all of them can take now;
    /// without subscribers they are dropped (nobody asked for them), except before the
    /// first one came ([`Shell::first_subscriber`]).
    fn best_changes(&mut self) {
        self.subscribers.retain(|s| !s.is_closed());
        if !self.first_subscriber {
            return;
        }
        let room = self
            .subscribers
            .iter()
            .map(mpsc::Sender::capacity)
            .min()
            .unwrap_or(usize::MAX);
        self.core.best_changes(room);
        let _ = self.carry_out();
    }

    /// Handles one request; `Break` once the speaker has shut down.
    async fn on_request(&mut self, r: Request) -> ControlFlow<()> {
        let now = Instant::now();
        let sessions = &self.sessions;
        let queued = |a: IpAddr| {
            sessions
                .get(&a)
                .map_or(0, |(_, h)| h.queued.load(Ordering::Relaxed))
        };
        match r {
            Request::Inbound(stream, from) => {
                let interface = match from {
                    SocketAddr::V6(v6) if v6.scope_id() != 0 => {
                        session::link::ifname(v6.scope_id())
                    }
                    _ => None,
                };
                if let Some(generation) = self.core.handle_inbound(now, from, interface.as_deref())
                {
                    let _ = self.carry_out();
                    if let Some((g, h)) = self.sessions.get(&from.ip())
                        && *g == generation
                        && h.inbound.try_send(stream).is_err()
                    {
                        warn!(%from, "refused connection: the session is busy with another");
                    }
                }
            }
            Request::AddPeer(p, done) => {
                let _ = done.send(self.core.add_peer(now, *p));
            }
            Request::SetPeer(p, done) => {
                let _ = done.send(self.core.set_peer(now, *p));
            }
            Request::RemovePeer(a, done) => {
                let _ = done.send(self.core.remove_peer(a));
            }
            Request::Reload(c, done) => {
                self.rebind(&c.speaker.listen);
                let _ = done.send(self.core.reload(now, *c));
            }
            Request::Originate(prefix, attrs) => self.core.originate(prefix, *attrs),
            Request::Withdraw(prefix) => self.core.withdraw(prefix),
            Request::ResetPeer(a, message, done) => {
                let _ = done.send(self.core.reset_peer(a, message.as_deref()));
            }
            Request::SoftReset(a, direction, done) => {
                let _ = done.send(self.core.soft_reset(a, direction));
            }
            Request::SetEnabled(a, enabled, message, done) => {
                let r = self
                    .core
                    .set_peer_enabled(now, a, enabled, message.as_deref());
                let _ = done.send(r);
            }
            Request::Announce(prefix, attrs, done) => {
                let _ = done.send(self.core.announce(prefix, *attrs));
            }
            Request::WithdrawRuntime(prefix, done) => {
                let _ = done.send(self.core.withdraw_runtime(prefix));
            }
            Request::Subscribe(tx) => {
                self.first_subscriber = true;
                self.subscribers.push(tx);
            }
            Request::Peers(done) => {
                read_md5(&mut self.core, now);
                let _ = done.send(self.core.statuses(now, &queued));
            }
            Request::Route(prefix, done) => {
                let _ = done.send(self.core.route(&prefix));
            }
            Request::Explain(prefix, done) => {
                let _ = done.send(self.core.explain(&prefix));
            }
            Request::Routes {
                after,
                offset,
                limit,
                done,
            } => {
                let _ = done.send(self.core.routes(after, offset, limit));
            }
            Request::Snapshot(done) => {
                read_md5(&mut self.core, now);
                let mut s = self.core.snapshot(now, &queued);
                s.traffic = s
                    .peers
                    .iter()
                    .filter_map(|p| Some((p.address, self.traffic.get(&p.address)?.counts())))
                    .collect();
                s.timings = Some(self.timings.clone());
                let _ = done.send(s);
            }
            Request::PeerDetail(address, done) => {
                read_md5(&mut self.core, now);
                let _ = done.send(self.core.peer_detail(now, address, &queued));
            }
            Request::PeerRoutes(q, done) => {
                let _ = done.send(self.core.peer_routes(&q));
            }
            Request::Lookup(address, done) => {
                let _ = done.send(self.core.lookup(address));
            }
            Request::Deferring(done) => {
                let _ = done.send(self.core.deferring());
            }
            Request::Recovering(done) => {
                // Not over while best-path changes still wait for the subscribers (the
                // FIB): one that took the end of recovery before the last of them would
                // remove kernel routes that are still in use.
                let waiting = self.first_subscriber && self.core.best_changes_pending();
                let _ = done.send(self.core.recovering() || waiting);
            }
            Request::MrtPeers(done) => {
                let _ = done.send(self.core.mrt_peers());
            }
            Request::RibPage { from, limit, done } => {
                let _ = done.send(self.core.rib_page(from, limit));
            }
            Request::Shutdown(done) => {
                self.shutdown().await;
                let _ = done.send(());
                return ControlFlow::Break(());
            }
        }
        let _ = self.carry_out();
        ControlFlow::Continue(())
    }

    /// Binds the addresses of `listen` that have no listener yet and closes the listeners
    /// whose address is gone; sessions are not touched (an accepted connection lives on
    /// without its listener). A bind that fails is logged and left out: the old
    /// configuration's listeners are unaffected by it.
    fn rebind(&mut self, listen: &[SocketAddr]) {
        self.listeners.retain(|l| {
            let keep = listen.contains(&l.addr);
            if !keep {
                info!(addr = %l.addr, "no longer listening");
            }
            keep
        });
        let Some(tx) = self.requests_tx.upgrade() else {
            return;
        };
        for addr in listen {
            if self.listeners.iter().any(|l| l.addr == *addr) {
                continue;
            }
            match Listener::bind(*addr, &tx) {
                Ok(l) => self.listeners.push(l),
                Err(e) => error!(
                    "{e}: {}",
                    e.source().map(ToString::to_string).unwrap_or_default()
                ),
            }
        }
    }

    /// Carries out every action of the core. Returns the tasks of the sessions stopped,
    /// which a shutdown waits for.
    #[must_use]
    fn carry_out(&mut self) -> Vec<JoinHandle<()>> {
        let mut stopped = Vec::new();
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Spawn { generation, spec } => {
                    let peer = spec.peer;
                    let traffic = self.traffic.entry(peer).or_default().clone();
                    let h = session::spawn_counted(
                        *spec,
                        generation,
                        self.events_tx.clone(),
                        self.writers.clone(),
                        traffic,
                    );
                    self.sessions.insert(peer, (generation, h));
                }
                Action::Command {
                    peer,
                    generation,
                    command,
                } => {
                    if let Some((g, h)) = self.sessions.get(&peer)
                        && *g == generation
                    {
                        if let Command::Send { bytes, .. } = &command {
                            h.queued.fetch_add(bytes.len(), Ordering::Relaxed);
                            self.sends = self.sends.wrapping_add(1);
                        }
                        let _ = h.commands.send(command);
                    }
                }
                Action::Stop {
                    peer,
                    generation,
                    cease,
                } => {
                    if self
                        .sessions
                        .get(&peer)
                        .is_some_and(|(g, _)| *g == generation)
                        && let Some((_, h)) = self.sessions.remove(&peer)
                    {
                        if let Some(cease) = cease {
                            let _ = h.commands.send(Command::Stop(Some(cease)));
                        }
                        // Dropping the handle closes the command channel: the task ends
                        // once the Cease is flushed.
                        stopped.push(h.task);
                    }
                    // A peer gone from the configuration (or a dynamic neighbour gone)
                    // takes its counters with it: the table never outgrows the peers.
                    if !self.core.peers.contains_key(&peer) {
                        self.traffic.remove(&peer);
                    }
                }
                Action::ListenerKey { target, range, key } => {
                    let r = listener_keys(&self.listeners, target, range, key.as_ref());
                    if let Err(e) = r
                        && key.is_some()
                        && !range
                    {
                        self.core.handle_key_error(target.addr(), e);
                    }
                }
                Action::BestChange(c) => {
                    // Room was checked for every subscriber before the core was asked
                    // (`Shell::best_changes`): only a closed one fails.
                    self.subscribers.retain(|s| {
                        !matches!(
                            s.try_send(c.clone()),
                            Err(mpsc::error::TrySendError::Closed(_))
                        )
                    });
                }
                Action::Monitor { to, event } => self.monitor(to, event),
                Action::Bfd { peer, spec } => match spec {
                    Some(spec) => self.bfd.set(peer, *spec),
                    None => self.bfd.remove(peer),
                },
            }
        }
        stopped
    }

    /// A BMP collector's task asks.
    fn on_bmp(&mut self, m: bmp::ToCore) {
        match m {
            bmp::ToCore::Attach(a) => {
                let (id, pre, post) = (a.id, a.pre, a.post);
                self.collectors.retain(|c| c.id != id);
                self.collectors.push(a);
                self.core.bmp_attach(id, pre, post);
            }
            bmp::ToCore::Stats(id) => self.core.bmp_stats(id),
        }
        let _ = self.carry_out();
    }

    /// Queues `event` for the collector `to` (or every one that wants it). A collector
    /// whose queue would pass its limit is dropped: its task sends Termination,
    /// reconnects and is resynchronised from the RIB.
    fn monitor(&mut self, to: Option<u64>, event: crate::bmp::Event) {
        use crate::bmp::Event;
        let cost = event.cost();
        let mut dropped = Vec::new();
        let wants = |c: &bmp::Attach| {
            to.is_none_or(|t| t == c.id)
                && match &event {
                    Event::Update { .. } => c.pre,
                    Event::Post { .. } => c.post,
                    _ => true,
                }
        };
        for c in self.collectors.iter().filter(|c| wants(c)) {
            let queued = c.queued.load(Ordering::Relaxed);
            if queued + cost > c.limit || c.tx.send(bmp::Item::Event(event.clone())).is_err() {
                dropped.push(c.id);
                continue;
            }
            c.queued.fetch_add(cost, Ordering::Relaxed);
        }
        for id in dropped {
            self.collectors.retain(|c| {
                if c.id == id {
                    c.dropped.store(true, Ordering::Relaxed);
                }
                c.id != id
            });
            self.core.bmp_detach(id);
        }
    }

    async fn shutdown(&mut self) {
        self.core.shutdown();
        let tasks = self.carry_out();
        // Connected collectors get Termination (their tasks end once it is out); the
        // others' tasks, connecting or waiting to, end now.
        let mut bmp_tasks = Vec::new();
        for (id, t) in std::mem::take(&mut self.bmp_tasks).into_iter().enumerate() {
            match self.collectors.iter().find(|c| c.id == id as u64) {
                Some(c) if c.tx.send(bmp::Item::Terminate).is_ok() => bmp_tasks.push(t),
                _ => t.abort(),
            }
        }
        self.collectors.clear();
        // One deadline for all: the Ceases go out together, not one peer after another.
        let started = tokio::time::Instant::now();
        let deadline = started + SHUTDOWN_GRACE;
        let total = tasks.len();
        let mut ended = 0;
        for t in tasks {
            if tokio::time::timeout_at(deadline, t).await.is_ok() {
                ended += 1;
            }
        }
        for t in bmp_tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
        info!(
            sessions = total,
            closed = ended,
            ms = started.elapsed().as_millis() as u64,
            "sessions closed"
        );
    }
}

/// Hands the core the kernel's TCP-MD5 drop counters of our network namespace, read at
/// `now` (a few kilobytes of `/proc/net/netstat`, only when someone asks for the peers'
/// status); nothing when they cannot be read.
fn read_md5(core: &mut Core, now: Instant) {
    if let Some(c) = std::fs::read_to_string("/proc/net/netstat")
        .ok()
        .and_then(|t| Md5Counters::parse(&t))
    {
        core.observe_md5(now, c);
    }
}

/// Whether a listener bound to `local` accepts connections from `peer`'s family: an IPv6
/// listener also takes IPv4 peers unless it is IPv6-only.
fn same_family(listener: &TcpListener, peer: IpAddr) -> bool {
    match (listener.local_addr(), peer) {
        (Ok(SocketAddr::V4(_)), IpAddr::V4(_)) | (Ok(SocketAddr::V6(_)), IpAddr::V6(_)) => true,
        (Ok(SocketAddr::V6(_)), IpAddr::V4(_)) => {
            !socket2::SockRef::from(listener).only_v6().unwrap_or(true)
        }
        _ => false,
    }
}

/// Sets (`key`) or removes (`None`) the TCP-MD5 key of `target` (a peer's address, or
/// with `range` a dynamic neighbour range) on every listener of its family. An error
/// (`TCP-MD5 for ADDRESS: ...`) is logged and returned; the other listeners are still
/// done. Removing a key that is not there (it could not be set) is no error.
fn listener_keys(
    listeners: &[Listener],
    target: IpNet,
    range: bool,
    key: Option<&Secret>,
) -> Result<(), String> {
    let mut result = Ok(());
    let what = if range {
        format!("range {target}")
    } else {
        target.addr().to_string()
    };
    for l in listeners
        .iter()
        .map(|l| &l.socket)
        .filter(|l| same_family(l, target.addr()))
    {
        let r = match (key, range) {
            (Some(k), false) => sockopt::set_md5_key(&**l, target.addr(), k.expose().as_bytes()),
            (Some(k), true) => sockopt::set_md5_key_range(&**l, target, k.expose().as_bytes()),
            (None, false) => sockopt::remove_md5_key(&**l, target.addr()),
            (None, true) => sockopt::remove_md5_key_range(&**l, target),
        };
        match r {
            Ok(()) => {}
            Err(e) if key.is_none() && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let listener = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let msg = format!("TCP-MD5 for {what}: {e}");
                error!(%listener, "{msg}");
                result = Err(msg);
            }
        }
    }
    result
}

#[cfg(test)]
mod export_timing_tests {
    use super::*;

    #[test]
    fn test_export_rests_after_a_turn_in_proportion_to_its_sends_up_to_the_max() {
        let t0 = Instant::now();
        let mut rest = Rest::default();
        // Nothing handed out yet: a change waits EXPORT_COALESCE.
        assert_eq!(rest.due(t0), t0 + EXPORT_COALESCE);
        // A turn that wrote to one session (a joiner's catch-up): no longer.
        rest.note(t0, 1);
        assert_eq!(rest.due(t0), t0 + EXPORT_COALESCE);
        // A turn that wrote to 1,000 sessions: 25 ms after it, not 5 ms after the change.
        rest.note(t0, 1000);
        assert_eq!(rest.due(t0), t0 + EXPORT_REST_PER_SEND * 1000);
        assert_eq!(rest.due(t0), t0 + Duration::from_millis(25));
        // A change that comes after the rest is over waits EXPORT_COALESCE only.
        let later = t0 + Duration::from_millis(30);
        assert_eq!(rest.due(later), later + EXPORT_COALESCE);
        // However many sessions, never more than EXPORT_REST_MAX after the turn.
        rest.note(t0, 1_000_000);
        assert_eq!(rest.due(t0), t0 + EXPORT_REST_MAX);
        rest.note(t0, usize::MAX);
        assert_eq!(rest.due(t0), t0 + EXPORT_REST_MAX);
    }

    #[test]
    fn test_storm_needs_storm_ups_within_the_window_and_ends_with_a_gap() {
        let t0 = Instant::now();
        let mut ups = Ups::default();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // One short of the count: no storm, however close together.
        for _ in 0..STORM_UPS - 1 {
            ups.note(t0);
        }
        assert_eq!(ups.storm_ends(t0), None);
        ups.note(ms(5));
        // The last one came at 5 ms: over STORM_GAP later unless more come.
        assert_eq!(ups.storm_ends(ms(5)), Some(ms(5) + STORM_GAP));
        assert_eq!(ups.storm_ends(ms(5) + STORM_GAP), None);
        // Arrivals every few ms keep it going, until the oldest of the last STORM_UPS
        // is a window old.
        let gap = STORM_GAP.as_millis() as u64;
        let window = STORM_WINDOW.as_millis() as u64;
        let mut t = 5;
        while t + 5 + gap <= window {
            t += 5;
            ups.note(ms(t));
            assert_eq!(ups.storm_ends(ms(t)), Some(ms(t) + STORM_GAP), "at {t} ms");
        }
        // 64 within the window no more (one every 5 ms): the storm is over.
        for _ in 0..STORM_UPS {
            t += 5;
            ups.note(ms(t));
        }
        assert_eq!(ups.storm_ends(ms(t)), None);
        // Arrivals spread wider than the window are no storm.
        let mut slow = Ups::default();
        for i in 0..(3 * STORM_UPS as u64) {
            slow.note(t0 + STORM_WINDOW * 2 * i as u32 / STORM_UPS as u32);
        }
        let last = t0 + STORM_WINDOW * 2 * (3 * STORM_UPS as u32 - 1) / STORM_UPS as u32;
        assert_eq!(slow.storm_ends(last), None);
    }
}
