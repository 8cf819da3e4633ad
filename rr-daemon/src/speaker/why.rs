//! Why a session is not up: a machine-readable reason from a fixed list, with a sentence an
//! operator can act on.
//!
//! The core keeps, per peer, the cause of the last failure (`Cause`, classified from the
//! session's [`bgp_fsm::DownReason`] and, for an outbound attempt, from the OS error the
//! connect returned: [`ConnectError`]), when the session will try again, and the kernel's
//! TCP-MD5 drop counters (`Md5Counters`, read by the shell from `/proc/net/netstat` of
//! the daemon's network namespace). `PeerWhy::down_reason` turns that into the
//! [`DownReason`] of `/v1/peers`, `ctl peers` (`Why`), `ctl neighbor`, the
//! `rr_peers_down{reason}` metric and the readiness failure. Everything here is pure.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, Notification};
use serde::{Deserialize, Serialize};

use crate::config::PeerSettings;

/// Why a configured peer is not Established: the fixed list, serialised in kebab case
/// (`"connect-refused"`). The names are a contract: tools match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Shut down administratively, by us or by the peer (Cease Administrative Shutdown,
    /// Peer De-configured, Administrative Reset).
    AdminDown,
    /// No result yet: a passive peer that has not connected (since when), or our first
    /// connection or OPEN still unanswered.
    WaitingForPeer,
    /// The peer's host answered our SYN with a reset: nothing listens on the port, or a
    /// firewall rejects it.
    ConnectRefused,
    /// No answer to our SYN: a port filtered (dropped), or the host down.
    ConnectTimeout,
    /// No route to the peer (network or host unreachable), or our source address is not
    /// on any interface.
    NoRoute,
    /// A TCP-MD5 key is set and our SYNs went unanswered, or the kernel dropped segments
    /// for a missing or wrong TCP-MD5 signature.
    TcpMd5MismatchSuspected,
    /// An OPEN was refused, by us or by the peer (AS, identifier, hold time,
    /// capabilities), or the peer rejected the connection.
    OpenRejected,
    /// A hold timer ran out: ours (the peer went silent) or the peer's.
    HoldTimerExpired,
    /// BFD declared the path down.
    BfdDown,
    /// The peer sent more prefixes than allowed (ours or its limit).
    MaxPrefix,
    /// A connection collision was resolved against the last connection (RFC 4271 §6.8).
    CollisionLost,
    /// Waiting to try again after another failure (a connection reset, a malformed
    /// message): the (damped) idle hold time after an error, or the connect retry time.
    IdleBackoff,
}

impl Reason {
    /// Every reason, in the order of the list.
    pub const ALL: [Self; 12] = [
        Self::AdminDown,
        Self::WaitingForPeer,
        Self::ConnectRefused,
        Self::ConnectTimeout,
        Self::NoRoute,
        Self::TcpMd5MismatchSuspected,
        Self::OpenRejected,
        Self::HoldTimerExpired,
        Self::BfdDown,
        Self::MaxPrefix,
        Self::CollisionLost,
        Self::IdleBackoff,
    ];

