//! The grammar (nom): BIRD 1.6's configuration language, as far as Calico's confd
//! templates write it. Tokens are nom parsers; the structure above them is recursive
//! descent over the same input, every error carrying the place it happened at.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use nom::branch::alt;
use nom::bytes::complete::{take_until, take_while, take_while1};
use nom::character::complete::{char, digit1, satisfy};
use nom::combinator::{opt, recognize};
use nom::sequence::pair;
use nom::{IResult, Parser};

use super::ast::{
    BinOp, Expr, ExprKind, Filter, FilterRef, Function, Item, Opt, OptKind, Pos, PrefixPat,
    ProtoKind, Protocol, Stmt, Value, Word,
};

/// A syntax error: how much input was left where it happened, and what.
#[derive(Debug)]
pub(super) struct PErr {
    /// Bytes of input left at the error (the position is computed from it).
    pub(super) rest: usize,
    /// What is wrong.
    pub(super) msg: String,
}

impl<'a> nom::error::ParseError<&'a str> for PErr {
    fn from_error_kind(input: &'a str, _kind: nom::error::ErrorKind) -> Self {
        Self {
            rest: input.len(),
            msg: unexpected(input),
        }
    }

    fn append(_input: &'a str, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

type Res<'a, T> = Result<(&'a str, T), PErr>;
type NomRes<'a, T> = IResult<&'a str, T, PErr>;

/// BIRD's wording for a token it did not expect.
fn unexpected(i: &str) -> String {
    match i.chars().next() {
        None => "syntax error, unexpected end of file".to_owned(),
        Some(_) => {
            let word: String = i
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let shown = if word.is_empty() {
                i.chars().next().map(String::from).unwrap_or_default()
            } else {
                word
            };
            format!("syntax error, unexpected '{shown}'")
        }
    }
}

fn fail<T>(i: &str, msg: impl Into<String>) -> Res<'_, T> {
    Err(PErr {
        rest: i.len(),
        msg: msg.into(),
    })
}

/// Lifts a nom parse into the descent's result type.
fn lift<'a, T>(r: NomRes<'a, T>, i: &'a str) -> Res<'a, T> {
    match r {
        Ok(v) => Ok(v),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => fail(i, "syntax error, unexpected end of file"),
    }
}

/// Whitespace and comments (`# ...` to the end of the line, `/* ... */`).
fn ws(mut i: &str) -> Res<'_, ()> {
    loop {
        let t = i.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            i = rest.find('\n').map_or("", |n| &rest[n..]);
        } else if let Some(rest) = t.strip_prefix("/*") {
            let r: NomRes<'_, &str> = take_until("*/").parse(rest);
            match r {
                Ok((rest, _)) => i = &rest[2..],
                Err(_) => return fail(t, "unterminated comment"),
            }
        } else {
            return Ok((t, ()));
        }
    }
}

fn ident_raw(i: &str) -> NomRes<'_, &str> {
    recognize(pair(
        satisfy(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i)
}

/// A symbol: a bare name, or one in single quotes (Calico's generated filter functions).
fn symbol(i: &str) -> NomRes<'_, String> {
    alt((
        (
            char('\''),
            take_while1(|c: char| c != '\'' && c != '\n'),
            char('\''),
        )
            .map(|(_, s, _): (char, &str, char)| s.to_owned()),
        ident_raw.map(str::to_owned),
    ))
    .parse(i)
}

