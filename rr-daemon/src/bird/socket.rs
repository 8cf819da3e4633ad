//! BIRD 1.6's control socket protocol, without I/O: a command line in, reply lines out.
//!
//! Calico's clients (`birdcl`, calico-node's readiness check, `calicoctl node status`)
//! talk to BIRD through a Unix stream socket; this module is what they see. The shell
//! ([`super::control`]) owns the socket, gathers the views of the speaker a command
//! needs ([`StatusView`], [`ProtoView`], [`RouteRow`]) and writes what [`Framer`] makes of
//! the [`Reply`].
//!
//! # Framing
//! The server speaks first: `0001 BIRD v0.3.3+birdv1.6.8 ready.` (the version string of
//! Calico's BIRD). Every reply line carries a four-digit code: `NNNN-text` opens a group
//! of lines of one code, ` text` (one space) continues it, and `NNNN text` ends the reply
//! (`0000 ` after tables). A connection carries any number of commands, one per line.
//! Codes are those of BIRD's `doc/reply_codes`: 1000-1999 table rows, 2000-2999 table
//! headings, 8000-8999 run-time errors, 9000-9999 parse errors.
//!
//! # Commands
//! `show status`, `show protocols [all] [NAME | "PATTERN"]`, `show route [PREFIX | for
//! ADDRESS] [all] [protocol NAME] [primary] [count]`, `configure [soft] ["FILE"]`,
//! `configure check ["FILE"]` and `down`, with BIRD 1.6's keywords (lower case, whole
//! words: `birdc` expands abbreviations before sending). Anything else is answered as BIRD
//! answers what it cannot parse: `9001 syntax error`; the commands of BIRD that rr-daemon
//! has no answer for (`show interfaces`, `show route export ...`) get `9001` with their
//! name, never a made-up table.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use bgp_fsm::DownReason;
use bgp_wire::Notification;
use ipnet::IpNet;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{Dialect, ProtoKind};

/// The version the socket announces: Calico's BIRD (`calico-node` and `calicoctl` only
/// look at the `BIRD` in front of it).
pub const VERSION: &str = "v0.3.3+birdv1.6.8";

/// The longest command line taken, as BIRD's receive buffer; a longer one gets `9000
/// Command too long`.
pub const MAX_COMMAND: usize = 1023;

/// One line of a reply: its code, whether it ends the reply, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The reply code (`0`..`9999`).
    pub code: u16,
    /// The reply's last line (`NNNN text`) rather than one of a group (`NNNN-` / ` `).
    pub last: bool,
    /// The text after the code.
    pub text: String,
}

/// A whole reply to one command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Its lines, the last one with [`Line::last`].
    pub lines: Vec<Line>,
}

impl Reply {
    /// A reply of one line.
    pub fn one(code: u16, text: impl Into<String>) -> Self {
        let mut r = Self::default();
        r.end(code, text);
        r
    }

    /// Adds a line of a group (`NNNN-text`, or ` text` after a line of the same code).
    pub fn more(&mut self, code: u16, text: impl Into<String>) {
        self.lines.push(Line {
            code,
            last: false,
            text: text.into(),
        });
    }

    /// Adds the last line (`NNNN text`).
    pub fn end(&mut self, code: u16, text: impl Into<String>) {
        self.lines.push(Line {
            code,
            last: true,
            text: text.into(),
        });
    }

    /// BIRD's parse error.
    pub fn syntax_error() -> Self {
        Self::one(9001, "syntax error")
    }
}

/// Puts reply lines on the wire as BIRD does. One per connection: whether a line opens
/// a group (`NNNN-`) or continues it (` `) depends on the code of the line before it,
/// across commands.
#[derive(Clone, Debug, Default)]
pub struct Framer {
    last: Option<u16>,
}

impl Framer {
    /// A framer for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The greeting, the first thing the server sends.
    pub fn greeting(&mut self) -> String {
        let mut out = String::new();
        self.write(&Reply::one(1, format!("BIRD {VERSION} ready.")), &mut out);
        out
    }

