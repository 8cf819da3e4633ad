//! `rr-daemon ctl`: the control API ([`crate::api`]) from the command line.
//!
//! ```text
//! rr-daemon ctl [--api ADDR] [--json] peers
//! rr-daemon ctl [--api ADDR] [--json] neighbor ADDRESS
//! rr-daemon ctl [--api ADDR] [--json] routes [PREFIX|ADDRESS] [--limit N] [--offset M]
//! rr-daemon ctl [--api ADDR] [--json] routes --peer ADDRESS --in|--out [--received]
//!     [PREFIX|ADDRESS] [--more-specifics PREFIX] [--community C] [--large-community C]
//!     [--as ASN] [--origin-as ASN] [--family ipv4|ipv6] [--limit N] [--cursor C] [--all]
//! rr-daemon ctl [--api ADDR] [--json] status
//! rr-daemon ctl [--api ADDR] [--json] fib
//! ```
//!
//! Tables read like `birdc show protocols`; `--json` prints the API's answer as it is
//! (one line: pipe it to `jq`).
//! When the daemon cannot be reached, or answers with an error, one line goes to stderr
//! (`rr-daemon ctl: cannot reach the daemon at 127.0.0.1:9179: connection refused`) and
//! the exit status is 1. Blocking and single-threaded: no runtime is started.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;

use crate::api::{
    DEFAULT_ADDR, ErrorBody, PeerRoutesResponse, Readiness, RouteDetail, RoutesResponse,
    StatusResponse, format_duration,
};
use crate::speaker::{PeerDetail, PeerStatus};

/// `rr-daemon ctl`'s arguments.
#[derive(Args, Clone, Debug)]
pub struct CtlArgs {
    /// The daemon's API address (`[api] listen`): `HOST:PORT` or `http://HOST:PORT`.
    #[arg(long, default_value = DEFAULT_ADDR, global = true)]
    pub api: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The daemon's control socket (`[control] socket`): the actions go there
    /// (default /run/rr-daemon/control.sock), and with it the read commands too.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// What to show.
    #[command(subcommand)]
    pub what: CtlCommand,
}

/// What `rr-daemon ctl` shows.
#[derive(Subcommand, Clone, Debug)]
pub enum CtlCommand {
    /// Every peer: address, AS, state, time in state or uptime, and why it is not up.
    Peers,
    /// One peer, every field, with why it is not up (`down_reason`).
    Neighbor {
        /// The peer's address (`192.0.2.1`, `fe80::2%eth0`).
        address: String,
    },
    /// Best routes; with PREFIX, every path of that prefix and why the others lost; with
    /// an ADDRESS, the same for its longest match. With `--peer`, a peer's Adj-RIB-In
    /// (`--in`) or Adj-RIB-Out (`--out`), where PREFIX selects one prefix and ADDRESS
    /// its longest match.
    Routes {
        /// A prefix (`10.0.0.0/24`) or an address (its longest match).
        prefix: Option<String>,
        /// Routes to list (the API caps it).
        #[arg(long)]
        limit: Option<usize>,
        /// Routes to skip (paging: the previous answer's `next_offset`).
        #[arg(long)]
        offset: Option<usize>,
        /// A peer's table instead of the Loc-RIB, and its filters.
        #[command(flatten)]
        peer: Box<PeerRoutesArgs>,
    },
    /// The speaker: identity, readiness and table sizes.
    Status,
    /// Kernel routes (`[fib]`): counters, installed routes, failures with the kernel's
    /// error. "`[fib]` is off (HTTP 404)" when the daemon does not program routes.
    Fib,
    /// The actions, over the control socket (`crate::control::cli`).
    #[command(flatten)]
    Action(crate::control::cli::Action),
    /// Write an MRT dump of the RIB (RFC 6396 TABLE_DUMP_V2, `GET /v1/mrt`) to FILE
    /// (`-` for stdout), for `bgpdump` and the like.
    DumpMrt {
        /// Where to write it.
        file: std::path::PathBuf,
    },
}

