//! The embeddable speaker: a sans-IO core that owns the RIB and the peer table, and a thin
//! tokio shell around it that owns the sockets, the session tasks and the clock.
//!
//! ```text
//!  listeners ──(stream, from)──┐            shell task (shell.rs): one select! loop
//!  Speaker handle ──Request────┼─▶ requests, events, Writers::room(), sleep(poll_timeout)
//!  session tasks ──SessionEvent┘      │  now = Instant::now()
//!        ▲                            ▼
//!        │           Core (core.rs, sans-IO): handle_event / handle_inbound / handle_timeout,
//!        │             request handlers (add_peer, reload, ...) that take `now` and answer,
//!        │             flush(queued) drains update groups (export.rs), graceful restart (gr.rs)
//!        │                            │ poll_action()
//!        │                            ▼
//!        └── Command::Send ◀───────── Action: Spawn / Command / Stop a session,
//!            spawn, stop              set a listener's TCP-MD5 key, a best-path change,
//!                                     a BMP event (`monitor.rs`, [`crate::bmp`])
//! ```
//!
//! BFD runs on a thread of its own ([`crate::bfd`]): the core asks for a peer's BFD session
//! with `Action::Bfd`, and the BFD task's state changes come back into the same loop as
//! `Core::handle_bfd` (a session gone from Up to Down resets the peer's BGP session). A
//! busy RIB never delays a BFD packet.
//!
//! The core owns the RIB, so routes need no locks; each session task owns its sockets and
//! its state machine. The core never reads a clock, a socket or a channel: time comes in
//! as `now`, the unwritten byte count of each session as a function the shell passes to
//! `Core::flush`, and everything it wants done leaves as an `Action`. Its deadlines
//! (graceful restart's stale routes, route selection deferral) come out of
//! `Core::poll_timeout`, which the shell turns into one sleep.
//!
//! Received UPDATEs cross to the core as whole frames and are parsed there once, those of
//! one read in one event (within a bound of UPDATE bytes on their way, all sessions
//! together: `session::INTAKE`); outgoing UPDATEs cross back as `Bytes` that every
//! member of an update group shares. A peer that
//! cannot keep up is reset (Cease, Out of Resources) once its unwritten output passes a
//! bound, so it neither holds memory without limit nor slows the others; a bound over the
//! whole process resets the peers furthest behind when many groups lag at once. Best-path
//! subscribers get bounded channels: while one is full, changes wait in the RIB, one per
//! prefix. Session tasks never wait for the core: their events queue in the task, which
//! stops reading meanwhile (its hold timer paused, its keepalives going on).

use std::net::IpAddr;

use ipnet::IpNet;
use rib::{Attrs, BestChange, Explanation};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{Config, Diff, PeerSettings};

pub use actions::SoftReset;
pub use status::Recovery;

mod actions;
mod core;
mod export;
mod gr;
mod monitor;
mod peers;
mod shell;
mod status;
#[cfg(test)]
mod tests;
pub mod why;

pub use status::{
    CoreTimings, Direction, ExplainedRoute, FamilyPrefixes, GracefulRestartInfo, NotificationInfo,
    PeerDetail, PeerRoute, PeerRoutesError, PeerRoutesPage, PeerRoutesQuery, PeerState, PeerStatus,
    RouteEntry, RoutesPage, Snapshot,
};
pub use why::{DownReason, Reason};

/// Best-path changes a subscriber's channel holds ([`Speaker::subscribe`]).
pub const SUBSCRIBER_CAPACITY: usize = 4096;

/// What [`Speaker::set_peer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    /// The peer is new.
    Added,
    /// The peer's settings changed in a way that needs a new session: it got a Cease
    /// (Other Configuration Change) and a new session.
    Changed,
    /// Only the peer's policies changed: the session stays up, export was run again for
    /// the peer and, with a new import policy, a ROUTE-REFRESH was sent.
    Reconfigured,
    /// Nothing changed: the session was left alone.
    Unchanged,
}

