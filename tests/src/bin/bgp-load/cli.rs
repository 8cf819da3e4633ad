//! The command line: common options and the two modes, with the checks clap cannot make.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

/// Real BGP-4 sessions against one speaker, to measure how fast it distributes a table.
///
/// Every session binds its own source address (the first is --source, each further one
/// the next address) and connects to --target. The tool only ever connects to loopback
/// addresses (127.0.0.0/8, ::1), unless it runs inside a network namespace other than the
/// initial one (as a test creates): anything else is refused with exit status 2.
///
/// Output: one JSON object on stdout (its fields are documented at the top of
/// tests/src/bin/bgp-load/main.rs); progress on stderr, at most once a second. Exit
/// status: 0 when everything completed exactly (all counts exact, nothing unexpected, no
/// error, no timeout), 1 otherwise, 2 on bad arguments.
#[derive(Debug, Parser)]
#[command(name = "bgp-load", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) mode: Mode,
}

/// Options of both modes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The speaker under test, ADDR:PORT.
    #[arg(long, global = true, default_value = "127.0.0.1:179")]
    pub(crate) target: SocketAddr,
    /// Source address of the first session; session i uses this address plus i (carrying
    /// across octets: 127.0.1.255 is followed by 127.0.2.0). The router id of an IPv4
    /// session is its source address.
    #[arg(long, global = true, default_value = "127.0.1.1")]
    pub(crate) source: IpAddr,
    /// Our AS (4-octet capability carries it; above 65535 the OPEN says AS_TRANS).
    #[arg(long, global = true, default_value_t = 65000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) asn: u32,
    /// The target's AS; by default --asn (iBGP).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) peer_asn: Option<u32>,
    /// Hold time we propose, seconds: 0 (no keepalives) or at least 3. Keepalives go out
    /// every third of the negotiated hold time.
    #[arg(long, global = true, default_value_t = 90)]
    pub(crate) hold_time: u16,
    /// Bound of the whole run, seconds. When it passes, the JSON is printed with
    /// "timed_out": true and the exit status is 1.
    #[arg(long, global = true, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) timeout: u64,
    /// Spread the sessions' first connection attempts evenly over this many milliseconds
    /// (0: all at once).
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub(crate) connect_spread_ms: u64,
    /// NEXT_HOP of announced routes: `self` (each session's own source address) or an IPv4
    /// address A (session i announces A plus i). Receivers that follow RFC 4271 §6.3,
    /// rr-daemon among them, ignore routes with a 127/8 next hop: give an address here
    /// when testing on loopback.
    #[arg(long, global = true, default_value = "self")]
    pub(crate) next_hop: NextHopArg,
    /// After the last phase, wait this long before the final counts are read, so that late
    /// stray UPDATEs are counted. With --refresh, until receiver 1 was quiet this long.
    #[arg(long, global = true, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub(crate) settle_ms: u64,
    /// JSON on stdout. Always on; accepted for scripts that pass it.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// What the sessions do.
#[derive(Debug, Subcommand)]
pub(crate) enum Mode {
    /// One injector (session 0) announces a table that K receivers (sessions 1..=K) must
    /// all learn, exactly.
    ///
    /// All sessions come up first. Then the injector announces N distinct IPv4 prefixes
    /// (/16 to /24, Internet-like mix; AS paths of 1 to 10 hops; COMMUNITIES on about a
    /// third, MED on some, ORIGIN varied; 1 to 8 prefixes per attribute set; UPDATEs of at
    /// most 4096 bytes), all generated from --seed, then End-of-RIB. Each receiver reports
    /// when it held all N (seconds since the injector's first UPDATE).
    Table(TableArgs),
    /// K clients each announce their own /26 of 100.64.0.0/10 (client i:
    /// 100.64.0.0 + 64·i) right after Established, then End-of-RIB; every client must
    /// learn the K-1 other blocks and not its own.
    Fabric(FabricArgs),
    /// K TCP connections (one per source address) that never send a byte: each reads
    /// and discards what the target sends and waits for the target to close it. What a
    /// speaker's dynamic neighbour range gets from a scan. No BGP, no --asn, --hold-time
    /// or --next-hop.
    Silent(SilentArgs),
}

/// Options of `silent`.
#[derive(Debug, Args)]
pub(crate) struct SilentArgs {
    /// How many connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) connections: u64,
}

