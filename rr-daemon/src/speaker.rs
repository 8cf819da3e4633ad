//! The embeddable speaker: sessions, the RIB and the listeners, as tokio tasks.
//!
//! ```text
//!  listeners ──(stream, from)──┐
//!  Speaker handle ──Request────┼─▶ core task: owns the Rib and the peer table
//!  session tasks ──SessionEvent┘      │ apply UPDATEs, decide, drain update groups
//!        ▲                            │
//!        └────── Command::Send(Bytes) ┘  (one encoding per group, shared by its members)
//! ```
//!
//! One task owns the RIB, so routes need no locks; each session task owns its sockets and
//! its state machine. Received UPDATEs cross to the core as whole frames and are parsed
//! there once; outgoing UPDATEs cross back as `Bytes` that every member of an update group
//! shares. A peer that cannot keep up is reset (Cease, Out of Resources) once its unwritten
//! output passes a bound, so it neither holds memory without limit nor slows the others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bgp_fsm::{DownReason, Output, State};
use bgp_wire::capability::Capability;
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, FamilySet, Notification, SessionCtx};
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use rib::{Attrs, BestChange, BestRoute, Explanation, LocalAddrs, PeerId, Rib, RibStats, Signal};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{Config, Diff, PeerSettings, Secret};
use crate::session::{self, Command, SessionEvent, SessionHandle, WINDOW, Writers};
use crate::sockopt;

/// Unwritten UPDATE bytes a peer may have before it is reset as unable to keep up. A full
/// table is some tens of megabytes, shared with the other members of its update group.
const MAX_QUEUED: usize = 256 << 20;

/// How many prefixes one drain of an update group visits before the core looks at its
/// inputs again: requests (accepts, the control API, reloads) and session events are
/// never starved by a big table.
const DRAIN_SLICE: usize = 2048;

/// Session events taken in one turn of the core before it encodes: batches, not single
/// routes, and still a bounded turn.
const EVENT_BATCH: usize = 4096;

/// Requests taken in one turn of the core.
const REQUEST_BATCH: usize = 64;

/// What a peer looks like from outside, as the control API reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's configured AS.
    pub asn: u32,
    /// RFC 4271 state name.
    pub state: String,
    /// Seconds since the session became Established, while it is.
    pub uptime_s: Option<u64>,
    /// Prefixes received (announced by the peer since the session came up).
    pub prefixes_received: u64,
    /// Routes from the peer in the Adj-RIB-In now (after import policy).
    pub prefixes_accepted: u64,
    /// Prefixes announced to the peer since the session came up (NLRI handed to the
    /// session; a route re-announced with new attributes counts again), the counterpart
    /// of `prefixes_received`.
    pub prefixes_sent: u64,
    /// UPDATE messages received since the session came up.
    pub updates_received: u64,
    /// UPDATE messages sent since the session came up.
    pub updates_sent: u64,
    /// UPDATE bytes handed to the session and not yet written (the peer's output queue).
    pub queued_bytes: u64,
    /// Seconds since the session entered its current state.
    pub since_s: u64,
    /// Seconds since the peer was added (configured at start, reloaded in, or accepted).
    pub age_s: u64,
    /// Why the session is not (or was last not) Established, in words.
    pub last_error: Option<String>,
    /// The last NOTIFICATION we sent, by name, if any since the peer was added.
    pub last_notification_sent: Option<String>,
    /// The last NOTIFICATION the peer sent, by name, if any since the peer was added.
    pub last_notification_received: Option<String>,
    /// Graceful restart (helper) is under way: the peer went down gracefully and its
    /// routes are kept as stale until its End-of-RIB or the restart time runs out.
    pub graceful_restart_pending: bool,
    /// Accepted from a dynamic neighbour range.
    pub dynamic: bool,
}

/// A best route with the address of the peer it came from.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    /// The prefix.
    pub prefix: IpNet,
    /// Its best path.
    pub best: BestRoute,
    /// The source peer's address; `None` for a route this speaker originates.
    pub from: Option<IpAddr>,
}

/// A page of the Loc-RIB, in the RIB's internal order (stable while the table does not
/// change).
#[derive(Clone, Debug)]
pub struct RoutesPage {
    /// The routes.
    pub routes: Vec<RouteEntry>,
    /// More routes follow this page.
    pub more: bool,
}

/// [`Explanation`] with the address of each path's source peer.
#[derive(Clone, Debug)]
pub struct ExplainedRoute {
    /// Every path, best first, with why it won or lost.
    pub explanation: Explanation,
    /// For each path in `explanation.paths`, the source peer's address; `None` for a
    /// route this speaker originates.
    pub from: Vec<Option<IpAddr>>,
}

/// Everything metrics read, taken in one visit to the core.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: std::net::Ipv4Addr,
    /// Every peer's status.
    pub peers: Vec<PeerStatus>,
    /// Table sizes (computing them walks the Loc-RIB once).
    pub rib: RibStats,
}

