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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bgp_fsm::{News, State};
use bgp_wire::capability::Capability;
use bgp_wire::notification::subcode;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, Family, FamilySet, Frame, Notification};
use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use rib::{Attrs, BestChange, Explanation, LocalAddrs, PeerId, Rib, Signal};
use tracing::{info, warn};

use super::gr::{GracefulRestart, Reopened};
use super::peers::Peer;
use super::why::{Expected, Md5Counters, Md5Watch, Reason};
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
    /// Tell BMP collectors ([`crate::bmp`]): the one with id `to`, or every attached one.
    Monitor {
        /// The collector, or `None` for all.
        to: Option<u64>,
        /// What to tell.
        event: crate::bmp::Event,
    },
    /// Start or change (`Some`) or end (`None`) the BFD session of `peer`.
    Bfd {
        /// The peer's address.
        peer: IpAddr,
        /// The session wanted.
        spec: Option<Box<crate::bfd::Spec>>,
    },
}

/// The speaker's state machine.
pub(crate) struct Core {
    pub(super) config: Config,
    pub(super) rib: Rib,
    /// Boxed: a [`Peer`] is about 1 KiB, and a map keeps room for up to twice its
    /// entries, empty slots as large as full ones; a slot is then a pointer.
    pub(super) peers: HashMap<IpAddr, Box<Peer>>,
    pub(super) by_id: HashMap<PeerId, IpAddr>,
    /// The generation of the last session started: each session's events carry its own.
    pub(super) generations: u64,
    pub(super) gr: GracefulRestart,
    /// Peers held down after crossing their max-prefix limit, until when. By address, so
    /// that a dynamic neighbour is refused too.
    pub(super) held_down: HashMap<IpAddr, Instant>,
    pub(super) actions: VecDeque<Action>,
    /// The kernel's TCP-MD5 drop counters as the shell last read them.
    pub(super) md5: Md5Watch,
    /// Routes originated at run time (`ctl announce`, [`Core::announce`]): they outlive
    /// reloads and win over a `[[route]]` of the same prefix while they exist.
    pub(super) runtime_routes: HashMap<IpNet, Attrs>,
    /// BMP: Peer Ups kept, collectors attached.
    pub(super) bmp: super::monitor::Monitor,
    /// UPDATE bytes handed to sessions since every peer's unwritten output was last
    /// checked against the bounds (see `Core::flush`).
    pub(super) handed_since_scan: usize,
    /// When that check last ran.
    pub(super) last_scan: Option<Instant>,
    /// Peers that have had a session Established in this run, so that the routes a helper
    /// among them keeps of ours are of this run and their forwarding state is kept: the
    /// OPENs of their later sessions (a flap, a reset for a configuration change, their
    /// restart) set every Forwarding State bit ([`Core::insert_peer`]). Kept across a
    /// reset for a configuration change; forgotten when the peer is removed.
    pub(super) forwarding_kept: HashSet<IpAddr>,
    /// The previous session of a peer reset for a configuration change, by address: its
    /// routes stay in the RIB, stale, under its old RIB peer until the new session's
    /// End-of-RIB replaces them, its new OPEN keeps no forwarding state, or `until`
    /// (RFC 8538 §4: the speaker that sends the NOTIFICATION keeps the peer's routes as
    /// a receiving speaker does, RFC 4724 §4.2). The kernel keeps them meanwhile.
    pub(super) stale_sessions: HashMap<IpAddr, StaleSession>,
}

/// See [`Core::stale_sessions`].
#[derive(Clone, Copy, Debug)]
pub(super) struct StaleSession {
    /// The RIB peer of the old session.
    id: PeerId,
    /// When whatever is left goes: the restart time (the smaller of ours and the peer's).
    until: Instant,
}

/// Long-lived graceful restart for `p` once its restart time is over (RFC 9494): the
/// families both sides advertised it for, and for how long (the smallest of the peer's
/// long-lived stale times for them and ours).
fn long_lived(p: &Peer) -> (Duration, FamilySet) {
    let Some(ours) = p.settings.long_lived_stale_time else {
        return (Duration::ZERO, FamilySet::EMPTY);
    };
    let mut families = FamilySet::EMPTY;
    let mut time = ours;
    for &(f, theirs) in &p.session.peer_llgr {
        if theirs > 0 {
            families.insert(f);
            time = time.min(theirs);
        }
    }
    (Duration::from_secs(time.into()), families)
}

/// `cease` as RFC 8538 §3 wants it where both sides sent the N bit and the peer must
/// drop our routes (Cease subcodes 1 to 4, §5): a Hard Reset whose data is the code and
/// subcode of `cease`, then its data. Without the N bit, `cease` as it is.
pub(super) fn hard_reset(cease: Notification, n_bit: bool) -> Notification {
    if !n_bit {
        return cease;
    }
    let mut data = BytesMut::with_capacity(2 + cease.data.len());
    data.put_u8(cease.code.0);
    data.put_u8(cease.subcode);
    data.put_slice(&cease.data);
    Notification::with_data(ErrorCode::CEASE, subcode::cease::HARD_RESET, data.freeze())
}