    /// The name in the API, metrics and `ctl` (`"connect-refused"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AdminDown => "admin-down",
            Self::WaitingForPeer => "waiting-for-peer",
            Self::ConnectRefused => "connect-refused",
            Self::ConnectTimeout => "connect-timeout",
            Self::NoRoute => "no-route",
            Self::TcpMd5MismatchSuspected => "tcp-md5-mismatch-suspected",
            Self::OpenRejected => "open-rejected",
            Self::HoldTimerExpired => "hold-timer-expired",
            Self::BfdDown => "bfd-down",
            Self::MaxPrefix => "max-prefix",
            Self::CollisionLost => "collision-lost",
            Self::IdleBackoff => "idle-backoff",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `down_reason` of a peer that is not Established (`null` when it is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownReason {
    /// The reason, from the fixed list.
    pub reason: Reason,
    /// What happened and what to check, in one sentence.
    pub message: String,
    /// Seconds since this reason first held (for `waiting-for-peer`: since when we wait).
    pub since_s: u64,
    /// Seconds until the next outbound connection attempt, when one is scheduled.
    pub next_try_in_s: Option<u64>,
    /// For `open-rejected` and other NOTIFICATION-borne reasons: the last NOTIFICATION we
    /// sent in this failure, decoded.
    pub notification_sent: Option<String>,
    /// The last NOTIFICATION the peer sent in this failure, decoded.
    pub notification_received: Option<String>,
}

/// How an outbound connection attempt failed, from the OS error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `ECONNREFUSED`: a RST answered our SYN.
    Refused,
    /// No SYN-ACK before our timeout, or `ETIMEDOUT`.
    TimedOut,
    /// `ENETUNREACH`, `EHOSTUNREACH` (no neighbour answered), `EADDRNOTAVAIL` on bind.
    Unreachable(String),
    /// Anything else, in the OS's words.
    Other(String),
}

impl ConnectError {
    /// Classifies the error of a failed connect (or of the bind before it).
    pub fn classify(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Self::Refused,
            Some(libc::ETIMEDOUT) => Self::TimedOut,
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL | libc::ENODEV) => {
                Self::Unreachable(e.to_string())
            }
            Some(_) => Self::Other(e.to_string()),
            None if e.kind() == io::ErrorKind::TimedOut => Self::TimedOut,
            // A link-local peer's interface that is not there.
            None if e.kind() == io::ErrorKind::NotFound => Self::Unreachable(e.to_string()),
            None => Self::Other(e.to_string()),
        }
    }
}

/// The kernel's TCP-MD5 drop counters (`TcpExt` of `/proc/net/netstat`), per network
/// namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Md5Counters {
    /// `TCPMD5NotFound`: a segment without a signature from an address we have a key for.
    pub(crate) not_found: u64,
    /// `TCPMD5Failure`: a segment signed with another key.
    pub(crate) failure: u64,
}

impl Md5Counters {
    /// Parses the text of `/proc/net/netstat` (a `TcpExt:` header line, then a value
    /// line); `None` when the counters are not there.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let names = lines.next()?.split_whitespace();
        let values = lines.next()?.split_whitespace();
        let mut c = Self::default();
        let mut found = false;
        for (n, v) in names.zip(values).skip(1) {
            let slot = match n {
                "TCPMD5NotFound" => &mut c.not_found,
                "TCPMD5Failure" => &mut c.failure,
                _ => continue,
            };
            *slot = v.parse().ok()?;
            found = true;
        }
        found.then_some(c)
    }
}

/// When the counters last rose, as seen by the core across observations.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Md5Watch {
    last: Option<Md5Counters>,
    /// `TCPMD5NotFound` or `TCPMD5Failure` rose: a peer we have a key for sends unsigned
    /// or wrongly signed segments. The counters are the namespace's, not per peer: a
    /// keyed peer that is down for no clearer reason is suspected. (`TCPMD5Unexpected`,
    /// signed segments where we have no key, is not used: with several keyless peers
    /// down it would blame all of them.)
    keyed_rose_at: Option<Instant>,
}

impl Md5Watch {
    /// Takes one reading at `now`.
    pub(crate) fn observe(&mut self, now: Instant, c: Md5Counters) {
        if let Some(last) = self.last
            && (c.not_found > last.not_found || c.failure > last.failure)
        {
            self.keyed_rose_at = Some(now);
        }
        self.last = Some(c);
    }
}

/// What the session will do next on its own, as it reported with its last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextTry {
    /// When it connects out again.
    pub at: Instant,
    /// It waits out the idle hold time after an error (damped), not the connect retry
    /// time.
    pub idle_hold: bool,
}

