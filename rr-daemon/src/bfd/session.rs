//! One BFD session in asynchronous mode (RFC 5880 §6), sans-IO: packets and the clock
//! in, packets and state changes out. No socket, clock or task here.
//!
//! Timers: the session keeps two deadlines, its next periodic transmission and the end
//! of its detection time, and says which comes first ([`Session::deadline`]); the
//! [`Endpoint`](super::Endpoint) keeps one timer structure for every session.
//!
//! Timer changes follow §6.8.3: while Up, a new interval or multiplier is announced by a
//! Poll Sequence (P bit until a packet with F comes back); a slower transmission rate
//! takes effect only once it is acknowledged, a faster one at once; a shorter receive
//! interval shortens the detection time only once acknowledged, a longer one at once.
//! While not Up the session transmits at most once a second.

use bgp_fsm::rng::Rng;
use std::time::{Duration, Instant};

use super::packet::{
    AUTH_KEYED_SHA1, AUTH_METICULOUS_SHA1, Auth, Diag, Packet, Sha1Auth, State, sha1_valid,
};

/// The slowest a session that is not Up may transmit (§6.8.3: one second at least).
const SLOW_TX: Duration = Duration::from_secs(1);

/// Keyed SHA1 authentication (§6.7.4).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// Key ID carried in each packet.
    pub key_id: u8,
    /// The secret (up to 20 bytes are used).
    pub key: Vec<u8>,
    /// Meticulous Keyed SHA1: the sequence number advances with every packet, and a
    /// repeated one is refused.
    pub meticulous: bool,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("meticulous", &self.meticulous)
            .finish()
    }
}

/// What one session is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Desired Min TX Interval while Up.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Detect Mult.
    pub detect_mult: u8,
    /// Keyed SHA1, or none.
    pub auth: Option<AuthKey>,
}

impl SessionConfig {
    /// Both intervals `interval`, multiplier `mult`, no authentication.
    pub fn new(interval: Duration, mult: u8) -> Self {
        Self {
            desired_min_tx: interval,
            required_min_rx: interval,
            detect_mult: mult.max(1),
            auth: None,
        }
    }
}

/// A change of the session's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub from: State,
    /// The state now.
    pub to: State,
    /// Why (the local diagnostic).
    pub diag: Diag,
}

/// Why a packet was discarded by the session (§6.8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    /// Your Discriminator zero while the sender is neither Down nor AdminDown.
    #[error("your discriminator zero outside Down")]
    NoYourDiscriminator,
    /// Authentication present where none is configured, or absent where it is.
    #[error("authentication mismatch")]
    AuthMismatch,
    /// Wrong type, key ID, sequence number or digest.
    #[error("authentication failed")]
    AuthFailed,
    /// The local session is administratively down.
    #[error("session administratively down")]
    AdminDown,
    /// Both Poll and Final set.
    #[error("poll and final both set")]
    PollAndFinal,
}

/// `d` reduced by a random 0 to 25% (to 10..25% when `mult` is 1), §6.8.7.
fn jitter(rng: &mut Rng, d: Duration, mult: u8) -> Duration {
    let top = if mult == 1 { 0.9 } else { 1.0 };
    d.mul_f64(0.75 + (top - 0.75) * rng.unit())
}

/// Microseconds on the wire, saturating.
fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn from_us(v: u32) -> Duration {
    Duration::from_micros(u64::from(v))
}

/// One session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    remote_state: State,
    local_disc: u32,
    remote_disc: u32,
    diag: Diag,
    /// Desired Min TX and Required Min RX as sent.
    desired_tx: Duration,
    required_rx: Duration,
    /// The values in force: they lag what is sent while a Poll Sequence is under way.
    used_tx: Duration,
    used_rx: Duration,
    /// What the remote side sent last.
    remote_min_rx: u32,
    remote_desired_tx: u32,
    remote_mult: u8,
    /// A Poll Sequence is under way; `poll_again`: another change came during it.
    polling: bool,
    poll_again: bool,
    /// A packet is owed now: one with F (the peer polled), or one that starts a poll.
    send_final: bool,
    send_now: bool,
    next_tx: Instant,
    last_tx: Option<Instant>,
    detect_at: Option<Instant>,
    last_rx: Option<Instant>,
    xmit_seq: u32,
    rcv_seq: Option<u32>,
    rng: Rng,
}

impl Session {
    /// A session in Down with discriminator `local_disc` (non-zero); its first packet is
    /// due at once.
    pub fn new(now: Instant, local_disc: u32, cfg: SessionConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let xmit_seq = rng.next_u64() as u32;
        let desired_tx = cfg.desired_min_tx.max(SLOW_TX);
        let required_rx = cfg.required_min_rx;
        Self {
            cfg,
            state: State::Down,
            remote_state: State::Down,
            local_disc,
            remote_disc: 0,
            diag: Diag::NONE,
            desired_tx,
            required_rx,
            used_tx: desired_tx,
            used_rx: required_rx,
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_mult: 0,
            polling: false,
            poll_again: false,
            send_final: false,
            send_now: false,
            next_tx: now,
            last_tx: None,
            detect_at: None,
            last_rx: None,
            xmit_seq,
            rcv_seq: None,
            rng,
        }
    }