/// Why a [`Speaker`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// [`Speaker::add_peer`] of an address that already has a peer.
    #[error("peer {0} already exists")]
    PeerExists(IpAddr),
    /// The speaker's task has ended (shut down, or panicked).
    #[error("the speaker has stopped")]
    Stopped,
    /// An action named an address that is not a peer.
    #[error("{0} is not a peer")]
    UnknownPeer(IpAddr),
    /// An action that needs the session up ([`Speaker::soft_reset`]) found it down.
    #[error("the session with {0} is not established")]
    NotEstablished(IpAddr),
    /// [`Speaker::soft_reset`] in of a peer that did not negotiate ROUTE-REFRESH.
    #[error(
        "{0} did not negotiate ROUTE-REFRESH (RFC 2918): a soft reset in cannot ask it for its routes; a hard reset can"
    )]
    NoRefresh(IpAddr),
    /// [`Speaker::reset_peer`] of a disabled peer.
    #[error("{0} is disabled: enable it first")]
    PeerDisabled(IpAddr),
}

/// A request to the shell, answered by the core.
enum Request {
    Inbound(TcpStream, std::net::SocketAddr),
    AddPeer(Box<PeerSettings>, oneshot::Sender<Result<(), SpeakerError>>),
    SetPeer(Box<PeerSettings>, oneshot::Sender<PeerChange>),
    RemovePeer(IpAddr, oneshot::Sender<bool>),
    Reload(Box<Config>, oneshot::Sender<Diff>),
    Originate(IpNet, Box<Attrs>),
    Withdraw(IpNet),
    // The operator's actions (`actions.rs`), for the control socket and a node agent.
    ResetPeer(
        IpAddr,
        Option<String>,
        oneshot::Sender<Result<(), SpeakerError>>,
    ),
    SoftReset(IpAddr, SoftReset, oneshot::Sender<Result<(), SpeakerError>>),
    SetEnabled(
        IpAddr,
        bool,
        Option<String>,
        oneshot::Sender<Result<bool, SpeakerError>>,
    ),
    Announce(IpNet, Box<Attrs>, oneshot::Sender<bool>),
    WithdrawRuntime(IpNet, oneshot::Sender<bool>),
    Subscribe(mpsc::Sender<BestChange>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Route(IpNet, oneshot::Sender<Option<Explanation>>),
    // Added for the control API (`crate::api`): each is one visit to the core.
    Explain(IpNet, oneshot::Sender<Option<ExplainedRoute>>),
    Routes {
        after: Option<IpNet>,
        offset: usize,
        limit: usize,
        done: oneshot::Sender<RoutesPage>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    // Neighbour detail, per-peer tables and lookups (`ctl neighbor`, `ctl routes`).
    PeerDetail(IpAddr, oneshot::Sender<Option<PeerDetail>>),
    PeerRoutes(
        Box<PeerRoutesQuery>,
        oneshot::Sender<Result<PeerRoutesPage, PeerRoutesError>>,
    ),
    Lookup(IpAddr, oneshot::Sender<Option<ExplainedRoute>>),
    // Added for the FIB (`crate::fib`): the end of its initial sync waits for this.
    Deferring(oneshot::Sender<bool>),
    Recovering(oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
    // Added for MRT dumps (`crate::mrt`).
    MrtPeers(oneshot::Sender<Vec<crate::mrt::Peer>>),
    RibPage {
        from: u32,
        limit: usize,
        done: oneshot::Sender<RibPage>,
    },
}

/// One stored path of a prefix, for dumps ([`Speaker::rib_page`]).
#[derive(Clone, Debug)]
pub struct DumpPath {
    /// The peer it came from; `None` for a route this speaker originates.
    pub peer: Option<IpAddr>,
    /// Its ADD-PATH identifier, where the peer's session sends them.
    pub path_id: Option<u32>,
    /// Its attributes, after import policy.
    pub attrs: std::sync::Arc<rib::AttrSet>,
}

/// A page of the RIB ([`Speaker::rib_page`]).
#[derive(Clone, Debug, Default)]
pub struct RibPage {
    /// Prefixes with their usable paths, best first.
    pub prefixes: Vec<(IpNet, Vec<DumpPath>)>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<u32>,
}

/// The handle of a running speaker. Cheap to clone; every call is a message to the core.
#[derive(Clone, Debug)]
pub struct Speaker {
    tx: mpsc::Sender<Request>,
}

impl Speaker {
    /// Binds the configured listeners and starts every configured peer.
    pub async fn start(config: Config) -> Result<(Self, JoinHandle<()>), SpeakerError> {
        Self::start_with(config, false).await
    }

    /// Starts as a restarting speaker (RFC 4724 §4.1, BIRD's `-R`): the OPENs carry the
    /// Restart State bit and the Forwarding State bit of every family, so that helpers
    /// keep our routes while we come back, and no route is sent (route selection is
    /// deferred) until every configured peer is up and each one that negotiated graceful
    /// restart without restarting itself sent End-of-RIB, or the graceful restart time has
    /// passed. Then each peer gets the table and End-of-RIB, and replaces its stale routes
    /// without a withdrawal; later OPENs carry neither bit.
    pub async fn start_restarting(config: Config) -> Result<(Self, JoinHandle<()>), SpeakerError> {
        Self::start_with(config, true).await
    }

    async fn start_with(
        config: Config,
        restarting: bool,
    ) -> Result<(Self, JoinHandle<()>), SpeakerError> {
        let (tx, task) = shell::start(config, restarting).await?;
        Ok((Self { tx }, task))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    async fn send(&self, r: Request) -> Result<(), SpeakerError> {
        self.tx.send(r).await.map_err(|_| SpeakerError::Stopped)
    }

    /// Adds a peer; its session starts at once. Fails if the address is taken.
    pub async fn add_peer(&self, peer: PeerSettings) -> Result<(), SpeakerError> {
        self.ask(|tx| Request::AddPeer(Box::new(peer), tx)).await?
    }

    /// Adds the peer, or changes it: a change of policy only (import, export, next hop
    /// mode, max prefix; see [`PeerSettings::reset_key`]) is applied to the running
    /// session; any other change gets a Cease (Other Configuration Change) and a new
    /// session with the new settings, and the log names the key. One whose settings are
    /// equal is left alone. No other peer is touched.
    pub async fn set_peer(&self, peer: PeerSettings) -> Result<PeerChange, SpeakerError> {
        self.ask(|tx| Request::SetPeer(Box::new(peer), tx)).await
    }

    /// Removes a peer (Cease, Peer De-configured); returns whether it existed.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<bool, SpeakerError> {
        self.ask(|tx| Request::RemovePeer(address, tx)).await
    }

    /// Applies a new configuration: added peers come up, removed ones get a Cease, peers
    /// whose policies changed keep their sessions ([`Speaker::set_peer`]), other changed
    /// peers restart; unchanged peers keep their sessions. A new `[speaker] listen` is
    /// bound and a removed one closed, sessions untouched (a failed bind is logged).
    pub async fn reload(&self, config: Config) -> Result<Diff, SpeakerError> {
        self.ask(|tx| Request::Reload(Box::new(config), tx)).await
    }

    /// Originates `prefix` with `attrs` (a node agent's address blocks).
    pub async fn originate(&self, prefix: IpNet, attrs: Attrs) -> Result<(), SpeakerError> {
        self.send(Request::Originate(prefix, Box::new(attrs))).await
    }

    /// Stops originating `prefix`.
    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), SpeakerError> {
        self.send(Request::Withdraw(prefix)).await
    }

    /// Hard reset of a peer: Cease / Administrative Reset (as a Hard Reset, RFC 8538,
    /// when both sides sent the N bit: the peer drops our routes as we drop its), with
    /// `message` as the shutdown communication (RFC 9003), then a new session after the idle hold time.
    /// Fails for an unknown or disabled peer.
    pub async fn reset_peer(
        &self,
        address: IpAddr,
        message: Option<String>,
    ) -> Result<(), SpeakerError> {
        self.ask(|tx| Request::ResetPeer(address, message, tx))
            .await?
    }

    /// Soft reset of an established peer, its session kept: [`SoftReset::In`] sends it a
    /// ROUTE-REFRESH (RFC 2918) per negotiated family, so that its routes come again
    /// through the import policy ([`SpeakerError::NoRefresh`] when it did not negotiate
    /// ROUTE-REFRESH); [`SoftReset::Out`] sends it our Adj-RIB-Out again, then End-of-RIB.
    pub async fn soft_reset(
        &self,
        address: IpAddr,
        direction: SoftReset,
    ) -> Result<(), SpeakerError> {
        self.ask(|tx| Request::SoftReset(address, direction, tx))
            .await?
    }

    /// Disables (`enabled` false) or enables a peer. Disabling sends Cease /
    /// Administrative Shutdown with `message` as the shutdown communication (RFC 9003; a
    /// Hard Reset with the N bit on both sides), and the peer stays down (no connection
    /// out, the peer's refused, no restart after a max-prefix hold-down or BFD) until it
    /// is enabled again, by this call or by a reload that changes its `enabled` key.
    /// Returns whether the peer's state changed.
    pub async fn set_peer_enabled(
        &self,
        address: IpAddr,
        enabled: bool,
        message: Option<String>,
    ) -> Result<bool, SpeakerError> {
        self.ask(|tx| Request::SetEnabled(address, enabled, message, tx))
            .await?
    }

    /// Originates `prefix` with `attrs` as a run-time route (`ctl announce`): unlike
    /// [`Speaker::originate`] it is remembered apart from the configuration, kept across
    /// reloads, and wins over a `[[route]]` of the same prefix until
    /// [`Speaker::withdraw_announced`]. Returns whether it replaced an earlier one.
    pub async fn announce(&self, prefix: IpNet, attrs: Attrs) -> Result<bool, SpeakerError> {
        self.ask(|tx| Request::Announce(prefix, Box::new(attrs), tx))
            .await
    }

    /// Withdraws a route of [`Speaker::announce`] (a `[[route]]` of the same prefix is
    /// originated again as configured); `false` when none was announced for `prefix`.
    pub async fn withdraw_announced(&self, prefix: IpNet) -> Result<bool, SpeakerError> {
        self.ask(|tx| Request::WithdrawRuntime(prefix, tx)).await
    }

    /// A stream of best-path changes, from now on (what a data plane programs).
    ///
    /// The channel holds [`SUBSCRIBER_CAPACITY`] changes. A subscriber that does not keep
    /// up is never sent a backlog of every intermediate state: while any subscriber's
    /// channel is full, changes wait in the RIB, one per prefix (a bit), and each prefix
    /// is delivered once in its state at delivery, however often it changed meanwhile.
    /// So memory is bounded by the table, not by the churn; the cost is that the slowest
    /// subscriber paces all of them. Dropping the receiver unsubscribes.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<BestChange>, SpeakerError> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        self.send(Request::Subscribe(tx)).await?;
        Ok(rx)
    }

    /// Every peer's status.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(Request::Peers).await
    }

