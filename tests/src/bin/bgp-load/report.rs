//! The JSON object printed on stdout; the fields are documented in `main.rs`, the contract
//! other tools read. Times are seconds as floats (microsecond resolution), `null` when the
//! event did not happen.

use serde::Serialize;

/// Fields of every report.
#[derive(Debug, Serialize)]
pub(crate) struct Common {
    pub(crate) mode: &'static str,
    pub(crate) ok: bool,
    pub(crate) timed_out: bool,
    pub(crate) errors: Vec<String>,
    pub(crate) sessions: usize,
    pub(crate) sessions_up_s: Option<f64>,
    pub(crate) elapsed_s: f64,
    pub(crate) target: String,
    pub(crate) source: String,
    pub(crate) asn: u32,
    pub(crate) peer_asn: u32,
    pub(crate) hold_time: u16,
}

/// `table` mode.
#[derive(Debug, Serialize)]
pub(crate) struct Table {
    #[serde(flatten)]
    pub(crate) common: Common,
    pub(crate) prefixes: u64,
    pub(crate) receivers: usize,
    pub(crate) seed: u64,
    pub(crate) generated: Generated,
    pub(crate) announce: Phase,
    pub(crate) pause_s: Option<f64>,
    pub(crate) withdraw: Option<Phase>,
    pub(crate) injector_received: u64,
    /// UPDATEs the receivers applied from another receiver's reading of the same bytes
    /// instead of reading them themselves ([`crate::replay`]).
    pub(crate) replayed_updates: u64,
    /// Of those, UPDATEs taken many at a time, a comparison of bytes for them all.
    pub(crate) replayed_in_runs: u64,
    pub(crate) late_receiver: Option<Late>,
    pub(crate) refresh: Option<Refresh>,
}

/// What the injector sends.
#[derive(Debug, Serialize)]
pub(crate) struct Generated {
    pub(crate) groups: usize,
    pub(crate) updates: usize,
    pub(crate) bytes: usize,
    pub(crate) withdraw_updates: usize,
    pub(crate) withdraw_bytes: usize,
    pub(crate) generate_s: f64,
}

/// One phase of `table`: the announcement or the withdrawal.
#[derive(Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) all_complete_s: Option<f64>,
    pub(crate) complete_s: Summary,
    pub(crate) receivers: Vec<Receiver>,
}

/// One receiver in one phase.
#[derive(Debug, Serialize)]
pub(crate) struct Receiver {
    pub(crate) address: String,
    pub(crate) count: u64,
    pub(crate) complete_s: Option<f64>,
    pub(crate) end_of_rib: bool,
    pub(crate) end_of_rib_s: Option<f64>,
    pub(crate) unexpected: u64,
    pub(crate) updates: u64,
}

/// `table --late-receiver`.
#[derive(Debug, Serialize)]
pub(crate) struct Late {
    pub(crate) address: String,
    pub(crate) established_s: Option<f64>,
    pub(crate) count: u64,
    pub(crate) complete_s: Option<f64>,
    pub(crate) end_of_rib: bool,
    pub(crate) end_of_rib_s: Option<f64>,
    pub(crate) end_of_rib_after_table: Option<bool>,
    pub(crate) unexpected: u64,
}

/// `table --refresh`.
#[derive(Debug, Serialize)]
pub(crate) struct Refresh {
    pub(crate) receiver: String,
    pub(crate) route_refresh_negotiated: bool,
    pub(crate) updates_after: u64,
    pub(crate) announced_after: u64,
    pub(crate) final_count: u64,
    pub(crate) expected: u64,
    pub(crate) ok: bool,
}

/// min / median / max of some times (or counts), and how many there were.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) min: Option<f64>,
    pub(crate) median: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Summary {
    pub(crate) fn of(times: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = times.into_iter().collect();
        v.sort_by(f64::total_cmp);
        Self {
            n: v.len(),
            min: v.first().copied(),
            median: crate::run::median(&v).map(|m| (m * 1e6).round() / 1e6),
            max: v.last().copied(),
        }
    }
}

/// `fabric` mode.
#[derive(Debug, Serialize)]
pub(crate) struct Fabric {
    #[serde(flatten)]
    pub(crate) common: Common,
    pub(crate) clients: usize,
    pub(crate) targets: Vec<String>,
    pub(crate) rack_size: usize,
    pub(crate) all_complete_s: Option<f64>,
    /// When each session first became Established.
    pub(crate) established_s: Summary,
    pub(crate) complete_s: Summary,
    /// How many UPDATEs each client received, End-of-RIB included.
    pub(crate) updates: Summary,
    pub(crate) incomplete: Vec<String>,
    pub(crate) unexpected: u64,
    pub(crate) end_of_rib: usize,
    pub(crate) per_client: Option<Vec<Client>>,
    pub(crate) flap: Option<Flap>,
    pub(crate) cease: Option<Cease>,
}

/// `fabric --await-cease`.
#[derive(Debug, Serialize)]
pub(crate) struct Cease {
    pub(crate) awaited: bool,
    pub(crate) received: usize,
    pub(crate) admin_shutdown: usize,
    pub(crate) first_s: Option<f64>,
    pub(crate) last_s: Option<f64>,
    pub(crate) spread_s: Option<f64>,
    pub(crate) without_cease_count: usize,
    pub(crate) without_cease: Vec<String>,
}

/// One fabric client (only when there are at most 50).
#[derive(Debug, Serialize)]
pub(crate) struct Client {
    pub(crate) address: String,
    pub(crate) count: u64,
    pub(crate) complete_s: Option<f64>,
    pub(crate) end_of_rib: bool,
    pub(crate) unexpected: u64,
}

/// `fabric --flap`.
#[derive(Debug, Serialize)]
pub(crate) struct Flap {
    pub(crate) client: String,
    pub(crate) performed: bool,
    pub(crate) reestablished_s: Option<f64>,
    pub(crate) all_updated_s: Option<f64>,
    pub(crate) client_complete_s: Option<f64>,
    pub(crate) saw_withdrawal: usize,
    pub(crate) reannounced: usize,
    pub(crate) unchanged: usize,
    pub(crate) not_updated: Vec<String>,
}