/// `ctl routes --peer ADDRESS --in|--out`: which table of a peer, filtered how.
#[derive(Args, Clone, Debug, Default)]
pub struct PeerRoutesArgs {
    /// List a peer's routes instead of the Loc-RIB (with `--in` or `--out`).
    #[arg(long, value_name = "ADDRESS")]
    pub peer: Option<String>,
    /// The peer's Adj-RIB-In: what it sent, after import policy (see `--received`).
    #[arg(long = "in", requires = "peer", conflicts_with = "out")]
    pub dir_in: bool,
    /// The peer's Adj-RIB-Out: what we sent it, as sent.
    #[arg(long = "out", requires = "peer")]
    pub out: bool,
    /// With `--in`: the routes as received, before import policy (those it rejected
    /// included); needs `soft_reconfiguration_inbound = true` for the peer.
    #[arg(long, requires = "dir_in")]
    pub received: bool,
    /// Only PREFIX and the prefixes inside it.
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "peer",
        conflicts_with = "prefix"
    )]
    pub more_specifics: Option<String>,
    /// Only routes carrying this community (`65000:100`, `no-export`).
    #[arg(long, requires = "peer")]
    pub community: Option<String>,
    /// Only routes carrying this large community (`65000:1:2`).
    #[arg(long, requires = "peer")]
    pub large_community: Option<String>,
    /// Only routes whose AS path holds this AS.
    #[arg(long = "as", value_name = "ASN", requires = "peer")]
    pub as_path: Option<String>,
    /// Only routes that originate in this AS (the last of the path).
    #[arg(long, value_name = "ASN", requires = "peer")]
    pub origin_as: Option<String>,
    /// Only routes of this family: `ipv4` or `ipv6`.
    #[arg(long, requires = "peer")]
    pub family: Option<String>,
    /// Start at this cursor (the previous page's `next_cursor`).
    #[arg(long, requires = "peer", conflicts_with = "offset")]
    pub cursor: Option<String>,
    /// Every page, one after the other (`--json`: one JSON answer per line).
    #[arg(long, requires = "peer")]
    pub all: bool,
}

/// Why `rr-daemon ctl` failed, in one line.
#[derive(Debug)]
pub enum CtlError {
    /// No connection to the daemon, or no answer in time.
    Unreachable {
        /// The address tried.
        api: String,
        /// Why, in words (`connection refused`).
        cause: String,
    },
    /// The daemon answered with an error.
    Api {
        /// HTTP status.
        status: u16,
        /// The daemon's words.
        message: String,
    },
    /// The answer was not what this version of `ctl` understands.
    BadAnswer(String),
    /// The command line asks for something that cannot be.
    Usage(String),
    /// The control socket could not be reached, or the daemon refused the action: its
    /// one line.
    Control(String),
    /// The output file could not be written: the path and why.
    Write(String, String),
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable { api, cause } => {
                write!(f, "cannot reach the daemon at {api}: {cause}")
            }
            Self::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            Self::BadAnswer(why) => write!(f, "unexpected answer from the daemon: {why}"),
            Self::Usage(why) => f.write_str(why),
            Self::Control(why) => f.write_str(why),
            Self::Write(path, why) => write!(f, "cannot write {path}: {why}"),
        }
    }
}

impl std::error::Error for CtlError {}

