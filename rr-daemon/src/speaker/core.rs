//! The speaker's core, sans-IO: the RIB, the peer table, graceful restart, reload and
//! export, as a state machine one level above [`bgp_fsm::Session`] (what quinn-proto's
//! `Endpoint` is to its `Connection`s).
//!
//! Inputs: session events ([`Core::handle_event`]), accepted connections
//! ([`Core::handle_inbound`]), requests (each handler takes `now` and returns its answer),
//! the clock ([`Core::handle_timeout`] at [`Core::poll_timeout`]), and a turn of export
//! ([`Core::flush`], which reads each session's unwritten bytes through a function the
//! shell passes in). Outputs: [`Action`]s, drained with [`Core::poll_action`] after every
//! input. No clock, socket, channel or task is touched here.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bgp_fsm::{News, State};
use bgp_wire::capability::Capability;
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, Notification};
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use rib::{Attrs, BestChange, Explanation, LocalAddrs, PeerId, Rib, Signal};
use tracing::{info, warn};

use super::gr::GracefulRestart;
use super::peers::Peer;
use super::{ExplainedRoute, PeerChange, RouteEntry, RoutesPage, SpeakerError};
use crate::config::{Config, Diff, PeerSettings, Secret};
use crate::session::{Command, SessionEvent, SessionSpec};

/// Graceful restart time of a restarting speaker without `graceful_restart` configured.
pub(super) const DEFAULT_RESTART_TIME: u64 = 120;

/// What the core asks of its shell.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start a session task for `spec` (its peer is `spec.peer`); its events carry
    /// `generation`. It replaces any earlier session of that address.
    Spawn {
        /// Tells the session's events apart from those of earlier sessions of the peer.
        generation: u64,
        /// Where and how.
        spec: Box<SessionSpec>,
    },
    /// Hand `command` to the session of `peer` with `generation`. A
    /// [`Command::Send`] adds its bytes to the session's unwritten count first.
    Command {
        /// The peer's address.
        peer: IpAddr,
        /// The session's generation.
        generation: u64,
        /// What to do.
        command: Command,
    },
    /// End the session of `peer` with `generation`: send it `Command::Stop(cease)` if
    /// `cease` is given, then drop its handle (the task ends once its Cease is out).
    Stop {
        /// The peer's address.
        peer: IpAddr,
        /// The session's generation.
        generation: u64,
        /// The Cease to send; `None` for a session that is down already.
        cease: Option<Notification>,
    },
    /// Set (`Some`) or remove (`None`) the TCP-MD5 key of `target` on every listener of
    /// its family: a peer's address, or with `range` a dynamic neighbour range. A failure
    /// to set a peer's key goes back through [`Core::handle_key_error`].
    ListenerKey {
        /// The address (`/32`, `/128`) or the range.
        target: IpNet,
        /// `target` is a dynamic neighbour range.
        range: bool,
        /// The key.
        key: Option<Secret>,
    },
    /// A best path changed, for subscribers (a data plane).
    BestChange(BestChange),
}

/// The speaker's state machine.
pub(crate) struct Core {
    pub(super) config: Config,
    pub(super) rib: Rib,
    pub(super) peers: HashMap<IpAddr, Peer>,
    pub(super) by_id: HashMap<PeerId, IpAddr>,
    /// The generation of the last session started: each session's events carry its own.
    pub(super) generations: u64,
    pub(super) gr: GracefulRestart,
    pub(super) actions: VecDeque<Action>,
}

fn track_best(mut c: rib::RibConfig) -> rib::RibConfig {
    // A node agent may subscribe at any time; the change set costs a bit per prefix.
    c.track_best_changes = true;
    c
}

