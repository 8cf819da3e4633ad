//! Protocols onto the daemon's model: the file's items become a native TOML document,
//! which [`Config::parse`] then resolves, so that a BIRD file meets every check a TOML
//! file does.
//!
//! | BIRD | native |
//! | --- | --- |
//! | `router id` | `[speaker] router_id` |
//! | `listen bgp address A port P` | `[speaker] listen` (default `0.0.0.0:179`, `bird6`: `[::]:179`) |
//! | `protocol kernel`: `export filter F` | `[fib]`: one `[[fib.ip_pool]]` per `net ~ POOL` rule of F ([`filter::kernel`]); `export none` turns it off |
//! | `protocol kernel`: `learn` | `[learn]`, with the prefixes the BGP export policies accept as `pools` |
//! | `protocol kernel`: `kernel table N` | `[fib] table` |
//! | `protocol direct`: `interface -"A", -"B", "*"` | `[learn] direct = true`, `direct_exclude = ["A", "B"]` |
//! | `protocol static`: `route P blackhole` | `[[originate]] prefix = P, blackhole = true` |
//! | `protocol static`: `route P via GW` (confd's route to a `reachableBy` gateway) | `[[fib.static_route]] prefix = P, via = GW` (installed, not announced) |
//! | `protocol bgp`: `local as` | `[speaker] asn` (one for all protocols) |
//! | `neighbor A [port P] as N` | `[[peer]] address`, `port`, `asn` |
//! | `multihop [N]`, `ttl security on` | `multihop = N` (64 without N, as BIRD), `ttl_security = N` |
//! | `passive on`, `source address`, `password` | `passive`, `source_address`, `password` |
//! | `hold time`, `keepalive time`, `connect retry time` | `hold_time` (BIRD's default 240), `keepalive_time`, `connect_retry` (BIRD's default 120) |
//! | `graceful restart [time N]` | `graceful_restart = true` / `N` (off unless written, as BIRD) |
//! | `add paths on\|rx\|tx` | `add_path` |
//! | `rr client`, `rr cluster id X` | `rr_client = true`, `cluster_id = X` |
//! | `next hop self`, `next hop keep` | `next_hop_self = "force"`, `next_hop_keep = true` |
//! | `import`/`export all\|none\|filter ...\|where ...` | `import`/`export`: `"all"`, `"none"` or a `[[policy]]` ([`filter::Compiler`]) |
//!
//! Accepted with no native key, because the daemon does the same by itself: `debug`,
//! `description`, `persist`, `scan time`, `graceful restart` and `merge paths on` of the
//! kernel protocol, `protocol device`, `gateway recursive`, `connect delay time`,
//! `error wait time`, `error forget time`. Anything else is an error naming its place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use toml::{Table, Value as T};

use super::ast::{FilterRef, Item, Opt, OptKind, Pos, ProtoKind, Protocol, Value, Word};
use super::filter::{self, Action, Change, Compiler, Found, Functions, Note, Policy};
use super::{BirdError, Dialect, ProtocolInfo, Translation};
use crate::config::Config;

/// The file's top-level tables in the order `rr-daemon/CONFIG.md` describes them: the
/// order of the translated file.
const SECTIONS: [&str; 13] = [
    "speaker",
    "api",
    "control",
    "peer_group",
    "peer",
    "dynamic_neighbors",
    "mesh",
    "policy",
    "route",
    "originate",
    "bmp",
    "fib",
    "learn",
];

fn err(pos: &Pos, msg: impl Into<String>) -> BirdError {
    BirdError::at(pos, msg)
}

/// BIRD 1.6's hold time when none is written.
const BIRD_HOLD_TIME: i64 = 240;
/// BIRD 1.6's connect retry time when none is written.
const BIRD_CONNECT_RETRY: i64 = 120;
/// BIRD 1.6's TTL for `multihop` without a number.
const BIRD_MULTIHOP_TTL: i64 = 64;

/// A BGP protocol's settings, from its template and itself.
#[derive(Default)]
struct Bgp {
    local_as: Option<(u32, Pos)>,
    neighbor: Option<(IpAddr, Option<u16>, u32, Pos)>,
    source: Option<IpAddr>,
    multihop: Option<Option<u8>>,
    ttl_security: bool,
    passive: bool,
    hold: Option<u16>,
    keepalive: Option<u16>,
    connect_retry: Option<u16>,
    graceful: Option<bool>,
    graceful_time: Option<u16>,
    add_paths: Option<(bool, bool)>,
    rr_client: bool,
    cluster_id: Option<Ipv4Addr>,
    next_hop_self: bool,
    next_hop_keep: bool,
    password: Option<String>,
    import: Option<FilterRef>,
    export: Option<FilterRef>,
    description: Option<String>,
    allow_local_as: Option<u8>,
}

/// The words of an option, as text, for matching.
fn texts(words: &[Word]) -> Vec<String> {
    words.iter().map(|w| w.value.to_string()).collect()
}

fn num(w: &Word) -> Result<u64, BirdError> {
    match w.value {
        Value::Num(n) => Ok(n),
        _ => Err(err(&w.pos, format!("a number expected, not {}", w.value))),
    }
}

fn num16(w: &Word) -> Result<u16, BirdError> {
    let n = num(w)?;
    u16::try_from(n).map_err(|_| err(&w.pos, format!("{n} is out of range (0..=65535)")))
}

fn asn(w: &Word) -> Result<u32, BirdError> {
    let n = num(w)?;
    match u32::try_from(n) {
        Ok(a) if a > 0 => Ok(a),
        _ => Err(err(&w.pos, format!("invalid AS number {n}"))),
    }
}

fn ip(w: &Word) -> Result<IpAddr, BirdError> {
    match w.value {
        Value::Ip(a) => Ok(a),
        _ => Err(err(&w.pos, format!("an address expected, not {}", w.value))),
    }
}

