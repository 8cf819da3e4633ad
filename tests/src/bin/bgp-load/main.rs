//! `bgp-load`: real BGP-4 sessions from many source addresses to one speaker, measuring how
//! fast it distributes routes (`table`: one injector, K receivers; `fabric`: K clients
//! each announcing one block, and with `--await-cease` how it shuts down); and TCP
//! connections that never speak (`silent`). `bgp-load --help` and `bgp-load table --help`
//! describe the command line.
//!
//! Network rule: the tool only connects to and from loopback addresses (127.0.0.0/8,
//! ::1), unless the process runs in a network namespace other than the initial one (the
//! inode of `/proc/self/ns/net` differs from `/proc/1/ns/net`'s; an unreadable
//! `/proc/1` counts as initial). Anything else is refused with exit status 2 before a
//! socket is opened. Every loop is bounded in count and time, the whole run by
//! `--timeout`.
//!
//! # Output: the contract
//!
//! One JSON object on stdout, whatever happens after the arguments were accepted (also on
//! timeout). Times are seconds (floats, microsecond resolution); `null` means the event
//! did not happen before the run ended. Fields may be added; these keep their meaning.
//!
//! `table` and `fabric`:
//! - `mode`: `"table"` or `"fabric"`.
//! - `ok`: everything completed exactly; the exit status is 0 exactly when this is true.
//! - `timed_out`: the run reached `--timeout` (the exit status is then 1).
//! - `errors`: strings, one per problem (a session that never came up or went down, an
//!   UPDATE the codec faulted, a NOTIFICATION received); at most 100, then one
//!   `"... and N more errors"`.
//! - `sessions`: how many sessions the run has (table: K+1, or K+2 with
//!   `--late-receiver`; fabric: K).
//! - `sessions_up_s`: from the first session's start until all of them (in table, all but
//!   the late receiver) were Established.
//! - `elapsed_s`, `target`, `source` (the first source address), `asn`, `peer_asn`,
//!   `hold_time`: what ran.
//!
//! `table`:
//! - `prefixes` (N), `receivers` (K), `seed`.
//! - `generated`: `groups` (attribute sets), `updates` and `bytes` of the announcement
//!   (End-of-RIB included), `withdraw_updates` and `withdraw_bytes`, `generate_s` (time to
//!   generate and encode; before the sessions start).
//! - `announce`: `all_complete_s` (the slowest receiver's `complete_s`, `null` unless all
//!   completed), `complete_s` (`{n, min, median, max}` over the receivers that completed),
//!   and `receivers`: one object per receiver 1..=K with `address`, `count` (prefixes held
//!   at the end of the phase: after the late receiver completed, or at the end of the run
//!   without `--withdraw`), `complete_s` (from the injector's first UPDATE until it held
//!   all N), `end_of_rib` (it received the IPv4 unicast End-of-RIB, an empty UPDATE),
//!   `end_of_rib_s` (since its own Established: a speaker sends End-of-RIB after its
//!   initial table, which is empty for receivers that came up before the announcement;
//!   the injector's End-of-RIB is not forwarded), `unexpected` (announcements of prefixes
//!   that were not injected, withdrawals of prefixes not held, faulty UPDATEs; duplicates
//!   are not counted) and `updates` (UPDATEs received in the whole run).
//! - `pause_s`: how long the run waited for `--pause-file` before withdrawing (`null`
//!   without one, or when the file never appeared).
//! - `withdraw`: `null` without `--withdraw`; otherwise the same shape, with `count` the
//!   final count (0 when right), `complete_s` from the injector's first withdrawing UPDATE
//!   until the receiver was back to 0, `end_of_rib_s` `null`, `unexpected` counted during
//!   this phase only, and the late receiver listed last when there is one.
//! - `injector_received`: UPDATEs other than End-of-RIB that reached the injector (a
//!   route-reflector client may legitimately receive nothing; reported, not judged).
//! - `replayed_updates`: UPDATEs that receivers applied from another receiver's reading of
//!   the same bytes at the same place of its session, instead of reading them themselves
//!   (counted exactly all the same; receiver 1 reads every UPDATE in full).
//! - `replayed_in_runs`: of those, the UPDATEs taken many at a time: the whole messages of
//!   a read compared at once with the log's.
//! - `late_receiver`: `null`, or `address`, `established_s` (since the injector's first
//!   UPDATE), `count`, `complete_s` and `end_of_rib_s` (since its own Established),
//!   `end_of_rib`, `end_of_rib_after_table` (the End-of-RIB came after the whole table),
//!   `unexpected`.
//! - `refresh`: `null`, or `receiver` (receiver 1's address), `route_refresh_negotiated`,
//!   `updates_after` and `announced_after` (UPDATEs and announced prefixes it received
//!   after sending its ROUTE-REFRESH), `final_count`, `expected` (0), `ok`.
//!
//! `fabric`:
//! - `clients` (K); `targets` (the reflectors: `--targets`, else just `--target`) and
//!   `rack_size` (K without `--targets`): with several targets a session is one (client,
//!   reflector) pair and `sessions` counts them; `all_complete_s`: from the first
//!   session's start until every session held the K-1 other blocks (`null` unless all
//!   did); `complete_s`: `{n, min, median, max}` of each session's completion on the
//!   same scale; `established_s`: the same of each session's first Established;
//!   `incomplete`: addresses of the sessions whose final count is not K-1
//!   (`CLIENT->REFLECTOR` with several targets); `unexpected`: summed over clients (a
//!   client's own block coming back counts); `end_of_rib`: how many clients received
//!   End-of-RIB; `updates`: `{n, min, median, max}` of the UPDATEs each session received
//!   (End-of-RIB included: more than the fewest a reflector can send means repeats).
//! - `per_client`: for at most 50 sessions, one object per session with `address`, `count`,
//!   `complete_s`, `end_of_rib`, `unexpected`; `null` for more clients.
//! - `flap`: `null` without `--flap`; otherwise `client` (client 0's address),
//!   `performed` (the Cease was sent: only after convergence, so false when the run
//!   never converged, and then the counts below are 0), `reestablished_s` (from its Cease until it was Established again),
//!   `all_updated_s` (from the Cease until the last other client was sent client 0's
//!   block again; `null` if some never were, or none was sent it again),
//!   `client_complete_s` (until client 0 held the K-1 others again), `saw_withdrawal`
//!   (how many other clients saw its block withdrawn in between), `reannounced` (how many
//!   were sent it again), `unchanged` (held it throughout without a withdrawal, which is
//!   fine), `not_updated` (addresses that lost it and did not get it back).
//! - `cease`: `null` without `--await-cease`; otherwise `awaited` (every client held all
//!   blocks, `--ready-file` was created and the run waited for the target to end the
//!   sessions), `received` (clients whose session ended with a NOTIFICATION Cease),
//!   `admin_shutdown` (of those, subcode 2), `first_s` and `last_s` (when the first and
//!   the last of them arrived, on the run's clock), `spread_s` (between the two),
//!   `without_cease_count` and `without_cease` (up to 50 `"address: how it ended"`, also
//!   clients still up at the end). `ok` needs every client's Cease.
//!
//! `silent`:
//! - `mode`, `ok`, `timed_out`, `errors`, `target`, `source`, `elapsed_s` as above.
//! - `connections` (K), `connected` (TCP connections made), `all_connected_s`,
//!   `closed_by_target` (connections the target closed), `closed_s` (`{n, min, median,
//!   max}` of when, since the start), `still_open`, `bytes_received` (all connections).
//!   `ok`: every connection made and closed by the target before the deadline.
//!
//! Progress goes to stderr, at most one line a second.

