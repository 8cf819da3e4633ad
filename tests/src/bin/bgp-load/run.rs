//! What both modes share while they run: the clock and deadline, the sessions' records and
//! senders, errors, bounded waits with a progress line, and the closing of every session.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bgp_wire::Notification;
use bgp_wire::notification::subcode;
use tokio::sync::mpsc;

use crate::session::{End, Out, Peer, Session};
use crate::stats::{Clock, Errors, SessionStats, tick};

/// How often the coordinator looks at the sessions' counters. Completion instants are
/// taken by the sessions themselves; this only delays the start of the next phase.
pub(crate) const POLL: Duration = Duration::from_millis(5);
/// At most one progress line per this.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The state of one run, shared by the coordinator and every session task.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) clock: Clock,
    pub(crate) deadline: Instant,
    pub(crate) errors: Errors,
    /// Set once the run closes its sessions: their ends are not errors any more.
    pub(crate) stopping: AtomicBool,
    /// An established session went down: no phase can complete any more, so waits stop
    /// early instead of running into the timeout.
    lost: AtomicBool,
    pub(crate) sessions: Vec<SessionStats>,
    /// Each established session's sender, for the coordinator (replaced on reconnection).
    senders: Mutex<Vec<Option<mpsc::UnboundedSender<Out>>>>,
    /// Nanoseconds (on the clock) of the last progress line.
    last_progress: AtomicU64,
    pub(crate) mode: &'static str,
}

impl Run {
    pub(crate) fn new(
        mode: &'static str,
        clock: Clock,
        deadline: Instant,
        sessions: Vec<SessionStats>,
    ) -> Self {
        let n = sessions.len();
        Self {
            clock,
            deadline,
            errors: Errors::default(),
            stopping: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            sessions,
            senders: Mutex::new(vec![None; n]),
            last_progress: AtomicU64::new(0),
            mode,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    pub(crate) fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Records an error of session `i`, unless the run is closing its sessions.
    pub(crate) fn session_error(&self, i: usize, e: &str) {
        if !self.stopping.load(Ordering::Acquire) {
            self.errors
                .push(format!("session {i} ({}): {e}", self.sessions[i].address));
        }
    }

    /// Opens session `i` (retrying until the deadline) and records it as established.
    pub(crate) async fn establish(&self, i: usize, peer: &Peer) -> Option<Session> {
        match Session::open(peer, self.deadline).await {
            Ok(s) => {
                let st = &self.sessions[i];
                st.established_at.set_once(self.now());
                st.up.store(true, Ordering::Release);
                self.lock_senders()[i] = Some(s.sender());
                Some(s)
            }
            Err(e) => {
                self.session_error(i, &format!("not established: {e}"));
                None
            }
        }
    }

    /// Records the end of session `i`'s reading.
    pub(crate) fn ended(&self, i: usize, end: &End) {
        self.sessions[i].up.store(false, Ordering::Release);
        if !matches!(end, End::Deadline) {
            self.session_error(i, &format!("down: {}", end.describe()));
            self.lost.store(true, Ordering::Release);
        }
    }

    fn lock_senders(&self) -> std::sync::MutexGuard<'_, Vec<Option<mpsc::UnboundedSender<Out>>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues messages on session `i`; false if it never came up.
    pub(crate) fn send(&self, i: usize, bytes: bytes::Bytes) -> bool {
        match &self.lock_senders()[i] {
            Some(tx) => tx.send(Out::Bytes(bytes)).is_ok(),
            None => false,
        }
    }

    /// When the last of `range` was established, if all were.
    pub(crate) fn all_established_at(&self, range: std::ops::Range<usize>) -> Option<u64> {
        self.sessions[range]
            .iter()
            .map(|s| s.established_at.get())
            .try_fold(0, |m, t| Some(m.max(t?)))
    }

    pub(crate) fn up_count(&self, range: std::ops::Range<usize>) -> usize {
        self.sessions[range]
            .iter()
            .filter(|s| s.up.load(Ordering::Acquire))
            .count()
    }

    /// Waits until `done` holds, the deadline passes or an established session went down
    /// (false then), printing `progress` on stderr at most once a second. Bounded: one look
    /// every 5 ms until the deadline.
    pub(crate) async fn wait_until(
        &self,
        done: impl FnMut() -> bool,
        progress: impl Fn() -> String,
    ) -> bool {
        self.wait(done, progress, true).await
    }

    /// [`Run::wait_until`], but sessions going down do not end the wait (when they are
    /// what is waited for).
    pub(crate) async fn wait_through_losses(
        &self,
        done: impl FnMut() -> bool,
        progress: impl Fn() -> String,
    ) -> bool {
        self.wait(done, progress, false).await
    }

    async fn wait(
        &self,
        mut done: impl FnMut() -> bool,
        progress: impl Fn() -> String,
        stop_on_loss: bool,
    ) -> bool {
        let max_looks = self
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            / POLL.as_millis()
            + 2;
        for _ in 0..max_looks {
            if done() {
                return true;
            }
            if stop_on_loss && self.lost.load(Ordering::Acquire) {
                return false;
            }
            self.progress(&progress);
            if !tick(self.deadline, POLL).await {
                return done();
            }
        }
        done()
    }

    /// Sleeps `d` (bounded by the deadline), keeping the progress line going.
    pub(crate) async fn pause(&self, d: Duration, progress: impl Fn() -> String) -> bool {
        let until = Instant::now() + d;
        self.wait_until(|| Instant::now() >= until, progress).await
    }

    /// Prints a progress line if a second has passed since the last one.
    pub(crate) fn progress(&self, line: impl Fn() -> String) {
        let now = self.now();
        let last = self.last_progress.load(Ordering::Relaxed);
        let every = PROGRESS_EVERY.as_nanos() as u64;
        if now >= last + every
            && self
                .last_progress
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            eprintln!(
                "bgp-load {}: {:>7.1}s {}",
                self.mode,
                now as f64 / 1e9,
                line()
            );
        }
    }

    /// Sends a Cease / Administrative Shutdown on every session and waits (at most 1 s)
    /// for the target to close them.
    pub(crate) async fn close_all(&self) {
        self.stopping.store(true, Ordering::Release);
        let n = Notification::cease_with_communication(
            subcode::cease::ADMIN_SHUTDOWN,
            "bgp-load: run finished",
        );
        for tx in self.lock_senders().iter().flatten() {
            let _ = tx.send(Out::Close(n.clone()));
        }
        let until = Instant::now() + Duration::from_secs(1);
        let all = 0..self.sessions.len();
        for _ in 0..200 {
            if self.up_count(all.clone()) == 0 || !tick(until, POLL).await {
                break;
            }
        }
    }
}

/// Offsets of the sessions' first attempts: spread evenly over `spread`.
pub(crate) fn start_delay(i: usize, count: usize, spread: Duration) -> Duration {
    if count <= 1 {
        return Duration::ZERO;
    }
    spread.mul_f64(i as f64 / count as f64)
}

/// The median of sorted values.
pub(crate) fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