/// Runs `ctl`: prints the answer to stdout, or one line to stderr and exits 1.
pub fn main(args: &CtlArgs) -> ExitCode {
    match run(args) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rr-daemon ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the daemon and returns what `ctl` prints.
pub fn run(args: &CtlArgs) -> Result<String, CtlError> {
    let mut client = Client::new(&args.api);
    client.socket.clone_from(&args.socket);
    match &args.what {
        CtlCommand::Action(a) => crate::control::cli::run(args, a),
        CtlCommand::Peers => {
            let (json, peers) = client.get::<Vec<PeerStatus>>("/v1/peers")?;
            Ok(if args.json {
                raw(json)
            } else {
                peers_table(&peers)
            })
        }
        CtlCommand::Neighbor { address } => {
            let path = format!("/v1/peers/{}", address.replace('%', "%25"));
            let (json, peer) = client.get::<PeerDetail>(&path)?;
            Ok(if args.json {
                raw(json)
            } else {
                neighbor_text(&peer)
            })
        }
        CtlCommand::Routes {
            prefix,
            limit,
            offset,
            peer: table,
        } if table.peer.is_some() => {
            let PeerRoutesArgs {
                peer,
                dir_in,
                out,
                received,
                more_specifics,
                community,
                large_community,
                as_path,
                origin_as,
                family,
                cursor,
                all,
            } = &**table;
            let peer = peer.as_deref().unwrap_or_default();
            let dir = match (dir_in, out) {
                (true, false) => "in",
                (false, true) => "out",
                _ => {
                    return Err(CtlError::Usage(
                        "routes --peer needs --in (what the peer sent) or --out (what it was sent)"
                            .to_owned(),
                    ));
                }
            };
            let mut params: Vec<(&str, String)> = vec![("dir", dir.to_owned())];
            if *received {
                params.push(("view", "received".to_owned()));
            }
            if let Some(p) = prefix {
                let key = if p.contains('/') { "prefix" } else { "longest" };
                params.push((key, p.clone()));
            }
            for (k, v) in [
                ("orlonger", more_specifics),
                ("community", community),
                ("large_community", large_community),
                ("as", as_path),
                ("origin_as", origin_as),
                ("family", family),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    params.push((k, v.clone()));
                }
            }
            for (k, v) in [("limit", limit), ("offset", offset)] {
                if let Some(v) = v {
                    params.push((k, v.to_string()));
                }
            }
            let base = format!("/v1/peers/{}/routes", peer.replace('%', "%25"));
            peer_routes(&client, &base, params, *all, args.json)
        }
        CtlCommand::Routes {
            prefix: Some(p),
            limit: _,
            offset: _,
            peer: _,
        } => {
            let path = format!("/v1/routes/{}", p.replace('/', "%2F"));
            let (json, detail) = client.get::<RouteDetail>(&path)?;
            Ok(if args.json {
                raw(json)
            } else {
                route_table(&detail)
            })
        }
        CtlCommand::Routes {
            prefix: None,
            limit,
            offset,
            peer: _,
        } => {
            let mut path = "/v1/routes".to_owned();
            let mut sep = '?';
            for (k, v) in [("limit", limit), ("offset", offset)] {
                if let Some(v) = v {
                    let _ = write!(path, "{sep}{k}={v}");
                    sep = '&';
                }
            }
            let (json, page) = client.get::<RoutesResponse>(&path)?;
            Ok(if args.json {
                raw(json)
            } else {
                routes_table(&page)
            })
        }
        CtlCommand::Status => {
            let (json, status) = client.get::<StatusResponse>("/v1/status")?;
            Ok(if args.json {
                raw(json)
            } else {
                status_text(&status)
            })
        }
        CtlCommand::Fib => {
            let (json, fib) = client.get::<crate::fib::FibReport>("/v1/fib")?;
            Ok(if args.json { raw(json) } else { fib_text(&fib) })
        }
        CtlCommand::DumpMrt { file } => dump_mrt(&client, file),
    }
}

/// Percent-encodes a query value (prefixes carry `/`, link-local peers `%`).
fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `ctl routes --peer`: one page, or every page with `all`.
fn peer_routes(
    client: &Client,
    base: &str,
    mut params: Vec<(&str, String)>,
    all: bool,
    json: bool,
) -> Result<String, CtlError> {
    let mut out = String::new();
    let mut total = 0usize;
    // Bounded: each page moves the cursor forward over at most every slot of the RIB.
    loop {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_query(v)))
            .collect();
        let path = format!("{base}?{}", query.join("&"));
        let (body, page) = client.get::<PeerRoutesResponse>(&path)?;
        let first = total == 0;
        total += page.routes.len();
        if json {
            out.push_str(&raw(body));
        } else {
            out.push_str(&peer_routes_table(&page, !first));
        }
        match (&page.next_cursor, all) {
            (Some(next), true) => {
                params.retain(|(k, _)| *k != "cursor" && *k != "offset");
                params.push(("cursor", next.clone()));
            }
            (Some(next), false) => {
                if !json {
                    let _ = writeln!(out, "... more routes: --cursor {next} for the next page");
                }
                return Ok(out);
            }
            (None, _) => {
                if !json && all {
                    let _ = writeln!(out, "{total} routes");
                }
                return Ok(out);
            }
        }
    }
}

