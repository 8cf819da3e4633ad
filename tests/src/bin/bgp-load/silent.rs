//! `silent`: K TCP connections, each from its own source address, that never send a
//! byte: what a speaker with dynamic neighbours gets from a scan or a broken client. Each
//! reads (and discards) what the target sends and waits for the target to close it; the
//! report says how many were connected, how many the target closed, and when.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

use crate::addrs;
use crate::cli::{Common, SilentArgs};
use crate::report;
use crate::stats::{AtomicTime, Clock, secs};

/// Connection attempts in flight at once: a burst of thousands of SYNs overflows a
/// listener's backlog and costs each loser a second of retransmission.
const CONNECTING: usize = 128;
/// Bound of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes a connection reads from the target before it counts as a talker (a
/// speaker sends its OPEN and at most a NOTIFICATION).
const READ_MAX: u64 = 64 << 10;

/// Everything decided before the first packet.
#[derive(Debug)]
pub(crate) struct Plan {
    target: SocketAddr,
    sources: Vec<IpAddr>,
}

/// Checks the arguments against the network rule.
pub(crate) fn prepare(c: &Common, a: &SilentArgs, initial_netns: bool) -> Result<Plan, String> {
    Ok(Plan {
        target: c.target,
        sources: addrs::sources(c.source, a.connections, c.target, initial_netns)?,
    })
}

impl Plan {
    pub(crate) fn sessions(&self) -> usize {
        self.sources.len()
    }
}

/// The report of `silent`.
#[derive(Debug, Serialize)]
pub(crate) struct Silent {
    pub(crate) mode: &'static str,
    pub(crate) ok: bool,
    pub(crate) timed_out: bool,
    pub(crate) errors: Vec<String>,
    pub(crate) target: String,
    pub(crate) source: String,
    pub(crate) connections: usize,
    pub(crate) connected: usize,
    pub(crate) all_connected_s: Option<f64>,
    pub(crate) closed_by_target: usize,
    pub(crate) closed_s: report::Summary,
    pub(crate) bytes_received: u64,
    pub(crate) still_open: usize,
    pub(crate) elapsed_s: f64,
}

#[derive(Debug, Default)]
struct Conn {
    connected_at: AtomicTime,
    closed_at: AtomicTime,
}

/// Runs the plan until every connection is closed by the target, or the deadline.
pub(crate) async fn execute(plan: Plan, deadline: Instant) -> Silent {
    let started = Instant::now();
    let clock = Clock { base: started };
    let k = plan.sources.len();
    let conns: Arc<Vec<Conn>> = Arc::new((0..k).map(|_| Conn::default()).collect());
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut tasks = Vec::with_capacity(k);
    for (i, &source) in plan.sources.iter().enumerate() {
        let (conns, errors, received, gate) = (
            conns.clone(),
            errors.clone(),
            received.clone(),
            gate.clone(),
        );
        let target = plan.target;
        tasks.push(tokio::spawn(async move {
            let until = tokio::time::Instant::from_std(deadline);
            let stream = {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                let attempt = async {
                    let s = match source {
                        IpAddr::V4(_) => TcpSocket::new_v4(),
                        IpAddr::V6(_) => TcpSocket::new_v6(),
                    }?;
                    s.bind(SocketAddr::new(source, 0))?;
                    s.connect(target).await
                };
                let bound = until.min(tokio::time::Instant::now() + CONNECT_TIMEOUT);
                match tokio::time::timeout_at(bound, attempt).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        push(&errors, format!("{source}: connect: {e}"));
                        return;
                    }
                    Err(_) => {
                        push(&errors, format!("{source}: connect timed out"));
                        return;
                    }
                }
            };
            conns[i].connected_at.set_once(clock.now_ns());
            let mut stream = stream;
            let mut buf = vec![0u8; 4096];
            let mut total = 0u64;
            // Bounded: by READ_MAX bytes and by the deadline.
            loop {
                match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                    Err(_) => return,
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        conns[i].closed_at.set_once(clock.now_ns());
                        return;
                    }
                    Ok(Ok(n)) => {
                        total += n as u64;
                        received.fetch_add(n as u64, Ordering::Relaxed);
                        if total > READ_MAX {
                            push(
                                &errors,
                                format!("{source}: the target sent more than {READ_MAX} bytes"),
                            );
                            return;
                        }
                    }
                }
            }
        }));
    }
    // Progress, at most once a second, until all are closed or the deadline.
    let mut last = Instant::now();
    let looks = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        / 50
        + 2;
    for _ in 0..looks {
        if tasks.iter().all(tokio::task::JoinHandle::is_finished) || Instant::now() >= deadline {
            break;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let connected = conns
                .iter()
                .filter(|c| c.connected_at.get().is_some())
                .count();
            let closed = conns.iter().filter(|c| c.closed_at.get().is_some()).count();
            eprintln!(
                "bgp-load silent: {:>7.1}s connected {connected}/{k}, closed by the target {closed}",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let timed_out = Instant::now() >= deadline;
    for t in &tasks {
        t.abort();
    }
    let connected_at: Vec<u64> = conns.iter().filter_map(|c| c.connected_at.get()).collect();
    let closed: Vec<f64> = conns
        .iter()
        .filter_map(|c| c.closed_at.get().map(secs))
        .collect();
    let connected = connected_at.len();
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ok = connected == k && closed.len() == k && errors.is_empty() && !timed_out;
    Silent {
        mode: "silent",
        ok,
        timed_out,
        errors: errors.into_iter().take(100).collect(),
        target: plan.target.to_string(),
        source: plan
            .sources
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        connections: k,
        connected,
        all_connected_s: (connected == k)
            .then(|| connected_at.iter().copied().max().map(secs))
            .flatten(),
        closed_by_target: closed.len(),
        still_open: connected - closed.len(),
        closed_s: report::Summary::of(closed),
        bytes_received: received.load(Ordering::Relaxed),
        elapsed_s: secs(u64::try_from(started.elapsed().as_nanos()).unwrap_or(0)),
    }
}

fn push(errors: &std::sync::Mutex<Vec<String>>, e: String) {
    let mut v = errors.lock().unwrap_or_else(|p| p.into_inner());
    if v.len() < 100 {
        v.push(e);
    }
}