/// What [`Speaker::set_peer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// The peer is new.
    Added,
    /// The peer's settings changed: its session was restarted.
    Changed,
    /// Nothing changed: the session was left alone.
    Unchanged,
}

/// A request to the core.
enum Request {
    Inbound(TcpStream, SocketAddr),
    AddPeer(Box<PeerSettings>, oneshot::Sender<anyhow::Result<()>>),
    SetPeer(Box<PeerSettings>, oneshot::Sender<PeerChange>),
    RemovePeer(IpAddr, oneshot::Sender<bool>),
    Reload(Box<Config>, oneshot::Sender<Diff>),
    Originate(IpNet, Box<Attrs>),
    Withdraw(IpNet),
    Subscribe(mpsc::UnboundedSender<BestChange>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Route(IpNet, oneshot::Sender<Option<Explanation>>),
    // Added for the control API (`crate::api`): each is one visit to the core.
    Explain(IpNet, oneshot::Sender<Option<ExplainedRoute>>),
    Routes {
        offset: usize,
        limit: usize,
        done: oneshot::Sender<RoutesPage>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    StaleExpired(IpAddr, u64),
    DeferralOver,
    Shutdown(oneshot::Sender<()>),
}

/// The handle of a running speaker. Cheap to clone; every call is a message to the core.
#[derive(Clone, Debug)]
pub struct Speaker {
    tx: mpsc::Sender<Request>,
}

impl Speaker {
    /// Binds the configured listeners and starts every configured peer.
    pub async fn start(config: Config) -> anyhow::Result<(Self, JoinHandle<()>)> {
        Self::start_with(config, false).await
    }

    /// Starts as a restarting speaker (RFC 4724 §4.1, BIRD's `-R`): the OPENs carry the
    /// Restart State bit and the Forwarding State bit of every family, so that helpers
    /// keep our routes while we come back, and no route is sent (route selection is
    /// deferred) until every configured peer's End-of-RIB has arrived or the graceful
    /// restart time has passed. Then each peer gets the table and End-of-RIB, and replaces
    /// its stale routes without a withdrawal.
    pub async fn start_restarting(config: Config) -> anyhow::Result<(Self, JoinHandle<()>)> {
        Self::start_with(config, true).await
    }

    async fn start_with(
        config: Config,
        restarting: bool,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(1024);
        let mut listeners = Vec::new();
        for addr in &config.speaker.listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(%addr, "listening");
            // The core keeps the listeners too, to set the peers' TCP-MD5 keys on them.
            let listener = Arc::new(listener);
            listeners.push(listener.clone());
            tokio::spawn(accept_loop(listener, tx.clone()));
        }
        let (events_tx, events_rx) = mpsc::channel(4096);
        let mut core = Core {
            writers: Arc::new(Writers::default()),
            generations: 0,
            rib: Rib::new(track_best(config.rib_config())),
            config,
            peers: HashMap::new(),
            by_id: HashMap::new(),
            events_tx,
            subscribers: Vec::new(),
            requests: tx.clone(),
            deferring: false,
            listeners,
        };
        core.range_keys(true);
        if restarting {
            let wait =
                Duration::from_secs(core.config.speaker.graceful_restart.map_or(120, u64::from));
            info!(
                seconds = wait.as_secs(),
                "restarting gracefully: route selection deferred"
            );
            core.deferring = true;
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = tx.send(Request::DeferralOver).await;
            });
        }
        let peers: Vec<PeerSettings> = core.config.peers.values().cloned().collect();
        for p in peers {
            core.add_peer(p, false);
        }
        for r in &core.config.routes {
            core.rib.originate(r.prefix, r.attrs.clone());
        }
        let task = tokio::spawn(core.run(rx, events_rx));
        Ok((Self { tx }, task))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the speaker has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the speaker has stopped"))
    }

    /// Adds a peer; its session starts at once. Fails if the address is taken.
    pub async fn add_peer(&self, peer: PeerSettings) -> anyhow::Result<()> {
        self.ask(|tx| Request::AddPeer(Box::new(peer), tx)).await?
    }

    /// Adds the peer, or changes it: a peer whose settings differ gets a Cease (Other
    /// Configuration Change) and a new session with the new settings; one whose settings
    /// are equal keeps its session. No other peer is touched.
    pub async fn set_peer(&self, peer: PeerSettings) -> anyhow::Result<PeerChange> {
        self.ask(|tx| Request::SetPeer(Box::new(peer), tx)).await
    }

    /// Removes a peer (Cease, Peer De-configured); returns whether it existed.
    pub async fn remove_peer(&self, address: IpAddr) -> anyhow::Result<bool> {
        self.ask(|tx| Request::RemovePeer(address, tx)).await
    }

    /// Applies a new configuration: added peers come up, removed ones get a Cease, changed
    /// ones restart; unchanged peers keep their sessions.
    pub async fn reload(&self, config: Config) -> anyhow::Result<Diff> {
        self.ask(|tx| Request::Reload(Box::new(config), tx)).await
    }

    /// Originates `prefix` with `attrs` (a node agent's address blocks).
    pub async fn originate(&self, prefix: IpNet, attrs: Attrs) -> anyhow::Result<()> {
        self.tx
            .send(Request::Originate(prefix, Box::new(attrs)))
            .await
            .map_err(|_| anyhow::anyhow!("the speaker has stopped"))
    }

    /// Stops originating `prefix`.
    pub async fn withdraw(&self, prefix: IpNet) -> anyhow::Result<()> {
        self.tx
            .send(Request::Withdraw(prefix))
            .await
            .map_err(|_| anyhow::anyhow!("the speaker has stopped"))
    }

    /// A stream of best-path changes, from now on (what a data plane programs).
    pub async fn subscribe(&self) -> anyhow::Result<mpsc::UnboundedReceiver<BestChange>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.tx
            .send(Request::Subscribe(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the speaker has stopped"))?;
        Ok(rx)
    }

    /// Every peer's status.
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerStatus>> {
        self.ask(Request::Peers).await
    }

    /// The paths of `prefix`, best first, each with why it won or lost.
    pub async fn route(&self, prefix: IpNet) -> anyhow::Result<Option<Explanation>> {
        self.ask(|tx| Request::Route(prefix, tx)).await
    }

    /// [`Speaker::route`] with each path's source peer address.
    pub async fn explain(&self, prefix: IpNet) -> anyhow::Result<Option<ExplainedRoute>> {
        self.ask(|tx| Request::Explain(prefix, tx)).await
    }

    /// Up to `limit` best routes of the Loc-RIB, skipping the first `offset`. The core
    /// walks `offset + limit` entries: keep both bounded.
    pub async fn routes(&self, offset: usize, limit: usize) -> anyhow::Result<RoutesPage> {
        self.ask(|done| Request::Routes {
            offset,
            limit,
            done,
        })
        .await
    }

    /// Every peer's status and the RIB's sizes, for metrics.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        self.ask(Request::Snapshot).await
    }

    /// Sends a Cease to every peer and stops.
    pub async fn shutdown(&self) -> anyhow::Result<()> {
        self.ask(Request::Shutdown).await
    }
}