    /// The paths of `prefix`, best first, each with why it won or lost.
    pub async fn route(&self, prefix: IpNet) -> Result<Option<Explanation>, SpeakerError> {
        self.ask(|tx| Request::Route(prefix, tx)).await
    }

    /// [`Speaker::route`] with each path's source peer address.
    pub async fn explain(&self, prefix: IpNet) -> Result<Option<ExplainedRoute>, SpeakerError> {
        self.ask(|tx| Request::Explain(prefix, tx)).await
    }

    /// Up to `limit` best routes of the Loc-RIB in prefix order (family, address,
    /// length), skipping the first `offset`. The core walks the whole Loc-RIB once per
    /// page and keeps `offset + limit` routes aside: keep both bounded, and page through
    /// a whole table with [`Speaker::routes_after`].
    pub async fn routes(&self, offset: usize, limit: usize) -> Result<RoutesPage, SpeakerError> {
        self.ask(|done| Request::Routes {
            after: None,
            offset,
            limit,
            done,
        })
        .await
    }

    /// Up to `limit` best routes whose prefixes come after `after` in the order of
    /// [`Speaker::routes`] (from the first with `None`): a cursor that costs the same for
    /// every page of a large table.
    pub async fn routes_after(
        &self,
        after: Option<IpNet>,
        limit: usize,
    ) -> Result<RoutesPage, SpeakerError> {
        self.ask(|done| Request::Routes {
            after,
            offset: 0,
            limit,
            done,
        })
        .await
    }