impl Core {
    /// A core with every configured peer added (their sessions to be spawned) and every
    /// `[[route]]` originated. `restarting`: see
    /// [`Speaker::start_restarting`](super::Speaker::start_restarting).
    pub(crate) fn new(config: Config, now: Instant, restarting: bool) -> Self {
        let deferral = restarting.then(|| {
            let wait = Duration::from_secs(
                config
                    .speaker
                    .graceful_restart
                    .map_or(DEFAULT_RESTART_TIME, u64::from),
            );
            info!(
                seconds = wait.as_secs(),
                "restarting gracefully: route selection deferred"
            );
            now + wait
        });
        let mut core = Self {
            rib: Rib::new(track_best(config.rib_config())),
            config,
            peers: HashMap::new(),
            by_id: HashMap::new(),
            generations: 0,
            gr: GracefulRestart::new(deferral),
            actions: VecDeque::new(),
        };
        core.range_keys(true);
        let peers: Vec<PeerSettings> = core.config.peers.values().cloned().collect();
        for p in peers {
            core.insert_peer(now, p, false);
        }
        for r in &core.config.routes {
            core.rib.originate(r.prefix, r.attrs.clone());
        }
        core
    }

    /// The next thing for the shell to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Route selection is deferred (we restart, RFC 4724 §4.1).
    pub(crate) fn deferring(&self) -> bool {
        self.gr.deferring()
    }