    /// Appends `reply`'s lines to `out`, each ended by `\n`.
    pub fn write(&mut self, reply: &Reply, out: &mut String) {
        for l in &reply.lines {
            if l.last {
                let _ = write!(out, "{:04} ", l.code);
            } else if self.last == Some(l.code) {
                out.push(' ');
            } else {
                let _ = write!(out, "{:04}-", l.code);
            }
            self.last = Some(l.code);
            // A line never breaks the framing: embedded line ends become spaces.
            out.extend(l.text.chars().map(|c| if c == '\n' { ' ' } else { c }));
            out.push('\n');
        }
    }
}

/// Which protocols `show protocols` lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// All of them.
    All,
    /// The one of this name (`9002 NAME is not a protocol` when there is none).
    Name(String),
    /// Those whose name matches this shell pattern (`*`, `?`), given in quotes.
    Pattern(String),
}

/// What `show route` selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteQuery {
    /// `show route PREFIX` (exact, `for` false) or `show route for ADDRESS|PREFIX` (the
    /// longest prefix that covers it, `for` true).
    pub prefix: Option<(IpNet, bool)>,
    /// `all`: every attribute.
    pub all: bool,
    /// `protocol NAME`.
    pub protocol: Option<String>,
    /// `primary`: the best route of each network only.
    pub primary: bool,
    /// `count`: only the counts.
    pub count: bool,
}

/// A command, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `show status`.
    ShowStatus,
    /// `show protocols [all] [NAME | "PATTERN"]`.
    ShowProtocols {
        /// `all`: the details of each.
        all: bool,
        /// Which.
        which: Which,
    },
    /// `show route ...`.
    ShowRoute(RouteQuery),
    /// `configure [soft] ["FILE"]` (reload, as SIGHUP) or `configure check ["FILE"]`.
    Configure {
        /// `check`: read and check only.
        check: bool,
        /// The file, when not the one the daemon was started with.
        file: Option<String>,
    },
    /// `down`: shut the daemon down.
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Quoted(&'a str),
}

fn tokens(line: &str) -> Option<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"')?;
            out.push(Token::Quoted(&r[..end]));
            rest = &r[end + 1..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            out.push(Token::Word(&rest[..end]));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Some(out)
}

/// Words of BIRD's grammar that cannot name a protocol.
fn keyword(w: &str) -> bool {
    matches!(
        w,
        "all" | "for" | "protocol" | "primary" | "count" | "show" | "route" | "protocols"
    )
}

/// A name BIRD's lexer takes as a symbol.
fn symbol(w: &str) -> bool {
    let mut c = w.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !keyword(w)
}

/// `ADDRESS` or `PREFIX` of `show route`, checked as BIRD checks it: the family of the
/// daemon, a length within the family's, no host bits.
fn net(w: &str, dialect: Dialect) -> Result<IpNet, Reply> {
    let (addr, len) = match w.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| Reply::syntax_error())?;
    match (addr, dialect) {
        (IpAddr::V6(_), Dialect::Bird) => {
            return Err(Reply::one(
                9001,
                "This is an IPv4 router, therefore IPv6 addresses are not supported",
            ));
        }
        (IpAddr::V4(_), Dialect::Bird6) => {
            return Err(Reply::one(
                9001,
                "This is an IPv6 router, therefore IPv4 addresses are not supported",
            ));
        }
        _ => {}
    }
    let Some(len) = len else {
        return Ok(IpNet::from(addr));
    };
    let len: u8 = len.parse().map_err(|_| Reply::syntax_error())?;
    let net = IpNet::new(addr, len)
        .map_err(|_| Reply::one(9001, format!("Invalid prefix length {len}")))?;
    if net.trunc() != net {
        return Err(Reply::one(9001, "Invalid prefix"));
    }
    Ok(net)
}