/// `on`/`off`/`yes`/`no` after the option's words, or nothing (on).
fn switch(words: &[Word], at: usize) -> Result<bool, BirdError> {
    match words.get(at) {
        None => Ok(true),
        Some(w) => match &w.value {
            Value::Ident(s) if s == "on" || s == "yes" => Ok(true),
            Value::Ident(s) if s == "off" || s == "no" => Ok(false),
            _ => Err(err(&w.pos, format!("on or off expected, not {}", w.value))),
        },
    }
}

fn extra(words: &[Word], from: usize) -> Result<(), BirdError> {
    match words.get(from) {
        None => Ok(()),
        Some(w) => Err(err(&w.pos, format!("syntax error, unexpected {}", w.value))),
    }
}

fn unsupported(o: &Opt, what: &str, kind: ProtoKind) -> BirdError {
    err(
        &o.pos,
        format!(
            "{what}: not supported by rr-daemon in protocol {}",
            kind.keyword()
        ),
    )
}

impl Bgp {
    fn option(&mut self, o: &Opt, notes: &mut Vec<Note>) -> Result<(), BirdError> {
        let words = match &o.kind {
            OptKind::Debug => return Ok(()),
            OptKind::Description(d) => {
                self.description = Some(d.clone());
                return Ok(());
            }
            OptKind::Channel(true, f) => {
                self.import = Some(f.clone());
                return Ok(());
            }
            OptKind::Channel(false, f) => {
                self.export = Some(f.clone());
                return Ok(());
            }
            OptKind::Interface(_) => return Err(unsupported(o, "interface", ProtoKind::Bgp)),
            OptKind::Words(w) => w,
        };
        let t = texts(words);
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        match t.as_slice() {
            ["local", "as", _] => self.local_as = Some((asn(&words[2])?, words[2].pos.clone())),
            ["local", _, "as", _] => {
                self.source = Some(ip(&words[1])?);
                self.local_as = Some((asn(&words[3])?, words[3].pos.clone()));
            }
            ["neighbor", _, "as", _] => {
                self.neighbor = Some((ip(&words[1])?, None, asn(&words[3])?, words[1].pos.clone()));
            }
            ["neighbor", _, "port", _, "as", _] => {
                let port = num16(&words[3])?;
                if port == 0 {
                    return Err(err(&words[3].pos, "invalid port 0"));
                }
                self.neighbor = Some((
                    ip(&words[1])?,
                    Some(port),
                    asn(&words[5])?,
                    words[1].pos.clone(),
                ));
            }
            ["multihop"] => self.multihop = Some(None),
            ["multihop", _] => {
                let n = num(&words[1])?;
                match u8::try_from(n) {
                    Ok(n) if n > 0 => self.multihop = Some(Some(n)),
                    _ => return Err(err(&words[1].pos, format!("invalid TTL {n} (1..=255)"))),
                }
            }
            ["direct"] => self.multihop = Some(Some(1)),
            ["ttl", "security", ..] => {
                self.ttl_security = switch(words, 2)?;
                extra(words, 3)?;
            }
            ["gateway", "recursive"] => {}
            ["gateway", "direct"] => {
                return Err(err(
                    &o.pos,
                    "gateway direct: not supported by rr-daemon (next hops are resolved \
                     through the kernel's routes, as with gateway recursive)",
                ));
            }
            ["add", "paths", ..] => {
                self.add_paths = Some(match t.get(2).copied() {
                    None | Some("on" | "yes") => (true, true),
                    Some("rx") => (true, false),
                    Some("tx") => (false, true),
                    Some("off" | "no") => (false, false),
                    Some(_) => return Err(err(&words[2].pos, "on, off, rx or tx expected")),
                });
                extra(words, 3)?;
            }
            ["graceful", "restart", "time", _] => self.graceful_time = Some(num16(&words[3])?),
            ["graceful", "restart", ..] => {
                self.graceful = Some(switch(words, 2)?);
                extra(words, 3)?;
            }
            ["connect", "retry", "time", _] => self.connect_retry = Some(num16(&words[3])?),
            ["hold", "time", _] => self.hold = Some(num16(&words[2])?),
            ["keepalive", "time", _] => self.keepalive = Some(num16(&words[2])?),
            ["connect", "delay", "time", _]
            | ["error", "wait", "time", _, ",", _]
            | ["error", "forget", "time", _]
            | ["start", "delay", "time", _] => {
                notes.push(Note {
                    pos: o.pos.clone(),
                    text: format!(
                        "{}: the daemon's own timers (connect at once, retry after \
                         connect_retry, back off after errors)",
                        t[..3].join(" ")
                    ),
                });
            }
            ["source", "address", _] => self.source = Some(ip(&words[2])?),
            ["passive", ..] => {
                self.passive = switch(words, 1)?;
                extra(words, 2)?;
            }
            ["rr", "client"] => self.rr_client = true,
            ["rr", "cluster", "id", _] => match ip(&words[3])? {
                IpAddr::V4(a) => self.cluster_id = Some(a),
                IpAddr::V6(_) => return Err(err(&words[3].pos, "a cluster ID is an IPv4 address")),
            },
            ["password", _] => match &words[1].value {
                Value::Str(s) => self.password = Some(s.clone()),
                _ => return Err(err(&words[1].pos, "password takes a quoted string")),
            },
            ["next", "hop", "self"] => {
                self.next_hop_self = true;
                self.next_hop_keep = false;
            }
            ["next", "hop", "keep"] => {
                self.next_hop_keep = true;
                self.next_hop_self = false;
            }
            // Without a number BIRD drops the check: as many as an AS_PATH holds.
            ["allow", "local", "as"] => self.allow_local_as = Some(u8::MAX),
            ["allow", "local", "as", _] => {
                let n = num(&words[3])?;
                match u8::try_from(n) {
                    Ok(n) => self.allow_local_as = Some(n),
                    _ => {
                        return Err(err(
                            &words[3].pos,
                            format!("allow local as {n}: at most 255"),
                        ));
                    }
                }
            }
            _ => return Err(unknown_or_unsupported(o, &t)),
        }
        Ok(())
    }
}