    /// The earliest deadline, for [`Core::handle_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.gr.poll_timeout()
    }

    /// Handles every deadline that passed by `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let expired = self.gr.handle_timeout(now);
        if expired.deferral {
            info!("graceful restart time over: sending routes");
        }
        for addr in expired.stale {
            if let Some(p) = self.peers.get(&addr)
                && p.session.state != State::Established
            {
                info!(peer = %addr, "graceful restart time over: stale routes removed");
                self.rib.stale_timer_expired(p.id);
            }
        }
    }

    /// The listener could not take the TCP-MD5 key of the peer at `address`: its
    /// `last_error` says so until its session reports something newer.
    pub(crate) fn handle_key_error(&mut self, address: IpAddr, error: String) {
        if let Some(p) = self.peers.get_mut(&address) {
            p.history.last_error = Some(error);
            p.history.last_down = None;
        }
    }

    /// A listener accepted a connection from `from`. Returns the generation of the
    /// session that takes it: a configured peer's, or a new dynamic neighbour's (whose
    /// [`Action::Spawn`] comes first); `None` when it is refused.
    pub(crate) fn handle_inbound(&mut self, now: Instant, from: SocketAddr) -> Option<u64> {
        let addr = from.ip();
        if !self.peers.contains_key(&addr) {
            let Some(range) = self.config.dynamic_range(addr) else {
                warn!(%from, "refused connection: not a configured peer");
                return None;
            };
            let in_range = self
                .peers
                .values()
                .filter(|p| p.dynamic && range.prefix.contains(&p.address()))
                .count();
            if range.limit.is_some_and(|l| in_range >= l as usize) {
                warn!(%from, range = %range.prefix, "refused connection: dynamic neighbour limit reached");
                return None;
            }
            let settings = range.peer(addr);
            self.insert_peer(now, settings, true);
        }
        self.peers.get(&addr).map(|p| p.generation)
    }

    /// Adds a peer; fails if the address is taken.
    pub(crate) fn add_peer(
        &mut self,
        now: Instant,
        settings: PeerSettings,
    ) -> Result<(), SpeakerError> {
        if self.peers.contains_key(&settings.address) {
            return Err(SpeakerError::PeerExists(settings.address));
        }
        self.insert_peer(now, settings, false);
        Ok(())
    }

    /// Adds or changes a peer; see [`Speaker::set_peer`](super::Speaker::set_peer).
    pub(crate) fn set_peer(&mut self, now: Instant, settings: PeerSettings) -> PeerChange {
        let why = match self.peers.get(&settings.address) {
            None => {
                self.insert_peer(now, settings, false);
                return PeerChange::Added;
            }
            Some(old) if old.settings == settings && !old.dynamic => return PeerChange::Unchanged,
            Some(old) if old.dynamic => Some("a dynamic neighbour is now configured"),
            Some(old) => old.settings.reset_key(&settings),
        };
        self.change_peer(now, settings, why)
    }

    /// Changes a configured peer: a new session when `why` names the key that needs one,
    /// else the new policies on the running session ([`Core::reconfigure`]).
    fn change_peer(
        &mut self,
        now: Instant,
        settings: PeerSettings,
        why: Option<&'static str>,
    ) -> PeerChange {
        let address = settings.address;
        let reset = match why {
            Some(key) => Some(key),
            None => self.reconfigure(address, &settings),
        };
        let Some(key) = reset else {
            return PeerChange::Reconfigured;
        };
        info!(peer = %address, key, "configuration change needs a new session: Cease (Other Configuration Change)");
        self.drop_peer(address, subcode::cease::OTHER_CONFIG_CHANGE);
        self.insert_peer(now, settings, false);
        PeerChange::Changed
    }

    /// Applies a change of policy only to the running session: export at once (the RIB
    /// moves the peer to its new update group and sends the difference), import by a
    /// ROUTE-REFRESH (RFC 2918) to an established peer, which sends its routes again
    /// through the new policy. Returns the reason for a new session when there must be one
    /// after all: an established peer that did not negotiate ROUTE-REFRESH and has a new
    /// import policy (the RIB keeps only the routes as imported, BIRD restarts such a
    /// session too).
    fn reconfigure(&mut self, address: IpAddr, settings: &PeerSettings) -> Option<&'static str> {
        let p = self.peers.get_mut(&address)?;
        let done = match self.rib.reconfigure(p.id, settings.rib_config()) {
            Ok(done) => done,
            Err(rib::NeedsReset(field)) => return Some(field),
        };
        if done.import
            && let Some(ctx) = p.session.ctx
        {
            if !p.session.route_refresh {
                return Some("import (the peer cannot ROUTE-REFRESH)");
            }
            info!(peer = %address, "import policy changed: ROUTE-REFRESH sent");
            self.actions.push_back(Action::Command {
                peer: address,
                generation: p.generation,
                command: Command::RouteRefresh(ctx.families.iter().collect()),
            });
        }
        p.settings = settings.clone();
        info!(peer = %address, export = done.export, import = done.import, "peer reconfigured, session kept");
        None
    }

    /// Removes a peer (Cease, Peer De-configured); returns whether it existed.
    pub(crate) fn remove_peer(&mut self, address: IpAddr) -> bool {
        self.drop_peer(address, subcode::cease::PEER_DECONFIGURED)
    }

    /// Originates `prefix` with `attrs`.
    pub(crate) fn originate(&mut self, prefix: IpNet, attrs: Attrs) {
        self.rib.originate(prefix, attrs);
    }

    /// Stops originating `prefix`.
    pub(crate) fn withdraw(&mut self, prefix: IpNet) {
        self.rib.withdraw_local(prefix);
    }

    /// Applies a new configuration by its difference to the current one: removed peers
    /// get a Cease (Peer De-configured); changed peers keep their sessions when only
    /// policy changed ([`Core::change_peer`]), else get a Cease (Other Configuration
    /// Change) and a new session, as every peer does when `[speaker]` changes the AS or
    /// the router ID. New `listen` addresses get the peers' TCP-MD5 keys (the shell
    /// binds them before).
    pub(crate) fn reload(&mut self, now: Instant, new: Config) -> Diff {
        let diff = Config::diff(&self.config, &new);
        let speaker_reset = self.config.speaker.reset_key(&new.speaker);
        if let Some(key) = self.config.speaker.rib_key(&new.speaker) {
            warn!(key, "[speaker] {key} changes take effect at the next start");
        }
        for a in &diff.removed {
            self.drop_peer(*a, subcode::cease::PEER_DECONFIGURED);
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
        let listen_changed = self.config.speaker.listen != new.speaker.listen;
        let old = std::mem::replace(&mut self.config, new);
        if ranges_changed || listen_changed {
            self.range_keys(true);
        }
        if listen_changed {
            self.listener_keys();
        }
        for a in &diff.added {
            if let Some(p) = self.config.peers.get(a).cloned() {
                self.insert_peer(now, p, false);
            }
        }
        let mut reset = 0;
        let again = if speaker_reset.is_some() {
            &diff.unchanged[..]
        } else {
            &[]
        };
        for a in diff.changed.iter().chain(again) {
            let (Some(o), Some(p)) = (old.peers.get(a), self.config.peers.get(a).cloned()) else {
                continue;
            };
            let why = speaker_reset.or_else(|| o.reset_key(&p));
            if self.change_peer(now, p, why) == PeerChange::Changed {
                reset += 1;
            }
        }
        info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            reset,
            unchanged = diff.unchanged.len(),
            "configuration reloaded"
        );
        diff
    }

    /// The paths of `prefix`, best first.
    pub(crate) fn route(&self, prefix: &IpNet) -> Option<Explanation> {
        self.rib.explain(prefix)
    }

    /// [`Core::route`] with each path's source peer address.
    pub(crate) fn explain(&self, prefix: &IpNet) -> Option<ExplainedRoute> {
        self.rib.explain(prefix).map(|explanation| ExplainedRoute {
            from: explanation
                .paths
                .iter()
                .map(|p| self.source(p.peer))
                .collect(),
            explanation,
        })
    }

    /// A page of best routes.
    pub(crate) fn routes(&self, offset: usize, limit: usize) -> RoutesPage {
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
        RoutesPage { routes, more }
    }

    /// Ceases every peer (Administrative Shutdown) and forgets it.
    pub(crate) fn shutdown(&mut self) {
        let cease = Notification::cease_with_communication(
            subcode::cease::ADMIN_SHUTDOWN,
            "rr-daemon shutting down",
        );
        for (peer, p) in self.peers.drain() {
            self.actions.push_back(Action::Stop {
                peer,
                generation: p.generation,
                cease: Some(cease.clone()),
            });
        }
    }

    /// The address of the peer behind `id`; `None` for local routes (and for a peer
    /// being removed).
    pub(super) fn source(&self, id: PeerId) -> Option<IpAddr> {
        self.by_id.get(&id).copied()
    }

    fn insert_peer(&mut self, now: Instant, settings: PeerSettings, dynamic: bool) -> PeerId {
        if self.peers.contains_key(&settings.address) {
            // A live dynamic neighbour now configured, or a changed peer: the old session,
            // its routes and its group membership go first.
            self.drop_peer(settings.address, subcode::cease::OTHER_CONFIG_CHANGE);
        }
        let id = self.rib.add_peer(settings.rib_config());
        let mut spec = settings.session_spec(&self.config.speaker);
        if self.gr.deferring() {
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
        if !dynamic && let Some(key) = &settings.password {
            self.actions.push_back(Action::ListenerKey {
                target: settings.address.into(),
                range: false,
                key: Some(key.clone()),
            });
        }
        self.generations += 1;
        let generation = self.generations;
        self.actions.push_back(Action::Spawn {
            generation,
            spec: Box::new(spec),
        });
        info!(peer = %settings.address, asn = settings.asn, dynamic, "peer added");
        self.by_id.insert(id, settings.address);
        self.peers.insert(
            settings.address,
            Peer::new(settings, id, generation, dynamic, now),
        );
        id
    }

    /// Removes a peer with a Cease (subcode `why`), its routes and group membership.
    fn drop_peer(&mut self, address: IpAddr, why: u8) -> bool {
        let Some(p) = self.peers.remove(&address) else {
            return false;
        };
        let cease = Notification::new(ErrorCode::CEASE, why);
        self.actions.push_back(Action::Stop {
            peer: address,
            generation: p.generation,
            cease: Some(cease),
        });
        if !p.dynamic && p.settings.password.is_some() {
            self.actions.push_back(Action::ListenerKey {
                target: address.into(),
                range: false,
                key: None,
            });
        }
        self.forget(&p);
        info!(peer = %address, "peer removed");
        true
    }

    /// Takes a peer (already out of `peers`) out of the RIB and graceful restart.
    fn forget(&mut self, p: &Peer) {
        self.rib.peer_down(p.id, false);
        self.rib.remove_peer(p.id);
        self.by_id.remove(&p.id);
        self.gr.forget(p.address());
    }

    /// Sets (`on`) or removes the listener keys of every dynamic neighbour range whose
    /// peers have a password (`TCP_MD5SIG_EXT` with a prefix).
    fn range_keys(&mut self, on: bool) {
        for d in &self.config.dynamic_neighbors {
            if let Some(key) = &d.template.password {
                self.actions.push_back(Action::ListenerKey {
                    target: d.prefix,
                    range: true,
                    key: on.then(|| key.clone()),
                });
            }
        }
    }

    /// Sets the TCP-MD5 key of every configured peer that has one on the listeners
    /// again (new listeners have none).
    fn listener_keys(&mut self) {
        for p in self.peers.values().filter(|p| !p.dynamic) {
            if let Some(key) = &p.settings.password {
                self.actions.push_back(Action::ListenerKey {
                    target: p.address().into(),
                    range: false,
                    key: Some(key.clone()),
                });
            }
        }
    }

    fn command(&mut self, peer: IpAddr, generation: u64, command: Command) {
        self.actions.push_back(Action::Command {
            peer,
            generation,
            command,
        });
    }

    /// Handles one event of a session. Events of a session that was replaced or removed
    /// meanwhile (another generation) are dropped.
    pub(crate) fn handle_event(&mut self, now: Instant, e: SessionEvent) {
        let local_as = self.config.speaker.asn;
        let Some(p) = self
            .peers
            .get_mut(&e.peer)
            .filter(|p| p.generation == e.generation)
        else {
            return;
        };
        let (id, generation) = (p.id, p.generation);
        if p.dynamic
            && matches!(
                e.news,
                News::StateChanged {
                    to: State::Idle,
                    ..
                }
            )
        {
            // A dynamic neighbour exists while its session does (BIRD does the same).
            if let Some(p) = self.peers.remove(&e.peer) {
                self.actions.push_back(Action::Stop {
                    peer: e.peer,
                    generation,
                    cease: None,
                });
                self.forget(&p);
                info!(peer = %e.peer, "dynamic neighbour removed");
            }
            return;
        }
        match e.news {
            News::StateChanged { to, .. } => p.set_state(to, now),
            News::Established {
                negotiated,
                peer_open,
                ..
            } => {
                p.session.state = State::Established;
                p.session.established_at = Some(now);
                p.session.ctx = Some(negotiated.ctx);
                p.session.route_refresh = negotiated.route_refresh;
                p.history.last_error = None;
                p.counters = Default::default();
                self.gr.on_established(e.peer, negotiated.ctx.families);
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
            News::Down { reason, graceful } => {
                p.record_down(&reason, local_as);
                p.session.established_at = None;
                p.session.ctx = None;
                let graceful = graceful && p.settings.graceful_restart.is_some();
                let restart = Duration::from_secs(p.settings.graceful_restart.map_or(0, u64::from));
                self.rib.peer_down(id, graceful);
                self.gr.on_down(e.peer, graceful, restart, now);
            }
            News::Failed(reason) => p.record_down(&reason, local_as),
            News::Update(frame) => {
                let Some(ctx) = p.session.ctx else { return };
                p.counters.updates_received += 1;
                let view = UpdateView::parse(frame.body(), &ctx);
                // The RIB decides what RFC 7606 asks for; here it is only carried out.
                let applied = self.rib.apply_update(id, &view);
                if let Some(Signal::SessionReset(n)) = applied.signal {
                    warn!(peer = %e.peer, notification = %n, treatment = %view.treatment(), issues = ?view.issues(), "malformed UPDATE: resetting the session");
                    self.command(e.peer, generation, Command::UpdateError(n));
                    return;
                }
                if view.treatment() != Treatment::Normal {
                    warn!(peer = %e.peer, treatment = %view.treatment(), issues = ?view.issues(), "malformed UPDATE");
                }
                p.counters.prefixes_received += applied.announced as u64;
                if let Some(f) = applied.end_of_rib
                    && self.gr.on_end_of_rib(e.peer, f)
                {
                    info!(peer = %e.peer, "graceful restart over: End-of-RIB received");
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
                        let c = Command::MaxPrefixExceeded(data.freeze());
                        self.command(e.peer, generation, c);
                    }
                }
            }
            News::RouteRefresh(rr) => {
                // RFC 2918 / RFC 7313: a request (subtype 0) is answered with the whole
                // Adj-RIB-Out and End-of-RIB; BoRR/EoRR from the peer need nothing of us.
                if rr.subtype == bgp_wire::route_refresh::RefreshSubtype::NORMAL {
                    info!(peer = %e.peer, afi = %rr.afi, safi = %rr.safi, "ROUTE-REFRESH: sending the table again");
                    self.rib.refresh(id);
                }
            }
        }
    }
}