/// Parses one command line (without its line end) for `bird` or `bird6`; the error is
/// the reply to send.
pub fn parse(line: &str, dialect: Dialect) -> Result<Command, Reply> {
    use Token::{Quoted, Word};
    let Some(t) = tokens(line) else {
        return Err(Reply::syntax_error());
    };
    match t.as_slice() {
        [Word("show"), Word("status")] => Ok(Command::ShowStatus),
        [Word("show"), Word("protocols"), rest @ ..] => {
            let (all, rest) = match rest {
                [Word("all"), rest @ ..] => (true, rest),
                _ => (false, rest),
            };
            let which = match rest {
                [] => Which::All,
                [Word(n)] if symbol(n) => Which::Name((*n).to_owned()),
                [Quoted(p)] => Which::Pattern((*p).to_owned()),
                _ => return Err(Reply::syntax_error()),
            };
            Ok(Command::ShowProtocols { all, which })
        }
        [Word("show"), Word("route"), rest @ ..] => {
            route_query(rest, dialect).map(Command::ShowRoute)
        }
        [Word("configure"), rest @ ..] => {
            let rest = match rest {
                [Word("soft"), rest @ ..] if matches!(rest, [] | [Quoted(_)]) => rest,
                _ => rest,
            };
            match rest {
                [] => Ok(Command::Configure {
                    check: false,
                    file: None,
                }),
                [Quoted(f)] => Ok(Command::Configure {
                    check: false,
                    file: Some((*f).to_owned()),
                }),
                [Word("check")] => Ok(Command::Configure {
                    check: true,
                    file: None,
                }),
                [Word("check"), Quoted(f)] => Ok(Command::Configure {
                    check: true,
                    file: Some((*f).to_owned()),
                }),
                [Word(w @ ("confirm" | "undo" | "timeout")), ..] => Err(Reply::one(
                    9001,
                    format!("syntax error, configure {w} is not supported by rr-daemon"),
                )),
                _ => Err(Reply::syntax_error()),
            }
        }
        [Word("down")] => Ok(Command::Down),
        [
            Word("show"),
            Word(
                w @ ("interfaces" | "memory" | "symbols" | "static" | "bfd" | "ospf" | "rip"
                | "babel" | "roa"),
            ),
            ..,
        ] => Err(Reply::one(
            9001,
            format!("syntax error, show {w} is not supported by rr-daemon"),
        )),
        _ => Err(Reply::syntax_error()),
    }
}

fn route_query(mut rest: &[Token<'_>], dialect: Dialect) -> Result<RouteQuery, Reply> {
    use Token::Word;
    let mut q = RouteQuery::default();
    while let [first, tail @ ..] = rest {
        rest = tail;
        match first {
            Word("all") => q.all = true,
            Word("primary") => q.primary = true,
            Word("count") => q.count = true,
            Word("for") => {
                let [Word(w), tail @ ..] = rest else {
                    return Err(Reply::syntax_error());
                };
                let n = net(w, dialect)?;
                if q.prefix.replace((n, true)).is_some() {
                    return Err(Reply::syntax_error());
                }
                rest = tail;
            }
            Word("protocol") => {
                let [Word(w), tail @ ..] = rest else {
                    return Err(Reply::syntax_error());
                };
                if !symbol(w) {
                    return Err(Reply::syntax_error());
                }
                if q.protocol.replace((*w).to_owned()).is_some() {
                    return Err(Reply::one(9001, "Protocol specified twice"));
                }
                rest = tail;
            }
            Word(
                w @ ("table" | "filter" | "where" | "export" | "preexport" | "noexport"
                | "filtered" | "stats" | "import" | "roa"),
            ) => {
                return Err(Reply::one(
                    9001,
                    format!("syntax error, show route {w} is not supported by rr-daemon"),
                ));
            }
            Word(w) => {
                let n = net(w, dialect)?;
                if q.prefix.replace((n, false)).is_some() {
                    return Err(Reply::syntax_error());
                }
            }
            Token::Quoted(_) => return Err(Reply::syntax_error()),
        }
    }
    Ok(q)
}

/// A shell pattern as BIRD's `patmatch`: `*` any run of characters, `?` any one.
pub fn pattern_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative glob with one backtrack point: linear in practice, never recursive.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The clock replies are written with: now, and the zone BIRD formats times in (the
/// system's, as BIRD's `localtime`).
#[derive(Clone, Debug)]
pub struct Clock {
    /// Now.
    pub now: Timestamp,
    /// The time zone.
    pub tz: TimeZone,
}

impl Clock {
    /// `YYYY-MM-DD HH:MM:SS`, as `show status` prints times.
    pub fn datetime(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// BIRD 1.6's short time of `show protocols` and `show route`: `HH:MM:SS` within 20
    /// hours, else `MonDD` within 360 days, else the year. Always one word.
    pub fn short(&self, t: Timestamp) -> String {
        let age = self.now.as_second().saturating_sub(t.as_second());
        let fmt = if age < 20 * 3600 {
            "%H:%M:%S"
        } else if age < 360 * 86400 {
            "%b%d"
        } else {
            "%Y"
        };
        t.to_zoned(self.tz.clone()).strftime(fmt).to_string()
    }
}

/// Graceful restart recovery under way (BIRD's `-R`): `show status` says so with code
/// 0024, which calico-node's readiness check reads as not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Protocols still to recover (peers whose End-of-RIB is not in).
    pub waiting: usize,
    /// Seconds left of the wait.
    pub remaining_s: u64,
    /// The whole wait, in seconds.
    pub wait_s: u64,
}

/// What `show status` reports.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// Our router ID.
    pub router_id: Ipv4Addr,
    /// When the daemon started.
    pub boot: Timestamp,
    /// When the configuration was last (re)loaded.
    pub reconfigured: Timestamp,
    /// Graceful restart recovery, while under way.
    pub recovery: Option<Recovery>,
    /// A `down` (or a signal) is stopping the daemon.
    pub shutting_down: bool,
}

/// A protocol's state column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// `up`.
    Up,
    /// `start`: a BGP session not (yet) established.
    Start,
    /// `wait`: up, but held back (the kernel protocol during graceful restart recovery).
    Wait,
    /// `down`.
    Down,
}

