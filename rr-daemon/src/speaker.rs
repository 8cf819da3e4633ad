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
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bgp_fsm::{Output, State};
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, Notification, SessionCtx};
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use rib::{Attrs, BestChange, Explanation, LocalAddrs, PeerId, Rib, Signal};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Config, Diff, PeerSettings};
use crate::session::{self, Command, SessionEvent, SessionHandle};

/// Unwritten UPDATE bytes a peer may have before it is reset as unable to keep up. A full
/// table is some tens of megabytes, shared with the other members of its update group.
const MAX_QUEUED: usize = 256 << 20;

/// How many messages one drain of an update group takes before the core looks at its
/// inputs again, so that a big table never starves keepalive processing.
const DRAIN_BUDGET: usize = 256;

/// What a peer looks like from outside, as the control API reports it.
#[derive(Clone, Debug, Serialize)]
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
    /// UPDATE messages sent since the session came up.
    pub updates_sent: u64,
    /// Why the session is not (or was last not) Established, in words.
    pub last_error: Option<String>,
    /// Accepted from a dynamic neighbour range.
    pub dynamic: bool,
}

/// A request to the core.
enum Request {
    Inbound(TcpStream, SocketAddr),
    AddPeer(Box<PeerSettings>, oneshot::Sender<anyhow::Result<()>>),
    RemovePeer(IpAddr, oneshot::Sender<bool>),
    Reload(Box<Config>, oneshot::Sender<Diff>),
    Originate(IpNet, Box<Attrs>),
    Withdraw(IpNet),
    Subscribe(mpsc::UnboundedSender<BestChange>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Route(IpNet, oneshot::Sender<Option<Explanation>>),
    StaleExpired(IpAddr, u64),
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
        let (tx, rx) = mpsc::channel(1024);
        for addr in &config.speaker.listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(%addr, "listening");
            tokio::spawn(accept_loop(listener, tx.clone()));
        }
        let (events_tx, events_rx) = mpsc::channel(4096);
        let mut core = Core {
            rib: Rib::new(track_best(config.rib_config())),
            config,
            peers: HashMap::new(),
            by_id: HashMap::new(),
            events_tx,
            subscribers: Vec::new(),
            requests: tx.clone(),
        };
        let peers: Vec<PeerSettings> = core.config.peers.values().cloned().collect();
        for p in peers {
            core.add_peer(p, false);
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

async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<Request>) {
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
    dynamic: bool,
    state: State,
    established_at: Option<Instant>,
    ctx: Option<SessionCtx>,
    last_error: Option<String>,
    prefixes_received: u64,
    updates_sent: u64,
    /// Counts sessions, so that a stale timer of an earlier one is recognised.
    epoch: u64,
}

struct Core {
    config: Config,
    rib: Rib,
    peers: HashMap<IpAddr, Peer>,
    by_id: HashMap<PeerId, IpAddr>,
    events_tx: mpsc::Sender<SessionEvent>,
    subscribers: Vec<mpsc::UnboundedSender<BestChange>>,
    /// For timers that come back as requests.
    requests: mpsc::Sender<Request>,
}

impl Core {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<SessionEvent>,
    ) {
        loop {
            tokio::select! {
                biased;
                e = events.recv() => {
                    let Some(e) = e else { return };
                    self.on_event(e);
                    // Take what else is waiting before encoding: batches, not single routes.
                    for _ in 0..4096 {
                        match events.try_recv() {
                            Ok(e) => self.on_event(e),
                            Err(_) => break,
                        }
                    }
                }
                r = requests.recv() => {
                    match r {
                        Some(Request::Shutdown(done)) => {
                            self.shutdown().await;
                            let _ = done.send(());
                            return;
                        }
                        Some(r) => self.on_request(r),
                        None => {
                            self.shutdown().await;
                            return;
                        }
                    }
                }
            }
            self.flush();
        }
    }

