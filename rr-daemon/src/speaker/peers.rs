//! The core's peer table entry, and why a session went down in an operator's words.

use std::net::IpAddr;
use std::time::Instant;

use bgp_fsm::{DownReason, State};
use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, SessionCtx};
use rib::PeerId;

use crate::config::PeerSettings;

/// One peer in the core's table.
pub(super) struct Peer {
    pub(super) settings: PeerSettings,
    pub(super) id: PeerId,
    /// The generation of the peer's session: events of an earlier session of this
    /// address are dropped.
    pub(super) generation: u64,
    /// Accepted from a dynamic neighbour range: it exists while its session does.
    pub(super) dynamic: bool,
    pub(super) session: SessionView,
    pub(super) counters: Counters,
    pub(super) history: History,
    /// The peer's BFD session, when its settings have `bfd`.
    pub(super) bfd: Option<BfdView>,
    /// What `down_reason` is made of.
    pub(super) why: super::why::PeerWhy,
}

/// What the core knows of a peer's BFD session, from its notices.
#[derive(Clone, Copy)]
pub(super) struct BfdView {
    pub(super) state: crate::bfd::State,
    /// `strict`: BGP is held stopped until BFD is up.
    pub(super) holding: bool,
}

/// What the core knows of the peer's session, from its events.
pub(super) struct SessionView {
    pub(super) state: State,
    /// When `state` was entered.
    pub(super) since: Instant,
    /// While Established: since when.
    pub(super) established_at: Option<Instant>,
    /// While Established: what was negotiated, for parsing the peer's UPDATEs.
    pub(super) ctx: Option<SessionCtx>,
    /// While Established: the peer takes ROUTE-REFRESH (RFC 2918), so a new import
    /// policy needs no reset.
    pub(super) route_refresh: bool,
    /// The restart time the peer advertised in its last OPEN (RFC 4724 §3); `None`
    /// without the graceful restart capability. Kept after the session goes down: the
    /// stale timer of a graceful drop runs for it (capped by ours).
    pub(super) peer_restart_time: Option<u16>,
    /// The families of the peer's long-lived graceful restart capability (RFC 9494) in
    /// its last OPEN, with their long-lived stale times; kept like `peer_restart_time`.
    pub(super) peer_llgr: Vec<(bgp_wire::Family, u32)>,
    /// While Established: both sides sent the graceful restart N bit (RFC 8538), so a
    /// Cease that must purge our routes at the peer goes as a Hard Reset.
    pub(super) hard_reset: bool,
}

/// Traffic of the current session, reset when it comes up.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) prefixes_received: u64,
    pub(super) prefixes_sent: u64,
    pub(super) updates_received: u64,
    pub(super) updates_sent: u64,
}

impl Counters {
    /// Counts `messages` UPDATEs carrying `announced` prefixes handed to the session.
    pub(super) fn sent(&mut self, messages: usize, announced: usize) {
        self.updates_sent += messages as u64;
        self.prefixes_sent += announced as u64;
    }
}

/// What the control API reports of the peer's past, since it was added.
pub(super) struct History {
    pub(super) added_at: Instant,
    pub(super) last_error: Option<String>,
    /// What `last_error` says, as the machine reported it (`None` when `last_error` came
    /// from elsewhere, or is cleared).
    pub(super) last_down: Option<DownReason>,
    pub(super) last_notification_sent: Option<String>,
    pub(super) last_notification_received: Option<String>,
    /// Times the session left Established.
    pub(super) flaps: u64,
}

impl Peer {
    pub(super) fn new(
        settings: PeerSettings,
        id: PeerId,
        generation: u64,
        dynamic: bool,
        now: Instant,
    ) -> Self {
        let bfd = settings.bfd.as_ref().map(|_| BfdView {
            state: crate::bfd::State::Down,
            holding: false,
        });
        Self {
            settings,
            id,
            generation,
            dynamic,
            session: SessionView {
                state: State::Idle,
                since: now,
                established_at: None,
                ctx: None,
                route_refresh: false,
                peer_restart_time: None,
                peer_llgr: Vec::new(),
                hard_reset: false,
            },
            bfd,
            counters: Counters::default(),
            history: History {
                added_at: now,
                last_error: None,
                last_down: None,
                last_notification_sent: None,
                last_notification_received: None,
                flaps: 0,
            },
            why: super::why::PeerWhy::new(now),
        }
    }

    pub(super) fn address(&self) -> IpAddr {
        self.settings.address
    }

    pub(super) fn set_state(&mut self, state: State, now: Instant) {
        self.session.state = state;
        self.session.since = now;
    }

    /// Records why a session or connection attempt ended: `last_error` in words, and the
    /// NOTIFICATION by direction.
    pub(super) fn record_down(&mut self, reason: &DownReason, local_as: u32) {
        match reason {
            DownReason::NotificationSent(n)
            | DownReason::OpenRefused {
                notification: n,
                sent: true,
                ..
            } => {
                self.history.last_notification_sent = Some(n.to_string());
            }
            DownReason::NotificationReceived(n) => {
                self.history.last_notification_received = Some(n.to_string());
            }
            _ => {}
        }
        self.history.last_error = Some(describe_down(reason, &self.settings, local_as));
        self.history.last_down = Some(reason.clone());
    }
}

/// `reason` in an operator's words: the reason's own text, preceded for OPEN mismatches by
/// what does not match and which side has to change.
///
/// Our refusals come with the machine's own words (the AS the peer claimed); the peer's
/// refusals of our OPEN are explained from the NOTIFICATION it sent.
pub(super) fn describe_down(reason: &DownReason, peer: &PeerSettings, local_as: u32) -> String {
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

#[cfg(test)]
mod tests {
    use bgp_wire::Notification;

    use super::*;
    use crate::config::Config;

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