impl ProtoState {
    /// As BIRD prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Start => "start",
            Self::Wait => "wait",
            Self::Down => "down",
        }
    }
}

/// Route counts of `show protocols all`'s `Routes:` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    /// Routes the protocol brought into the table.
    pub imported: u64,
    /// Routes it sends out (to the peer, or to the kernel).
    pub exported: u64,
    /// Its routes that are the best of their network.
    pub preferred: u64,
}

/// A BGP protocol's session, for `show protocols [all]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpView {
    /// BIRD's name of the session's state: `Established`, `Active`, `Connect`, `Idle`,
    /// `Passive`, `OpenSent`, `OpenConfirm`.
    pub state: &'static str,
    /// The neighbour's address.
    pub neighbor: IpAddr,
    /// The neighbour's AS.
    pub neighbor_as: u32,
    /// We keep the neighbour's routes while it restarts (graceful restart helper).
    pub helping: bool,
    /// Why the session last went down, in BIRD's words (`Socket: Connection refused`,
    /// `Received: Administrative shutdown`, `BGP Error: Hold timer expired`); cleared when
    /// it comes up.
    pub last_error: Option<String>,
    /// While established: the session's kind (`internal multihop route-reflector`).
    pub session: Option<String>,
    /// While established: our end's address, when configured.
    pub source: Option<IpAddr>,
}

/// A protocol as `show protocols` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoView {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ProtoKind,
    /// The state column.
    pub state: ProtoState,
    /// Since when it is in that state.
    pub since: Timestamp,
    /// `description "..."`.
    pub description: Option<String>,
    /// BIRD's route preference of the protocol.
    pub preference: u32,
    /// The import filter as BIRD names it (`ACCEPT`, `REJECT`, `(unnamed)`, a name).
    pub import: String,
    /// The export filter, likewise.
    pub export: String,
    /// During graceful restart recovery: what BIRD prints after `GR recovery:` (` pending`
    /// while it holds the recovery back, ` waiting` for the kernel protocol, else empty).
    pub recovery: Option<&'static str>,
    /// Its routes.
    pub routes: RouteCounts,
    /// The session, for BGP.
    pub bgp: Option<BgpView>,
}