    fn add_peer(&mut self, settings: PeerSettings, dynamic: bool) -> PeerId {
        let id = self.rib.add_peer(settings.rib_config());
        let spec = settings.session_spec(&self.config.speaker);
        let session = session::spawn(spec, self.events_tx.clone());
        info!(peer = %settings.address, asn = settings.asn, dynamic, "peer added");
        self.by_id.insert(id, settings.address);
        self.peers.insert(
            settings.address,
            Peer {
                settings,
                id,
                session,
                dynamic,
                state: State::Idle,
                established_at: None,
                ctx: None,
                last_error: None,
                prefixes_received: 0,
                updates_sent: 0,
                epoch: 0,
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
        // Dropping the handle closes the command channel: the task ends once the Cease is
        // flushed.
        self.rib.peer_down(p.id, false);
        self.rib.remove_peer(p.id);
        self.by_id.remove(&p.id);
        info!(peer = %address, "peer removed");
        true
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

    fn on_request(&mut self, r: Request) {
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
                let mut v: Vec<PeerStatus> = self.peers.values().map(|p| self.status(p)).collect();
                v.sort_by_key(|p| p.address);
                let _ = done.send(v);
            }
            Request::Route(prefix, done) => {
                let _ = done.send(self.rib.explain(&prefix));
            }
            Request::StaleExpired(addr, epoch) => {
                if let Some(p) = self.peers.get(&addr)
                    && p.epoch == epoch
                    && p.state != State::Established
                {
                    info!(peer = %addr, "graceful restart time over: stale routes removed");
                    self.rib.stale_timer_expired(p.id);
                }
            }
            Request::Shutdown(_) => {}
        }
    }

    fn status(&self, p: &Peer) -> PeerStatus {
        PeerStatus {
            address: p.settings.address,
            asn: p.settings.asn,
            state: p.state.name().to_string(),
            uptime_s: p.established_at.map(|t| t.elapsed().as_secs()),
            prefixes_received: p.prefixes_received,
            prefixes_accepted: self.rib.adj_rib_in_len(p.id) as u64,
            updates_sent: p.updates_sent,
            last_error: p.last_error.clone(),
            dynamic: p.dynamic,
        }
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
        self.config = new;
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
        let Some(p) = self.peers.get_mut(&e.peer) else {
            return; // A session of a peer removed meanwhile.
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
            Output::StateChanged { to, .. } => p.state = to,
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
                p.epoch += 1;
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
                p.last_error = Some(reason.to_string());
                p.established_at = None;
                p.ctx = None;
                let graceful = graceful && p.settings.graceful_restart.is_some();
                self.rib.peer_down(id, graceful);
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
            Output::Failed(reason) => p.last_error = Some(reason.to_string()),
            Output::Update(frame) => {
                let Some(ctx) = p.ctx else { return };
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
            Output::RouteRefresh(_) => {
                info!(peer = %e.peer, "ROUTE-REFRESH received: not supported yet, ignored");
            }
            Output::Connect | Output::Send { .. } | Output::Close(_) => {}
        }
    }

    /// Sends what the RIB has for every update group, and best-path changes to subscribers.
    fn flush(&mut self) {
        for g in self.rib.pending_groups() {
            let members = self.rib.group_members(g);
            // Bounded by the group's pending set, which draining empties.
            for _ in 0..1_000_000 {
                let out = self.rib.drain_group(g, DRAIN_BUDGET);
                if out.is_empty() {
                    break;
                }
                for o in &out {
                    for m in &members {
                        if !o.audience.includes(*m) {
                            continue;
                        }
                        let Some(p) = self.by_id.get(m).and_then(|a| self.peers.get_mut(a)) else {
                            continue;
                        };
                        let queued = p.session.queued.fetch_add(o.bytes.len(), Ordering::Relaxed);
                        if queued > MAX_QUEUED {
                            p.session.queued.fetch_sub(o.bytes.len(), Ordering::Relaxed);
                            continue;
                        }
                        p.updates_sent += 1;
                        let _ = p.session.commands.send(Command::Send(o.bytes.clone()));
                    }
                }
                if out.len() < DRAIN_BUDGET {
                    break;
                }
            }
        }
        self.reset_laggards();
        while let Some(c) = self.rib.poll_best_change() {
            self.subscribers.retain(|s| s.send(c.clone()).is_ok());
        }
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
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}
