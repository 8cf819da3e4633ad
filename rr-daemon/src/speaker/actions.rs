//! The operator's actions on peers and routes, in the sans-IO core: hard reset, soft
//! reset in and out, disable and enable, and routes originated at run time. The control
//! socket (`crate::control`) and a node agent reach them through [`super::Speaker`].

use std::net::IpAddr;
use std::time::Instant;

use bgp_fsm::State;
use bgp_wire::Notification;
use bgp_wire::notification::subcode;
use ipnet::IpNet;
use rib::Attrs;
use tracing::info;

use super::SpeakerError;
use super::core::{Core, hard_reset};
use super::why::{Expected, Reason};
use crate::session::Command;

/// Which way [`super::Speaker::soft_reset`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoftReset {
    /// Ask the peer for its routes again (ROUTE-REFRESH, RFC 2918): they go through the
    /// import policy as they arrive.
    In,
    /// Send the peer our Adj-RIB-Out again, then End-of-RIB.
    Out,
}

/// A peer taken down by the operator (`ctl disable`, `enabled = false`).
#[derive(Clone, Debug)]
pub(super) struct AdminDown {
    /// Since when.
    pub(super) since: Instant,
    /// What the operator said (the shutdown communication), or how it came about.
    pub(super) note: String,
}

impl Core {
    /// Hard reset of the peer at `address`: Cease / Administrative Reset (inside a Hard
    /// Reset, RFC 8538, when both sides sent the N bit, so that the peer drops our routes
    /// as we drop its), with `message` as the shutdown communication (RFC 9003), then a
    /// new session at once. A session that is not up is started again (its back-off
    /// forgotten).
    pub(crate) fn reset_peer(
        &mut self,
        address: IpAddr,
        message: Option<&str>,
    ) -> Result<(), SpeakerError> {
        let p = self
            .peers
            .get_mut(&address)
            .ok_or(SpeakerError::UnknownPeer(address))?;
        if p.admin_down.is_some() {
            return Err(SpeakerError::PeerDisabled(address));
        }
        let cease = match message {
            Some(m) => Notification::cease_with_communication(subcode::cease::ADMIN_RESET, m),
            None => Notification::new(bgp_wire::ErrorCode::CEASE, subcode::cease::ADMIN_RESET),
        };
        let was = p.session.state;
        let cease = hard_reset(cease, p.session.hard_reset);
        p.why.expected = Some(Expected {
            reason: Reason::AdminDown,
            message: "reset by the operator (Cease / Administrative Reset)".to_owned(),
        });
        let generation = p.generation;
        self.held_down.remove(&address);
        info!(peer = %address, state = was.name(), "hard reset: Cease (Administrative Reset), a new session after the idle hold time");
        // AutomaticStop, as a router does on `clear`: the Cease, then a new session after
        // the idle hold time. A new connection right behind the Cease can reach the peer
        // first, and a peer with graceful restart takes it for our restart (RFC 4724
        // section 4.2) and never reads the Cease.
        self.command(address, generation, Command::Reset(cease));
        Ok(())
    }

    /// Soft reset of the established peer at `address`. `In`: a ROUTE-REFRESH for every
    /// negotiated family (the peer must have negotiated it: [`SpeakerError::NoRefresh`]
    /// otherwise). `Out`: the whole Adj-RIB-Out again, then End-of-RIB, the session kept.
    pub(crate) fn soft_reset(
        &mut self,
        address: IpAddr,
        direction: SoftReset,
    ) -> Result<(), SpeakerError> {
        let p = self
            .peers
            .get(&address)
            .ok_or(SpeakerError::UnknownPeer(address))?;
        let Some(ctx) = p
            .session
            .ctx
            .filter(|_| p.session.state == State::Established)
        else {
            return Err(SpeakerError::NotEstablished(address));
        };
        let (id, generation) = (p.id, p.generation);
        match direction {
            SoftReset::In => {
                if !p.session.route_refresh {
                    return Err(SpeakerError::NoRefresh(address));
                }
                info!(peer = %address, "soft reset in: ROUTE-REFRESH sent");
                self.command(
                    address,
                    generation,
                    Command::RouteRefresh(ctx.families.iter().collect()),
                );
            }
            SoftReset::Out => {
                info!(peer = %address, "soft reset out: the Adj-RIB-Out sent again");
                self.rib.refresh(id);
            }
        }
        Ok(())
    }

    /// Takes the peer at `address` down (`enabled` false: Cease / Administrative
    /// Shutdown with `message` as its shutdown communication, RFC 9003, inside a Hard
    /// Reset with the N bit on both sides; no connection out, the peer's refused) or
    /// brings it back (`true`: its session starts). Returns whether anything changed: a
    /// peer already in that state is left alone.
    pub(crate) fn set_peer_enabled(
        &mut self,
        now: Instant,
        address: IpAddr,
        enabled: bool,
        message: Option<&str>,
    ) -> Result<bool, SpeakerError> {
        let p = self
            .peers
            .get_mut(&address)
            .ok_or(SpeakerError::UnknownPeer(address))?;
        if p.admin_down.is_none() == enabled {
            return Ok(false);
        }
        let generation = p.generation;
        if enabled {
            p.admin_down = None;
            p.why.expected = None;
            let waits_for_bfd = p.bfd.is_some_and(|b| b.holding);
            info!(peer = %address, "peer enabled: the session starts");
            if !waits_for_bfd && !self.held_down.contains_key(&address) {
                self.command(address, generation, Command::Start);
            }
            return Ok(true);
        }
        let text = message.unwrap_or("");
        let cease = if text.is_empty() {
            Notification::new(bgp_wire::ErrorCode::CEASE, subcode::cease::ADMIN_SHUTDOWN)
        } else {
            Notification::cease_with_communication(subcode::cease::ADMIN_SHUTDOWN, text)
        };
        let cease = hard_reset(cease, p.session.hard_reset);
        let note = if text.is_empty() {
            "disabled by the operator".to_owned()
        } else {
            format!("disabled by the operator: \"{text}\"")
        };
        p.why.expected = Some(Expected {
            reason: Reason::AdminDown,
            message: note.clone(),
        });
        p.admin_down = Some(AdminDown { since: now, note });
        info!(peer = %address, message = text, "peer disabled: Cease (Administrative Shutdown)");
        self.command(address, generation, Command::Stop(Some(cease)));
        Ok(true)
    }

    /// Originates `prefix` with `attrs` at run time (`ctl announce`): kept across
    /// reloads, and over a `[[route]]` of the same prefix that a reload removes, until
    /// [`Core::withdraw_runtime`]. Returns whether it replaced an earlier one.
    pub(crate) fn announce(&mut self, prefix: IpNet, attrs: Attrs) -> bool {
        let replaced = self.runtime_routes.insert(prefix, attrs.clone()).is_some();
        self.rib.originate(prefix, attrs);
        info!(%prefix, replaced, "route announced at run time");
        replaced
    }

    /// Withdraws a route of [`Core::announce`]; `false` when there is none for `prefix`.
    /// A `[[route]]` of the file for the same prefix is originated again as configured.
    pub(crate) fn withdraw_runtime(&mut self, prefix: IpNet) -> bool {
        if self.runtime_routes.remove(&prefix).is_none() {
            return false;
        }
        match self.config.routes.iter().find(|r| r.prefix == prefix) {
            Some(r) => {
                let attrs = r.attrs.clone();
                self.rib.originate(prefix, attrs);
            }
            None => self.rib.withdraw_local(prefix),
        }
        info!(%prefix, "route withdrawn at run time");
        true
    }
}