/// BIRD's name of a protocol kind, the `proto` column.
pub fn kind_name(kind: ProtoKind) -> &'static str {
    match kind {
        ProtoKind::Kernel => "Kernel",
        ProtoKind::Device => "Device",
        ProtoKind::Direct => "Direct",
        ProtoKind::Static => "Static",
        ProtoKind::Bgp => "BGP",
    }
}

/// BIRD 1.6's default preference of a protocol kind.
pub fn default_preference(kind: ProtoKind) -> u32 {
    match kind {
        ProtoKind::Kernel => 10,
        ProtoKind::Bgp => 100,
        ProtoKind::Static => 200,
        ProtoKind::Device | ProtoKind::Direct => 240,
    }
}

/// `show status`.
pub fn show_status(s: &StatusView, clock: &Clock) -> Reply {
    let mut r = Reply::default();
    r.more(1000, format!("BIRD {VERSION}"));
    r.more(1011, format!("Router ID is {}", s.router_id));
    r.more(
        1011,
        format!("Current server time is {}", clock.datetime(clock.now)),
    );
    r.more(1011, format!("Last reboot on {}", clock.datetime(s.boot)));
    r.more(
        1011,
        format!("Last reconfiguration on {}", clock.datetime(s.reconfigured)),
    );
    if let Some(g) = s.recovery {
        r.more(24, "Graceful restart recovery in progress");
        r.more(
            24,
            format!("  Waiting for {} protocols to recover", g.waiting),
        );
        r.more(
            24,
            format!("  Wait timer is {}/{}", g.remaining_s, g.wait_s),
        );
    }
    r.end(
        13,
        if s.shutting_down {
            "Shutdown in progress"
        } else {
            "Daemon is up and running"
        },
    );
    r
}

/// The `info` column of a protocol.
fn info(p: &ProtoView) -> String {
    match &p.bgp {
        Some(b) => format!("{:<14}{}", b.state, b.last_error.as_deref().unwrap_or("")),
        None => String::new(),
    }
}

fn row(p: &ProtoView, clock: &Clock) -> String {
    format!(
        "{:<8} {:<8} {:<8} {:<5}  {:<10}  {}",
        p.name,
        kind_name(p.kind),
        "master",
        p.state.as_str(),
        clock.short(p.since),
        info(p)
    )
}

fn details(p: &ProtoView, r: &mut Reply) {
    if let Some(d) = &p.description {
        r.more(1006, format!("  Description:    {d}"));
    }
    r.more(1006, format!("  Preference:     {}", p.preference));
    r.more(1006, format!("  Input filter:   {}", p.import));
    r.more(1006, format!("  Output filter:  {}", p.export));
    if let Some(state) = p.recovery {
        r.more(1006, format!("  GR recovery:   {state}"));
    }
    if p.state != ProtoState::Down {
        let c = p.routes;
        r.more(
            1006,
            format!(
                "  Routes:         {} imported, {} exported, {} preferred",
                c.imported, c.exported, c.preferred
            ),
        );
    }
    if let Some(b) = &p.bgp {
        r.more(1006, format!("  BGP state:          {}", b.state));
        r.more(1006, format!("    Neighbor address: {}", b.neighbor));
        r.more(1006, format!("    Neighbor AS:      {}", b.neighbor_as));
        if b.helping {
            r.more(1006, "    Neighbor graceful restart active");
        }
        if let Some(s) = &b.session {
            r.more(1006, format!("    Session:          {s}"));
        }
        if let Some(a) = b.source {
            r.more(1006, format!("    Source address:   {a}"));
        }
        if let Some(e) = &b.last_error {
            r.more(1006, format!("    Last error:       {e}"));
        }
    }
    r.more(1006, "");
}