fn track_best(mut c: rib::RibConfig) -> rib::RibConfig {
    // A node agent may subscribe at any time; the change set costs a bit per prefix.
    c.track_best_changes = true;
    c
}

impl Core {
    /// Gives back the peer tables' slots once most of their peers are gone (a wave of
    /// dynamic neighbours): see [`super::shell::shrink`].
    pub(super) fn shrink_tables(&mut self) {
        super::shell::shrink(&mut self.peers);
        super::shell::shrink(&mut self.by_id);
        super::shell::shrink(&mut self.held_down);
    }

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
            held_down: HashMap::new(),
            actions: VecDeque::new(),
            md5: Md5Watch::default(),
            runtime_routes: HashMap::new(),
            bmp: Default::default(),
            handed_since_scan: 0,
            last_scan: None,
            forwarding_kept: HashSet::new(),
            stale_sessions: HashMap::new(),
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

    /// Our restart's recovery is not over: selection is deferred, or the End-of-RIB of a
    /// peer that negotiated graceful restart is still awaited, within the restart time.
    pub(crate) fn recovering(&self) -> bool {
        self.gr.recovering()
    }

    /// The earliest deadline, for [`Core::handle_timeout`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let held = self.held_down.values().min().copied();
        let stale = self.stale_sessions.values().map(|s| s.until).min();
        self.gr
            .poll_timeout()
            .into_iter()
            .chain(held)
            .chain(stale)
            .min()
    }

    /// Handles every deadline that passed by `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let over: Vec<IpAddr> = self
            .stale_sessions
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(a, _)| *a)
            .collect();
        for a in over {
            info!(peer = %a, "the previous session's routes, still stale at the restart time, removed");
            self.drop_stale_session(a);
        }
        let expired = self.gr.handle_timeout(now);
        if expired.selection {
            info!("graceful restart time over: sending routes");
            self.end_restart();
        }
        for (addr, families) in expired.long_lived {
            let Some(p) = self.peers.get(&addr) else {
                continue;
            };
            let kept = self.rib.llgr_begin(p.id, families);
            info!(peer = %addr, kept, "graceful restart time over: routes kept as long-lived stale (LLGR_STALE, RFC 9494)");
        }
        for addr in expired.stale {
            let Some(p) = self.peers.get(&addr) else {
                continue;
            };
            let what = if p.session.state == State::Established {
                "End-of-RIB not received within the stale time"
            } else {
                "graceful restart time over"
            };
            info!(peer = %addr, stale = self.rib.stale_count(p.id), "{what}: stale routes removed");
            self.rib.stale_timer_expired(p.id);
            if p.dynamic && p.session.state != State::Established {
                // A dynamic neighbour outlives its session only while we help it.
                self.remove_dynamic(addr);
            }
        }
        let over: Vec<IpAddr> = self
            .held_down
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(a, _)| *a)
            .collect();
        for addr in over {
            self.held_down.remove(&addr);
            if let Some(p) = self.peers.get(&addr).filter(|p| p.admin_down.is_none()) {
                info!(peer = %addr, "max-prefix hold-down over: the session starts again");
                let generation = p.generation;
                self.command(addr, generation, Command::Start);
            }
        }
    }

    /// Removes a dynamic neighbour whose session is down.
    fn remove_dynamic(&mut self, addr: IpAddr) {
        if let Some(p) = self.peers.remove(&addr) {
            self.actions.push_back(Action::Stop {
                peer: addr,
                generation: p.generation,
                cease: None,
            });
            self.forget(&p, None);
            self.forwarding_kept.remove(&addr);
            info!(peer = %addr, "dynamic neighbour removed");
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

    /// The shell read the kernel's TCP-MD5 drop counters (`/proc/net/netstat`) at `now`:
    /// a rise while a peer is down makes its `down_reason` `tcp-md5-mismatch-suspected`.
    pub(crate) fn observe_md5(&mut self, now: Instant, counters: Md5Counters) {
        self.md5.observe(now, counters);
    }

    /// The session of the peer at `address` is about to go down for `reason` (BFD Down,
    /// say): its next failure is reported under it, with `message`. Whoever calls this
    /// still has to take the session down.
    // The BFD shell's hook: BFD Down arrives there, not as a session event.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn expect_down(&mut self, address: IpAddr, reason: Reason, message: String) {
        if let Some(p) = self.peers.get_mut(&address) {
            p.why.expected = Some(Expected { reason, message });
        }
    }

    /// A listener accepted a connection from `from`. Returns the generation of the
    /// session that takes it: a configured peer's, or a new dynamic neighbour's (whose
    /// [`Action::Spawn`] comes first); `None` when it is refused.
    ///
    /// `interface` is the interface a link-local source came in on: a peer configured
    /// on another interface (`fe80::2%eth0`) refuses it, and a `[[dynamic_neighbors]]`
    /// range bound to an interface takes only its own.
    pub(crate) fn handle_inbound(
        &mut self,
        now: Instant,
        from: SocketAddr,
        interface: Option<&str>,
    ) -> Option<u64> {
        let addr = from.ip();
        if let Some(until) = self.held_down.get(&addr) {
            let left = until.saturating_duration_since(now).as_secs();
            warn!(%from, seconds_left = left, "refused connection: held down after crossing its max-prefix limit");
            return None;
        }
        if self
            .peers
            .get(&addr)
            .is_some_and(|p| p.admin_down.is_some())
        {
            warn!(%from, "refused connection: the peer is disabled (ctl enable, or enabled = true)");
            return None;
        }
        if let Some(p) = self.peers.get(&addr)
            && let Some(want) = &p.settings.interface
            && interface != Some(want.as_str())
        {
            warn!(%from, interface, want, "refused connection: the peer is configured on another interface");
            return None;
        }
        if !self.peers.contains_key(&addr) {
            let Some(range) = self.config.dynamic_range_on(addr, interface) else {
                warn!(%from, "refused connection: not a configured peer");
                return None;
            };
            let in_range = self
                .peers
                .values()
                .filter(|p| p.dynamic && range.prefix.contains(&p.address()))
                .count();
            if in_range >= range.limit as usize {
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
        let was_enabled = self.peers.get(&address).map(|p| p.settings.enabled);
        let enabled = settings.enabled;
        let reset = match why {
            Some(key) => Some(key),
            None => self.reconfigure(address, &settings),
        };
        let Some(key) = reset else {
            if was_enabled.is_some_and(|was| was != enabled) {
                // `enabled` alone: the session stops or starts, nothing else changes.
                let _ = self.set_peer_enabled(
                    now,
                    address,
                    enabled,
                    Some("disabled in the configuration"),
                );
            }
            return PeerChange::Reconfigured;
        };
        info!(peer = %address, key, "configuration change needs a new session: Cease (Other Configuration Change)");
        // RFC 8538 §4 (and RFC 4724 §4.2 for a peer without the N bit, whose connection
        // is closed without a NOTIFICATION, see `Core::drop_peer`): where both sides do
        // graceful restart, the peer's routes stay, stale, until the new session's
        // End-of-RIB, bounded by the restart time.
        let keep = self
            .peers
            .get(&address)
            .filter(|p| Self::keeps_ours(true, p) && settings.graceful_restart.is_some())
            .map(|p| {
                let ours = p.settings.graceful_restart.unwrap_or(0);
                let theirs = p.session.peer_restart_time.unwrap_or(0);
                now + Duration::from_secs(ours.min(theirs).into())
            });
        self.drop_peer_keeping(address, subcode::cease::OTHER_CONFIG_CHANGE, keep);
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
        let bfd_changed = p.settings.bfd != settings.bfd;
        if p.settings.passive != settings.passive {
            // Who connects next time; the session and its connections stay.
            self.actions.push_back(Action::Command {
                peer: address,
                generation: p.generation,
                command: Command::SetPassive(settings.passive),
            });
        }
        p.settings = settings.clone();
        info!(peer = %address, export = done.export, import = done.import, bfd = bfd_changed, passive = settings.passive, "peer reconfigured, session kept");
        if bfd_changed {
            self.bfd_reconfigured(address);
        }
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
        // A prefix also announced at run time keeps the run-time route. Looked up by
        // prefix: a file of 100,000 routes is compared in milliseconds, not minutes.
        let was: HashMap<IpNet, &Attrs> = self
            .config
            .routes
            .iter()
            .map(|r| (r.prefix, &r.attrs))
            .collect();
        let is: HashSet<IpNet> = new.routes.iter().map(|r| r.prefix).collect();
        for r in &self.config.routes {
            if !is.contains(&r.prefix) && !self.runtime_routes.contains_key(&r.prefix) {
                self.rib.withdraw_local(r.prefix);
            }
        }
        for r in &new.routes {
            if was.get(&r.prefix) != Some(&&r.attrs) && !self.runtime_routes.contains_key(&r.prefix)
            {
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

    /// A page of best routes in prefix order (address family, then address, then
    /// length, as BIRD's `show route` lists them): those after `after` (all with `None`),
    /// skipping the first `offset` of those. The whole Loc-RIB is walked once, keeping the
    /// `offset + limit + 1` first prefixes in a bounded heap, so a page costs
    /// O(routes × log(offset + limit)) and never sorts the table.
    pub(crate) fn routes(&self, after: Option<IpNet>, offset: usize, limit: usize) -> RoutesPage {
        let keep = offset.saturating_add(limit).saturating_add(1);
        let mut first = std::collections::BinaryHeap::with_capacity(keep.min(1 << 16));
        let after = after.map(|a| route_order(&a));
        for (prefix, best) in self.rib.loc_rib() {
            let key = route_order(&prefix);
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            if first.len() < keep {
                first.push(Ordered(key, prefix, best));
            } else if first.peek().is_some_and(|top: &Ordered| key < top.0) {
                first.pop();
                first.push(Ordered(key, prefix, best));
            }
        }
        let mut routes: Vec<RouteEntry> = first
            .into_sorted_vec()
            .into_iter()
            .skip(offset)
            .map(|Ordered(_, prefix, best)| RouteEntry {
                prefix,
                from: self.source(best.peer),
                best,
            })
            .collect();
        let more = routes.len() > limit;
        routes.truncate(limit);
        RoutesPage { routes, more }
    }

    /// Stops every session and forgets its peer. With `[speaker] graceful_stop` (the
    /// default) a stop is a planned restart: a peer whose session negotiated graceful
    /// restart both ways sees its connection close without a NOTIFICATION and keeps our
    /// routes as stale for our restart time (RFC 4724 §4.2; a Cease would end that for
    /// peers without the N bit of RFC 8538, and RFC 8538 §5 wants an Administrative
    /// Shutdown sent as a Hard Reset). Started again with `--graceful-restart`, we come
    /// back with the Forwarding State bits set and the peers replace the stale routes.
    /// Every other peer gets a Cease (Administrative Shutdown), inside a Hard Reset where
    /// both sides sent the N bit.
    pub(crate) fn shutdown(&mut self) {
        let graceful_stop = self.config.speaker.graceful_stop;
        let cease = Notification::cease_with_communication(
            subcode::cease::ADMIN_SHUTDOWN,
            "rr-daemon shutting down",
        );
        let (mut graceful, mut ceased) = (0usize, 0usize);
        // BMP: each collector hears how each session ends (below: a Cease, or a close
        // without a NOTIFICATION for a graceful stop, FSM event 2 ManualStop).
        let ends: Vec<(IpAddr, bool)> = self
            .peers
            .iter()
            .filter(|_| self.bmp_on())
            .map(|(a, p)| (*a, Self::keeps_ours(graceful_stop, p)))
            .collect();
        for (peer, keeps_ours) in ends {
            let n_bit = self.peers.get(&peer).is_some_and(|p| p.session.hard_reset);
            let (reason, data) = if keeps_ours {
                let event = Bytes::from_static(&[0, 2]);
                (crate::bmp::wire::down_reason::LOCAL_NO_NOTIFICATION, event)
            } else {
                let mut pdu = BytesMut::new();
                hard_reset(cease.clone(), n_bit).encode(&mut pdu);
                (
                    crate::bmp::wire::down_reason::LOCAL_NOTIFICATION,
                    pdu.freeze(),
                )
            };
            self.bmp_down(peer, reason, data);
        }
        for (peer, p) in self.peers.drain() {
            if p.bfd.is_some() {
                self.actions.push_back(Action::Bfd { peer, spec: None });
            }
            let keeps_ours = Self::keeps_ours(graceful_stop, &p);
            let cease = if keeps_ours {
                graceful += 1;
                self.actions.push_back(Action::Command {
                    peer,
                    generation: p.generation,
                    command: Command::Abandon,
                });
                None
            } else {
                ceased += 1;
                Some(hard_reset(cease.clone(), p.session.hard_reset))
            };
            self.actions.push_back(Action::Stop {
                peer,
                generation: p.generation,
                cease,
            });
        }
        info!(
            graceful,
            ceased,
            "stopping: sessions with graceful restart closed without a NOTIFICATION (the peers keep our routes until we are back), a Cease to the others"
        );
    }

    /// Whether a stop leaves `p` our routes as stale (see [`Core::shutdown`]).
    fn keeps_ours(graceful_stop: bool, p: &Peer) -> bool {
        graceful_stop
            && p.session.state == State::Established
            && p.settings.graceful_restart.is_some()
            && p.session.peer_restart_time.is_some()
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
        if dynamic && settings.hold_time > 0 {
            // A connection from a range holds a peer until its session ends: one that
            // never sends its OPEN gives it back after the hold time, not after the 4
            // minutes RFC 4271 §8.2.2 suggests for OpenSent.
            spec.fsm.timing.open_hold = Duration::from_secs(settings.hold_time.into());
        }
        // RFC 4724 §3, the bits of our graceful restart capability (and RFC 9494 §3 for the
        // long-lived one's F bits):
        // - Restart State (R): set only in the OPENs of a speaker that restarts
        //   (`Speaker::start_restarting`) until its routes are out (`Core::end_restart`),
        //   so that the peer does not wait for our End-of-RIB before its own (§4.1).
        // - Forwarding State (F): whether the forwarding state of the routes we sent the
        //   peer before was kept. Set while we restart (the kernel routes of a node persist
        //   across the restart; a reflector forwards nothing, so it has nothing to lose),
        //   and in every OPEN towards a peer that had our routes of this run: the speaker
        //   kept running, so a session reset by us (a configuration change), a flap or the
        //   peer's restart lose nothing, and a helper keeps our routes, stale, until our
        //   End-of-RIB instead of dropping them at once (§4.2; RFC 8538 §4 wants F set by
        //   both sides after a reset by a NOTIFICATION). FRR does this with
        //   `bgp graceful-restart preserve-fw-state`; BIRD sets F only while it recovers.
        //   Clear in the first OPENs of a fresh start: what a peer kept of a previous run
        //   may be gone from our kernel, so it must drop it.
        let restarting = self.gr.deferring();
        let forwarding = restarting || self.forwarding_kept.contains(&settings.address);
        if forwarding {
            for c in &mut spec.fsm.capabilities {
                match c {
                    Capability::GracefulRestart(gr) => {
                        gr.restart_state = restarting;
                        for f in &mut gr.families {
                            f.forwarding = true;
                        }
                    }
                    Capability::LongLivedGracefulRestart(families) => {
                        for f in families {
                            f.forwarding = true;
                        }
                    }
                    _ => {}
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
        let address = settings.address;
        let bfd = settings.bfd.clone();
        let source = settings.source_address;
        let enabled = settings.enabled;
        let mut peer = Peer::new(settings, id, generation, dynamic, now);
        if !enabled {
            // The session task starts stopped (`SessionSpec::admin_down`).
            let note = "disabled in the configuration (enabled = false)".to_owned();
            peer.why.expected = Some(Expected {
                reason: Reason::AdminDown,
                message: note.clone(),
            });
            peer.admin_down = Some(super::actions::AdminDown { since: now, note });
            info!(peer = %address, "peer disabled (enabled = false): no session until enabled");
        }
        self.peers.insert(address, Box::new(peer));
        if let Some(b) = bfd {
            self.actions.push_back(Action::Bfd {
                peer: address,
                spec: Some(Box::new(b.spec(source))),
            });
            if b.strict && !dynamic {
                self.hold_for_bfd(address);
            }
        }
        id
    }

    /// Removes a peer with a Cease (subcode `why`), its routes and group membership. For a
    /// configuration change (Other Configuration Change) the peer may keep our routes:
    /// see the comment on `silent` below.
    fn drop_peer(&mut self, address: IpAddr, why: u8) -> bool {
        self.drop_peer_keeping(address, why, None)
    }

    /// [`Core::drop_peer`]; with `keep`, the peer's routes stay, stale, until then
    /// ([`Core::stale_sessions`]).
    fn drop_peer_keeping(&mut self, address: IpAddr, why: u8, keep: Option<Instant>) -> bool {
        let Some(p) = self.peers.remove(&address) else {
            return false;
        };
        // RFC 8538 §5: a de-configured peer must drop our routes, not keep them stale.
        let purge = matches!(
            why,
            subcode::cease::MAX_PREFIXES
                | subcode::cease::ADMIN_SHUTDOWN
                | subcode::cease::PEER_DECONFIGURED
                | subcode::cease::ADMIN_RESET
        );
        if purge {
            // The peer drops our routes: a later session starts afresh; and we its.
            self.forwarding_kept.remove(&address);
            self.drop_stale_session(address);
        }
        // A new session for a configuration change, towards a peer that helps with
        // graceful restart but has no N bit (BIRD): the peer would take a Cease as the end
        // of the session and drop our routes at once (RFC 4724 §4.2 helps only after a
        // lost connection), so the connection is closed without a NOTIFICATION, as for a
        // planned restart (`Core::shutdown`). Our next OPEN sets the Forwarding State
        // bits (`Core::insert_peer`), and the peer keeps our routes until our End-of-RIB.
        // With the N bit, the Cease (not a Hard Reset) keeps them as well (RFC 8538 §4).
        let silent = why == subcode::cease::OTHER_CONFIG_CHANGE
            && Self::keeps_ours(true, &p)
            && !p.session.hard_reset;
        let cease = if silent {
            self.bmp_down(
                address,
                crate::bmp::wire::down_reason::LOCAL_NO_NOTIFICATION,
                Bytes::from_static(&[0, 2]),
            );
            self.actions.push_back(Action::Command {
                peer: address,
                generation: p.generation,
                command: Command::Abandon,
            });
            None
        } else {
            let cease = Notification::new(ErrorCode::CEASE, why);
            let cease = hard_reset(cease, purge && p.session.hard_reset);
            if why == subcode::cease::PEER_DECONFIGURED {
                self.bmp_down(
                    address,
                    crate::bmp::wire::down_reason::DECONFIGURED,
                    Bytes::new(),
                );
            } else {
                let mut pdu = BytesMut::new();
                cease.encode(&mut pdu);
                let reason = crate::bmp::wire::down_reason::LOCAL_NOTIFICATION;
                self.bmp_down(address, reason, pdu.freeze());
            }
            Some(cease)
        };
        self.actions.push_back(Action::Stop {
            peer: address,
            generation: p.generation,
            cease,
        });
        if !p.dynamic && p.settings.password.is_some() {
            self.actions.push_back(Action::ListenerKey {
                target: address.into(),
                range: false,
                key: None,
            });
        }
        self.forget(&p, keep);
        info!(peer = %address, without_notification = silent, routes_kept_stale = keep.is_some(), "peer removed");
        true
    }

    /// Removes the routes of `address`'s previous session still kept stale, if any.
    fn drop_stale_session(&mut self, address: IpAddr) {
        if let Some(old) = self.stale_sessions.remove(&address) {
            self.rib.remove_peer(old.id);
            self.by_id.remove(&old.id);
        }
    }

    /// The new session of `address` refreshed `families` (End-of-RIB), or keeps no
    /// forwarding state for them: the previous session's routes of those families that
    /// are still stale go, and the previous session with them once none is left.
    fn sweep_stale_session(&mut self, address: IpAddr, families: &[Family]) {
        let Some(old) = self.stale_sessions.get(&address).copied() else {
            return;
        };
        for f in families {
            self.rib.sweep_stale_family(old.id, *f);
        }
        if self.rib.stale_count(old.id) == 0 {
            info!(peer = %address, "the previous session's routes all replaced");
            self.drop_stale_session(address);
        }
    }

    /// Takes a peer (already out of `peers`) out of graceful restart and BFD, and out of
    /// the RIB; or, with `keep`, its routes left in the RIB, stale, until then
    /// ([`Core::stale_sessions`]).
    fn forget(&mut self, p: &Peer, keep: Option<Instant>) {
        if p.bfd.is_some() {
            self.actions.push_back(Action::Bfd {
                peer: p.address(),
                spec: None,
            });
        }
        self.gr.forget(p.address());
        if !p.dynamic {
            self.held_down.remove(&p.address());
        }
        match keep {
            Some(until) => {
                self.rib.peer_down(p.id, true);
                // `by_id` keeps the old RIB peer's address: its routes still name their peer.
                let old = self
                    .stale_sessions
                    .insert(p.address(), StaleSession { id: p.id, until });
                if let Some(old) = old {
                    self.rib.remove_peer(old.id);
                    self.by_id.remove(&old.id);
                }
            }
            None => {
                self.rib.peer_down(p.id, false);
                self.rib.remove_peer(p.id);
                self.by_id.remove(&p.id);
            }
        }
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

    pub(super) fn command(&mut self, peer: IpAddr, generation: u64, command: Command) {
        self.actions.push_back(Action::Command {
            peer,
            generation,
            command,
        });
    }

    /// A peer's BFD session changed state. From Up to Down, unless the peer took it down
    /// on purpose (AdminDown, RFC 5882 §3.2), the path is gone: the BGP session is reset
    /// at once with a Cease (BFD Down, RFC 9384), an automatic stop that counts for
    /// graceful restart as a hold timer expiry does (stale routes kept when both sides
    /// sent the N bit, RFC 8538), and restarts by itself. With `strict`, BGP is also held
    /// stopped until BFD is up again. A session that never came up changes nothing unless
    /// `strict`.
    pub(crate) fn handle_bfd(&mut self, n: crate::bfd::Notice) {
        use crate::bfd::State as Bfd;
        let Some(p) = self.peers.get_mut(&n.peer) else {
            return;
        };
        let (Some(view), Some(strict)) =
            (p.bfd.as_mut(), p.settings.bfd.as_ref().map(|b| b.strict))
        else {
            return;
        };
        view.state = n.state;
        let generation = p.generation;
        if n.state == Bfd::Up {
            if std::mem::take(&mut view.holding) && p.admin_down.is_none() {
                info!(peer = %n.peer, "BFD up: BGP session started (strict)");
                self.command(n.peer, generation, Command::Start);
            }
            return;
        }
        if n.from != Bfd::Up || n.remote == Bfd::AdminDown {
            return;
        }
        let bgp_up = matches!(
            p.session.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        warn!(peer = %n.peer, diag = n.diag.name(), bgp = %p.session.state, "BFD session down: BGP session reset");
        p.history.last_error = Some(format!("BFD session down: {}", n.diag.name()));
        p.why.expected = Some(Expected {
            reason: Reason::BfdDown,
            message: format!(
                "the BFD session to {} went down ({}): the path failed",
                n.peer,
                n.diag.name()
            ),
        });
        let hold = strict && !p.dynamic;
        if bgp_up {
            let cease = Notification::new(ErrorCode::CEASE, subcode::cease::BFD_DOWN);
            self.command(n.peer, generation, Command::Reset(cease));
        }
        if hold {
            self.hold_for_bfd(n.peer);
        }
    }

    /// `strict`: the peer's BGP session stays stopped until its BFD session is up.
    fn hold_for_bfd(&mut self, address: IpAddr) {
        let Some(p) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(view) = p.bfd.as_mut() else { return };
        if view.state == crate::bfd::State::Up || view.holding {
            return;
        }
        view.holding = true;
        p.why.expected = Some(Expected {
            reason: Reason::BfdDown,
            message: format!(
                "the BGP session to {address} waits for its BFD session to come up (strict)"
            ),
        });
        info!(peer = %address, "BGP session waits for BFD (strict)");
        let generation = p.generation;
        self.command(address, generation, Command::Stop(None));
    }

    /// The peer's `bfd` changed and its BGP session is kept: the BFD session is changed
    /// in place (new timers through a Poll Sequence), started or ended.
    fn bfd_reconfigured(&mut self, address: IpAddr) {
        let Some(p) = self.peers.get_mut(&address) else {
            return;
        };
        let (bfd, source, generation) = (
            p.settings.bfd.clone(),
            p.settings.source_address,
            p.generation,
        );
        let holding = p.bfd.is_some_and(|v| v.holding);
        let admin_down = p.admin_down.is_some();
        match bfd {
            Some(b) => {
                let state = p.bfd.map_or(crate::bfd::State::Down, |v| v.state);
                p.bfd = Some(super::peers::BfdView { state, holding });
                self.actions.push_back(Action::Bfd {
                    peer: address,
                    spec: Some(Box::new(b.spec(source))),
                });
                if b.strict && !p.dynamic {
                    self.hold_for_bfd(address);
                } else if holding {
                    let mut start = false;
                    if let Some(p) = self.peers.get_mut(&address)
                        && let Some(v) = p.bfd.as_mut()
                    {
                        v.holding = false;
                        start = p.admin_down.is_none();
                    }
                    if start {
                        self.command(address, generation, Command::Start);
                    }
                }
            }
            None => {
                p.bfd = None;
                self.actions.push_back(Action::Bfd {
                    peer: address,
                    spec: None,
                });
                if holding && !admin_down {
                    self.command(address, generation, Command::Start);
                }
            }
        }
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
            && !self.gr.helping(e.peer)
            && matches!(
                e.news,
                News::StateChanged {
                    to: State::Idle,
                    ..
                }
            )
        {
            // A dynamic neighbour exists while its session does (BIRD does the same), or
            // while we help it through a graceful restart: its session task waits for
            // the peer's next connection, which `handle_inbound` hands to it.
            self.remove_dynamic(e.peer);
            return;
        }
        p.why.next_try = e.next_try;
        match e.news {
            News::StateChanged { to, .. } => {
                p.set_state(to, now);
                p.why.open_sent |= to == State::OpenSent;
            }
            News::Established {
                mut negotiated,
                peer_open,
                ..
            } => {
                negotiated.ctx.policy = p.settings.update_policy(&negotiated.ctx);
                p.history.link = Some(Box::new(super::peers::Link::new(
                    &negotiated,
                    &peer_open,
                    &p.settings,
                    e.local,
                    e.remote,
                )));
                p.session.state = State::Established;
                p.session.established_at = Some(now);
                p.session.ctx = Some(negotiated.ctx);
                p.session.route_refresh = negotiated.route_refresh;
                let peer_gr = negotiated.peer_graceful_restart.as_ref();
                p.session.peer_restart_time = peer_gr.map(|g| g.restart_time);
                let peer_llgr = negotiated.peer_llgr.as_deref();
                p.session.peer_llgr = peer_llgr
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| Family::from_afi_safi(f.afi, f.safi).map(|x| (x, f.stale_time)))
                    .collect();
                p.session.hard_reset = peer_gr.is_some_and(|g| g.notification)
                    && p.settings.graceful_restart.is_some();
                p.history.last_error = None;
                p.why.up();
                p.counters = Default::default();
                if p.settings.graceful_restart.is_some() && self.forwarding_kept.insert(e.peer) {
                    // The peer has our routes of this run from now on: later OPENs of the
                    // session claim the forwarding state kept (see `Core::insert_peer`).
                    self.actions.push_back(Action::Command {
                        peer: e.peer,
                        generation: p.generation,
                        command: Command::KeepForwarding,
                    });
                }
                let stale_time = Duration::from_secs(p.settings.stale_time.into());
                let reopened = self.gr.on_established(
                    e.peer,
                    negotiated.ctx.families,
                    peer_gr,
                    peer_llgr,
                    stale_time,
                    now,
                );
                let local = e.local.map_or(LocalAddrs::default(), |a| match a.ip() {
                    // RFC 2545 §3: a global address, then the link-local one; a link
                    // with no global address of ours gets the link-local one alone.
                    IpAddr::V6(ll) if ll.is_unicast_link_local() => match e.local_global {
                        Some(global) => LocalAddrs {
                            v6: Some(global),
                            link_local: Some(ll),
                            ..LocalAddrs::default()
                        },
                        None => LocalAddrs::from(a.ip()),
                    },
                    ip => LocalAddrs::from(ip),
                });
                let session = rib::Session {
                    ctx: negotiated.ctx,
                    router_id: peer_open.bgp_id,
                    local,
                };
                self.rib.peer_up(id, session);
                self.bmp_up(
                    e.peer,
                    &negotiated.ctx,
                    &peer_open,
                    e.local,
                    e.opened.as_deref(),
                );
                if let Reopened::Sweep {
                    families,
                    help_over,
                } = reopened
                {
                    for f in families {
                        let n = self.rib.stale_count_of(id, f);
                        if n > 0 {
                            info!(peer = %e.peer, family = %f, stale = n, "graceful restart: the new OPEN keeps no forwarding state for the family: its stale routes removed");
                        }
                        self.rib.sweep_stale_family(id, f);
                    }
                    if help_over {
                        info!(peer = %e.peer, "graceful restart over: nothing left to wait for");
                    }
                }
                if self.stale_sessions.contains_key(&e.peer) {
                    // RFC 4724 §4.2 for the previous session's routes too: a family the
                    // new session lacks, or whose forwarding state the peer did not keep.
                    let mut kept = FamilySet::EMPTY;
                    for f in negotiated
                        .peer_graceful_restart
                        .iter()
                        .flat_map(|g| &g.families)
                    {
                        if let Some(family) = Family::from_afi_safi(f.afi, f.safi)
                            && f.forwarding
                            && negotiated.ctx.families.contains(family)
                        {
                            kept.insert(family);
                        }
                    }
                    let gone: Vec<Family> = Family::ALL
                        .into_iter()
                        .filter(|f| !kept.contains(*f))
                        .collect();
                    self.sweep_stale_session(e.peer, &gone);
                }
            }
            News::Down { reason, graceful } => {
                p.record_down(&reason, local_as, now);
                // The session left Established (a flap).
                p.history.flaps += 1;
                p.history.last_up = Some(now);
                p.why.went_down(now);
                p.why.failed(
                    now,
                    &reason,
                    e.connect_error.as_ref(),
                    &p.settings,
                    local_as,
                );
                p.session.established_at = None;
                p.session.ctx = None;
                p.session.hard_reset = false;
                let graceful = graceful
                    && p.settings.graceful_restart.is_some()
                    && !self.held_down.contains_key(&e.peer);
                // RFC 4724 §4.2: the restart time the peer advertised, capped by ours.
                let ours = p.settings.graceful_restart.unwrap_or(0);
                let theirs = p.session.peer_restart_time.unwrap_or(0);
                let restart = Duration::from_secs(ours.min(theirs).into());
                let long_lived = long_lived(p);
                let (bmp_reason, bmp_data) = super::monitor::reason_of(&reason);
                self.rib.peer_down(id, graceful);
                self.bmp_down(e.peer, bmp_reason, bmp_data);
                self.gr.on_down(e.peer, graceful, restart, long_lived, now);
            }
            News::Failed(reason) => {
                p.record_down(&reason, local_as, now);
                p.why.failed(
                    now,
                    &reason,
                    e.connect_error.as_ref(),
                    &p.settings,
                    local_as,
                );
            }
            News::Update(frame) => {
                for frame in std::iter::once(frame).chain(e.more_updates) {
                    self.handle_update(now, e.peer, generation, &frame);
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

    /// Handles one UPDATE of a session, as its own event would be: one that comes after
    /// its session was replaced or removed (another generation) is dropped.
    fn handle_update(&mut self, now: Instant, peer: IpAddr, generation: u64, frame: &Frame) {
        let Some(p) = self
            .peers
            .get_mut(&peer)
            .filter(|p| p.generation == generation)
        else {
            return;
        };
        let id = p.id;
        let Some(ctx) = p.session.ctx else { return };
        p.counters.updates_received += 1;
        let view = UpdateView::parse(frame.body(), &ctx);
        // The RIB decides what RFC 7606 asks for; here it is only carried out.
        let applied = self.rib.apply_update(id, &view);
        self.bmp_update(peer, id, frame, &view, &applied);
        if let Some(f) = applied.end_of_rib
            && self.stale_sessions.contains_key(&peer)
        {
            // The new session's table is complete: the previous one's go.
            self.sweep_stale_session(peer, &[f]);
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(Signal::SessionReset(n)) = applied.signal {
            warn!(peer = %peer, notification = %n, treatment = %view.treatment(), issues = %issues_text(view.issues()), "malformed UPDATE: resetting the session");
            self.command(peer, generation, Command::UpdateError(n));
            return;
        }
        if view.treatment() != Treatment::Normal {
            warn!(peer = %peer, treatment = %view.treatment(), issues = %issues_text(view.issues()), "malformed UPDATE");
        }
        p.counters.prefixes_received += applied.announced as u64;
        if applied.ignored_paths > 0 {
            warn!(peer = %peer, ignored = applied.ignored_paths, bound = rib::addpath::MAX_PATHS_PER_PEER, "ADD-PATH: paths beyond the bound per prefix ignored");
        }
        if let Some(f) = applied.end_of_rib
            && self.gr.on_end_of_rib(peer, f)
        {
            info!(peer = %peer, "graceful restart over: End-of-RIB received");
        }
        if let Some(Signal::MaxPrefixExceeded { limit, warn_only }) = applied.signal {
            let restart = p.settings.max_prefix_restart;
            warn!(peer = %peer, limit, warn_only, hold_down_s = restart, "maximum prefix count exceeded");
            if !warn_only {
                p.why.expected = Some(Expected {
                    reason: Reason::MaxPrefix,
                    message: format!(
                        "the peer sent more than {limit} prefixes, our max_prefix: \
                         we sent Cease / Maximum Number of Prefixes Reached"
                    ),
                });
                // RFC 4486 §4: AFI, SAFI and the limit. The family is not known
                // here; IPv4 unicast names the session's first family.
                let mut data = BytesMut::with_capacity(7);
                data.put_u16(1);
                data.put_u8(1);
                data.put_u32(limit);
                let cease = Notification::with_data(
                    ErrorCode::CEASE,
                    subcode::cease::MAX_PREFIXES,
                    data.freeze(),
                );
                // RFC 8538 §5: the peer drops our routes too (Hard Reset); ours
                // of it go with the session (a ManualStop is never graceful), and
                // it stays down for the restart time.
                let cease = hard_reset(cease, p.session.hard_reset);
                self.held_down
                    .insert(peer, now + Duration::from_secs(restart.into()));
                self.command(peer, generation, Command::Stop(Some(cease)));
            }
        }
    }
}

/// An UPDATE's faults for a log line: each in words, `; ` between them.
fn issues_text(issues: &[bgp_wire::update::UpdateIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The order of route listings: family (IPv4 first), then network address, then length.
fn route_order(p: &IpNet) -> (IpAddr, u8) {
    (p.network(), p.prefix_len())
}

/// A best route ordered by [`route_order`] alone, for the heap of [`Core::routes`].
struct Ordered((IpAddr, u8), IpNet, rib::BestRoute);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}
