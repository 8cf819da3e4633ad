//! The session's timers: one table of deadlines, the single source of truth for when the
//! machine next needs the caller's attention.

use std::time::Instant;

use crate::io::ConnId;

/// A timer of RFC 4271 §8 (plus RFC 9687's send hold timer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Time between outbound connection attempts, also after one that failed.
    ConnectRetry,
    /// Time in Idle before an automatic restart (damped on repeated failures). It only
    /// delays our own connects: the peer's connection is accepted while it runs.
    IdleHold,
    /// Time without KEEPALIVE or UPDATE from the peer before the session is dropped.
    Hold(ConnId),
    /// Time between our KEEPALIVEs.
    Keepalive(ConnId),
    /// Time an accepted connection waits for the peer's OPEN before sending ours.
    DelayOpen(ConnId),
    /// Time our output may stay blocked before the peer is dropped (RFC 9687).
    SendHold(ConnId),
}

const N: usize = 10;

impl Timer {
    const fn index(self) -> usize {
        match self {
            Self::ConnectRetry => 0,
            Self::IdleHold => 1,
            Self::Hold(c) => 2 + c.index(),
            Self::Keepalive(c) => 4 + c.index(),
            Self::DelayOpen(c) => 6 + c.index(),
            Self::SendHold(c) => 8 + c.index(),
        }
    }

    const ALL: [Self; N] = [
        Self::ConnectRetry,
        Self::IdleHold,
        Self::Hold(ConnId::Outbound),
        Self::Hold(ConnId::Inbound),
        Self::Keepalive(ConnId::Outbound),
        Self::Keepalive(ConnId::Inbound),
        Self::DelayOpen(ConnId::Outbound),
        Self::DelayOpen(ConnId::Inbound),
        Self::SendHold(ConnId::Outbound),
        Self::SendHold(ConnId::Inbound),
    ];
}

/// Deadlines indexed by [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers([Option<Instant>; N]);

impl Timers {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.0[t.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        self.0[t.index()] = None;
    }

    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.0[t.index()]
    }

    /// Stops every timer of one connection.
    pub(crate) fn stop_conn(&mut self, c: ConnId) {
        for t in [
            Timer::Hold(c),
            Timer::Keepalive(c),
            Timer::DelayOpen(c),
            Timer::SendHold(c),
        ] {
            self.stop(t);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// The first timer due at `now`, in a fixed order so that replays are deterministic.
    pub(crate) fn expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some_and(|d| d <= now))
            .min_by_key(|t| self.get(*t))
    }
}