/// `show protocols [all] [NAME | "PATTERN"]` over `protos` (in BIRD's order: the file's).
pub fn show_protocols(protos: &[ProtoView], all: bool, which: &Which, clock: &Clock) -> Reply {
    let chosen: Vec<&ProtoView> = match which {
        Which::All => protos.iter().collect(),
        Which::Name(n) => match protos.iter().find(|p| &p.name == n) {
            Some(p) => vec![p],
            None => return Reply::one(9002, format!("{n} is not a protocol")),
        },
        Which::Pattern(pat) => protos
            .iter()
            .filter(|p| pattern_match(pat, &p.name))
            .collect(),
    };
    if chosen.is_empty() && matches!(which, Which::Pattern(_)) {
        return Reply::one(8003, "No protocols match");
    }
    let mut r = Reply::default();
    r.more(2002, "name     proto    table    state  since       info");
    for p in chosen {
        r.more(1002, row(p, clock));
        if all {
            details(p, &mut r);
        }
    }
    r.end(0, "");
    r
}

/// Where a route leads, as `show route` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// `via GATEWAY on IFACE`.
    Router {
        /// The next hop.
        gateway: IpAddr,
        /// The interface it is reached on.
        iface: String,
    },
    /// `dev IFACE`.
    Device(String),
    /// `blackhole`.
    Blackhole,
    /// `unreachable`: a BGP next hop the kernel has no route to.
    Unreachable,
}

impl Dest {
    fn text(&self) -> String {
        match self {
            Self::Router { gateway, iface } => format!("via {gateway} on {iface}"),
            Self::Device(i) => format!("dev {i}"),
            Self::Blackhole => "blackhole".to_owned(),
            Self::Unreachable => "unreachable".to_owned(),
        }
    }
}

/// A route, as `show route` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRow {
    /// The network.
    pub prefix: IpNet,
    /// Where it leads.
    pub dest: Dest,
    /// The protocol that brought it (a BGP protocol's name, `static1`, `kernel1`).
    pub protocol: String,
    /// Since when.
    pub since: Timestamp,
    /// The peer it came from when that is not its gateway (a reflected route).
    pub from: Option<IpAddr>,
    /// The best route of its network.
    pub primary: bool,
    /// The tail: ` (PREF)` or, for BGP, ` (PREF/IGP) [ASNi]`.
    pub info: String,
    /// `show route all`'s lines: `Type: ...` (code 1008), then the attributes (1012).
    pub attrs: Vec<(u16, String)>,
}

fn route_line(r: &RouteRow, first: bool, clock: &Clock) -> String {
    let ia = if first {
        r.prefix.to_string()
    } else {
        String::new()
    };
    let from = match r.from {
        Some(f) if !matches!(&r.dest, Dest::Router { gateway, .. } if *gateway == f) => {
            format!(" from {f}")
        }
        _ => String::new(),
    };
    format!(
        "{ia:<18} {} [{} {}{from}]{}{}",
        r.dest.text(),
        r.protocol,
        clock.short(r.since),
        if r.primary { " *" } else { "" },
        r.info
    )
}

/// `show route` over `rows` (every route of the selected networks, grouped by network,
/// the best first). `protocols` are the names `protocol NAME` may give.
pub fn show_route(rows: &[RouteRow], q: &RouteQuery, protocols: &[&str], clock: &Clock) -> Reply {
    if let Some(p) = &q.protocol
        && !protocols.contains(&p.as_str())
    {
        return Reply::one(9001, format!("{p} is not a protocol"));
    }
    let (mut shown, mut routes, mut nets) = (0usize, 0usize, 0usize);
    let mut r = Reply::default();
    let mut i = 0;
    while i < rows.len() {
        let net = rows[i].prefix;
        let end = rows[i..]
            .iter()
            .position(|x| x.prefix != net)
            .map_or(rows.len(), |k| i + k);
        nets += 1;
        let mut first = true;
        for row in &rows[i..end] {
            routes += 1;
            if q.protocol.as_ref().is_none_or(|p| *p == row.protocol) {
                shown += 1;
                if !q.count {
                    r.more(1007, route_line(row, first, clock));
                    if q.all {
                        for (code, text) in &row.attrs {
                            r.more(*code, format!("\t{text}"));
                        }
                    }
                }
                first = false;
            }
            if q.primary {
                break;
            }
        }
        i = end;
    }
    if q.count {
        r.end(
            14,
            format!("{shown} of {routes} routes for {nets} networks"),
        );
    } else if q.prefix.is_some() && routes == 0 {
        return Reply::one(8001, "Network not in table");
    } else {
        r.end(0, "");
    }
    r
}