/// One page of a peer's table; `continued` leaves out the header after the first page.
fn peer_routes_table(page: &PeerRoutesResponse, continued: bool) -> String {
    let out_dir = page.view == "sent";
    let rows: Vec<Vec<String>> = page
        .routes
        .iter()
        .map(|r| {
            let mut v = vec![
                match r.path_id {
                    Some(id) => format!("{} (path {id})", r.prefix),
                    None => r.prefix.to_string(),
                },
                or_dash(r.attrs.next_hop),
                if r.attrs.as_path.is_empty() {
                    "-".to_owned()
                } else {
                    r.attrs.as_path.clone()
                },
                or_dash(r.attrs.local_pref),
                or_dash(r.attrs.med),
                if r.attrs.communities().is_empty() && r.attrs.large_communities().is_empty() {
                    "-".to_owned()
                } else {
                    let mut c = r.attrs.communities().to_vec();
                    c.extend(r.attrs.large_communities().iter().cloned());
                    c.join(" ")
                },
            ];
            if out_dir {
                v.push(r.from.map_or_else(|| "local".to_owned(), |a| a.to_string()));
            } else {
                let mut st = r.status.clone();
                if r.stale {
                    st.push_str(" (stale)");
                }
                if let Some(why) = &r.reason {
                    let _ = write!(st, ": {why}");
                }
                v.push(st);
            }
            v
        })
        .collect();
    let last = if out_dir { "From" } else { "Status" };
    let t = table(
        &[
            "Prefix",
            "Next hop",
            "AS path",
            "LP",
            "MED",
            "Communities",
            last,
        ],
        &rows,
    );
    if continued {
        // The header line only once over pages.
        t.split_once('\n')
            .map_or(t.clone(), |(_, rest)| rest.to_owned())
    } else {
        t
    }
}

/// `ctl dump-mrt FILE`: streams `GET /v1/mrt` into FILE (written whole or removed).
fn dump_mrt(client: &Client, file: &std::path::Path) -> Result<String, CtlError> {
    use std::io::Write as _;
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(3)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .http_status_as_error(false)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let url = format!("{}/v1/mrt", client.base);
    let mut resp = agent.get(&url).call().map_err(|e| client.unreachable(e))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body).map_or(body, |b| b.error);
        return Err(CtlError::Api { status, message });
    }
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let name = file.display().to_string();
    let werr = |e: std::io::Error| CtlError::Write(name.clone(), e.to_string());
    if file.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut reader, &mut out).map_err(|e| client.read_error(e))?;
        out.flush().map_err(werr)?;
        return Ok(String::new());
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(werr)?);
    let n = match std::io::copy(&mut reader, &mut out) {
        Ok(n) => n,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(file);
            return Err(client.read_error(e));
        }
    };
    out.flush().map_err(werr)?;
    Ok(format!("{n} bytes of MRT written to {name}\n"))
}

/// `ctl fib`: one line of counters, then the failing prefixes, then our routes.
fn fib_text(f: &crate::fib::FibReport) -> String {
    let mut s = format!(
        "table {} protocol {}: {} installed, {} desired, {} pending, {} failing; {} adds, {} \
         deletes, {} errors in {} batches; {} adopted at start; initial sync {}\n",
        f.table,
        f.protocol,
        f.installed,
        f.desired,
        f.pending,
        f.failing,
        f.adds,
        f.deletes,
        f.errors,
        f.batches,
        f.adopted,
        if f.synced { "over" } else { "not over" },
    );
    for x in &f.failed {
        let _ = writeln!(s, "FAILING {}: {}", x.prefix, x.error);
    }
    for r in &f.routes {
        let _ = writeln!(s, "{r}");
    }
    s
}

/// The API's JSON as sent (field order kept), on one line.
fn raw(body: String) -> String {
    let mut s = body;
    s.push('\n');
    s
}

/// A blocking HTTP client for one daemon.
struct Client {
    agent: ureq::Agent,
    base: String,
    api: String,
    /// `--socket`: GETs go over the control socket.
    socket: Option<std::path::PathBuf>,
}