/// The classified cause of the last failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    /// From the list; `None` when the failure fits none of the specific reasons (a
    /// connection reset, a malformed message): `idle-backoff` or `waiting-for-peer` then
    /// tells what the session does about it.
    pub(crate) reason: Option<Reason>,
    /// What happened, in words.
    pub(crate) message: String,
    pub(crate) sent: Option<String>,
    pub(crate) received: Option<String>,
    /// When this reason first held (a repeat keeps the first time).
    pub(crate) since: Instant,
}

/// A known reason waiting for the session to report it down (BFD Down, a max-prefix
/// breach decided by the RIB): the next failure is reported under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) reason: Reason,
    pub(crate) message: String,
}

/// What the core tracks per peer for its `down_reason`.
#[derive(Clone, Debug)]
pub(crate) struct PeerWhy {
    /// Since when the session is not up: the peer's addition or its last Down.
    pub(crate) down_since: Instant,
    pub(crate) cause: Option<Cause>,
    pub(crate) next_try: Option<NextTry>,
    pub(crate) expected: Option<Expected>,
    /// An OPEN went out on a connection and nothing came back yet (no failure either).
    pub(crate) open_sent: bool,
}

impl PeerWhy {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            down_since: now,
            cause: None,
            next_try: None,
            expected: None,
            open_sent: false,
        }
    }

    /// The session is Established: nothing to explain any more.
    pub(crate) fn up(&mut self) {
        self.cause = None;
        self.expected = None;
        self.open_sent = false;
    }

    /// The session left Established at `now`.
    pub(crate) fn went_down(&mut self, now: Instant) {
        self.down_since = now;
    }

    /// Records a failure: `reason` as the session reported it, `connect` when it was our
    /// outbound attempt.
    pub(crate) fn failed(
        &mut self,
        now: Instant,
        reason: &bgp_fsm::DownReason,
        connect: Option<&ConnectError>,
        peer: &PeerSettings,
        local_as: u32,
    ) {
        self.open_sent = false;
        let mut cause = classify(reason, connect, peer, local_as, now);
        if let Some(x) = self.expected.take() {
            // The reason known beforehand wins; what the session saw of it is added
            // when it tells something else (a BFD Down, then a closed connection).
            if cause.reason != Some(x.reason) {
                cause.message = format!("{} ({})", x.message, cause.message);
            } else {
                cause.message = x.message;
            }
            cause.reason = Some(x.reason);
        }
        if let Some(old) = &self.cause
            && old.reason == cause.reason
        {
            cause.since = old.since;
        } else {
            cause.since = now;
        }
        self.cause = Some(cause);
    }

    /// `down_reason` at `now` of a peer whose session is in `state`; `None` while it is
    /// Established.
    pub(crate) fn down_reason(
        &self,
        now: Instant,
        state: bgp_fsm::State,
        peer: &PeerSettings,
        md5: &Md5Watch,
    ) -> Option<DownReason> {
        if state == bgp_fsm::State::Established {
            return None;
        }
        let ago = |t: Instant| now.saturating_duration_since(t).as_secs();
        let next_try = self
            .next_try
            .filter(|_| !peer.passive)
            .filter(|n| n.at > now || state == bgp_fsm::State::Idle);
        let next_in = next_try.map(|n| n.at.saturating_duration_since(now).as_secs());
        let when = next_in.map_or_else(String::new, |s| format!("; next try in {}", span(s)));
        let keyed = peer.password.is_some();
        let md5_rose = md5.keyed_rose_at.filter(|t| keyed && *t >= self.down_since);
        let addr = SocketAddr::new(peer.address, peer.port);
        let mut out = match &self.cause {
            Some(c) => {
                let reason = match c.reason {
                    Some(Reason::ConnectTimeout) if keyed => Reason::TcpMd5MismatchSuspected,
                    Some(r) => r,
                    // Another failure: say what the session does about it.
                    None if next_try.is_some() => Reason::IdleBackoff,
                    None => Reason::WaitingForPeer,
                };
                let mut message = c.message.clone();
                if reason == Reason::TcpMd5MismatchSuspected && c.reason != Some(reason) {
                    message = format!(
                        "our SYNs to {addr} went unanswered while a TCP-MD5 key is set: the \
                         peer has no key or another one for us (or the port is filtered)"
                    );
                } else if c.reason.is_none() && next_try.is_some_and(|n| n.idle_hold) {
                    message = format!("waiting out the idle hold time after: {message}");
                } else if c.reason.is_none() && reason == Reason::IdleBackoff {
                    message = format!("waiting for the next attempt after: {message}");
                } else if c.reason.is_none() {
                    message = format!("waiting for the peer to connect again after: {message}");
                }
                DownReason {
                    reason,
                    message: format!("{message}{when}"),
                    since_s: ago(c.since),
                    next_try_in_s: next_in,
                    notification_sent: c.sent.clone(),
                    notification_received: c.received.clone(),
                }
            }
            None => {
                let message = if self.open_sent {
                    format!("connected to {addr} and sent our OPEN; no answer from the peer yet")
                } else if peer.passive {
                    format!(
                        "passive: no connection from {} seen for {}",
                        peer.address,
                        span(ago(self.down_since))
                    )
                } else {
                    format!("connecting to {addr}; no answer yet")
                };
                DownReason {
                    reason: Reason::WaitingForPeer,
                    message: format!("{message}{when}"),
                    since_s: ago(self.down_since),
                    next_try_in_s: next_in,
                    notification_sent: None,
                    notification_received: None,
                }
            }
        };
        let vague = matches!(
            out.reason,
            Reason::WaitingForPeer | Reason::ConnectTimeout | Reason::IdleBackoff
        );
        if let Some(t) = md5_rose
            && vague
        {
            out.reason = Reason::TcpMd5MismatchSuspected;
            out.message = format!(
                "the kernel dropped TCP segments for a missing or wrong TCP-MD5 signature \
                 (TCPMD5NotFound/TCPMD5Failure rose {} ago) while a key is set for {}: \
                 check the peer's password{when}",
                span(ago(t)),
                peer.address
            );
        }
        Some(out)
    }
}