/// The attribute lines of a BGP route (`show route all`), as BIRD 1.6 prints them.
pub fn bgp_attr_lines(a: &rib::Attrs, next_hop: Option<IpAddr>) -> Vec<(u16, String)> {
    let mut v = vec![(1008, "Type: BGP unicast univ".to_owned())];
    let origin = match a.origin.0 {
        0 => "IGP",
        1 => "EGP",
        _ => "Incomplete",
    };
    v.push((1012, format!("BGP.origin: {origin}")));
    v.push((1012, format!("BGP.as_path: {}", as_path_text(&a.as_path))));
    if let Some(nh) = next_hop {
        v.push((1012, format!("BGP.next_hop: {nh}")));
    }
    if let Some(m) = a.med {
        v.push((1012, format!("BGP.med: {m}")));
    }
    if let Some(l) = a.local_pref {
        v.push((1012, format!("BGP.local_pref: {l}")));
    }
    if a.atomic_aggregate {
        v.push((1012, "BGP.atomic_aggr: ".to_owned()));
    }
    if let Some(g) = &a.aggregator {
        v.push((1012, format!("BGP.aggregator: {} AS{}", g.address, g.asn)));
    }
    if !a.communities.is_empty() {
        let c: Vec<String> = a
            .communities
            .iter()
            .map(|c| format!("({},{})", c.0 >> 16, c.0 & 0xffff))
            .collect();
        v.push((1012, format!("BGP.community: {}", c.join(" "))));
    }
    if let Some(o) = a.originator_id {
        v.push((1012, format!("BGP.originator_id: {o}")));
    }
    if !a.cluster_list.is_empty() {
        let c: Vec<String> = a.cluster_list.iter().map(Ipv4Addr::to_string).collect();
        v.push((1012, format!("BGP.cluster_list: {}", c.join(" "))));
    }
    if !a.large_communities.is_empty() {
        let c: Vec<String> = a
            .large_communities
            .iter()
            .map(|c| format!("({}, {}, {})", c.global, c.local1, c.local2))
            .collect();
        v.push((1012, format!("BGP.large_community: {}", c.join(" "))));
    }
    v
}

/// An AS path as BIRD prints it: ASes separated by spaces, sets in `{ }`.
pub fn as_path_text(p: &bgp_wire::attr::AsPath) -> String {
    let mut out = String::new();
    for s in &p.segments {
        let set = matches!(s.ty.0, 1 | 4);
        if !out.is_empty() {
            out.push(' ');
        }
        if set {
            out.push('{');
        }
        let asns: Vec<String> = s.asns.iter().map(u32::to_string).collect();
        out.push_str(&asns.join(" "));
        if set {
            out.push_str(" }");
        }
    }
    out
}

/// The tail of a BGP route's line: ` (PREF/IGP) [ASNo]`, the origin AS (the last of the
/// path) and the origin's letter (`i`, `e`, `?`); `igp` is BIRD's next hop metric: `/0`
/// for a directly connected next hop, `/?` for one reached through another router, `/-`
/// for an unresolvable one.
pub fn bgp_route_info(a: &rib::Attrs, preference: u32, stale: bool, igp: &str) -> String {
    let mut s = format!(" ({preference}");
    if stale {
        s.push('s');
    }
    s.push_str(igp);
    s.push_str(") [");
    if let Some(last) = a
        .as_path
        .segments
        .iter()
        .rev()
        .find_map(|seg| seg.asns.last())
    {
        let _ = write!(s, "AS{last}");
    }
    s.push(match a.origin.0 {
        0 => 'i',
        1 => 'e',
        _ => '?',
    });
    s.push(']');
    s
}