impl Client {
    fn new(api: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .timeout_connect(Some(Duration::from_secs(3)))
            // Error answers carry a JSON body worth reading.
            .http_status_as_error(false)
            .build();
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api.trim_end_matches('/').to_owned()
        } else {
            format!("http://{api}")
        };
        Self {
            agent: ureq::Agent::new_with_config(config),
            base,
            api: api.to_owned(),
            socket: None,
        }
    }

    /// GETs `path`: the JSON as sent, and as `T` (checked even when only the text is
    /// printed, so that `--json` never passes on something else).
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(String, T), CtlError> {
        let (status, body) = match &self.socket {
            Some(socket) => crate::control::cli::get(socket, path)?,
            None => self.get_http(path)?,
        };
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<ErrorBody>(&body)
                .map(|b| b.error)
                // `/readyz`-like answers, and anything else: their text, on one line.
                .unwrap_or_else(|_| body.split_whitespace().collect::<Vec<_>>().join(" "));
            return Err(CtlError::Api { status, message });
        }
        let typed = serde_json::from_str(&body).map_err(|e| CtlError::BadAnswer(e.to_string()))?;
        Ok((body, typed))
    }

    fn get_http(&self, path: &str) -> Result<(u16, String), CtlError> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        Ok((status, body))
    }

    /// A body that broke off while read (the daemon stopped, a timeout).
    fn read_error(&self, e: std::io::Error) -> CtlError {
        CtlError::Unreachable {
            api: self.api.clone(),
            cause: format!("the answer broke off: {e}"),
        }
    }

    fn unreachable(&self, e: ureq::Error) -> CtlError {
        use std::io::ErrorKind as K;
        let cause = match &e {
            ureq::Error::Io(io) => match io.kind() {
                K::ConnectionRefused => "connection refused".to_owned(),
                K::ConnectionReset => "connection reset".to_owned(),
                K::TimedOut => "timed out".to_owned(),
                K::AddrNotAvailable => "address not available".to_owned(),
                _ => io.to_string(),
            },
            ureq::Error::Timeout(_) => "timed out".to_owned(),
            ureq::Error::HostNotFound => "host not found".to_owned(),
            other => other.to_string(),
        };
        CtlError::Unreachable {
            api: self.api.clone(),
            cause,
        }
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < widths.len() {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// `birdc show protocols`, for BGP peers.
/// `ctl peers`' Info: the peer's `description` first (`"spine 1": ...`).
fn with_description(p: &PeerStatus, info: String) -> String {
    match (&p.description, info.is_empty()) {
        (None, _) => info,
        (Some(d), true) => format!("\"{d}\""),
        (Some(d), false) => format!("\"{d}\": {info}"),
    }
}

fn peers_table(peers: &[PeerStatus]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let since = p.uptime_s.unwrap_or(p.since_s);
            let info = match (&p.down_reason, &p.last_error, p.state.as_str()) {
                (_, _, "Established") if p.graceful_restart_pending => {
                    "graceful restart: waiting for End-of-RIB".to_owned()
                }
                (_, _, "Established") => String::new(),
                (Some(d), _, _) => d.message.clone(),
                (None, Some(e), _) => e.clone(),
                (None, None, _) => String::new(),
            };
            let why = p
                .down_reason
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.reason.to_string());
            vec![
                match &p.interface {
                    Some(i) => format!("{}%{i}", p.address),
                    None => p.address.to_string(),
                },
                p.asn.to_string(),
                p.state.to_string(),
                p.bfd.map_or("-", |b| b.as_str()).to_owned(),
                format_duration(since),
                format!(
                    "{}/{}/{}",
                    p.prefixes_received, p.prefixes_accepted, p.prefixes_sent
                ),
                why,
                with_description(
                    p,
                    match (p.dynamic, info.is_empty()) {
                        (true, true) => "dynamic neighbour".to_owned(),
                        (true, false) => format!("dynamic neighbour; {info}"),
                        (false, _) => info,
                    },
                ),
            ]
        })
        .collect();
    table(
        &[
            "Address",
            "AS",
            "State",
            "BFD",
            "Since",
            "Rcvd/Acc/Sent",
            "Why",
            "Info",
        ],
        &rows,
    )
}