/// The words BIRD 1.6's grammar lets a `protocol bgp` option begin with (its BGP options
/// and the options of every protocol).
const BIRD16_BGP_OPTIONS: &[&str] = &[
    "add",
    "advertise",
    "allow",
    "bfd",
    "capabilities",
    "check",
    "connect",
    "debug",
    "default",
    "description",
    "deterministic",
    "disable",
    "disabled",
    "enable",
    "error",
    "export",
    "gateway",
    "graceful",
    "hold",
    "igp",
    "import",
    "interpret",
    "keepalive",
    "local",
    "med",
    "missing",
    "mrtdump",
    "multihop",
    "neighbor",
    "next",
    "passive",
    "password",
    "path",
    "prefer",
    "preference",
    "receive",
    "route",
    "router",
    "rr",
    "rs",
    "secondary",
    "setkey",
    "source",
    "start",
    "startup",
    "table",
    "ttl",
    "vrf",
];

/// An option of a `protocol bgp` we do not translate: BIRD's own `syntax error` when its
/// first word is no option of BIRD 1.6 (a typo, with the option it is closest to), else
/// not supported.
fn unknown_or_unsupported(o: &Opt, words: &[&str]) -> BirdError {
    let first = words.first().copied().unwrap_or_default();
    if first.is_empty() || BIRD16_BGP_OPTIONS.contains(&first) {
        return unsupported(o, &words.join(" "), ProtoKind::Bgp);
    }
    let near = BIRD16_BGP_OPTIONS
        .iter()
        .map(|k| (strsim::damerau_levenshtein(first, k), *k))
        .filter(|(d, _)| *d <= 2 && *d * 2 < first.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    let hint = near.map_or(String::new(), |k| format!(": did you mean `{k}`?"));
    err(
        &o.pos,
        format!("syntax error, `{first}` is no option of protocol bgp{hint}"),
    )
}

/// The whole translation.
pub(super) fn translate(
    items: &[Item],
    file: &str,
    dialect: Dialect,
) -> Result<Translation, BirdError> {
    let start = Pos {
        file: std::sync::Arc::from(file),
        line: 1,
        col: 1,
    };
    let mut router_id = None;
    let mut listen: Option<(Option<IpAddr>, Option<u16>, Pos)> = None;
    let mut functions: Functions<'_> = BTreeMap::new();
    let mut filters = BTreeMap::new();
    let mut templates: BTreeMap<(ProtoKind, &str), &Protocol> = BTreeMap::new();
    let mut protocols = Vec::new();
    for item in items {
        match item {
            Item::RouterId(id, pos) => {
                if router_id.is_some() {
                    return Err(err(pos, "router id given twice"));
                }
                router_id = Some((*id, pos.clone()));
            }
            Item::ListenBgp { address, port, pos } => {
                if listen.is_some() {
                    return Err(err(pos, "listen bgp given twice"));
                }
                listen = Some((*address, *port, pos.clone()));
            }
            Item::Function(f) => {
                if functions.insert(f.name.as_str(), f).is_some() {
                    return Err(err(&f.pos, format!("{} already defined", f.name)));
                }
            }
            Item::Filter(f) => {
                if filters.insert(f.name.as_str(), f).is_some() {
                    return Err(err(&f.pos, format!("{} already defined", f.name)));
                }
            }
            Item::Protocol(p) if p.template => {
                let name = p.name.as_deref().expect("templates are named");
                if templates.insert((p.kind, name), p).is_some() {
                    return Err(err(&p.pos, format!("template {name} already defined")));
                }
            }
            Item::Protocol(p) => protocols.push(p),
        }
    }

    let mut notes: Vec<Note> = Vec::new();
    let mut found = Found::default();
    let mut infos: Vec<ProtocolInfo> = Vec::new();
    let mut counters: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut kernel: Option<(Option<filter::Kernel>, bool, Option<u32>, Pos)> = None;
    let mut direct: Option<Vec<String>> = None;
    let mut originate: Vec<(IpNet, Pos)> = Vec::new();
    let mut statics: Vec<(IpNet, IpAddr, Pos)> = Vec::new();
    let mut bgps: Vec<(String, Bgp, Pos)> = Vec::new();

    for p in &protocols {
        // The options: the template's (and its template's), then the protocol's own.
        let mut options: Vec<&Opt> = Vec::new();
        let mut chain = Vec::new();
        let mut from = p.from.clone();
        while let Some((t, tpos)) = from {
            let Some(tp) = templates.get(&(p.kind, t.as_str())) else {
                return Err(err(
                    &tpos,
                    format!("{t}: no such template of protocol {}", p.kind.keyword()),
                ));
            };
            if chain.len() > 8 || chain.contains(&t) {
                return Err(err(&tpos, format!("template {t} is derived from itself")));
            }
            chain.push(t.clone());
            options.splice(0..0, tp.options.iter());
            from = tp.from.clone();
        }
        options.extend(p.options.iter());

        let name = match &p.name {
            Some(n) => n.clone(),
            None => {
                let c = counters.entry(p.kind.keyword()).or_default();
                loop {
                    *c += 1;
                    let n = format!("{}{}", p.kind.keyword(), c);
                    if !names.contains(&n) {
                        break n;
                    }
                }
            }
        };
        if !names.insert(name.clone()) {
            return Err(err(&p.pos, format!("protocol {name} already defined")));
        }
        let mut info = ProtocolInfo {
            name: name.clone(),
            kind: p.kind,
            description: None,
            peer: None,
            template: p.from.as_ref().map(|(t, _)| t.clone()),
            import: "ACCEPT".to_owned(),
            export: "REJECT".to_owned(),
        };
        for o in &options {
            if let OptKind::Channel(import, f) = &o.kind {
                let shown = match f {
                    FilterRef::All => "ACCEPT".to_owned(),
                    FilterRef::None => "REJECT".to_owned(),
                    FilterRef::Named(n, _) => n.clone(),
                    FilterRef::Inline(_) | FilterRef::Where(_) => "(unnamed)".to_owned(),
                };
                if *import {
                    info.import = shown;
                } else {
                    info.export = shown;
                }
            }
        }
        match p.kind {
            ProtoKind::Bgp => {
                let mut b = Bgp::default();
                for o in &options {
                    b.option(o, &mut notes)?;
                }
                info.description = b.description.clone();
                let Some((addr, ..)) = b.neighbor else {
                    return Err(err(&p.pos, format!("protocol {name}: no neighbor given")));
                };
                let v6 = addr.is_ipv6();
                if v6 != (dialect == Dialect::Bird6) {
                    return Err(err(
                        &b.neighbor.as_ref().expect("neighbor").3,
                        format!(
                            "neighbor {addr}: {} is for IPv{} neighbors",
                            dialect.name(),
                            if dialect == Dialect::Bird6 { 6 } else { 4 }
                        ),
                    ));
                }
                info.peer = Some(addr);
                bgps.push((name, b, p.pos.clone()));
            }
            ProtoKind::Kernel => {
                if kernel.is_some() {
                    return Err(err(
                        &p.pos,
                        "a second kernel protocol: rr-daemon programs one table",
                    ));
                }
                let (mut fib, mut learn, mut table) = (None, false, None);
                let mut export_seen = false;
                for o in &options {
                    match &o.kind {
                        OptKind::Debug => {}
                        OptKind::Description(d) => info.description = Some(d.clone()),
                        OptKind::Channel(true, FilterRef::All) => {}
                        OptKind::Channel(true, FilterRef::None) => learn = false,
                        OptKind::Channel(true, _) => {
                            return Err(unsupported(o, "import filter", p.kind));
                        }
                        OptKind::Channel(false, f) => {
                            export_seen = true;
                            fib = match f {
                                FilterRef::None => None,
                                FilterRef::All => Some(filter::Kernel::default()),
                                FilterRef::Named(n, pos) => {
                                    let Some(flt) = filters.get(n.as_str()) else {
                                        return Err(err(pos, format!("{n}: no such filter")));
                                    };
                                    Some(filter::kernel(&flt.body, &flt.pos, &mut found)?)
                                }
                                FilterRef::Inline(body) => {
                                    Some(filter::kernel(body, &o.pos, &mut found)?)
                                }
                                FilterRef::Where(e) => {
                                    return Err(err(
                                        &e.pos,
                                        "export where: not supported by rr-daemon in protocol kernel",
                                    ));
                                }
                            };
                        }
                        OptKind::Interface(_) => return Err(unsupported(o, "interface", p.kind)),
                        OptKind::Words(w) => {
                            let t = texts(w);
                            let t: Vec<&str> = t.iter().map(String::as_str).collect();
                            match t.as_slice() {
                                ["learn", ..] => {
                                    learn = switch(w, 1)?;
                                    extra(w, 2)?;
                                }
                                ["persist", ..]
                                | ["scan", "time", _]
                                | ["graceful", "restart", ..] => {}
                                ["merge", "paths", ..] => {
                                    if !switch(w, 2)? {
                                        return Err(err(
                                            &o.pos,
                                            "merge paths off: rr-daemon always installs equal best paths as one multipath route",
                                        ));
                                    }
                                }
                                ["kernel", "table", _] => {
                                    let n = num(&w[2])?;
                                    match u32::try_from(n) {
                                        Ok(n) if n > 0 => table = Some(n),
                                        _ => {
                                            return Err(err(
                                                &w[2].pos,
                                                format!("invalid table {n}"),
                                            ));
                                        }
                                    }
                                }
                                _ => return Err(unsupported(o, &t.join(" "), p.kind)),
                            }
                        }
                    }
                }
                let _ = export_seen;
                kernel = Some((fib, learn, table, p.pos.clone()));
            }
            ProtoKind::Device => {
                for o in &options {
                    match &o.kind {
                        OptKind::Debug => {}
                        OptKind::Description(d) => info.description = Some(d.clone()),
                        OptKind::Words(w) if matches!(texts(w).as_slice(), [a, b, _] if a == "scan" && b == "time") =>
                            {}
                        _ => return Err(unsupported(o, "this option", p.kind)),
                    }
                }
            }
            ProtoKind::Direct => {
                if direct.is_some() {
                    return Err(err(
                        &p.pos,
                        "a second direct protocol: not supported by rr-daemon",
                    ));
                }
                let mut exclude = Vec::new();
                let mut seen_interface = false;
                for o in &options {
                    match &o.kind {
                        OptKind::Debug => {}
                        OptKind::Description(d) => info.description = Some(d.clone()),
                        OptKind::Interface(pats) => {
                            seen_interface = true;
                            exclude.clear();
                            let n = pats.len();
                            for (i, (neg, pat, pos)) in pats.iter().enumerate() {
                                match (neg, i + 1 == n) {
                                    (true, false) => exclude.push(pat.clone()),
                                    (false, true) if pat == "*" => {}
                                    _ => {
                                        return Err(err(
                                            pos,
                                            "rr-daemon's direct takes every interface but \
                                             excluded ones: interface -\"PATTERN\", ..., \"*\"",
                                        ));
                                    }
                                }
                            }
                        }
                        _ => return Err(unsupported(o, "this option", p.kind)),
                    }
                }
                if !seen_interface {
                    // BIRD's direct without `interface` takes every interface.
                    exclude.clear();
                }
                direct = Some(exclude);
            }
            ProtoKind::Static => {
                for o in &options {
                    match &o.kind {
                        OptKind::Debug => {}
                        OptKind::Description(d) => info.description = Some(d.clone()),
                        OptKind::Channel(true, FilterRef::All) => {}
                        OptKind::Words(w) => {
                            let t = texts(w);
                            match (
                                t.first().map(String::as_str),
                                w.get(1).map(|x| &x.value),
                                t.get(2).map(String::as_str),
                            ) {
                                (Some("route"), Some(Value::Prefix(pfx)), Some("blackhole"))
                                    if w.len() == 3 =>
                                {
                                    let pfx = pfx.trunc();
                                    if originate.iter().any(|(p, _)| *p == pfx) {
                                        return Err(err(
                                            &w[1].pos,
                                            format!("route {pfx} given twice"),
                                        ));
                                    }
                                    let fam_ok =
                                        pfx.addr().is_ipv6() == (dialect == Dialect::Bird6);
                                    if !fam_ok {
                                        return Err(err(
                                            &w[1].pos,
                                            format!(
                                                "route {pfx}: not of {}'s family",
                                                dialect.name()
                                            ),
                                        ));
                                    }
                                    originate.push((pfx, w[1].pos.clone()));
                                }
                                (Some("route"), Some(Value::Prefix(pfx)), Some("via"))
                                    if w.len() == 4 =>
                                {
                                    let Value::Ip(gw) = &w[3].value else {
                                        return Err(err(
                                            &w[3].pos,
                                            "route ... via: a gateway address (rr-daemon \
                                             installs static routes via a gateway only)",
                                        ));
                                    };
                                    let pfx = pfx.trunc();
                                    let fam = dialect == Dialect::Bird6;
                                    if pfx.addr().is_ipv6() != fam || gw.is_ipv6() != fam {
                                        return Err(err(
                                            &w[1].pos,
                                            format!(
                                                "route {pfx} via {gw}: not of {}'s family",
                                                dialect.name()
                                            ),
                                        ));
                                    }
                                    if statics.iter().any(|(p, ..)| *p == pfx)
                                        || originate.iter().any(|(p, _)| *p == pfx)
                                    {
                                        return Err(err(
                                            &w[1].pos,
                                            format!("route {pfx} given twice"),
                                        ));
                                    }
                                    statics.push((pfx, *gw, w[1].pos.clone()));
                                }
                                (Some("route"), Some(Value::Prefix(_)), Some(kind)) => {
                                    return Err(err(
                                        &o.pos,
                                        format!(
                                            "static route {kind} ...: rr-daemon has static \
                                             routes `blackhole` ([[originate]]) and `via \
                                             GATEWAY` ([[fib.static_route]]) only"
                                        ),
                                    ));
                                }
                                _ => return Err(unsupported(o, &t.join(" "), p.kind)),
                            }
                        }
                        _ => return Err(unsupported(o, "this option", p.kind)),
                    }
                }
            }
        }
        infos.push(info);
    }

    // [speaker]
    let Some((router_id, rid_pos)) = router_id else {
        return Err(err(
            &start,
            "router id is not set (rr-daemon does not pick one from the interfaces)",
        ));
    };
    // The speaker's AS: the BGP template's (confd's `bgp_template` has the node's), else
    // the first protocol's; a protocol with another `local as` (a BGPPeer's
    // localASNumber) gets it as its peer's `local_as`.
    let mut local_as: Option<(u32, Pos)> = None;
    for t in templates.values().filter(|t| t.kind == ProtoKind::Bgp) {
        let mut b = Bgp::default();
        for o in &t.options {
            b.option(o, &mut Vec::new())?;
        }
        if let Some(a) = b.local_as {
            local_as = Some(a);
            break;
        }
    }
    for (name, b, pos) in &bgps {
        let Some(a) = &b.local_as else {
            return Err(err(pos, format!("protocol {name}: no local as")));
        };
        if local_as.is_none() {
            local_as = Some(a.clone());
        }
    }
    let asn = local_as.as_ref().map_or(64512, |(a, _)| *a);
    if local_as.is_none() {
        notes.push(Note {
            pos: rid_pos.clone(),
            text: "no BGP protocol or template gives a local as: AS 64512 (Calico's default)"
                .to_owned(),
        });
    }

    let mut doc = Table::new();
    let mut speaker = Table::new();
    speaker.insert("asn".into(), T::Integer(asn.into()));
    speaker.insert("router_id".into(), T::String(router_id.to_string()));
    let listen_addr = match &listen {
        Some((a, port, _)) => {
            let a = a.unwrap_or(match dialect {
                Dialect::Bird => IpAddr::from([0u8; 4]),
                Dialect::Bird6 => IpAddr::from([0u16; 8]),
            });
            std::net::SocketAddr::new(a, port.unwrap_or(179)).to_string()
        }
        None => match dialect {
            Dialect::Bird => "0.0.0.0:179".to_owned(),
            Dialect::Bird6 => "[::]:179".to_owned(),
        },
    };
    speaker.insert("listen".into(), T::Array(vec![T::String(listen_addr)]));
    speaker.insert("hold_time".into(), T::Integer(BIRD_HOLD_TIME));
    speaker.insert("connect_retry".into(), T::Integer(BIRD_CONNECT_RETRY));
    speaker.insert("graceful_restart".into(), T::Boolean(false));
    doc.insert("speaker".into(), T::Table(speaker));
    let mut api = Table::new();
    api.insert("enabled".into(), T::Boolean(false));
    doc.insert("api".into(), T::Table(api));
    notes.push(Note {
        pos: rid_pos.clone(),
        text: "[api] off: BIRD's clients use the control socket (-s); bird and bird6 run side \
               by side"
            .to_owned(),
    });

    // Peers and their policies.
    let family = match dialect {
        Dialect::Bird => "ipv4-unicast",
        Dialect::Bird6 => "ipv6-unicast",
    };
    let mut policies: Vec<(String, Policy, Pos)> = Vec::new();
    let mut peers = Vec::new();
    let mut peer_pos = Vec::new();
    let mut export_policies: Vec<Policy> = Vec::new();
    for (name, b, pos) in &bgps {
        let (addr, port, peer_as, npos) = b.neighbor.clone().expect("checked above");
        let my_as = b.local_as.as_ref().map_or(asn, |(a, _)| *a);
        let ibgp = peer_as == my_as;
        let mut t = Table::new();
        t.insert("address".into(), T::String(addr.to_string()));
        t.insert("asn".into(), T::Integer(peer_as.into()));
        if my_as != asn {
            t.insert("local_as".into(), T::Integer(my_as.into()));
        }
        if let Some(n) = b.allow_local_as.filter(|n| *n > 0) {
            t.insert("allow_local_as".into(), T::Integer(n.into()));
        }
        if let Some(p) = port {
            t.insert("port".into(), T::Integer(p.into()));
        }
        if let Some(s) = b.source {
            t.insert("source_address".into(), T::String(s.to_string()));
        }
        if b.passive {
            t.insert("passive".into(), T::Boolean(true));
        }
        let ttl = match b.multihop {
            Some(Some(n)) => i64::from(n),
            Some(None) => BIRD_MULTIHOP_TTL,
            None if ibgp => BIRD_MULTIHOP_TTL,
            None => 1,
        };
        if b.ttl_security {
            // GTSM: the hops allowed are multihop's number (1 without it).
            let hops = match b.multihop {
                Some(Some(n)) => i64::from(n).min(254),
                Some(None) => BIRD_MULTIHOP_TTL,
                None => 1,
            };
            t.insert("ttl_security".into(), T::Integer(hops));
        } else {
            t.insert("multihop".into(), T::Integer(ttl));
        }
        if let Some(h) = b.hold {
            t.insert("hold_time".into(), T::Integer(h.into()));
        }
        if let Some(k) = b.keepalive {
            t.insert("keepalive_time".into(), T::Integer(k.into()));
        }
        if let Some(c) = b.connect_retry {
            t.insert("connect_retry".into(), T::Integer(c.into()));
        }
        t.insert(
            "families".into(),
            T::Array(vec![T::String(family.to_owned())]),
        );
        match b.add_paths {
            Some((true, true)) => {
                t.insert("add_path".into(), T::Boolean(true));
            }
            Some((rx, tx)) if rx || tx => {
                let mut a = Table::new();
                a.insert("receive".into(), T::Boolean(rx));
                a.insert(
                    "send".into(),
                    if tx {
                        T::String("all".into())
                    } else {
                        T::Boolean(false)
                    },
                );
                t.insert("add_path".into(), T::Table(a));
            }
            _ => {}
        }
        if b.rr_client {
            if !ibgp {
                return Err(err(
                    pos,
                    format!("protocol {name}: rr client needs an iBGP neighbor"),
                ));
            }
            t.insert("rr_client".into(), T::Boolean(true));
        }
        if let Some(c) = b.cluster_id {
            t.insert("cluster_id".into(), T::String(c.to_string()));
        }
        if b.next_hop_self {
            t.insert("next_hop_self".into(), T::String("force".into()));
        }
        if b.next_hop_keep {
            t.insert("next_hop_keep".into(), T::Boolean(true));
        }
        let gr = match (b.graceful, b.graceful_time) {
            (Some(false), _) => None,
            (Some(true), Some(n)) => Some(T::Integer(n.into())),
            (Some(true), None) => Some(T::Boolean(true)),
            // `graceful restart time N` alone sets the time; BIRD keeps GR off.
            (None, _) => None,
        };
        if let Some(v) = gr {
            t.insert("graceful_restart".into(), v);
        }
        if let Some(pw) = &b.password {
            t.insert("password".into(), T::String(pw.clone()));
        }
        for (import, which) in [(true, &b.import), (false, &b.export)] {
            // BIRD 1.6's defaults: import all, export none.
            let policy = match which {
                None if import => Policy {
                    rules: Vec::new(),
                    accept_rest: true,
                },
                None => Policy::default(),
                Some(f) => compile(f, &functions, &filters, &mut found)?,
            };
            if !import {
                export_policies.push(policy.clone());
            }
            let value = if policy.rules.is_empty() {
                if policy.accept_rest { "all" } else { "none" }.to_owned()
            } else if let Some((n, ..)) = policies.iter().find(|(_, p, _)| *p == policy) {
                n.clone()
            } else {
                let n = match which {
                    Some(FilterRef::Named(n, _)) if n != "all" && n != "none" => n.clone(),
                    _ => format!("{name}_{}", if import { "import" } else { "export" }),
                };
                policies.push((n.clone(), policy, pos.clone()));
                n
            };
            t.insert(
                if import { "import" } else { "export" }.into(),
                T::String(value),
            );
        }
        peers.push(T::Table(t));
        peer_pos.push(npos);
    }
    let mut policy_pos = Vec::new();
    if !policies.is_empty() {
        let mut out = Vec::new();
        for (n, p, pos) in &policies {
            out.push(T::Table(policy_table(n, p, pos)?));
            policy_pos.push(pos.clone());
        }
        doc.insert("policy".into(), T::Array(out));
    }
    if !peers.is_empty() {
        doc.insert("peer".into(), T::Array(peers));
    }

    // [fib] and [learn] from the kernel and direct protocols.
    let static_metric: Option<u32>;
    if let Some((fib, learn, table, kpos)) = &kernel {
        let mut t = Table::new();
        match fib {
            None => {
                t.insert("enabled".into(), T::Boolean(false));
                static_metric = None;
            }
            Some(k) => {
                if let Some(n) = table {
                    t.insert("table".into(), T::Integer((*n).into()));
                }
                match k.sets_metric {
                    Some(n) => {
                        t.insert("metric".into(), T::Integer(n.into()));
                        t.insert("metric_from_local_pref".into(), T::Boolean(true));
                        if !originate.is_empty() {
                            notes.push(Note {
                                pos: kpos.clone(),
                                text: "static routes carry no krt_metric (the rule sets it on \
                                       BGP routes): blackholes at metric 0 as BIRD 1.6 \
                                       installs them ([[originate]] kernel_metric = 0)"
                                    .to_owned(),
                            });
                        }
                        static_metric = Some(0);
                    }
                    None => {
                        // Only the kernel protocol's export filter can give krt_metric that
                        // BIRD 1.6 keeps: a BGP import filter's is a temporary attribute it
                        // drops, and static routes carry none. Every route at metric 0.
                        t.insert("bird16_metric".into(), T::Boolean(true));
                        static_metric = None;
                        t.insert(
                            "metric_from_local_pref".into(),
                            T::Boolean(found.metric_rule.is_some()),
                        );
                        notes.push(Note {
                            pos: kpos.clone(),
                            text: "the kernel protocol's filter sets no krt_metric: every route \
                                   at metric 0, as BIRD 1.6 installs them ([fib] bird16_metric)"
                                .to_owned(),
                        });
                    }
                }
                if let Some(s) = k.node_subnet {
                    t.insert("node_subnet".into(), T::String(s.to_string()));
                }
                if let Some(d) = &k.tunnel_device {
                    t.insert("tunnel_device".into(), T::String(d.clone()));
                }
                if !k.pools.is_empty() {
                    let pools = k
                        .pools
                        .iter()
                        .map(|p| {
                            let mut pt = Table::new();
                            pt.insert("prefix".into(), T::String(p.prefix.to_string()));
                            match p.ipip {
                                Some(m) => {
                                    pt.insert("ipip".into(), T::String(m.to_owned()));
                                }
                                None => {
                                    pt.insert("install".into(), T::Boolean(false));
                                }
                            }
                            T::Table(pt)
                        })
                        .collect();
                    t.insert("ip_pool".into(), T::Array(pools));
                }
                if !statics.is_empty() {
                    let routes = statics
                        .iter()
                        .map(|(p, gw, _)| {
                            let mut rt = Table::new();
                            rt.insert("prefix".into(), T::String(p.to_string()));
                            rt.insert("via".into(), T::String(gw.to_string()));
                            // As BIRD 1.6 installs them: no krt_metric, metric 0.
                            if let Some(m) = static_metric {
                                rt.insert("metric".into(), T::Integer(m.into()));
                            }
                            T::Table(rt)
                        })
                        .collect();
                    t.insert("static_route".into(), T::Array(routes));
                }
            }
        }
        doc.insert("fib".into(), T::Table(t));
        if *learn || direct.is_some() {
            let mut l = Table::new();
            l.insert("pools".into(), T::Array(learn_pools(&export_policies)));
            if let Some(n) = found.elevated_below {
                l.insert("elevated_below".into(), T::Integer(n.into()));
            }
            if !found.route_exclude.is_empty() {
                l.insert(
                    "route_exclude".into(),
                    T::Array(
                        found
                            .route_exclude
                            .iter()
                            .map(|s| T::String(s.clone()))
                            .collect(),
                    ),
                );
            }
            if !*learn {
                notes.push(Note {
                    pos: kpos.clone(),
                    text: "kernel without learn: [learn] announces interface prefixes only \
                           (pools empty)"
                        .to_owned(),
                });
                l.insert("pools".into(), T::Array(Vec::new()));
            }
            add_direct(&mut l, &direct);
            doc.insert("learn".into(), T::Table(l));
        }
    } else {
        static_metric = None;
        if direct.is_some() {
            let mut l = Table::new();
            l.insert("pools".into(), T::Array(Vec::new()));
            add_direct(&mut l, &direct);
            doc.insert("learn".into(), T::Table(l));
        }
    }
    if !originate.is_empty() {
        let o = originate
            .iter()
            .map(|(p, _)| {
                let mut t = Table::new();
                t.insert("prefix".into(), T::String(p.to_string()));
                t.insert("blackhole".into(), T::Boolean(true));
                if let Some(m) = static_metric {
                    t.insert("kernel_metric".into(), T::Integer(m.into()));
                }
                T::Table(t)
            })
            .collect();
        doc.insert("originate".into(), T::Array(o));
    }

    notes.extend(found.notes);
    notes.sort_by(|a, b| {
        (a.pos.file.as_ref(), a.pos.line, a.pos.col).cmp(&(
            b.pos.file.as_ref(),
            b.pos.line,
            b.pos.col,
        ))
    });
    notes.dedup();
    // Section by section in CONFIG.md's order, `[speaker]` first (one `toml::to_string`
    // of the whole table would sort them by name, `[[peer]]` before `[speaker]`).
    let mut body = String::new();
    let mut parts: Vec<Table> = SECTIONS
        .iter()
        .filter_map(|name| {
            let v = doc.remove(*name)?;
            Some(Table::from_iter([((*name).to_owned(), v)]))
        })
        .collect();
    // A section SECTIONS does not know yet still goes out, last.
    parts.push(doc);
    for part in parts.iter().filter(|t| !t.is_empty()) {
        if !body.is_empty() {
            body.push('\n');
        }
        let text =
            toml::to_string(part).map_err(|e| err(&start, format!("cannot write TOML: {e}")))?;
        body.push_str(&text);
    }
    let mut text = format!(
        "# Translated by rr-daemon from {file} ({}).\n",
        dialect.name()
    );
    for n in &notes {
        text.push_str(&format!("# {}: {}\n", n.pos, n.text));
    }
    text.push('\n');
    text.push_str(&body);
    let shown = format!("{file} (translated)");
    let config = Config::parse(&text, &shown).map_err(|e| {
        // Back to the BIRD file: the peer's or policy's protocol, else the router id.
        let index = |prefix: &str| {
            e.key
                .strip_prefix(prefix)
                .and_then(|r| r.split(']').next())
                .and_then(|n| n.parse::<usize>().ok())
        };
        let pos = index("peer[")
            .and_then(|i| peer_pos.get(i))
            .or_else(|| index("policy[").and_then(|i| policy_pos.get(i)))
            .or_else(|| index("originate[").and_then(|i| originate.get(i).map(|(_, p)| p)))
            .or_else(|| index("fib.static_route[").and_then(|i| statics.get(i).map(|(.., p)| p)))
            .unwrap_or(&rid_pos);
        err(pos, format!("{}: {}", e.key, e.message))
    })?;
    Ok(Translation {
        toml: text,
        config,
        protocols: infos,
        notes,
    })
}

fn add_direct(l: &mut Table, direct: &Option<Vec<String>>) {
    if let Some(ex) = direct {
        l.insert("direct".into(), T::Boolean(true));
        l.insert(
            "direct_exclude".into(),
            T::Array(ex.iter().map(|s| T::String(s.clone())).collect()),
        );
    }
}

/// The kernel routes worth learning: inside what some BGP export policy accepts (BIRD
/// learns every alien route and lets the export filters choose), the outermost prefixes.
fn learn_pools(exports: &[Policy]) -> Vec<T> {
    let mut all: BTreeSet<IpNet> = BTreeSet::new();
    for p in exports {
        for r in &p.rules {
            if r.action == Action::Accept
                && let Some(ps) = &r.when.prefixes
            {
                all.extend(ps.iter().map(|x| x.prefix));
            }
        }
    }
    let outer: Vec<IpNet> = all
        .iter()
        .filter(|p| !all.iter().any(|q| q != *p && q.contains(*p)))
        .copied()
        .collect();
    outer
        .into_iter()
        .map(|p| T::String(p.to_string()))
        .collect()
}

fn compile(
    f: &FilterRef,
    functions: &Functions<'_>,
    filters: &BTreeMap<&str, &super::ast::Filter>,
    found: &mut Found,
) -> Result<Policy, BirdError> {
    Ok(match f {
        FilterRef::All => Policy {
            rules: Vec::new(),
            accept_rest: true,
        },
        FilterRef::None => Policy::default(),
        FilterRef::Named(n, pos) => {
            let Some(flt) = filters.get(n.as_str()) else {
                return Err(err(pos, format!("{n}: no such filter")));
            };
            Compiler::new(functions, found).policy(&flt.body)?
        }
        FilterRef::Inline(body) => Compiler::new(functions, found).policy(body)?,
        FilterRef::Where(e) => Compiler::new(functions, found).where_policy(e)?,
    })
}

fn policy_table(name: &str, p: &Policy, pos: &Pos) -> Result<Table, BirdError> {
    let mut t = Table::new();
    t.insert("name".into(), T::String(name.to_owned()));
    t.insert(
        "default_action".into(),
        T::String(if p.accept_rest { "accept" } else { "reject" }.into()),
    );
    let mut rules = Vec::new();
    for r in &p.rules {
        let mut rt = Table::new();
        if let Some(ps) = &r.when.prefixes {
            let mut v = Vec::new();
            for x in ps {
                let len = x.prefix.prefix_len();
                if x.ge < len {
                    return Err(err(
                        pos,
                        format!(
                            "prefix pattern {}{{{},{}}} takes lengths shorter than the prefix: \
                             not supported by rr-daemon's policies",
                            x.prefix, x.ge, x.le
                        ),
                    ));
                }
                v.push(T::String(if x.ge == len && x.le == len {
                    x.prefix.to_string()
                } else if x.ge == len {
                    format!("{} le {}", x.prefix, x.le)
                } else {
                    format!("{} ge {} le {}", x.prefix, x.ge, x.le)
                }));
            }
            rt.insert("prefixes".into(), T::Array(v));
        }
        if let Some(cs) = &r.when.communities {
            rt.insert(
                "communities".into(),
                T::Array(
                    cs.iter()
                        .map(|(a, b)| T::String(format!("{a}:{b}")))
                        .collect(),
                ),
            );
        }
        if let Some(cs) = &r.when.large {
            rt.insert(
                "large_communities".into(),
                T::Array(
                    cs.iter()
                        .map(|(a, b, c)| T::String(format!("{a}:{b}:{c}")))
                        .collect(),
                ),
            );
        }
        let mut add = Vec::new();
        let mut remove = Vec::new();
        let mut add_l = Vec::new();
        let mut remove_l = Vec::new();
        for c in &r.changes {
            match c {
                Change::LocalPref(n) => {
                    rt.insert("set_local_pref".into(), T::Integer((*n).into()));
                }
                Change::Med(n) => {
                    rt.insert("set_med".into(), T::Integer((*n).into()));
                }
                Change::NextHop(a) => {
                    rt.insert("set_next_hop".into(), T::String(a.to_string()));
                }
                Change::AddCommunity(a, b) => add.push(T::String(format!("{a}:{b}"))),
                Change::RemoveCommunity(a, b) => remove.push(T::String(format!("{a}:{b}"))),
                Change::AddLarge(a, b, c) => add_l.push(T::String(format!("{a}:{b}:{c}"))),
                Change::RemoveLarge(a, b, c) => remove_l.push(T::String(format!("{a}:{b}:{c}"))),
            }
        }
        for (k, v) in [
            ("add_communities", add),
            ("remove_communities", remove),
            ("add_large_communities", add_l),
            ("remove_large_communities", remove_l),
        ] {
            if !v.is_empty() {
                rt.insert(k.into(), T::Array(v));
            }
        }
        rt.insert(
            "action".into(),
            T::String(
                match r.action {
                    Action::Accept => "accept",
                    Action::Reject => "reject",
                    Action::Continue => "continue",
                }
                .into(),
            ),
        );
        rules.push(T::Table(rt));
    }
    if !rules.is_empty() {
        t.insert("rule".into(), T::Array(rules));
    }
    Ok(t)
}