    /// One peer in detail: its status, what its session negotiated, its history and
    /// its routes counted per family. `None` when no peer has the address.
    pub async fn peer_detail(&self, address: IpAddr) -> Result<Option<PeerDetail>, SpeakerError> {
        self.ask(|tx| Request::PeerDetail(address, tx)).await
    }

    /// A page of one peer's Adj-RIB-In or Adj-RIB-Out. The core visits the slots
    /// between the cursor and the page's end (the whole table at worst, for a filter that
    /// matches little) plus `offset` routes.
    pub async fn peer_routes(
        &self,
        query: PeerRoutesQuery,
    ) -> Result<Result<PeerRoutesPage, PeerRoutesError>, SpeakerError> {
        self.ask(|tx| Request::PeerRoutes(Box::new(query), tx))
            .await
    }

    /// The Loc-RIB's longest match for `address`, every path explained.
    pub async fn lookup(&self, address: IpAddr) -> Result<Option<ExplainedRoute>, SpeakerError> {
        self.ask(|tx| Request::Lookup(address, tx)).await
    }

    /// Every peer's status and the RIB's sizes, for metrics.
    pub async fn snapshot(&self) -> Result<Snapshot, SpeakerError> {
        self.ask(Request::Snapshot).await
    }

    /// Whether route selection is still deferred: started as a restarting speaker
    /// ([`Speaker::start_restarting`]), and the End-of-RIBs it waits for are not all in
    /// yet, nor the graceful restart time over.
    pub async fn deferring(&self) -> Result<bool, SpeakerError> {
        self.ask(Request::Deferring).await
    }