/// `ctl neighbor`: the peer in sections (state, session, routes, traffic, history), one
/// `key: value` line per field, `down_reason` spelled out.
fn neighbor_text(d: &PeerDetail) -> String {
    let p = &d.status;
    let mut out = String::new();
    let addr = match &p.interface {
        Some(i) => format!("{}%{i}", p.address),
        None => p.address.to_string(),
    };
    let _ = writeln!(
        out,
        "BGP neighbor {addr}, AS {}{}",
        p.asn,
        if p.dynamic {
            " (dynamic neighbour)"
        } else {
            ""
        }
    );
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<24}{v}");
    };
    line(
        "State:",
        format!(
            "{} for {}",
            p.state,
            format_duration(p.uptime_s.unwrap_or(p.since_s))
        ),
    );
    line(
        "Last up:",
        match d.last_up_s {
            Some(0) => "now".to_owned(),
            Some(s) => format!("{} ago", format_duration(s)),
            None => "never".to_owned(),
        },
    );
    if let Some(r) = &p.down_reason {
        line("Why:", format!("{}: {}", r.reason, r.message));
        line(
            "Reason since:",
            format!("{} ago", format_duration(r.since_s)),
        );
        if let Some(n) = r.next_try_in_s {
            line("Next try in:", format_duration(n));
        }
    }
    if let Some(b) = p.bfd {
        line("BFD:", b.as_str().to_owned());
    }
    let up = p.state.as_str() == "Established";
    let _ = writeln!(out, "{}", if up { "Session" } else { "Last session" });
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<24}{v}");
    };
    if d.router_id.is_none() {
        line("Negotiated:", "never established".to_owned());
    } else {
        line("Router ID:", or_dash(d.router_id));
        if d.peer_asn.is_some_and(|a| a != p.asn) {
            line("AS in OPEN:", or_dash(d.peer_asn));
        }
        let ep = |a: Option<std::net::IpAddr>, port: Option<u16>| match (a, port) {
            (Some(a), Some(p)) => format!("{a} port {p}"),
            (None, Some(p)) => format!("port {p}"),
            (a, None) => or_dash(a),
        };
        line("Local:", ep(d.local_address, d.local_port));
        line("Remote:", ep(Some(p.address), d.remote_port));
        line(
            "Hold time:",
            format!(
                "{} s, keepalive every {} s",
                or_dash(d.hold_time),
                or_dash(d.keepalive_time)
            ),
        );
        line("Families:", d.families.join(", "));
        line("Capabilities:", d.capabilities.join(", "));
    }
    let gr = &d.graceful_restart;
    line(
        "Graceful restart:",
        format!(
            "{}{}{}",
            if gr.negotiated {
                "negotiated"
            } else {
                "not negotiated"
            },
            gr.peer_restart_time
                .map_or(String::new(), |t| format!(", peer restart time {t} s")),
            if gr.state == "helping" {
                format!(", helping: {} stale routes kept", gr.stale_routes)
            } else {
                String::new()
            }
        ),
    );
    out.push_str("Routes\n");
    let rows: Vec<Vec<String>> = d
        .prefixes
        .iter()
        .map(|f| {
            vec![
                format!("  {}", f.family),
                f.received.to_string(),
                f.accepted.to_string(),
                f.best.to_string(),
                f.advertised.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(
            &["  Family", "Received", "Accepted", "Best", "Advertised"],
            &rows,
        ));
    }
    if d.soft_reconfiguration_inbound {
        out.push_str(
            "  (soft reconfiguration inbound: rejected routes kept and counted as received)\n",
        );
    }
    out.push_str("Traffic (this session)\n");
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<24}{v}");
    };
    line(
        "UPDATEs:",
        format!("{} received, {} sent", p.updates_received, p.updates_sent),
    );
    line(
        "Prefixes:",
        format!(
            "{} received, {} sent, {} held",
            p.prefixes_received, p.prefixes_sent, p.prefixes_accepted
        ),
    );
    line("Queued:", format!("{} bytes", p.queued_bytes));
    let _ = writeln!(
        out,
        "History (since added {} ago)",
        format_duration(p.age_s)
    );
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<24}{v}");
    };
    line("Flaps:", d.status.flaps.to_string());
    line(
        "Last state change:",
        format!("{} ago", format_duration(d.last_state_change_s)),
    );
    line("Last error:", or_dash(p.last_error.as_ref()));
    let note = |n: &Option<crate::speaker::NotificationInfo>| match n {
        None => "-".to_owned(),
        Some(n) => {
            let mut t = n.code_name.clone();
            match &n.subcode_name {
                Some(sub) => {
                    let _ = write!(t, " / {sub}");
                }
                None => {
                    let _ = write!(t, " / subcode {}", n.subcode);
                }
            }
            let _ = write!(t, " ({}/{})", n.code, n.subcode);
            if let Some(m) = &n.message {
                let _ = write!(t, ": \"{}\"", m.escape_debug());
            } else if !n.data.is_empty() {
                let _ = write!(t, ", data {}", n.data);
            }
            let _ = write!(t, ", {} ago", format_duration(n.age_s));
            t
        }
    };
    line("NOTIFICATION sent:", note(&d.notification_sent));
    line("NOTIFICATION received:", note(&d.notification_received));
    out
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn routes_table(page: &RoutesResponse) -> String {
    let rows: Vec<Vec<String>> = page
        .routes
        .iter()
        .map(|r| {
            vec![
                r.prefix.to_string(),
                or_dash(r.attrs.next_hop),
                r.attrs.as_path.clone(),
                r.peer.map_or_else(|| "local".to_owned(), |p| p.to_string()),
            ]
        })
        .collect();
    let mut out = table(&["Prefix", "Next hop", "AS path", "From"], &rows);
    if let Some(next) = page.next_offset {
        let _ = writeln!(
            out,
            "... more routes: --offset {next} for the next {}",
            page.limit
        );
    }
    out
}