/// The words for a NOTIFICATION's direction.
fn notification(n: &Notification) -> String {
    n.to_string()
}

/// Classifies a failure the session reported.
fn classify(
    reason: &bgp_fsm::DownReason,
    connect: Option<&ConnectError>,
    peer: &PeerSettings,
    local_as: u32,
    now: Instant,
) -> Cause {
    use bgp_fsm::DownReason as D;
    let addr = SocketAddr::new(peer.address, peer.port);
    let cause = |reason: Option<Reason>, message: String| Cause {
        reason,
        message,
        sent: None,
        received: None,
        since: now,
    };
    match reason {
        D::Stopped => cause(
            Some(Reason::AdminDown),
            "stopped administratively by us".to_owned(),
        ),
        D::ConnectionFailed(text) => match connect {
            Some(ConnectError::Refused) => cause(
                Some(Reason::ConnectRefused),
                format!(
                    "{addr} refused the connection (TCP reset): no BGP speaker listens there, \
                     or a firewall rejects it"
                ),
            ),
            Some(ConnectError::TimedOut) => cause(
                Some(Reason::ConnectTimeout),
                format!(
                    "no answer to our SYN to {addr}: the port is filtered (dropped) or the \
                     host is down"
                ),
            ),
            Some(ConnectError::Unreachable(e)) => cause(
                Some(Reason::NoRoute),
                format!(
                    "cannot reach {addr}: {e}: check routes, the interface and our source address"
                ),
            ),
            Some(ConnectError::Other(e)) => cause(None, format!("connecting to {addr}: {e}")),
            None => cause(None, format!("the connection failed: {text}")),
        },
        D::OpenRefused {
            notification: n,
            sent,
            detail,
        } => {
            let verb = if *sent { "we sent" } else { "not sent" };
            Cause {
                sent: Some(notification(n)),
                ..cause(
                    Some(Reason::OpenRejected),
                    format!("we refused the peer's OPEN: {detail} ({verb} NOTIFICATION {n})"),
                )
            }
        }
        D::NotificationSent(n) | D::NotSent(n) => {
            let (r, what) = sent_words(n, peer);
            Cause {
                sent: Some(notification(n)),
                ..cause(r, what)
            }
        }
        D::NotificationReceived(n) => {
            let (r, what) = received_words(n, peer, local_as);
            Cause {
                received: Some(notification(n)),
                ..cause(r, what)
            }
        }
    }
}