    /// The session's state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The remote side's last state.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// Our discriminator.
    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }

    /// The remote discriminator (zero while unknown).
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }

    /// The local diagnostic.
    pub fn diag(&self) -> Diag {
        self.diag
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Whether a Poll Sequence is under way.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The interval between our packets now (before jitter).
    pub fn tx_interval(&self) -> Duration {
        self.used_tx.max(from_us(self.remote_min_rx))
    }

    /// The detection time now: the remote multiplier times the agreed receive interval
    /// (§6.8.4); `None` before the remote side was heard.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_mult > 0).then(|| {
            self.used_rx.max(from_us(self.remote_desired_tx)) * u32::from(self.remote_mult)
        })
    }

    /// The earliest moment the session needs [`Session::handle_timeout`] or
    /// [`Session::poll_transmit`].
    /// A packet owed at once (a Final, the start of a Poll Sequence) is not counted:
    /// the caller drains [`Session::poll_transmit`] after every input.
    pub fn deadline(&self) -> Instant {
        self.detect_at.map_or(self.next_tx, |d| d.min(self.next_tx))
    }

    fn set_state(&mut self, to: State, diag: Diag) -> Option<Change> {
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.diag = diag;
        match to {
            State::Up => {
                // From the slow rate of a session coming up to the configured one.
                self.diag = Diag::NONE;
                self.change_timers(self.cfg.desired_min_tx, self.cfg.required_min_rx, false);
            }
            _ => {
                self.polling = false;
                self.poll_again = false;
                self.desired_tx = self.cfg.desired_min_tx.max(SLOW_TX);
                self.required_rx = self.cfg.required_min_rx;
                self.used_tx = self.desired_tx;
                self.used_rx = self.required_rx;
            }
        }
        Some(Change { from, to, diag })
    }

    /// Announces new intervals: at once when not Up, else by a Poll Sequence (also when
    /// only the multiplier changed: `force`).
    fn change_timers(&mut self, tx: Duration, rx: Duration, force: bool) {
        if self.state != State::Up {
            self.desired_tx = tx.max(SLOW_TX);
            self.required_rx = rx;
            self.used_tx = self.desired_tx;
            self.used_rx = rx;
            return;
        }
        if tx == self.desired_tx && rx == self.required_rx && !force {
            return;
        }
        self.desired_tx = tx;
        self.required_rx = rx;
        // Faster transmission and a longer detection time are safe at once.
        self.used_tx = self.used_tx.min(tx);
        self.used_rx = self.used_rx.max(rx);
        self.start_poll();
    }

    fn start_poll(&mut self) {
        if self.polling {
            self.poll_again = true;
        } else {
            self.polling = true;
            self.poll_again = false;
            self.send_now = true;
        }
    }

    /// Applies a new configuration (a reload). Intervals and the multiplier go through a
    /// Poll Sequence while Up; a new key applies from the next packet.
    pub fn reconfigure(&mut self, now: Instant, cfg: SessionConfig) {
        if cfg == self.cfg {
            return;
        }
        let mult_changed = cfg.detect_mult != self.cfg.detect_mult;
        if cfg.auth != self.cfg.auth {
            self.rcv_seq = None;
        }
        let (tx, rx) = (cfg.desired_min_tx, cfg.required_min_rx);
        self.cfg = cfg;
        self.change_timers(tx, rx, mult_changed);
        self.faster_tx(now);
    }

    /// Brings the next transmission forward when the interval shrank.
    fn faster_tx(&mut self, now: Instant) {
        let interval = self.tx_interval();
        let by = self.last_tx.map_or(now, |l| l + interval).max(now);
        if by < self.next_tx {
            self.next_tx = by;
        }
    }

    /// Handles a decoded packet that was demultiplexed to this session. `raw` is the
    /// datagram as received, for the digest. Returns the state change, if any.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        p: &Packet,
        raw: &[u8],
    ) -> Result<Option<Change>, Discard> {
        if p.poll && p.fin {
            return Err(Discard::PollAndFinal);
        }
        if p.your_disc == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Discard::NoYourDiscriminator);
        }
        self.authenticate(now, p, raw)?;
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_tx = p.desired_min_tx;
        self.remote_mult = p.detect_mult;
        if p.fin && self.polling {
            // The remote side has the announced values: they are in force now.
            self.polling = false;
            self.used_tx = self.desired_tx;
            self.used_rx = self.required_rx;
            if std::mem::take(&mut self.poll_again) {
                self.polling = true;
                self.send_now = true;
            }
        }
        self.last_rx = Some(now);
        self.detect_at = self.detection_time().map(|d| now + d);
        let change = match (self.state, p.state) {
            (State::Down | State::AdminDown, State::AdminDown) => None,
            (_, State::AdminDown) => self.set_state(State::Down, Diag::NEIGHBOR_DOWN),
            (State::Down, State::Down) => self.set_state(State::Init, Diag::NONE),
            (State::Down, State::Init) => self.set_state(State::Up, Diag::NONE),
            (State::Down, State::Up) => None,
            (State::Init, State::Init | State::Up) => self.set_state(State::Up, Diag::NONE),
            (State::Init, State::Down) => None,
            (State::Up, State::Down) => self.set_state(State::Down, Diag::NEIGHBOR_DOWN),
            (State::Up, _) => None,
            (State::AdminDown, _) => None,
        };
        if p.poll {
            self.send_final = true;
        }
        self.faster_tx(now);
        Ok(change)
    }

    fn authenticate(&mut self, now: Instant, p: &Packet, raw: &[u8]) -> Result<(), Discard> {
        let (cfg, got) = match (&self.cfg.auth, &p.auth) {
            (None, None) => return Ok(()),
            (Some(cfg), Some(Auth::Sha1(got))) => (cfg, got),
            (Some(_), Some(Auth::Other(_))) => return Err(Discard::AuthFailed),
            _ => return Err(Discard::AuthMismatch),
        };
        let want_type = if cfg.meticulous {
            AUTH_METICULOUS_SHA1
        } else {
            AUTH_KEYED_SHA1
        };
        if got.auth_type != want_type || got.key_id != cfg.key_id {
            return Err(Discard::AuthFailed);
        }
        // §6.7.4: the sequence number is checked once known, and forgotten after two
        // detection times of silence.
        let window = 3 * u32::from(self.cfg.detect_mult);
        let stale = match (self.last_rx, self.detection_time()) {
            (Some(last), Some(d)) => now >= last + 2 * d,
            _ => true,
        };
        if let Some(known) = self.rcv_seq.filter(|_| !stale) {
            let ahead = got.seq.wrapping_sub(known);
            let low = u32::from(cfg.meticulous);
            if ahead < low || ahead > window {
                return Err(Discard::AuthFailed);
            }
        }
        if !sha1_valid(raw, &cfg.key) {
            return Err(Discard::AuthFailed);
        }
        self.rcv_seq = Some(got.seq);
        Ok(())
    }

    /// Handles the clock: the detection time running out takes an Init or Up session
    /// Down (diagnostic 1) and forgets the remote discriminator (§6.8.1, §6.8.4).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Change> {
        let expired = self.detect_at.is_some_and(|d| d <= now);
        if !expired {
            return None;
        }
        self.detect_at = None;
        self.remote_disc = 0;
        self.remote_state = State::Down;
        self.remote_mult = 0;
        self.remote_min_rx = 1;
        match self.state {
            State::Init | State::Up => self.set_state(State::Down, Diag::TIME_EXPIRED),
            _ => None,
        }
    }

    /// The packet due at `now`, if one is: the periodic one, or one owed at once (a
    /// Final, or the start of a Poll Sequence). Nothing goes out while the remote side
    /// asks for no packets (Required Min RX of zero).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let owed = self.send_final || self.send_now;
        if !owed && self.next_tx > now {
            return None;
        }
        let interval = self.tx_interval();
        if !owed || self.next_tx <= now {
            self.next_tx = now + jitter(&mut self.rng, interval, self.cfg.detect_mult);
        }
        if self.remote_min_rx == 0 {
            self.send_final = false;
            self.send_now = false;
            return None;
        }
        let fin = std::mem::take(&mut self.send_final);
        self.send_now = false;
        self.last_tx = Some(now);
        Some(self.packet(!fin && self.polling, fin, self.state, self.diag))
    }

    /// One packet saying AdminDown (diagnostic 7), for a session being removed: the
    /// remote side goes Down without blaming the path (RFC 5882 §3.2).
    pub fn admin_down_packet(&mut self) -> Vec<u8> {
        self.packet(false, false, State::AdminDown, Diag::ADMIN_DOWN)
    }

    fn packet(&mut self, poll: bool, fin: bool, state: State, diag: Diag) -> Vec<u8> {
        let auth = self.cfg.auth.as_ref().map(|a| {
            self.xmit_seq = self.xmit_seq.wrapping_add(1);
            Auth::Sha1(Sha1Auth {
                auth_type: if a.meticulous {
                    AUTH_METICULOUS_SHA1
                } else {
                    AUTH_KEYED_SHA1
                },
                key_id: a.key_id,
                seq: self.xmit_seq,
                digest: [0; 20],
            })
        });
        Packet {
            diag,
            state,
            poll,
            fin,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx: us(self.desired_tx),
            required_min_rx: us(self.required_rx),
            required_min_echo_rx: 0,
            auth,
        }
        .encode(self.cfg.auth.as_ref().map(|a| a.key.as_slice()))
    }
}