fn string_lit(i: &str) -> NomRes<'_, String> {
    let (mut rest, _) = char('"').parse(i)?;
    let mut out = String::new();
    loop {
        let mut chars = rest.chars();
        match chars.next() {
            None | Some('\n') => {
                return Err(nom::Err::Failure(PErr {
                    rest: rest.len(),
                    msg: "unterminated string".to_owned(),
                }));
            }
            Some('"') => return Ok((chars.as_str(), out)),
            Some('\\') => match chars.next() {
                Some(c) => {
                    out.push(c);
                    rest = chars.as_str();
                }
                None => {
                    return Err(nom::Err::Failure(PErr {
                        rest: 0,
                        msg: "unterminated string".to_owned(),
                    }));
                }
            },
            Some(c) => {
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
}

fn number(i: &str) -> NomRes<'_, u64> {
    let (rest, d) = digit1.parse(i)?;
    match d.parse() {
        Ok(n) => Ok((rest, n)),
        Err(_) => Err(nom::Err::Failure(PErr {
            rest: i.len(),
            msg: format!("number {d} is out of range"),
        })),
    }
}

/// An address or a prefix: a run of hex digits, `.` and `:` that holds a `.` or a `:`
/// and parses as an address, optionally followed by `/LEN`.
fn address(i: &str) -> NomRes<'_, Value> {
    let (rest, run) =
        take_while1(|c: char| c.is_ascii_hexdigit() || c == '.' || c == ':').parse(i)?;
    if !run.contains(['.', ':']) {
        return Err(nom::Err::Error(PErr {
            rest: i.len(),
            msg: unexpected(i),
        }));
    }
    let Ok(ip) = run.parse::<IpAddr>() else {
        return Err(nom::Err::Error(PErr {
            rest: i.len(),
            msg: format!("invalid address {run}"),
        }));
    };
    let slash: NomRes<'_, Option<(char, u64)>> = opt((char('/'), number)).parse(rest);
    let (rest, len) = slash?;
    match len {
        None => Ok((rest, Value::Ip(ip))),
        Some((_, len)) => match u8::try_from(len).ok().and_then(|l| IpNet::new(ip, l).ok()) {
            Some(p) => Ok((rest, Value::Prefix(p))),
            None => Err(nom::Err::Failure(PErr {
                rest: i.len(),
                msg: format!("invalid prefix {run}/{len}"),
            })),
        },
    }
}

/// Words that start a protocol option: one of them at the start of a later line inside
/// an option means the option's `;` is missing.
const OPTION_WORDS: [&str; 24] = [
    "local",
    "neighbor",
    "multihop",
    "source",
    "passive",
    "import",
    "export",
    "description",
    "debug",
    "graceful",
    "connect",
    "error",
    "hold",
    "keepalive",
    "rr",
    "password",
    "next",
    "add",
    "gateway",
    "ttl",
    "learn",
    "persist",
    "scan",
    "route",
];

/// The parser of one file.
pub(super) struct Parser_<'a> {
    text: &'a str,
    file: Arc<str>,
    /// Byte offset of the start of each line, for positions in O(log n).
    lines: Vec<usize>,
    /// How deep blocks and parentheses nest now.
    depth: std::cell::Cell<usize>,
}

/// How deep blocks, statements and expressions may nest: a file of ten thousand `(` is
/// an error, not a stack overflow.
const MAX_NESTING: usize = 32;

/// How many terms one chain of operators may have (its tree is as deep).
const MAX_TERMS: usize = 256;

/// A top-level item, or an `include` still to be followed.
pub(super) enum Top {
    /// An item.
    Item(Item),
    /// `include "PATH";`
    Include(String, Pos),
}