fn track_best(mut c: rib::RibConfig) -> rib::RibConfig {
    // A node agent may subscribe at any time; the change set costs a bit per prefix.
    c.track_best_changes = true;
    c
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

/// One peer in the core's table.
struct Peer {
    settings: PeerSettings,
    id: PeerId,
    session: SessionHandle,
    /// The generation of `session`: events of an earlier session of this address are
    /// dropped.
    generation: u64,
    dynamic: bool,
    state: State,
    established_at: Option<Instant>,
    ctx: Option<SessionCtx>,
    last_error: Option<String>,
    prefixes_received: u64,
    updates_sent: u64,
    /// Counts sessions, so that a stale timer of an earlier one is recognised.
    epoch: u64,
    // For the control API: counters and history that `status` reports.
    added_at: Instant,
    state_since: Instant,
    prefixes_sent: u64,
    updates_received: u64,
    last_notification_sent: Option<String>,
    last_notification_received: Option<String>,
    /// Graceful restart under way (see [`PeerStatus::graceful_restart_pending`]).
    gr_pending: bool,
    /// With `gr_pending` and the session back up: families whose End-of-RIB is awaited.
    gr_eor_awaited: FamilySet,
    /// While we restart (`Core::deferring`): families of this peer whose End-of-RIB we
    /// still wait for; `None` until its session is up.
    restart_eor_awaited: Option<FamilySet>,
}

impl Peer {
    /// Records why a session or connection attempt ended: `last_error` in words, and the
    /// NOTIFICATION by direction.
    fn record_down(&mut self, reason: &DownReason, local_as: u32) {
        match reason {
            DownReason::NotificationSent(n)
            | DownReason::OpenRefused {
                notification: n,
                sent: true,
                ..
            } => {
                self.last_notification_sent = Some(n.to_string());
            }
            DownReason::NotificationReceived(n) => {
                self.last_notification_received = Some(n.to_string());
            }
            _ => {}
        }
        self.last_error = Some(describe_down(reason, &self.settings, local_as));
    }
}

/// `reason` in an operator's words: the reason's own text, preceded for OPEN mismatches by
/// what does not match and which side has to change.
///
/// Our refusals come with the machine's own words (the AS the peer claimed); the peer's
/// refusals of our OPEN are explained from the NOTIFICATION it sent.
fn describe_down(reason: &DownReason, peer: &PeerSettings, local_as: u32) -> String {
    use subcode::open;
    if matches!(reason, DownReason::OpenRefused { .. }) {
        // The machine says what did not match (the AS the peer claimed, ...).
        return reason.to_string();
    }
    let (sent, n) = match reason {
        DownReason::NotificationSent(n) | DownReason::NotSent(n) => (true, n),
        DownReason::NotificationReceived(n) => (false, n),
        _ => return reason.to_string(),
    };
    if n.code != ErrorCode::OPEN_MESSAGE {
        return reason.to_string();
    }
    let what = match (sent, n.subcode) {
        (true, open::BAD_PEER_AS) => format!(
            "OPEN mismatch: the peer does not say AS {}, as configured for it",
            peer.asn
        ),
        (false, open::BAD_PEER_AS) => format!(
            "OPEN mismatch: the peer refused our AS {local_as}: check the AS it has configured for us"
        ),
        (true, open::BAD_BGP_IDENTIFIER) => {
            "OPEN mismatch: the peer's BGP identifier is invalid or equal to ours".to_owned()
        }
        (false, open::BAD_BGP_IDENTIFIER) => {
            "OPEN mismatch: the peer refused our BGP identifier (equal to its own?)".to_owned()
        }
        (true, open::UNACCEPTABLE_HOLD_TIME) => {
            "OPEN mismatch: the peer's hold time is below our minimum".to_owned()
        }
        (false, open::UNACCEPTABLE_HOLD_TIME) => format!(
            "OPEN mismatch: the peer refused our hold time of {} s",
            peer.hold_time
        ),
        (true, open::UNSUPPORTED_CAPABILITY) => {
            "OPEN mismatch: the peer lacks a capability we require (address family?)".to_owned()
        }
        (false, open::UNSUPPORTED_CAPABILITY) => {
            "OPEN mismatch: the peer requires a capability we do not offer (address family?)"
                .to_owned()
        }
        (_, open::ROLE_MISMATCH) => "OPEN mismatch: BGP roles do not agree".to_owned(),
        _ => return reason.to_string(),
    };
    format!("{what} ({reason})")
}

struct Core {
    /// Wakes the core when a session's output queue drains (see [`Writers`]).
    writers: Arc<Writers>,
    /// The generation of the last session spawned: each session's events carry its own.
    generations: u64,
    config: Config,
    rib: Rib,
    peers: HashMap<IpAddr, Peer>,
    by_id: HashMap<PeerId, IpAddr>,
    events_tx: mpsc::Sender<SessionEvent>,
    subscribers: Vec<mpsc::UnboundedSender<BestChange>>,
    /// For timers that come back as requests.
    requests: mpsc::Sender<Request>,
    /// Restarting gracefully: nothing is sent until every configured peer's End-of-RIB
    /// arrived, or the restart time passed (RFC 4724 §4.1 route selection deferral).
    deferring: bool,
    /// The listening sockets (shared with their accept loops), which carry the TCP-MD5
    /// keys of the peers and dynamic neighbour ranges that have a password.
    listeners: Vec<Arc<TcpListener>>,
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

impl Core {
    /// The core's loop. Each turn takes what is ready (a bounded number of requests and
    /// session events), then encodes one slice of output for every update group whose
    /// writers have room. While work remains that can go out now it turns again at once,
    /// yielding between turns; otherwise it sleeps until a request, an event, or a writer
    /// with room again. Progress never waits for an unrelated event.
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<SessionEvent>,
    ) {
        let writers = self.writers.clone();
        loop {
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
            for _ in 0..EVENT_BATCH {
                match events.try_recv() {
                    Ok(e) => self.on_event(e),
                    Err(_) => break,
                }
            }
            if self.flush() {
                tokio::task::yield_now().await;
                continue;
            }
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
                Some(e) = events.recv() => self.on_event(e),
                () = writers.room() => {}
            }
        }
    }

    fn add_peer(&mut self, settings: PeerSettings, dynamic: bool) -> PeerId {
        if self.peers.contains_key(&settings.address) {
            // A live dynamic neighbour now configured, or a changed peer: the old session,
            // its routes and its group membership go first.
            self.remove_peer(settings.address, subcode::cease::OTHER_CONFIG_CHANGE);
        }
        let id = self.rib.add_peer(settings.rib_config());
        let mut spec = settings.session_spec(&self.config.speaker);
        if self.deferring {
            // RFC 4724 §3: Restart State, and forwarding kept for every family (the
            // kernel routes of a node persist across the restart; a reflector forwards
            // nothing, so it has nothing to lose).
            for c in &mut spec.fsm.capabilities {
                if let Capability::GracefulRestart(gr) = c {
                    gr.restart_state = true;
                    for f in &mut gr.families {
                        f.forwarding = true;
                    }
                }
            }
        }
        // Keys before the session starts: a connection the peer opens at once is signed.
        // Dynamic neighbours are covered by their range's key.
        let mut last_error = None;
        if !dynamic && let Some(key) = &settings.password {
            last_error = self
                .listener_keys(settings.address.into(), false, Some(key))
                .err();
        }
        self.generations += 1;
        let generation = self.generations;
        let session = session::spawn(
            spec,
            generation,
            self.events_tx.clone(),
            self.writers.clone(),
        );
        info!(peer = %settings.address, asn = settings.asn, dynamic, "peer added");
        self.by_id.insert(id, settings.address);
        self.peers.insert(
            settings.address,
            Peer {
                settings,
                id,
                session,
                generation,
                dynamic,
                state: State::Idle,
                established_at: None,
                ctx: None,
                last_error,
                prefixes_received: 0,
                updates_sent: 0,
                epoch: 0,
                added_at: Instant::now(),
                state_since: Instant::now(),
                prefixes_sent: 0,
                updates_received: 0,
                last_notification_sent: None,
                last_notification_received: None,
                gr_pending: false,
                gr_eor_awaited: FamilySet::EMPTY,
                restart_eor_awaited: None,
            },
        );
        id
    }

    fn remove_peer(&mut self, address: IpAddr, why: u8) -> bool {
        let Some(p) = self.peers.remove(&address) else {
            return false;
        };
        let cease = Notification::new(ErrorCode::CEASE, why);
        let _ = p.session.commands.send(Command::Stop(Some(cease)));
        if !p.dynamic && p.settings.password.is_some() {
            let _ = self.listener_keys(address.into(), false, None);
        }
        // Dropping the handle closes the command channel: the task ends once the Cease is
        // flushed.
        self.rib.peer_down(p.id, false);
        self.rib.remove_peer(p.id);
        self.by_id.remove(&p.id);
        info!(peer = %address, "peer removed");
        true
    }

    /// Sets (`key`) or removes (`None`) the TCP-MD5 key of `target` (a peer's address, or
    /// with `range` a dynamic neighbour range) on every listener of its family. An error
    /// (`TCP-MD5 for ADDRESS: ...`) is logged and returned; the other listeners are still
    /// done. Removing a key that is not there (it could not be set) is no error.
    fn listener_keys(
        &self,
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
        for l in self
            .listeners
            .iter()
            .filter(|l| same_family(l, target.addr()))
        {
            let r = match (key, range) {
                (Some(k), false) => {
                    sockopt::set_md5_key(&**l, target.addr(), k.expose().as_bytes())
                }
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

    /// Sets (`on`) or removes the listener keys of every dynamic neighbour range whose
    /// peers have a password (`TCP_MD5SIG_EXT` with a prefix).
    fn range_keys(&self, on: bool) {
        for d in &self.config.dynamic_neighbors {
            if let Some(key) = &d.template.password {
                let _ = self.listener_keys(d.prefix, true, on.then_some(key));
            }
        }
    }

    /// Forgets a peer whose session is already down.
    fn rib_down_and_remove(&mut self, address: IpAddr) -> Option<()> {
        let p = self.peers.remove(&address)?;
        self.rib.peer_down(p.id, false);
        self.rib.remove_peer(p.id);
        self.by_id.remove(&p.id);
        info!(peer = %address, "dynamic neighbour removed");
        Some(())
    }

    /// Handles one request; `Break` once the speaker has shut down.
    async fn on_request(&mut self, r: Request) -> ControlFlow<()> {
        match r {
            Request::Inbound(stream, from) => self.inbound(stream, from),
            Request::AddPeer(p, done) => {
                let r = if self.peers.contains_key(&p.address) {
                    Err(anyhow::anyhow!("peer {} already exists", p.address))
                } else {
                    self.add_peer(*p, false);
                    Ok(())
                };
                let _ = done.send(r);
            }
            Request::SetPeer(p, done) => {
                let change = match self.peers.get(&p.address) {
                    None => PeerChange::Added,
                    Some(old) if old.settings == *p => PeerChange::Unchanged,
                    Some(_) => {
                        self.remove_peer(p.address, subcode::cease::OTHER_CONFIG_CHANGE);
                        PeerChange::Changed
                    }
                };
                if change != PeerChange::Unchanged {
                    self.add_peer(*p, false);
                }
                let _ = done.send(change);
            }
            Request::RemovePeer(a, done) => {
                let _ = done.send(self.remove_peer(a, subcode::cease::PEER_DECONFIGURED));
            }
            Request::Reload(c, done) => {
                let _ = done.send(self.reload(*c));
            }
            Request::Originate(prefix, attrs) => self.rib.originate(prefix, *attrs),
            Request::Withdraw(prefix) => self.rib.withdraw_local(prefix),
            Request::Subscribe(tx) => self.subscribers.push(tx),
            Request::Peers(done) => {
                let _ = done.send(self.statuses());
            }
            Request::Route(prefix, done) => {
                let _ = done.send(self.rib.explain(&prefix));
            }
            Request::Explain(prefix, done) => {
                let r = self.rib.explain(&prefix).map(|explanation| ExplainedRoute {
                    from: explanation
                        .paths
                        .iter()
                        .map(|p| self.source(p.peer))
                        .collect(),
                    explanation,
                });
                let _ = done.send(r);
            }
            Request::Routes {
                offset,
                limit,
                done,
            } => {
                let mut routes: Vec<RouteEntry> = self
                    .rib
                    .loc_rib()
                    .skip(offset)
                    .take(limit.saturating_add(1))
                    .map(|(prefix, best)| RouteEntry {
                        prefix,
                        from: self.source(best.peer),
                        best,
                    })
                    .collect();
                let more = routes.len() > limit;
                routes.truncate(limit);
                let _ = done.send(RoutesPage { routes, more });
            }
            Request::Snapshot(done) => {
                let _ = done.send(Snapshot {
                    local_as: self.config.speaker.asn,
                    router_id: self.config.speaker.router_id,
                    peers: self.statuses(),
                    rib: self.rib.stats(),
                });
            }
            Request::DeferralOver => {
                if self.deferring {
                    info!("graceful restart time over: sending routes");
                    self.deferring = false;
                }
            }
            Request::StaleExpired(addr, epoch) => {
                if let Some(p) = self.peers.get(&addr)
                    && p.epoch == epoch
                    && p.state != State::Established
                {
                    info!(peer = %addr, "graceful restart time over: stale routes removed");
                    self.rib.stale_timer_expired(p.id);
                    if let Some(p) = self.peers.get_mut(&addr) {
                        p.gr_pending = false;
                    }
                }
            }
            Request::Shutdown(done) => {
                self.shutdown().await;
                let _ = done.send(());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Every peer's status, by address.
    fn statuses(&self) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self.peers.values().map(|p| self.status(p)).collect();
        v.sort_by_key(|p| p.address);
        v
    }

    fn status(&self, p: &Peer) -> PeerStatus {
        PeerStatus {
            address: p.settings.address,
            asn: p.settings.asn,
            state: p.state.name().to_string(),
            uptime_s: p.established_at.map(|t| t.elapsed().as_secs()),
            prefixes_received: p.prefixes_received,
            prefixes_accepted: self.rib.adj_rib_in_len(p.id) as u64,
            prefixes_sent: p.prefixes_sent,
            updates_received: p.updates_received,
            updates_sent: p.updates_sent,
            queued_bytes: p.session.queued.load(Ordering::Relaxed) as u64,
            since_s: p.state_since.elapsed().as_secs(),
            age_s: p.added_at.elapsed().as_secs(),
            last_error: p.last_error.clone(),
            last_notification_sent: p.last_notification_sent.clone(),
            last_notification_received: p.last_notification_received.clone(),
            graceful_restart_pending: p.gr_pending,
            dynamic: p.dynamic,
        }
    }

    /// The address of the peer behind `id`; `None` for local routes (and for a peer
    /// being removed).
    fn source(&self, id: PeerId) -> Option<IpAddr> {
        self.by_id.get(&id).copied()
    }

    fn inbound(&mut self, stream: TcpStream, from: SocketAddr) {
        let addr = from.ip();
        if !self.peers.contains_key(&addr) {
            let Some(range) = self.config.dynamic_range(addr) else {
                warn!(%from, "refused connection: not a configured peer");
                return;
            };
            let in_range = self
                .peers
                .values()
                .filter(|p| p.dynamic && range.prefix.contains(&p.settings.address))
                .count();
            if range.limit.is_some_and(|l| in_range >= l as usize) {
                warn!(%from, range = %range.prefix, "refused connection: dynamic neighbour limit reached");
                return;
            }
            let settings = range.peer(addr);
            self.add_peer(settings, true);
        }
        if let Some(p) = self.peers.get(&addr)
            && p.session.inbound.try_send(stream).is_err()
        {
            warn!(%from, "refused connection: the session is busy with another");
        }
    }

    fn reload(&mut self, new: Config) -> Diff {
        let diff = Config::diff(&self.config, &new);
        for a in &diff.removed {
            self.remove_peer(*a, subcode::cease::PEER_DECONFIGURED);
        }
        for a in &diff.changed {
            self.remove_peer(*a, subcode::cease::OTHER_CONFIG_CHANGE);
        }
        // `[[route]]`: withdraw what is gone, originate what is new or changed.
        for r in &self.config.routes {
            if !new.routes.iter().any(|n| n.prefix == r.prefix) {
                self.rib.withdraw_local(r.prefix);
            }
        }
        for r in &new.routes {
            if !self.config.routes.contains(r) {
                self.rib.originate(r.prefix, r.attrs.clone());
            }
        }
        let ranges_changed = self.config.dynamic_neighbors != new.dynamic_neighbors;
        if ranges_changed {
            self.range_keys(false);
        }
        self.config = new;
        if ranges_changed {
            self.range_keys(true);
        }
        for a in diff.added.iter().chain(&diff.changed) {
            if let Some(p) = self.config.peers.get(a).cloned() {
                self.add_peer(p, false);
            }
        }
        info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            unchanged = diff.unchanged.len(),
            "configuration reloaded"
        );
        diff
    }

    fn on_event(&mut self, e: SessionEvent) {
        let Some(p) = self
            .peers
            .get_mut(&e.peer)
            .filter(|p| p.generation == e.generation)
        else {
            return; // A session of a peer removed or replaced meanwhile.
        };
        let id = p.id;
        if p.dynamic
            && matches!(
                e.news,
                Output::StateChanged {
                    to: State::Idle,
                    ..
                }
            )
        {
            // A dynamic neighbour exists while its session does (BIRD does the same).
            let _ = self.rib_down_and_remove(e.peer);
            return;
        }
        match e.news {
            Output::StateChanged { to, .. } => {
                p.state = to;
                p.state_since = Instant::now();
            }
            Output::Established {
                negotiated,
                peer_open,
                ..
            } => {
                p.state = State::Established;
                p.established_at = Some(Instant::now());
                p.ctx = Some(negotiated.ctx);
                p.last_error = None;
                p.prefixes_received = 0;
                p.updates_sent = 0;
                p.prefixes_sent = 0;
                p.updates_received = 0;
                p.epoch += 1;
                if p.gr_pending {
                    // Recovery ends with the peer's End-of-RIB in every family.
                    p.gr_eor_awaited = negotiated.ctx.families;
                }
                if self.deferring {
                    p.restart_eor_awaited = Some(negotiated.ctx.families);
                }
                let local = e
                    .local
                    .map_or(LocalAddrs::default(), |a| LocalAddrs::from(a.ip()));
                let session = rib::Session {
                    ctx: negotiated.ctx,
                    router_id: peer_open.bgp_id,
                    local,
                };
                self.rib.peer_up(id, session);
            }
            Output::Down { reason, graceful } => {
                p.record_down(&reason, self.config.speaker.asn);
                p.established_at = None;
                p.ctx = None;
                let graceful = graceful && p.settings.graceful_restart.is_some();
                self.rib.peer_down(id, graceful);
                p.gr_pending = graceful;
                p.gr_eor_awaited = FamilySet::EMPTY;
                if graceful {
                    let restart =
                        Duration::from_secs(p.settings.graceful_restart.map_or(0, u64::from));
                    let (tx, addr, epoch) = (self.requests.clone(), e.peer, p.epoch);
                    tokio::spawn(async move {
                        tokio::time::sleep(restart).await;
                        let _ = tx.send(Request::StaleExpired(addr, epoch)).await;
                    });
                }
            }
            Output::Failed(reason) => p.record_down(&reason, self.config.speaker.asn),
            Output::Update(frame) => {
                let Some(ctx) = p.ctx else { return };
                p.updates_received += 1;
                let view = UpdateView::parse(frame.body(), &ctx);
                match view.treatment() {
                    Treatment::SessionReset | Treatment::AfiSafiDisable => {
                        // AFI/SAFI disable is not implemented: the RFC allows a reset instead.
                        if let Some(n) = view.notification() {
                            warn!(peer = %e.peer, notification = %n, issues = ?view.issues(), "malformed UPDATE: resetting the session");
                            let _ = p.session.commands.send(Command::UpdateError(n));
                        }
                        return;
                    }
                    Treatment::TreatAsWithdraw | Treatment::AttributeDiscard => {
                        warn!(peer = %e.peer, treatment = %view.treatment(), issues = ?view.issues(), "malformed UPDATE");
                    }
                    Treatment::Normal => {}
                }
                let applied = self.rib.apply_update(id, &view);
                p.prefixes_received += applied.announced as u64;
                if let (Some(f), Some(awaited)) = (applied.end_of_rib, &mut p.restart_eor_awaited) {
                    awaited.remove(f);
                }
                if let Some(f) = applied.end_of_rib
                    && p.gr_pending
                {
                    p.gr_eor_awaited.remove(f);
                    if p.gr_eor_awaited.is_empty() {
                        info!(peer = %e.peer, "graceful restart over: End-of-RIB received");
                        p.gr_pending = false;
                    }
                }
                if let Some(Signal::MaxPrefixExceeded { limit, warn_only }) = applied.signal {
                    warn!(peer = %e.peer, limit, warn_only, "maximum prefix count exceeded");
                    if !warn_only {
                        // RFC 4486 §4: AFI, SAFI and the limit. The family is not known
                        // here; IPv4 unicast names the session's first family.
                        let mut data = BytesMut::with_capacity(7);
                        data.put_u16(1);
                        data.put_u8(1);
                        data.put_u32(limit);
                        let _ = p
                            .session
                            .commands
                            .send(Command::MaxPrefixExceeded(data.freeze()));
                    }
                }
            }
            Output::RouteRefresh(rr) => {
                // RFC 2918 / RFC 7313: a request (subtype 0) is answered with the whole
                // Adj-RIB-Out and End-of-RIB; BoRR/EoRR from the peer need nothing of us.
                if rr.subtype == bgp_wire::route_refresh::RefreshSubtype::NORMAL {
                    info!(peer = %e.peer, afi = %rr.afi, safi = %rr.safi, "ROUTE-REFRESH: sending the table again");
                    self.rib.refresh(id);
                }
            }
            Output::Connect | Output::Send { .. } | Output::Close(_) => {}
        }
    }

    /// Encodes one slice of every update group's pending work whose writers have room,
    /// hands it to the members, and passes best-path changes to subscribers. Returns
    /// whether work remains that could go out now (the caller turns again at once);
    /// `false` when everything is out or every group with work waits for its writers.
    fn flush(&mut self) -> bool {
        if self.deferring {
            // Every configured peer up and done with its initial table: selection can run.
            let done = self
                .peers
                .values()
                .filter(|p| !p.dynamic)
                .all(|p| p.restart_eor_awaited.is_some_and(FamilySet::is_empty));
            if !done {
                return false;
            }
            info!("graceful restart: every peer's End-of-RIB received, sending routes");
            self.deferring = false;
        }
        for g in self.rib.pending_groups() {
            let members = self.rib.group_members(g);
            if !self.has_room(&members) {
                continue;
            }
            for o in self.rib.drain_group(g, DRAIN_SLICE) {
                for m in &members {
                    if !o.audience.includes(*m) {
                        continue;
                    }
                    let Some(p) = self.by_id.get(m).and_then(|a| self.peers.get_mut(a)) else {
                        continue;
                    };
                    let queued = p.session.queued.fetch_add(o.bytes.len(), Ordering::Relaxed);
                    if queued > MAX_QUEUED {
                        // Reset below; what it misses now it gets with its next session.
                        p.session.queued.fetch_sub(o.bytes.len(), Ordering::Relaxed);
                        continue;
                    }
                    p.updates_sent += o.messages as u64;
                    p.prefixes_sent += o.announced as u64;
                    let _ = p.session.commands.send(Command::Send(o.bytes.clone()));
                }
            }
        }
        self.reset_laggards();
        while let Some(c) = self.rib.poll_best_change() {
            self.subscribers.retain(|s| s.send(c.clone()).is_ok());
        }
        self.rib
            .pending_groups()
            .into_iter()
            .any(|g| self.has_room(&self.rib.group_members(g)))
    }

    /// Whether a member of a group can take more output: a group goes at the pace of its
    /// fastest member, and one that falls [`MAX_QUEUED`] behind is reset rather than
    /// holding the others back.
    fn has_room(&self, members: &[PeerId]) -> bool {
        members.iter().any(|m| {
            self.by_id
                .get(m)
                .and_then(|a| self.peers.get(a))
                .is_some_and(|p| p.session.queued.load(Ordering::Relaxed) < WINDOW)
        })
    }

    /// Resets peers whose unwritten output passed the bound (RFC 4486 Out of Resources):
    /// they come back by themselves and get the table afresh.
    fn reset_laggards(&mut self) {
        for p in self.peers.values_mut() {
            if p.state == State::Established
                && p.session.queued.load(Ordering::Relaxed) > MAX_QUEUED
            {
                warn!(peer = %p.settings.address, "peer cannot keep up: resetting the session");
                let n = Notification::new(ErrorCode::CEASE, subcode::cease::OUT_OF_RESOURCES);
                let _ = p.session.commands.send(Command::Reset(n));
                p.state = State::Idle;
                p.state_since = Instant::now();
            }
        }
    }

    async fn shutdown(&mut self) {
        let cease = Notification::cease_with_communication(
            subcode::cease::ADMIN_SHUTDOWN,
            "rr-daemon shutting down",
        );
        let mut tasks = Vec::new();
        for (_, p) in self.peers.drain() {
            let _ = p.session.commands.send(Command::Stop(Some(cease.clone())));
            tasks.push(p.session.task);
            // Dropping the command sender ends the task after the Cease.
        }
        // One deadline for all: the Ceases go out together, not one peer after another.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mismatches_are_spelled_out() {
        let cfg = Config::parse(
            "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\nasn = 65001\n",
            "t.toml",
        )
        .unwrap();
        let peer = &cfg.peers[&"10.0.0.2".parse().unwrap()];
        let bad_as = Notification::new(ErrorCode::OPEN_MESSAGE, subcode::open::BAD_PEER_AS);
        let sent = describe_down(&DownReason::NotificationSent(bad_as.clone()), peer, 65000);
        assert!(
            sent.starts_with("OPEN mismatch: the peer does not say AS 65001, as configured")
                && sent.contains("Bad Peer AS"),
            "{sent}"
        );
        let got = describe_down(&DownReason::NotificationReceived(bad_as), peer, 65000);
        assert!(got.contains("the peer refused our AS 65000"), "{got}");
        let tcp = DownReason::ConnectionFailed("Connection refused (os error 111)".into());
        assert_eq!(
            describe_down(&tcp, peer, 65000),
            "connection failed: Connection refused (os error 111)"
        );
    }
}