/// Options of `table`.
#[derive(Debug, Args)]
pub(crate) struct TableArgs {
    /// How many prefixes the injector announces.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=4_000_000))]
    pub(crate) prefixes: u64,
    /// How many receivers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) receivers: u64,
    /// After every receiver held all N (or the timeout), withdraw them all, and report
    /// when each receiver was back to 0 (seconds since the first withdrawing UPDATE).
    #[arg(long)]
    pub(crate) withdraw: bool,
    /// Seed of the generated table: the same seed (and --asn, --peer-asn) gives the same
    /// prefixes and attributes.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// One more receiver connects only after all others held N; its completion (seconds
    /// since its Established) and End-of-RIB are reported separately.
    #[arg(long)]
    pub(crate) late_receiver: bool,
    /// After completion, receiver 1 sends a ROUTE-REFRESH (AFI 1, SAFI 1) at the moment
    /// the injector starts withdrawing; receiver 1 must end with exactly 0 routes. Implies
    /// --withdraw.
    #[arg(long)]
    pub(crate) refresh: bool,
    /// Before withdrawing (--withdraw or --refresh), wait until this file exists (bounded
    /// by --timeout), so that a test can look at other peers' tables while the whole
    /// table is up. Without --withdraw it has no effect.
    #[arg(long, value_name = "PATH")]
    pub(crate) pause_file: Option<std::path::PathBuf>,
    /// Every receiver parses every UPDATE in full (each attribute checked as RFC 7606
    /// says). Without it receiver 1 does, and the others read the base fields and count
    /// every prefix exactly, sending an UPDATE the full way only when it is not plain
    /// IPv4 unicast with a well-framed attribute list (see `light.rs`), or replay what
    /// another receiver's reading of the same bytes did (see `replay.rs`): a hundred
    /// receivers then cost the load tool a fraction of the CPU.
    #[arg(long)]
    pub(crate) full_check: bool,
}

/// Options of `fabric`.
#[derive(Debug, Args)]
pub(crate) struct FabricArgs {
    /// How many clients.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=65_536))]
    pub(crate) clients: u64,
    /// After convergence, client 0 sends a NOTIFICATION Cease / Administrative Reset,
    /// closes and reconnects at once; report how long until it is Established again and
    /// until every other client holds its block again.
    #[arg(long)]
    pub(crate) flap: bool,
    /// After convergence, keep every session up and wait (bounded by --timeout) until the
    /// target ends them all, recording what each client received: for judging the
    /// target's shutdown (every peer must get a Cease). Sessions ending are then no
    /// errors; ending without a Cease is reported per client.
    #[arg(long, conflicts_with = "flap")]
    pub(crate) await_cease: bool,
    /// With --await-cease: create this file once every client holds all the blocks, for
    /// whoever stops the target.
    #[arg(long, value_name = "PATH", requires = "await_cease")]
    pub(crate) ready_file: Option<std::path::PathBuf>,
    /// Route reflectors, ADDR:PORT, comma-separated, instead of --target: the clients form
    /// racks of --rack-size consecutive clients, and every client of rack r holds one
    /// session with each of the T reflectors targets[r·T .. (r+1)·T] (T = targets /
    /// racks; 2 for the redundant pair of a top-of-rack topology). Every session must
    /// learn the K-1 other blocks. Not with --flap.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "rack_size",
        conflicts_with = "flap"
    )]
    pub(crate) targets: Vec<SocketAddr>,
    /// Clients per rack, with --targets; it must divide --clients.
    #[arg(long, requires = "targets", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) rack_size: Option<u64>,
}

/// `--next-hop`: the session's own address, or a base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextHopArg {
    /// Each session's source address.
    SelfAddr,
    /// Session i announces this address plus i.
    Base(Ipv4Addr),
}

impl FromStr for NextHopArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "self" {
            return Ok(Self::SelfAddr);
        }
        s.parse()
            .map(Self::Base)
            .map_err(|_| format!("`{s}` is neither `self` nor an IPv4 address"))
    }
}

impl Common {
    /// The AS of the target.
    pub(crate) fn peer_asn(&self) -> u32 {
        self.peer_asn.unwrap_or(self.asn)
    }

    /// Checks that clap cannot express.
    pub(crate) fn check(&self) -> Result<(), String> {
        if matches!(self.hold_time, 1 | 2) {
            return Err(format!(
                "--hold-time {}: must be 0 or at least 3 (RFC 4271 §4.2)",
                self.hold_time
            ));
        }
        if self.target.port() == 0 {
            return Err("--target: port 0".into());
        }
        if self.source.is_ipv6() && self.next_hop == NextHopArg::SelfAddr {
            return Err("--source is IPv6: give an IPv4 --next-hop for the IPv4 routes".into());
        }
        Ok(())
    }
}