fn route_table(d: &RouteDetail) -> String {
    let rows: Vec<Vec<String>> = d
        .paths
        .iter()
        .map(|p| {
            let mut status = match p.status.as_str() {
                "best" => "* best".to_owned(),
                s => format!("  {s}"),
            };
            if p.stale {
                status.push_str(" (stale)");
            }
            vec![
                status,
                p.peer.map_or_else(|| "local".to_owned(), |a| a.to_string()),
                or_dash(p.attrs.next_hop),
                p.attrs.as_path.clone(),
                or_dash(p.attrs.local_pref),
                or_dash(p.attrs.med),
                p.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = format!("{}\n", d.prefix);
    out.push_str(&table(
        &["Status", "From", "Next hop", "AS path", "LP", "MED", "Why"],
        &rows,
    ));
    out
}

fn status_text(s: &StatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "rr-daemon {}", s.version);
    let _ = writeln!(out, "Router ID is {}, AS {}", s.router_id, s.asn);
    let _ = writeln!(out, "Up {}", format_duration(s.uptime_s));
    ready_text(&mut out, &s.readiness);
    let r = &s.rib;
    let _ = writeln!(
        out,
        "RIB: {} prefixes, {} paths, {} attribute sets; {} paths advertised in {} update groups, {} prefixes pending",
        r.prefixes,
        r.paths,
        r.attribute_sets,
        r.adj_rib_out_paths,
        r.update_groups,
        r.pending_prefixes
    );
    out
}

fn ready_text(out: &mut String, r: &Readiness) {
    let _ = writeln!(
        out,
        "Peers: {} configured, {} established",
        r.peers, r.established
    );
    if r.ready {
        let _ = writeln!(out, "Ready");
        return;
    }
    let _ = writeln!(out, "Not ready:");
    for p in &r.not_ready {
        let _ = writeln!(out, "  {}: {}", p.address, p.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_leave_the_last_column_alone() {
        let t = table(
            &["A", "Bee", "C"],
            &[vec!["long cell".into(), "x".into(), "tail text".into()]],
        );
        assert_eq!(t, "A          Bee  C\nlong cell  x    tail text\n");
    }
}