mod addrs;
mod cli;
mod encode;
mod fabric;
mod generate;
mod index;
mod light;
mod replay;
mod report;
mod run;
mod session;
mod silent;
mod stats;
mod table;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Mode};

/// Descriptors besides the sessions' (runtime, stdio, slack).
const SPARE_FDS: u64 = 64;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let c = &cli.common;
    let initial_netns = addrs::in_initial_netns();
    let plan = match &cli.mode {
        Mode::Table(a) => table::prepare(c, a, initial_netns).map(Plan::Table),
        Mode::Fabric(a) => fabric::prepare(c, a, initial_netns).map(Plan::Fabric),
        Mode::Silent(a) => silent::prepare(c, a, initial_netns).map(Plan::Silent),
    };
    let plan = match plan.and_then(|p| check_fds(&p).map(|()| p)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bgp-load: error: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = started + Duration::from_secs(c.timeout);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bgp-load: error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mode = plan.mode();
    let out = rt.block_on(async move {
        // The phases stop at the deadline by themselves; this only guards against a bug.
        let backstop = deadline + Duration::from_secs(5);
        let work = async {
            // Serialized from the structs, so that the fields keep their documented order.
            match plan {
                Plan::Table(p) => {
                    let r = table::execute(p, deadline).await;
                    (serde_json::to_string_pretty(&r), r.common.ok)
                }
                Plan::Fabric(p) => {
                    let r = fabric::execute(p, deadline).await;
                    (serde_json::to_string_pretty(&r), r.common.ok)
                }
                Plan::Silent(p) => {
                    let r = silent::execute(p, deadline).await;
                    (serde_json::to_string_pretty(&r), r.ok)
                }
            }
        };
        tokio::time::timeout_at(backstop.into(), work).await
    });
    let (json, ok) = match out {
        Ok((Ok(s), ok)) => (s, ok),
        Ok((Err(e), _)) => (
            fallback(mode, &format!("serializing the report: {e}")),
            false,
        ),
        Err(_) => (
            fallback(
                mode,
                "the run did not stop at its deadline (a bgp-load bug)",
            ),
            false,
        ),
    };
    println!("{json}");
    // The runtime's tasks (sessions being closed) are not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

enum Plan {
    Table(table::Plan),
    Fabric(fabric::Plan),
    Silent(silent::Plan),
}

impl Plan {
    fn mode(&self) -> &'static str {
        match self {
            Self::Table(_) => "table",
            Self::Fabric(_) => "fabric",
            Self::Silent(_) => "silent",
        }
    }

    fn sessions(&self) -> usize {
        match self {
            Self::Table(p) => p.sessions(),
            Self::Fabric(p) => p.sessions(),
            Self::Silent(p) => p.sessions(),
        }
    }
}

/// One socket per session must fit under the open files limit.
fn check_fds(plan: &Plan) -> Result<(), String> {
    let need = plan.sessions() as u64 + SPARE_FDS;
    match addrs::open_files_limit() {
        Some(limit) if limit < need => Err(format!(
            "{} sessions need about {need} open files, the limit is {limit} (raise it with \
             `ulimit -n`)",
            plan.sessions()
        )),
        _ => Ok(()),
    }
}

/// The report when the mode could not produce one.
fn fallback(mode: &str, error: &str) -> String {
    serde_json::json!({
        "mode": mode,
        "ok": false,
        "timed_out": true,
        "errors": [error],
    })
    .to_string()
}