/// A NOTIFICATION we sent, classified and put in words.
fn sent_words(n: &Notification, peer: &PeerSettings) -> (Option<Reason>, String) {
    use subcode::{cease, open};
    let r = match (n.code, n.subcode) {
        (ErrorCode::OPEN_MESSAGE, open::BAD_PEER_AS) => (
            Reason::OpenRejected,
            format!(
                "we refused the peer's OPEN: it does not say AS {}",
                peer.asn
            ),
        ),
        (ErrorCode::OPEN_MESSAGE, _) => (
            Reason::OpenRejected,
            "we refused the peer's OPEN".to_owned(),
        ),
        (ErrorCode::HOLD_TIMER_EXPIRED, _) => (
            Reason::HoldTimerExpired,
            format!(
                "nothing from the peer for our hold time ({} s proposed): it stopped sending \
                 KEEPALIVEs or the path to it is gone",
                peer.hold_time
            ),
        ),
        (ErrorCode::CEASE, cease::MAX_PREFIXES) => (
            Reason::MaxPrefix,
            "the peer sent more prefixes than our max_prefix allows".to_owned(),
        ),
        (ErrorCode::CEASE, cease::CONNECTION_COLLISION) => (
            Reason::CollisionLost,
            "a connection collision was resolved against this connection".to_owned(),
        ),
        (ErrorCode::CEASE, cease::BFD_DOWN) => (
            Reason::BfdDown,
            "BFD declared the path to the peer down".to_owned(),
        ),
        (
            ErrorCode::CEASE,
            cease::ADMIN_SHUTDOWN | cease::PEER_DECONFIGURED | cease::ADMIN_RESET,
        ) => (
            Reason::AdminDown,
            "shut down administratively by us".to_owned(),
        ),
        _ => return (None, format!("we sent NOTIFICATION {n}")),
    };
    (Some(r.0), format!("{} (we sent NOTIFICATION {n})", r.1))
}

/// A NOTIFICATION the peer sent, classified and put in words.
fn received_words(
    n: &Notification,
    peer: &PeerSettings,
    local_as: u32,
) -> (Option<Reason>, String) {
    use subcode::{cease, open};
    let r = match (n.code, n.subcode) {
        (ErrorCode::OPEN_MESSAGE, open::BAD_PEER_AS) => (
            Reason::OpenRejected,
            format!(
                "the peer refused our OPEN: it does not expect AS {local_as} from us: check \
                 the AS it has configured for us"
            ),
        ),
        (ErrorCode::OPEN_MESSAGE, open::BAD_BGP_IDENTIFIER) => (
            Reason::OpenRejected,
            "the peer refused our OPEN: our BGP identifier (equal to its own?)".to_owned(),
        ),
        (ErrorCode::OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME) => (
            Reason::OpenRejected,
            format!("the peer refused our hold time of {} s", peer.hold_time),
        ),
        (ErrorCode::OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY) => (
            Reason::OpenRejected,
            "the peer requires a capability we do not offer (address family?)".to_owned(),
        ),
        (ErrorCode::OPEN_MESSAGE, open::AUTHENTICATION_FAILURE) => (
            Reason::OpenRejected,
            "the peer refused our OPEN: authentication failure".to_owned(),
        ),
        (ErrorCode::OPEN_MESSAGE, _) => {
            (Reason::OpenRejected, "the peer refused our OPEN".to_owned())
        }
        (ErrorCode::CEASE, cease::CONNECTION_REJECTED) => (
            Reason::OpenRejected,
            format!(
                "the peer rejected our connection: is {} configured as its neighbour?",
                peer.source_address
                    .map_or_else(|| "our address".to_owned(), |a| a.to_string())
            ),
        ),
        (ErrorCode::HOLD_TIMER_EXPIRED, _) => (
            Reason::HoldTimerExpired,
            "the peer's hold timer expired: it heard nothing from us for its hold time".to_owned(),
        ),
        (ErrorCode::CEASE, cease::MAX_PREFIXES) => (
            Reason::MaxPrefix,
            "we sent the peer more prefixes than its limit allows".to_owned(),
        ),
        (ErrorCode::CEASE, cease::CONNECTION_COLLISION) => (
            Reason::CollisionLost,
            "the peer resolved a connection collision against this connection".to_owned(),
        ),
        (ErrorCode::CEASE, cease::BFD_DOWN) => (
            Reason::BfdDown,
            "the peer's BFD declared the path down".to_owned(),
        ),
        (
            ErrorCode::CEASE,
            cease::ADMIN_SHUTDOWN | cease::PEER_DECONFIGURED | cease::ADMIN_RESET,
        ) => (
            Reason::AdminDown,
            "the peer shut the session down administratively".to_owned(),
        ),
        _ => return (None, format!("the peer sent NOTIFICATION {n}")),
    };
    (
        Some(r.0),
        format!("{} (the peer sent NOTIFICATION {n})", r.1),
    )
}