/// BIRD's description of a NOTIFICATION's code and subcode.
pub fn notification_text(n: &Notification) -> String {
    let known = match (n.code.0, n.subcode) {
        (1, 0) => "Invalid message header",
        (1, 1) => "Connection not synchronized",
        (1, 2) => "Bad message length",
        (1, 3) => "Bad message type",
        (2, 0) => "Invalid OPEN message",
        (2, 1) => "Unsupported version number",
        (2, 2) => "Bad peer AS",
        (2, 3) => "Bad BGP identifier",
        (2, 4) => "Unsupported optional parameter",
        (2, 5) => "Authentication failure",
        (2, 6) => "Unacceptable hold time",
        (2, 7) => "Required capability missing",
        (2, 8) => "No supported AFI/SAFI",
        (3, 0) => "Invalid UPDATE message",
        (3, 1) => "Malformed attribute list",
        (3, 2) => "Unrecognized well-known attribute",
        (3, 3) => "Missing mandatory attribute",
        (3, 4) => "Invalid attribute flags",
        (3, 5) => "Invalid attribute length",
        (3, 6) => "Invalid ORIGIN attribute",
        (3, 7) => "AS routing loop",
        (3, 8) => "Invalid NEXT_HOP attribute",
        (3, 9) => "Optional attribute error",
        (3, 10) => "Invalid network field",
        (3, 11) => "Malformed AS_PATH",
        (4, 0) => "Hold timer expired",
        (5, 0) => "Finite state machine error",
        (5, 1) => "Unexpected message in OpenSent state",
        (5, 2) => "Unexpected message in OpenConfirm state",
        (5, 3) => "Unexpected message in Established state",
        (6, 0) => "Cease",
        (6, 1) => "Maximum number of prefixes reached",
        (6, 2) => "Administrative shutdown",
        (6, 3) => "Peer de-configured",
        (6, 4) => "Administrative reset",
        (6, 5) => "Connection rejected",
        (6, 6) => "Other configuration change",
        (6, 7) => "Connection collision resolution",
        (6, 8) => "Out of Resources",
        (7, 0) => "Invalid ROUTE-REFRESH message",
        (7, 1) => "Invalid ROUTE-REFRESH message length",
        _ => return format!("Unknown error {}.{}", n.code.0, n.subcode),
    };
    known.to_owned()
}

/// Why a session went down, in BIRD 1.6's words (its error class, then the message):
/// what `show protocols` puts after the state and `Last error:` repeats. `None` for our
/// own administrative stop, which BIRD does not report.
pub fn bgp_error(reason: &DownReason) -> Option<String> {
    Some(match reason {
        DownReason::Stopped => return None,
        DownReason::NotificationSent(n)
        | DownReason::NotSent(n)
        | DownReason::OpenRefused {
            notification: n, ..
        } => format!("BGP Error: {}", notification_text(n)),
        DownReason::NotificationReceived(n) => format!("Received: {}", notification_text(n)),
        DownReason::ConnectionFailed(e) => format!("Socket: {}", socket_error(e)),
    })
}

/// The system's message of a socket error, without Rust's ` (os error N)`; a closed
/// connection as BIRD says it.
fn socket_error(e: &str) -> String {
    let e = match e.rfind(" (os error ") {
        Some(i) if e.ends_with(')') => &e[..i],
        _ => e,
    };
    let lower = e.to_ascii_lowercase();
    if lower.contains("closed") || lower.contains("eof") || lower.is_empty() {
        return "Connection closed".to_owned();
    }
    e.to_owned()
}

/// The reply to `configure check` or `configure` once the file was read: `file` is the
/// file's path; `result` the error of reading it (`FILE:LINE:COL message`), if any.
/// `applied`: the new configuration was applied (`0003 Reconfigured`), else it was only
/// checked (`0020 Configuration OK`).
pub fn configure_reply(file: &str, result: Result<(), String>, applied: bool) -> Reply {
    let mut r = Reply::default();
    r.more(2, format!("Reading configuration from {file}"));
    match result {
        Err(e) => r.end(8002, e),
        Ok(()) if applied => r.end(3, "Reconfigured"),
        Ok(()) => r.end(20, "Configuration OK"),
    }
    r
}

/// The reply to `down`.
pub fn down_reply() -> Reply {
    Reply::one(7, "Shutdown requested")
}

/// The reply to a line longer than [`MAX_COMMAND`].
pub fn too_long() -> Reply {
    Reply::one(9000, "Command too long")
}

#[cfg(test)]
mod tests;