impl<'a> Parser_<'a> {
    pub(super) fn new(text: &'a str, file: Arc<str>) -> Self {
        let lines = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text,
            file,
            lines,
            depth: std::cell::Cell::new(0),
        }
    }

    /// Runs `f` one level deeper, or fails at `i` past [`MAX_NESTING`].
    fn nested<T>(&self, i: &'a str, f: impl FnOnce() -> Res<'a, T>) -> Res<'a, T> {
        let d = self.depth.get();
        if d >= MAX_NESTING {
            return fail(i, format!("nesting deeper than {MAX_NESTING} levels"));
        }
        self.depth.set(d + 1);
        let r = f();
        self.depth.set(d);
        r
    }

    /// The position of what is left, `rest`.
    pub(super) fn pos_at(&self, rest: usize) -> Pos {
        let off = self.text.len().saturating_sub(rest);
        // The last line that starts at or before `off`.
        let line = self.lines.partition_point(|&start| start <= off);
        let start = self.lines[line - 1];
        let col = self.text[start..off].chars().count() + 1;
        Pos {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    fn pos(&self, i: &str) -> Pos {
        self.pos_at(i.len())
    }

    /// The whole file.
    pub(super) fn file(&self) -> Result<Vec<Top>, PErr> {
        let mut out = Vec::new();
        let mut i = self.text;
        loop {
            (i, _) = ws(i)?;
            if i.is_empty() {
                return Ok(out);
            }
            let (rest, top) = self.top(i)?;
            out.push(top);
            i = rest;
        }
    }

    fn keyword(&self, i: &'a str) -> Res<'a, &'a str> {
        let (i, _) = ws(i)?;
        lift(ident_raw(i), i)
    }

    fn expect_kw(&self, i: &'a str, kw: &str) -> Res<'a, ()> {
        let (i, _) = ws(i)?;
        match ident_raw(i) {
            Ok((rest, w)) if w == kw => Ok((rest, ())),
            _ => fail(i, format!("{}, expected '{kw}'", unexpected(i))),
        }
    }

    fn punct(&self, i: &'a str, c: char) -> Res<'a, ()> {
        let (i, _) = ws(i)?;
        let r: NomRes<'_, char> = char(c).parse(i);
        match r {
            Ok((rest, _)) => Ok((rest, ())),
            Err(_) => fail(i, format!("{}, expected '{c}'", unexpected(i))),
        }
    }

    fn peek(&self, i: &'a str, s: &str) -> Result<bool, PErr> {
        let (i, _) = ws(i)?;
        Ok(i.starts_with(s))
    }

    fn peek_kw(&self, i: &'a str, kw: &str) -> Result<bool, PErr> {
        let (i, _) = ws(i)?;
        Ok(matches!(ident_raw(i), Ok((_, w)) if w == kw))
    }

    fn symbol(&self, i: &'a str) -> Res<'a, String> {
        let (i, _) = ws(i)?;
        lift(symbol(i), i)
    }

    fn top(&self, i: &'a str) -> Res<'a, Top> {
        let pos = self.pos(i);
        let Ok((rest, kw)) = ident_raw(i) else {
            return fail(i, unexpected(i));
        };
        match kw {
            "include" => {
                let (rest, _) = ws(rest)?;
                let (rest, path) = lift(string_lit(rest), rest)?;
                let (rest, _) = self.punct(rest, ';')?;
                Ok((rest, Top::Include(path, pos)))
            }
            "router" => {
                let (rest, _) = self.expect_kw(rest, "id")?;
                let (rest, _) = ws(rest)?;
                let at = rest;
                let (rest, v) = lift(address(rest), rest)?;
                let Value::Ip(IpAddr::V4(id)) = v else {
                    return fail(at, "router id must be an IPv4 address");
                };
                let (rest, _) = self.punct(rest, ';')?;
                Ok((rest, Top::Item(Item::RouterId(id, pos))))
            }
            "listen" => {
                let (mut rest, _) = self.expect_kw(rest, "bgp")?;
                let (mut addr, mut port) = (None, None);
                loop {
                    if self.peek(rest, ";")? {
                        let (r, _) = self.punct(rest, ';')?;
                        return Ok((
                            r,
                            Top::Item(Item::ListenBgp {
                                address: addr,
                                port,
                                pos,
                            }),
                        ));
                    }
                    let (r, w) = self.keyword(rest)?;
                    match w {
                        "address" => {
                            let (r, _) = ws(r)?;
                            let at = r;
                            let (r, v) = lift(address(r), r)?;
                            let Value::Ip(a) = v else {
                                return fail(at, "listen bgp address must be an address");
                            };
                            addr = Some(a);
                            rest = r;
                        }
                        "port" => {
                            let (r, _) = ws(r)?;
                            let at = r;
                            let (r, n) = lift(number(r), r)?;
                            match u16::try_from(n) {
                                Ok(p) if p > 0 => port = Some(p),
                                _ => return fail(at, format!("invalid port {n}")),
                            }
                            rest = r;
                        }
                        other => {
                            return fail(
                                rest.trim_start(),
                                format!(
                                    "listen bgp {other}: not supported by rr-daemon (address and \
                                     port are)"
                                ),
                            );
                        }
                    }
                }
            }
            "template" | "protocol" => self.protocol(rest, kw == "template", pos),
            "function" => {
                let (rest, name) = self.symbol(rest)?;
                let (mut rest, _) = self.punct(rest, '(')?;
                let mut params = Vec::new();
                if !self.peek(rest, ")")? {
                    loop {
                        let (r, _ty) = self.keyword(rest)?;
                        let (r, p) = self.symbol(r)?;
                        params.push(p);
                        if self.peek(r, ",")? {
                            (rest, _) = self.punct(r, ',')?;
                        } else {
                            rest = r;
                            break;
                        }
                    }
                }
                let (rest, _) = self.punct(rest, ')')?;
                let (rest, body) = self.block(rest)?;
                Ok((
                    rest,
                    Top::Item(Item::Function(Function {
                        name,
                        params,
                        body,
                        pos,
                    })),
                ))
            }
            "filter" => {
                let (rest, name) = self.symbol(rest)?;
                let (rest, body) = self.block(rest)?;
                Ok((rest, Top::Item(Item::Filter(Filter { name, body, pos }))))
            }
            _ => fail(i, unexpected(i)),
        }
    }

    fn protocol(&self, i: &'a str, template: bool, pos: Pos) -> Res<'a, Top> {
        let (i, _) = ws(i)?;
        let at = i;
        let (rest, kw) = lift(ident_raw(i), i)?;
        let kind = match kw {
            "kernel" => ProtoKind::Kernel,
            "device" => ProtoKind::Device,
            "direct" => ProtoKind::Direct,
            "static" => ProtoKind::Static,
            "bgp" => ProtoKind::Bgp,
            other => {
                return fail(
                    at,
                    format!(
                        "protocol {other}: not supported by rr-daemon (kernel, device, direct, \
                         static and bgp are)"
                    ),
                );
            }
        };
        let mut rest = rest;
        let mut name = None;
        if !self.peek(rest, "{")? && !self.peek_kw(rest, "from")? {
            let (r, n) = self.symbol(rest)?;
            name = Some(n);
            rest = r;
        }
        let mut from = None;
        if self.peek_kw(rest, "from")? {
            let (r, _) = self.expect_kw(rest, "from")?;
            let (r, _) = ws(r)?;
            let p = self.pos(r);
            let (r, t) = self.symbol(r)?;
            from = Some((t, p));
            rest = r;
        }
        if template && name.is_none() {
            return fail(rest.trim_start(), "a template needs a name");
        }
        let (mut rest, _) = self.punct(rest, '{')?;
        let mut options = Vec::new();
        loop {
            let (r, _) = ws(rest)?;
            if let Some(r) = r.strip_prefix('}') {
                rest = r;
                break;
            }
            if r.is_empty() {
                return fail(r, "syntax error, unexpected end of file, expected '}'");
            }
            if let Some(r) = r.strip_prefix(';') {
                rest = r;
                continue;
            }
            let (r, o) = self.option(r)?;
            options.push(o);
            rest = r;
        }
        // A stray `;` after the closing brace is allowed, as BIRD does.
        let (r, _) = ws(rest)?;
        let rest = r.strip_prefix(';').unwrap_or(r);
        Ok((
            rest,
            Top::Item(Item::Protocol(Protocol {
                template,
                kind,
                name,
                from,
                options,
                pos,
            })),
        ))
    }

    fn option(&self, i: &'a str) -> Res<'a, Opt> {
        let pos = self.pos(i);
        let Ok((rest, kw)) = ident_raw(i) else {
            return fail(i, unexpected(i));
        };
        let (rest, kind) = match kw {
            "import" | "export" => {
                let (r, f) = self.filter_ref(rest)?;
                (r, OptKind::Channel(kw == "import", f))
            }
            "debug" => {
                let (r, _) = ws(rest)?;
                let r = if let Some(r) = r.strip_prefix('{') {
                    let (r, _) = lift(take_until("}").parse(r), r)?;
                    &r[1..]
                } else {
                    let (r, _) = self.keyword(r)?;
                    r
                };
                (r, OptKind::Debug)
            }
            "description" => {
                let (r, _) = ws(rest)?;
                let (r, s) = lift(string_lit(r), r)?;
                (r, OptKind::Description(s))
            }
            "interface" => {
                let mut pats = Vec::new();
                let mut r = rest;
                loop {
                    let (r2, _) = ws(r)?;
                    let p = self.pos(r2);
                    let (r2, neg) = match r2.strip_prefix('-') {
                        Some(x) => (x, true),
                        None => (r2, false),
                    };
                    let (r2, _) = ws(r2)?;
                    let (r2, s) = lift(string_lit(r2), r2)?;
                    pats.push((neg, s, p));
                    if self.peek(r2, ",")? {
                        (r, _) = self.punct(r2, ',')?;
                    } else {
                        r = r2;
                        break;
                    }
                }
                (r, OptKind::Interface(pats))
            }
            _ => {
                let mut words = vec![Word {
                    value: Value::Ident(kw.to_owned()),
                    pos: pos.clone(),
                }];
                let mut r = rest;
                loop {
                    let (r2, _) = ws(r)?;
                    if r2.starts_with(';') || r2.is_empty() || r2.starts_with('}') {
                        r = r2;
                        break;
                    }
                    let p = self.pos(r2);
                    if p.line > pos.line
                        && let Ok((_, w)) = ident_raw(r2)
                        && OPTION_WORDS.contains(&w)
                    {
                        return fail(
                            r2,
                            format!("syntax error, unexpected '{w}' (';' missing before it?)"),
                        );
                    }
                    let parsed: NomRes<'_, Value> = alt((
                        string_lit.map(Value::Str),
                        address,
                        number.map(Value::Num),
                        ident_raw.map(|s: &str| Value::Ident(s.to_owned())),
                        char(',').map(|_| Value::Comma),
                    ))
                    .parse(r2);
                    let (r3, value) = lift(parsed, r2)?;
                    words.push(Word { value, pos: p });
                    r = r3;
                }
                (r, OptKind::Words(words))
            }
        };
        let (rest, _) = self.punct(rest, ';')?;
        Ok((rest, Opt { kind, pos }))
    }

    fn filter_ref(&self, i: &'a str) -> Res<'a, FilterRef> {
        let (i, _) = ws(i)?;
        let (rest, w) = lift(ident_raw(i), i)?;
        match w {
            "all" => Ok((rest, FilterRef::All)),
            "none" => Ok((rest, FilterRef::None)),
            "where" => {
                let (r, e) = self.expr(rest)?;
                Ok((r, FilterRef::Where(e)))
            }
            "filter" => {
                if self.peek(rest, "{")? {
                    let (r, body) = self.block(rest)?;
                    Ok((r, FilterRef::Inline(body)))
                } else {
                    let (r, _) = ws(rest)?;
                    let p = self.pos(r);
                    let (r, name) = self.symbol(r)?;
                    Ok((r, FilterRef::Named(name, p)))
                }
            }
            _ => fail(
                i,
                format!("{}, expected all, none, filter or where", unexpected(i)),
            ),
        }
    }

    /// `{ STATEMENTS }`
    fn block(&self, i: &'a str) -> Res<'a, Vec<Stmt>> {
        self.nested(i, || self.block_inner(i))
    }

    fn block_inner(&self, i: &'a str) -> Res<'a, Vec<Stmt>> {
        let (mut rest, _) = self.punct(i, '{')?;
        let mut out = Vec::new();
        loop {
            let (r, _) = ws(rest)?;
            if let Some(r) = r.strip_prefix('}') {
                return Ok((r, out));
            }
            if r.is_empty() {
                return fail(r, "syntax error, unexpected end of file, expected '}'");
            }
            let (r, s) = self.stmt(r)?;
            out.extend(s);
            rest = r;
        }
    }

    /// One statement (a block counts as its statements; `;` alone as none).
    fn stmt(&self, i: &'a str) -> Res<'a, Vec<Stmt>> {
        let (i, _) = ws(i)?;
        if let Some(r) = i.strip_prefix(';') {
            return Ok((r, Vec::new()));
        }
        if i.starts_with('{') {
            return self.block(i);
        }
        let pos = self.pos(i);
        let Ok((rest, name)) = symbol(i) else {
            return fail(i, unexpected(i));
        };
        match name.as_str() {
            "if" => {
                let (r, cond) = self.expr(rest)?;
                let (r, _) = self.expect_kw(r, "then")?;
                let (r, then) = self.nested(r, || self.stmt(r))?;
                let (r, els) = if self.peek_kw(r, "else")? {
                    let (r, _) = self.expect_kw(r, "else")?;
                    self.nested(r, || self.stmt(r))?
                } else {
                    (r, Vec::new())
                };
                Ok((
                    r,
                    vec![Stmt::If {
                        cond,
                        then,
                        els,
                        pos,
                    }],
                ))
            }
            "accept" | "reject" => {
                // An optional message, as BIRD allows: `accept "why";`
                let (r, _) = ws(rest)?;
                let r = match string_lit(r) {
                    Ok((r, _)) => r,
                    Err(_) => r,
                };
                let (r, _) = self.punct(r, ';')?;
                let s = if name == "accept" {
                    Stmt::Accept(pos)
                } else {
                    Stmt::Reject(pos)
                };
                Ok((r, vec![s]))
            }
            "return" | "print" | "printn" | "case" | "quitbird" => fail(
                i,
                format!("{name}: not supported by rr-daemon's translation of BIRD filters"),
            ),
            _ => {
                let (r, _) = ws(rest)?;
                if let Some(r) = r.strip_prefix('.') {
                    let (r, method) = self.symbol(r)?;
                    let (r, args) = self.args(r)?;
                    let (r, _) = self.punct(r, ';')?;
                    return Ok((
                        r,
                        vec![Stmt::Method {
                            target: name,
                            method,
                            args,
                            pos,
                        }],
                    ));
                }
                if r.starts_with('(') {
                    let (r, args) = self.args(r)?;
                    let (r, _) = self.punct(r, ';')?;
                    return Ok((r, vec![Stmt::Call { name, args, pos }]));
                }
                if let Some(r) = r.strip_prefix('=') {
                    let (r, value) = self.expr(r)?;
                    let (r, _) = self.punct(r, ';')?;
                    return Ok((
                        r,
                        vec![Stmt::Assign {
                            target: name,
                            value,
                            pos,
                        }],
                    ));
                }
                fail(r, format!("{}, expected '=', '(' or '.'", unexpected(r)))
            }
        }
    }

    /// `( EXPR, ... )`
    fn args(&self, i: &'a str) -> Res<'a, Vec<Expr>> {
        let (mut r, _) = self.punct(i, '(')?;
        let mut out = Vec::new();
        if self.peek(r, ")")? {
            let (r, _) = self.punct(r, ')')?;
            return Ok((r, out));
        }
        loop {
            let (r2, e) = self.expr(r)?;
            out.push(e);
            if self.peek(r2, ",")? {
                (r, _) = self.punct(r2, ',')?;
            } else {
                let (r2, _) = self.punct(r2, ')')?;
                return Ok((r2, out));
            }
        }
    }

    pub(super) fn expr(&self, i: &'a str) -> Res<'a, Expr> {
        self.nested(i, || self.binary(i, 0))
    }

    /// Precedence climbing: `||`, `&&`, comparisons, `+ -`, `* /`.
    fn binary(&self, i: &'a str, level: u8) -> Res<'a, Expr> {
        if level == 5 {
            return self.unary(i);
        }
        let (mut rest, mut lhs) = self.binary(i, level + 1)?;
        let mut terms = 1;
        loop {
            let (r, _) = ws(rest)?;
            let Some((op, len)) = Self::operator(r, level) else {
                return Ok((rest, lhs));
            };
            // A chain is a tree as deep as it is long: bounded like nesting.
            terms += 1;
            if terms > MAX_TERMS {
                return fail(r, format!("more than {MAX_TERMS} terms in one expression"));
            }
            let (r, rhs) = self.binary(&r[len..], level + 1)?;
            let pos = lhs.pos.clone();
            lhs = Expr {
                kind: ExprKind::Bin(op, Box::new(lhs), Box::new(rhs)),
                pos,
            };
            rest = r;
            if level == 2 {
                // Comparisons do not chain.
                return Ok((rest, lhs));
            }
        }
    }

    fn operator(r: &str, level: u8) -> Option<(BinOp, usize)> {
        let table: &[(&str, BinOp)] = match level {
            0 => &[("||", BinOp::Or)],
            1 => &[("&&", BinOp::And)],
            2 => &[
                ("<=", BinOp::Le),
                (">=", BinOp::Ge),
                ("!=", BinOp::Ne),
                ("!~", BinOp::NotMatch),
                ("<", BinOp::Lt),
                (">", BinOp::Gt),
                ("=", BinOp::Eq),
                ("~", BinOp::Match),
            ],
            3 => &[("+", BinOp::Add), ("-", BinOp::Sub)],
            _ => &[("*", BinOp::Mul), ("/", BinOp::Div)],
        };
        table
            .iter()
            .find(|(t, _)| r.starts_with(t))
            .map(|(t, op)| (*op, t.len()))
    }

    fn unary(&self, i: &'a str) -> Res<'a, Expr> {
        let (i, _) = ws(i)?;
        let pos = self.pos(i);
        if let Some(r) = i.strip_prefix('!') {
            let (r, e) = self.nested(r, || self.unary(r))?;
            return Ok((
                r,
                Expr {
                    kind: ExprKind::Not(Box::new(e)),
                    pos,
                },
            ));
        }
        self.primary(i)
    }

    fn primary(&self, i: &'a str) -> Res<'a, Expr> {
        let pos = self.pos(i);
        let mk = |kind| Expr {
            kind,
            pos: pos.clone(),
        };
        if let Some(r) = i.strip_prefix('(') {
            let (mut r, first) = self.expr(r)?;
            let mut items = vec![first];
            while self.peek(r, ",")? {
                let (r2, _) = self.punct(r, ',')?;
                let (r2, e) = self.expr(r2)?;
                items.push(e);
                r = r2;
            }
            let (r, _) = self.punct(r, ')')?;
            return Ok(if items.len() == 1 {
                (r, items.pop().expect("one item"))
            } else {
                (r, mk(ExprKind::Tuple(items)))
            });
        }
        if let Some(r) = i.strip_prefix("[=") {
            let (r, body) = lift(take_until("=]").parse(r), r)?;
            return Ok((&r[2..], mk(ExprKind::PathMask(body.trim().to_owned()))));
        }
        if let Some(r) = i.strip_prefix('[') {
            return self.set(r, pos);
        }
        if i.starts_with('"') {
            let (r, s) = lift(string_lit(i), i)?;
            return Ok((r, mk(ExprKind::Str(s))));
        }
        if let Ok((r, v)) = address(i) {
            return Ok(match v {
                Value::Ip(a) => (r, mk(ExprKind::Ip(a))),
                Value::Prefix(p) => (r, mk(ExprKind::Prefix(p))),
                _ => unreachable!("address() yields addresses and prefixes"),
            });
        }
        if let Ok((r, n)) = number(i) {
            return match i64::try_from(n) {
                Ok(n) => Ok((r, mk(ExprKind::Num(n)))),
                Err(_) => fail(i, format!("number {n} is out of range")),
            };
        }
        let Ok((r, name)) = symbol(i) else {
            return fail(i, unexpected(i));
        };
        match name.as_str() {
            "true" => return Ok((r, mk(ExprKind::Bool(true)))),
            "false" => return Ok((r, mk(ExprKind::Bool(false)))),
            "defined" => {
                let (r, _) = self.punct(r, '(')?;
                let (r, attr) = self.symbol(r)?;
                let (r, _) = self.punct(r, ')')?;
                return Ok((r, mk(ExprKind::Defined(attr))));
            }
            _ => {}
        }
        let (r2, _) = ws(r)?;
        if r2.starts_with('(') {
            let (r2, args) = self.args(r2)?;
            return Ok((r2, mk(ExprKind::Call(name, args))));
        }
        Ok((r, mk(ExprKind::Sym(name))))
    }

    /// The inside of `[ ... ]`: prefixes with their length ranges, or other values.
    fn set(&self, i: &'a str, pos: Pos) -> Res<'a, Expr> {
        let mut prefixes = Vec::new();
        let mut others = Vec::new();
        let mut r = i;
        loop {
            let (r2, _) = ws(r)?;
            if let Some(r2) = r2.strip_prefix(']') {
                r = r2;
                break;
            }
            if let Ok((r3, Value::Prefix(p))) = address(r2) {
                let max = if p.addr().is_ipv4() { 32 } else { 128 };
                let len = p.prefix_len();
                let (r3, (ge, le)) = if let Some(r4) = r3.strip_prefix('+') {
                    (r4, (len, max))
                } else if let Some(r4) = r3.strip_prefix('-') {
                    (r4, (0, len))
                } else if let Some(r4) = r3.strip_prefix('{') {
                    let (r4, a) = lift(number(r4), r4)?;
                    let (r4, _) = self.punct(r4, ',')?;
                    let (r4, _) = ws(r4)?;
                    let (r4, b) = lift(number(r4), r4)?;
                    let (r4, _) = self.punct(r4, '}')?;
                    match (u8::try_from(a), u8::try_from(b)) {
                        (Ok(a), Ok(b)) if a <= b && b <= max => (r4, (a, b)),
                        _ => return fail(r3, format!("invalid prefix length range {{{a},{b}}}")),
                    }
                } else {
                    (r3, (len, len))
                };
                prefixes.push(PrefixPat {
                    prefix: p.trunc(),
                    ge,
                    le,
                });
                r = r3;
            } else {
                let (r3, e) = self.expr(r2)?;
                others.push(e);
                r = r3;
            }
            let (r2, _) = ws(r)?;
            if let Some(r2) = r2.strip_prefix(',') {
                r = r2;
            } else if !r2.starts_with(']') {
                return fail(r2, format!("{}, expected ',' or ']'", unexpected(r2)));
            }
        }
        let kind = match (prefixes.is_empty(), others.is_empty()) {
            (false, true) => ExprKind::PrefixSet(prefixes),
            (true, _) => ExprKind::Set(others),
            (false, false) => {
                return fail(i, "a set mixes prefixes and other values");
            }
        };
        Ok((r, Expr { kind, pos }))
    }
}

/// For tests: parses `text` as one expression.
#[cfg(test)]
pub(super) fn parse_expr(text: &str) -> Result<Expr, PErr> {
    let p = Parser_::new(text, Arc::from("test"));
    p.expr(text).map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::super::ast::{BinOp, ExprKind};
    use super::*;

    #[test]
    fn precedence_and_forms() {
        let e = parse_expr("net ~ 10.0.0.0/8 && krt_metric < 1024 || !defined(ifname)").unwrap();
        let ExprKind::Bin(BinOp::Or, a, b) = e.kind else {
            panic!("{e:?}")
        };
        assert!(matches!(a.kind, ExprKind::Bin(BinOp::And, _, _)));
        assert!(matches!(b.kind, ExprKind::Not(_)));
        let e = parse_expr("2147483647 - bgp_local_pref * 2").unwrap();
        let ExprKind::Bin(BinOp::Sub, _, m) = e.kind else {
            panic!("{e:?}")
        };
        assert!(matches!(m.kind, ExprKind::Bin(BinOp::Mul, _, _)));
        let e = parse_expr("(65000, 100) ~ bgp_community").unwrap();
        let ExprKind::Bin(BinOp::Match, t, _) = e.kind else {
            panic!()
        };
        assert!(matches!(&t.kind, ExprKind::Tuple(v) if v.len() == 2));
        let e = parse_expr("net ~ [ 10.0.0.0/8{16,24}, 192.168.0.0/16+, fd00::/8- ]").unwrap();
        let ExprKind::Bin(_, _, set) = e.kind else {
            panic!()
        };
        let ExprKind::PrefixSet(s) = set.kind else {
            panic!()
        };
        assert_eq!(
            s.iter().map(|p| (p.ge, p.le)).collect::<Vec<_>>(),
            vec![(16, 24), (16, 32), (0, 8)]
        );
        let e = parse_expr("bgp_path ~ [= 65000 * =]").unwrap();
        assert!(
            matches!(&e.kind, ExprKind::Bin(_, _, m) if matches!(&m.kind, ExprKind::PathMask(t) if t == "65000 *"))
        );
        let e = parse_expr("source ~ [ RTS_BGP ]").unwrap();
        assert!(
            matches!(&e.kind, ExprKind::Bin(_, _, m) if matches!(&m.kind, ExprKind::Set(v) if v.len() == 1))
        );
        assert!(parse_expr("bgp_next_hop ~ fd00:1::/64").is_ok());
    }

    #[test]
    fn deep_input_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse_expr(&deep).unwrap_err();
        assert!(e.msg.contains("nesting"), "{}", e.msg);
        let long = vec!["true"; 100_000].join(" || ");
        let e = parse_expr(&long).unwrap_err();
        assert!(e.msg.contains("terms"), "{}", e.msg);
        let blocks = format!(
            "filter f {}{}",
            "{ if true then ".repeat(50_000),
            "}".repeat(50_000)
        );
        let p = Parser_::new(&blocks, Arc::from("t"));
        assert!(p.file().is_err());
    }

    /// Every prefix of the rendered files (cut at each character) parses or fails with a
    /// located error, never panics.
    #[test]
    fn truncated_files_never_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bird");
        for f in [
            "communities/bird.cfg",
            "communities/bird_ipam.cfg",
            "communities/bird_aggr.cfg",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            for (cut, _) in text.char_indices() {
                let part = &text[..cut];
                let p = Parser_::new(part, Arc::from("t"));
                if let Err(e) = p.file() {
                    let pos = p.pos_at(e.rest);
                    assert!(pos.line >= 1 && pos.col >= 1, "{f} at {cut}: {}", e.msg);
                }
            }
        }
    }
}