/// `secs` for a sentence: `37 s`, `4 min 12 s`, `2 h 3 min`, `3 d 4 h`.
pub(crate) fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bgp_fsm::{DownReason as D, State};

    use super::*;
    use crate::config::Config;

    fn peer(extra: &str) -> PeerSettings {
        let cfg = Config::parse(
            &format!(
                "[speaker]\nasn = 64512\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\nasn = 64513\n{extra}"
            ),
            "t.toml",
        )
        .unwrap();
        cfg.peers[&"10.0.0.2".parse().unwrap()].clone()
    }

    fn why_after(
        p: &PeerSettings,
        reason: &D,
        connect: Option<ConnectError>,
        next: Option<NextTry>,
    ) -> DownReason {
        let t0 = Instant::now();
        let mut w = PeerWhy::new(t0);
        w.failed(t0, reason, connect.as_ref(), p, 64512);
        w.next_try = next;
        w.down_reason(
            t0 + Duration::from_secs(2),
            State::Active,
            p,
            &Md5Watch::default(),
        )
        .unwrap()
    }

    #[test]
    fn os_errors_are_classified() {
        let e = |n| ConnectError::classify(&io::Error::from_raw_os_error(n));
        assert_eq!(e(libc::ECONNREFUSED), ConnectError::Refused);
        assert_eq!(e(libc::ETIMEDOUT), ConnectError::TimedOut);
        assert!(matches!(e(libc::ENETUNREACH), ConnectError::Unreachable(_)));
        assert!(matches!(
            e(libc::EHOSTUNREACH),
            ConnectError::Unreachable(_)
        ));
        assert!(matches!(
            e(libc::EADDRNOTAVAIL),
            ConnectError::Unreachable(_)
        ));
        assert!(matches!(e(libc::EPERM), ConnectError::Other(_)));
        let ours = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert_eq!(ConnectError::classify(&ours), ConnectError::TimedOut);
    }

    #[test]
    fn connect_failures_name_the_address_and_the_next_try() {
        let p = peer("");
        let failed = D::ConnectionFailed("Connection refused (os error 111)".into());
        let t = Instant::now() + Duration::from_secs(30);
        let next = Some(NextTry {
            at: t,
            idle_hold: false,
        });
        let d = why_after(&p, &failed, Some(ConnectError::Refused), next);
        assert_eq!(d.reason, Reason::ConnectRefused);
        assert!(d.message.contains("10.0.0.2:179 refused"), "{}", d.message);
        assert!(d.next_try_in_s.is_some_and(|s| s >= 25), "{d:?}");
        assert!(d.message.contains("next try in"), "{}", d.message);
        let d = why_after(&p, &failed, Some(ConnectError::TimedOut), None);
        assert_eq!(d.reason, Reason::ConnectTimeout);
        assert!(d.message.contains("no answer to our SYN"), "{}", d.message);
        let unreach = ConnectError::Unreachable("No route to host (os error 113)".into());
        assert_eq!(
            why_after(&p, &failed, Some(unreach), None).reason,
            Reason::NoRoute
        );
        // A key is set: unanswered SYNs are the classic sign of a password on one side.
        let keyed = peer("password = \"s3cret\"\n");
        let d = why_after(&keyed, &failed, Some(ConnectError::TimedOut), None);
        assert_eq!(d.reason, Reason::TcpMd5MismatchSuspected);
        assert!(d.message.contains("TCP-MD5"), "{}", d.message);
        // A refusal is an answer: the key is not to blame.
        let d = why_after(&keyed, &failed, Some(ConnectError::Refused), None);
        assert_eq!(d.reason, Reason::ConnectRefused);
    }

    #[test]
    fn notifications_both_ways_are_decoded() {
        use subcode::{cease, open};
        let p = peer("");
        let bad_as = Notification::new(ErrorCode::OPEN_MESSAGE, open::BAD_PEER_AS);
        let refused = D::OpenRefused {
            notification: bad_as.clone(),
            sent: true,
            detail: "peer says AS 64514, configured 64513".into(),
        };
        let d = why_after(&p, &refused, None, None);
        assert_eq!(d.reason, Reason::OpenRejected);
        assert!(
            d.message.contains("peer says AS 64514, configured 64513"),
            "{}",
            d.message
        );
        assert!(
            d.notification_sent
                .as_deref()
                .unwrap()
                .contains("Bad Peer AS")
        );
        assert_eq!(d.notification_received, None);
        let d = why_after(&p, &D::NotificationReceived(bad_as), None, None);
        assert_eq!(d.reason, Reason::OpenRejected);
        assert!(
            d.message.contains("does not expect AS 64512"),
            "{}",
            d.message
        );
        assert!(
            d.notification_received
                .as_deref()
                .unwrap()
                .contains("Bad Peer AS")
        );
        let cases = [
            (
                D::NotificationSent(Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0)),
                Reason::HoldTimerExpired,
            ),
            (
                D::NotificationReceived(Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0)),
                Reason::HoldTimerExpired,
            ),
            (
                D::NotificationSent(Notification::new(ErrorCode::CEASE, cease::MAX_PREFIXES)),
                Reason::MaxPrefix,
            ),
            (
                D::NotificationSent(Notification::new(
                    ErrorCode::CEASE,
                    cease::CONNECTION_COLLISION,
                )),
                Reason::CollisionLost,
            ),
            (
                D::NotSent(Notification::new(
                    ErrorCode::CEASE,
                    cease::CONNECTION_COLLISION,
                )),
                Reason::CollisionLost,
            ),
            (
                D::NotificationSent(Notification::new(ErrorCode::CEASE, cease::BFD_DOWN)),
                Reason::BfdDown,
            ),
            (
                D::NotificationReceived(Notification::new(ErrorCode::CEASE, cease::ADMIN_SHUTDOWN)),
                Reason::AdminDown,
            ),
            (
                D::NotificationReceived(Notification::new(
                    ErrorCode::CEASE,
                    cease::CONNECTION_REJECTED,
                )),
                Reason::OpenRejected,
            ),
            (D::Stopped, Reason::AdminDown),
        ];
        for (reason, want) in cases {
            assert_eq!(why_after(&p, &reason, None, None).reason, want, "{reason}");
        }
    }

    #[test]
    fn other_failures_say_what_the_session_does_next() {
        let p = peer("");
        let reset = D::ConnectionFailed("Connection reset by peer (os error 104)".into());
        let backoff = Some(NextTry {
            at: Instant::now() + Duration::from_secs(60),
            idle_hold: true,
        });
        let d = why_after(&p, &reset, None, backoff);
        assert_eq!(d.reason, Reason::IdleBackoff);
        assert!(
            d.message.contains("Connection reset by peer"),
            "{}",
            d.message
        );
        assert!(d.next_try_in_s.is_some(), "{d:?}");
        let d = why_after(&p, &reset, None, None);
        assert_eq!(d.reason, Reason::WaitingForPeer);
    }

    #[test]
    fn waiting_says_since_when_and_expected_reasons_win() {
        let t0 = Instant::now();
        let p = peer("passive = true\n");
        let w = PeerWhy::new(t0);
        let d = w
            .down_reason(
                t0 + Duration::from_secs(75),
                State::Active,
                &p,
                &Md5Watch::default(),
            )
            .unwrap();
        assert_eq!(d.reason, Reason::WaitingForPeer);
        assert_eq!(d.since_s, 75);
        assert!(d.message.contains("1 min 15 s"), "{}", d.message);
        assert!(
            w.down_reason(t0, State::Established, &p, &Md5Watch::default())
                .is_none()
        );

        let mut w = PeerWhy::new(t0);
        w.expected = Some(Expected {
            reason: Reason::BfdDown,
            message: "BFD session down".into(),
        });
        w.failed(t0, &D::ConnectionFailed("closed".into()), None, &p, 64512);
        let d = w
            .down_reason(t0, State::Idle, &p, &Md5Watch::default())
            .unwrap();
        assert_eq!(d.reason, Reason::BfdDown);
        // The same reason again keeps its first time.
        let later = t0 + Duration::from_secs(10);
        w.failed(
            later,
            &D::NotificationSent(Notification::new(
                ErrorCode::CEASE,
                subcode::cease::BFD_DOWN,
            )),
            None,
            &p,
            64512,
        );
        let d = w
            .down_reason(later, State::Idle, &p, &Md5Watch::default())
            .unwrap();
        assert_eq!((d.reason, d.since_s), (Reason::BfdDown, 10));
        w.up();
        assert_eq!(w.cause, None);
    }

    #[test]
    fn md5_counters_rising_while_down_are_suspicious() {
        let text = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure\n\
                    TcpExt: 0 3 0 1\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let c = Md5Counters::parse(text).unwrap();
        assert_eq!((c.not_found, c.failure), (3, 1));
        assert_eq!(Md5Counters::parse("IpExt: A\nIpExt: 1\n"), None);

        let t0 = Instant::now();
        let keyed = peer("password = \"s3cret\"\npassive = true\n");
        let w = PeerWhy::new(t0);
        let mut md5 = Md5Watch::default();
        md5.observe(t0, c);
        let at = t0 + Duration::from_secs(5);
        assert_eq!(
            w.down_reason(at, State::Active, &keyed, &md5)
                .unwrap()
                .reason,
            Reason::WaitingForPeer
        );
        md5.observe(at, Md5Counters { not_found: 4, ..c });
        let d = w.down_reason(at, State::Active, &keyed, &md5).unwrap();
        assert_eq!(d.reason, Reason::TcpMd5MismatchSuspected);
        assert!(d.message.contains("TCPMD5NotFound"), "{}", d.message);
        // A peer without a key is not blamed: the counters are not per peer.
        let plain = peer("passive = true\n");
        assert_eq!(
            w.down_reason(at, State::Active, &plain, &md5)
                .unwrap()
                .reason,
            Reason::WaitingForPeer
        );
    }

    #[test]
    fn names_are_the_contract() {
        let names: Vec<String> = Reason::ALL
            .iter()
            .map(|r| {
                serde_json::to_string(r)
                    .unwrap()
                    .trim_matches('"')
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "admin-down",
                "waiting-for-peer",
                "connect-refused",
                "connect-timeout",
                "no-route",
                "tcp-md5-mismatch-suspected",
                "open-rejected",
                "hold-timer-expired",
                "bfd-down",
                "max-prefix",
                "collision-lost",
                "idle-backoff"
            ]
        );
        for r in Reason::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