    /// Whether our graceful restart's recovery is still on: started as a restarting
    /// speaker and, within the graceful restart time, route selection still deferred or
    /// the End-of-RIB of some configured peer that negotiated graceful restart (one that
    /// restarts too included) still awaited, or, once a best-path subscriber came, changes
    /// still waiting for it. What kernel routes wait for before the stale ones are removed.
    pub async fn recovering(&self) -> Result<bool, SpeakerError> {
        self.ask(Request::Recovering).await
    }

    /// The peers of an MRT PEER_INDEX_TABLE: this speaker (address 0.0.0.0, for its own
    /// routes) first, then every peer, by address.
    pub async fn mrt_peers(&self) -> Result<Vec<crate::mrt::Peer>, SpeakerError> {
        self.ask(Request::MrtPeers).await
    }

    /// Up to `limit` prefixes of the RIB with every usable path, from position `from`
    /// (0 first, then each page's `next`): a dump walks the table page by page without
    /// holding it. A prefix that lives throughout the walk is seen once.
    pub async fn rib_page(&self, from: u32, limit: usize) -> Result<RibPage, SpeakerError> {
        self.ask(|done| Request::RibPage { from, limit, done })
            .await
    }

    /// Sends a Cease to every peer and stops.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(Request::Shutdown).await
    }
}
