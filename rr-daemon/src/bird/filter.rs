//! BIRD filters onto the daemon's model.
//!
//! A BGP protocol's `import`/`export` filter becomes a native policy (`[[policy]]`): the
//! statements are walked in order, functions inlined with their arguments bound, and every
//! `accept`, `reject` or change under the conditions that lead to it becomes one rule.
//! Conditions on the prefix (`net ~ ...`, `net = ...`) and on communities become the
//! rule's match; conditions on constants (a function's `bool` parameter) are decided here.
//!
//! Some of what Calico's filters say has no place in a policy but a native key that says
//! the same, or is what the daemon does by itself; each is recognised by its shape and
//! reported as a [`Note`]:
//! - the metric/LOCAL_PREF conversion (`krt_metric = 2147483647 - bgp_local_pref`,
//!   `bgp_local_pref = 2147483647 - krt_metric`, under `source = RTS_BGP` or
//!   `defined(...)` tests) and `preference = N`: `[fib] metric_from_local_pref`;
//! - `net ~ BLOCK && krt_metric < N` (elevated workload routes in a block):
//!   `[learn] elevated_below = N`;
//! - rejections by interface name (`ifname ~ "*.cali"`): routes through Felix's tunnel
//!   devices, which BIRD learns from the kernel and the daemon does not announce as BIRD
//!   would (see the note's text).
//!
//! Anything else (negated route conditions, `bgp_path`, `.prepend`, matches on `source`
//! outside the metric rule, `else` after a route condition) is an error at the place it
//! was written.
//!
//! The kernel protocol's export filter ([`kernel`]) becomes `[fib]`: one
//! `if (net ~ POOL) then { ... }` per IP pool, as confd renders them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::BirdError;
use super::ast::{BinOp, Expr, ExprKind, Function, Pos, PrefixPat, Stmt};

/// What a translated construct turned into, when that is not a policy rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where it was written.
    pub pos: Pos,
    /// What became of it.
    pub text: String,
}

/// A rule's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Accept,
    Reject,
    Continue,
}

/// A change a rule makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    LocalPref(u32),
    Med(u32),
    NextHop(IpAddr),
    AddCommunity(u16, u16),
    RemoveCommunity(u16, u16),
    AddLarge(u32, u32, u32),
    RemoveLarge(u32, u32, u32),
}

/// The conditions a rule needs: all of the non-empty ones (each a list of alternatives).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Guard {
    pub(super) prefixes: Option<Vec<PrefixPat>>,
    pub(super) communities: Option<Vec<(u16, u16)>>,
    pub(super) large: Option<Vec<(u32, u32, u32)>>,
}

/// One rule of a translated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) when: Guard,
    pub(super) changes: Vec<Change>,
    pub(super) action: Action,
}

/// A filter, translated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Policy {
    pub(super) rules: Vec<Rule>,
    /// What happens when no rule decides (BIRD: reject at the end of a filter).
    pub(super) accept_rest: bool,
}

/// What translating filters found besides rules, for the other sections.
#[derive(Clone, Debug, Default)]
pub(super) struct Found {
    /// The metric/LOCAL_PREF rule was seen (Calico's `krt_metric = 2147483647 -
    /// bgp_local_pref`), with the normal metric it defaults to, if written.
    pub(super) metric_rule: Option<Option<u32>>,
    /// `krt_metric < N` next to a block: elevated routes.
    pub(super) elevated_below: Option<u32>,
    /// Notes, in file order.
    pub(super) notes: Vec<Note>,
}

/// The functions of the file, by name.
pub(super) type Functions<'a> = BTreeMap<&'a str, &'a Function>;

/// How deep function calls may nest (a recursive function is an error, not a hang).
const MAX_DEPTH: usize = 16;

/// A value known while translating: a function's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Const {
    Bool(bool),
    Num(i64),
}

/// What a condition is about.
enum Cond {
    /// Known now.
    Const(bool),
    /// On the route's prefix and communities.
    Guard(Guard, Option<u32>),
    /// Part of the metric/LOCAL_PREF conversion (`source`, `krt_metric`,
    /// `bgp_local_pref`, `defined(...)` of those).
    Metric,
    /// On the route's interface.
    Iface,
}

fn err(pos: &Pos, msg: impl Into<String>) -> BirdError {
    BirdError::at(pos, msg)
}

const METRIC_ATTRS: [&str; 4] = ["krt_metric", "bgp_local_pref", "source", "preference"];

/// A BGP protocol's filter.
pub(super) struct Compiler<'a, 'f> {
    pub(super) functions: &'a Functions<'f>,
    pub(super) found: &'a mut Found,
    rules: Vec<Rule>,
    env: Vec<BTreeMap<String, Const>>,
    depth: usize,
    metric_noted: bool,
    iface_noted: bool,
}

impl<'a, 'f> Compiler<'a, 'f> {
    pub(super) fn new(functions: &'a Functions<'f>, found: &'a mut Found) -> Self {
        Self {
            functions,
            found,
            rules: Vec::new(),
            env: vec![BTreeMap::new()],
            depth: 0,
            metric_noted: false,
            iface_noted: false,
        }
    }

    /// Translates a filter's statements into a policy.
    pub(super) fn policy(mut self, body: &[Stmt]) -> Result<Policy, BirdError> {
        let done = self.stmts(body, &Guard::default())?;
        let mut p = Policy {
            rules: merge(std::mem::take(&mut self.rules)),
            accept_rest: false,
        };
        // An unconditional verdict at the end is the policy's default.
        if done
            && let Some(last) = p.rules.last()
            && last.when == Guard::default()
            && last.changes.is_empty()
        {
            p.accept_rest = last.action == Action::Accept;
            p.rules.pop();
        }
        Ok(p)
    }

    /// A `where CONDITION` filter.
    pub(super) fn where_policy(self, cond: &Expr) -> Result<Policy, BirdError> {
        let stmt = Stmt::If {
            cond: cond.clone(),
            then: vec![Stmt::Accept(cond.pos.clone())],
            els: Vec::new(),
            pos: cond.pos.clone(),
        };
        self.policy(&[stmt, Stmt::Reject(cond.pos.clone())])
    }

    /// Walks `stmts` under `guard`; `true` when they always end in a verdict.
    fn stmts(&mut self, stmts: &[Stmt], guard: &Guard) -> Result<bool, BirdError> {
        for s in stmts {
            if self.stmt(s, guard)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn rule(&mut self, when: &Guard, changes: Vec<Change>, action: Action) {
        self.rules.push(Rule {
            when: when.clone(),
            changes,
            action,
        });
    }

    fn note_metric(&mut self, pos: &Pos) {
        if !self.metric_noted {
            self.metric_noted = true;
            self.found.notes.push(Note {
                pos: pos.clone(),
                text: "Calico's metric/LOCAL_PREF rule (krt_metric, bgp_local_pref, \
                       preference): [fib] metric_from_local_pref"
                    .to_owned(),
            });
        }
        if self.found.metric_rule.is_none() {
            self.found.metric_rule = Some(None);
        }
    }

    fn stmt(&mut self, s: &Stmt, guard: &Guard) -> Result<bool, BirdError> {
        match s {
            Stmt::Accept(_) => {
                self.rule(guard, Vec::new(), Action::Accept);
                Ok(*guard == Guard::default())
            }
            Stmt::Reject(_) => {
                self.rule(guard, Vec::new(), Action::Reject);
                Ok(*guard == Guard::default())
            }
            Stmt::Assign { target, value, pos } => {
                if is_metric_stmt(s) {
                    self.metric_assign(target, value, pos);
                    return Ok(false);
                }
                let change = match (target.as_str(), &value.kind) {
                    ("bgp_local_pref", ExprKind::Num(n)) => Change::LocalPref(u32_of(*n, pos)?),
                    ("bgp_med", ExprKind::Num(n)) => Change::Med(u32_of(*n, pos)?),
                    ("bgp_next_hop", ExprKind::Ip(a)) => Change::NextHop(*a),
                    ("krt_tunnel", _) => {
                        return Err(err(
                            pos,
                            "krt_tunnel is only understood in the kernel protocol's export \
                             filter",
                        ));
                    }
                    (t, _) => {
                        return Err(err(
                            pos,
                            format!("assignment to {t}: not supported by rr-daemon's policies"),
                        ));
                    }
                };
                self.rule(guard, vec![change], Action::Continue);
                Ok(false)
            }
            Stmt::Method {
                target,
                method,
                args,
                pos,
            } => {
                let change = match (target.as_str(), method.as_str(), args.as_slice()) {
                    ("bgp_community", "add" | "delete", [a]) => {
                        let (x, y) = community(a)?;
                        if method == "add" {
                            Change::AddCommunity(x, y)
                        } else {
                            Change::RemoveCommunity(x, y)
                        }
                    }
                    ("bgp_large_community", "add" | "delete", [a]) => {
                        let (x, y, z) = large_community(a)?;
                        if method == "add" {
                            Change::AddLarge(x, y, z)
                        } else {
                            Change::RemoveLarge(x, y, z)
                        }
                    }
                    ("bgp_path", "prepend", _) => {
                        return Err(err(
                            pos,
                            "bgp_path.prepend: AS path prepending is not supported by \
                             rr-daemon's policies",
                        ));
                    }
                    _ => {
                        return Err(err(
                            pos,
                            format!("{target}.{method}: not supported by rr-daemon's policies"),
                        ));
                    }
                };
                self.rule(guard, vec![change], Action::Continue);
                Ok(false)
            }
            Stmt::Call { name, args, pos } => self.call(name, args, pos, guard),
            Stmt::If {
                cond,
                then,
                els,
                pos,
            } => {
                // Only the metric rule in both branches: Calico's conversion.
                if stmts_metric_only(then) && stmts_metric_only(els) {
                    self.note_metric(pos);
                    self.metric_values(then);
                    self.metric_values(els);
                    return Ok(false);
                }
                match self.cond(cond)? {
                    Cond::Const(true) => self.stmts(then, guard),
                    Cond::Const(false) => self.stmts(els, guard),
                    Cond::Guard(g, elevated) => {
                        if !els.is_empty() {
                            return Err(err(
                                pos,
                                "else after a condition on the route is not supported by \
                                 rr-daemon's policies (write the opposite condition)",
                            ));
                        }
                        if let Some(n) = elevated {
                            self.found.elevated_below = Some(n);
                            self.found.notes.push(Note {
                                pos: cond.pos.clone(),
                                text: format!(
                                    "elevated routes inside a block (krt_metric < {n}): \
                                     [learn] elevated_below = {n}"
                                ),
                            });
                        }
                        let inner = conjoin(guard, &g, &cond.pos)?;
                        self.stmts(then, &inner)?;
                        Ok(false)
                    }
                    Cond::Metric => Err(err(
                        &cond.pos,
                        "a condition on source, krt_metric or bgp_local_pref is only \
                         understood around Calico's metric rule",
                    )),
                    Cond::Iface => {
                        if !stmts_reject_only(then) || !els.is_empty() {
                            return Err(err(
                                &cond.pos,
                                "a condition on ifname is only understood before reject",
                            ));
                        }
                        if !self.iface_noted {
                            self.iface_noted = true;
                            self.found.notes.push(Note {
                                pos: cond.pos.clone(),
                                text: "rejections by interface (ifname): the daemon does not \
                                       match routes by interface; kernel routes are learned \
                                       by [learn] inside the pools only"
                                    .to_owned(),
                            });
                        }
                        Ok(false)
                    }
                }
            }
        }
    }

    fn metric_assign(&mut self, target: &str, value: &Expr, pos: &Pos) {
        self.note_metric(pos);
        if target == "krt_metric"
            && let ExprKind::Num(n) = value.kind
            && let Ok(n) = u32::try_from(n)
        {
            self.found.metric_rule = Some(Some(n));
        }
    }

    fn metric_values(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            match s {
                Stmt::Assign { target, value, pos } => self.metric_assign(target, value, pos),
                Stmt::If { then, els, .. } => {
                    self.metric_values(then);
                    self.metric_values(els);
                }
                _ => {}
            }
        }
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Expr],
        pos: &Pos,
        guard: &Guard,
    ) -> Result<bool, BirdError> {
        let Some(f) = self.functions.get(name).copied() else {
            return Err(err(pos, format!("{name}: no such function")));
        };
        if f.params.len() != args.len() {
            return Err(err(
                pos,
                format!(
                    "{name} takes {} argument(s), {} given",
                    f.params.len(),
                    args.len()
                ),
            ));
        }
        if self.depth >= MAX_DEPTH {
            return Err(err(
                pos,
                format!("{name}: calls nest too deep (recursion?)"),
            ));
        }
        let mut frame = BTreeMap::new();
        for (p, a) in f.params.iter().zip(args) {
            let v = self.constant(a).ok_or_else(|| {
                err(
                    &a.pos,
                    "a function's argument must be a constant (true, false or a number)",
                )
            })?;
            frame.insert(p.clone(), v);
        }
        self.env.push(frame);
        self.depth += 1;
        let r = self.stmts(&f.body, guard);
        self.depth -= 1;
        self.env.pop();
        r
    }

    fn lookup(&self, name: &str) -> Option<Const> {
        self.env.last().and_then(|f| f.get(name)).copied()
    }

    fn constant(&self, e: &Expr) -> Option<Const> {
        match &e.kind {
            ExprKind::Bool(b) => Some(Const::Bool(*b)),
            ExprKind::Num(n) => Some(Const::Num(*n)),
            ExprKind::Sym(s) => self.lookup(s),
            ExprKind::Not(inner) => match self.constant(inner)? {
                Const::Bool(b) => Some(Const::Bool(!b)),
                Const::Num(_) => None,
            },
            _ => None,
        }
    }

    fn cond(&self, e: &Expr) -> Result<Cond, BirdError> {
        if let Some(c) = self.constant(e) {
            return match c {
                Const::Bool(b) => Ok(Cond::Const(b)),
                Const::Num(_) => Err(err(&e.pos, "a number is not a condition")),
            };
        }
        match &e.kind {
            ExprKind::Defined(attr) => Ok(match attr.as_str() {
                "ifname" => Cond::Iface,
                a if METRIC_ATTRS.contains(&a) => Cond::Metric,
                a => {
                    return Err(err(
                        &e.pos,
                        format!("defined({a}): not supported by rr-daemon's policies"),
                    ));
                }
            }),
            ExprKind::Not(inner) => match self.cond(inner)? {
                Cond::Const(b) => Ok(Cond::Const(!b)),
                Cond::Metric => Ok(Cond::Metric),
                Cond::Iface => Ok(Cond::Iface),
                Cond::Guard(..) => Err(err(
                    &e.pos,
                    "a negated condition on the route is not supported by rr-daemon's policies",
                )),
            },
            ExprKind::Bin(BinOp::And, a, b) => {
                let (a, b) = (self.cond(a)?, self.cond(b)?);
                Ok(match (a, b) {
                    (Cond::Const(false), _) | (_, Cond::Const(false)) => Cond::Const(false),
                    (Cond::Const(true), x) | (x, Cond::Const(true)) => x,
                    (Cond::Iface, _) | (_, Cond::Iface) => Cond::Iface,
                    (Cond::Guard(g, None), Cond::Metric) | (Cond::Metric, Cond::Guard(g, None)) => {
                        // `net ~ BLOCK && krt_metric < N`: the elevated routes of a block.
                        let n = elevated_bound(e).ok_or_else(|| {
                            err(
                                &e.pos,
                                "only `krt_metric < N` can stand beside a prefix condition",
                            )
                        })?;
                        Cond::Guard(g, Some(n))
                    }
                    (Cond::Metric, Cond::Metric) => Cond::Metric,
                    (Cond::Guard(g1, e1), Cond::Guard(g2, e2)) => {
                        Cond::Guard(conjoin(&g1, &g2, &e.pos)?, e1.or(e2))
                    }
                    _ => {
                        return Err(err(
                            &e.pos,
                            "this combination of conditions is not supported",
                        ));
                    }
                })
            }
            ExprKind::Bin(BinOp::Or, a, b) => {
                let (a, b) = (self.cond(a)?, self.cond(b)?);
                Ok(match (a, b) {
                    (Cond::Const(true), _) | (_, Cond::Const(true)) => Cond::Const(true),
                    (Cond::Const(false), x) | (x, Cond::Const(false)) => x,
                    (Cond::Iface, Cond::Iface) => Cond::Iface,
                    (Cond::Metric, Cond::Metric) => Cond::Metric,
                    (Cond::Guard(g1, None), Cond::Guard(g2, None)) => {
                        Cond::Guard(disjoin(g1, g2, &e.pos)?, None)
                    }
                    _ => {
                        return Err(err(
                            &e.pos,
                            "`||` is only supported between conditions of one kind (prefixes, \
                             communities or interfaces)",
                        ));
                    }
                })
            }
            ExprKind::Bin(op, a, b) => self.compare(*op, a, b, e),
            _ => Err(err(&e.pos, "not a condition rr-daemon can translate")),
        }
    }

    fn compare(&self, op: BinOp, a: &Expr, b: &Expr, e: &Expr) -> Result<Cond, BirdError> {
        if let (Some(x), Some(y)) = (self.constant(a), self.constant(b)) {
            let v = match (op, x, y) {
                (BinOp::Eq, x, y) => x == y,
                (BinOp::Ne, x, y) => x != y,
                (BinOp::Lt, Const::Num(x), Const::Num(y)) => x < y,
                (BinOp::Le, Const::Num(x), Const::Num(y)) => x <= y,
                (BinOp::Gt, Const::Num(x), Const::Num(y)) => x > y,
                (BinOp::Ge, Const::Num(x), Const::Num(y)) => x >= y,
                _ => return Err(err(&e.pos, "cannot compare these values")),
            };
            return Ok(Cond::Const(v));
        }
        fn sym(x: &Expr) -> Option<&str> {
            match &x.kind {
                ExprKind::Sym(s) => Some(s.as_str()),
                _ => None,
            }
        }
        match (sym(a), op) {
            (Some("net"), BinOp::Match | BinOp::Eq) => {
                let pats = match (&b.kind, op) {
                    (ExprKind::Prefix(p), BinOp::Match) => vec![within(*p)],
                    (ExprKind::Prefix(p), BinOp::Eq) => vec![PrefixPat {
                        prefix: p.trunc(),
                        ge: p.prefix_len(),
                        le: p.prefix_len(),
                    }],
                    (ExprKind::PrefixSet(s), BinOp::Match) => s.clone(),
                    _ => {
                        return Err(err(
                            &b.pos,
                            "net is matched against a prefix or a prefix set",
                        ));
                    }
                };
                return Ok(Cond::Guard(
                    Guard {
                        prefixes: Some(pats),
                        ..Guard::default()
                    },
                    None,
                ));
            }
            (Some("net"), _) => {
                return Err(err(
                    &e.pos,
                    format!(
                        "net {} ...: only `net ~` and `net =` are supported by rr-daemon's \
                         policies",
                        op.text()
                    ),
                ));
            }
            (Some("ifname"), _) => return Ok(Cond::Iface),
            (Some(s), _) if METRIC_ATTRS.contains(&s) => return Ok(Cond::Metric),
            (Some("bgp_path"), _) => {
                return Err(err(
                    &e.pos,
                    "bgp_path matching is not supported by rr-daemon's policies",
                ));
            }
            _ => {}
        }
        if op == BinOp::Match
            && let ExprKind::Sym(attr) = &b.kind
        {
            match attr.as_str() {
                "bgp_community" => {
                    let c = community(a)?;
                    return Ok(Cond::Guard(
                        Guard {
                            communities: Some(vec![c]),
                            ..Guard::default()
                        },
                        None,
                    ));
                }
                "bgp_large_community" => {
                    let c = large_community(a)?;
                    return Ok(Cond::Guard(
                        Guard {
                            large: Some(vec![c]),
                            ..Guard::default()
                        },
                        None,
                    ));
                }
                _ => {}
            }
        }
        Err(err(
            &e.pos,
            format!(
                "this comparison ({}) is not supported by rr-daemon's policies",
                op.text()
            ),
        ))
    }
}

/// `net ~ P`: P and everything inside it.
fn within(p: IpNet) -> PrefixPat {
    PrefixPat {
        prefix: p.trunc(),
        ge: p.prefix_len(),
        le: p.max_prefix_len(),
    }
}

fn u32_of(n: i64, pos: &Pos) -> Result<u32, BirdError> {
    u32::try_from(n).map_err(|_| err(pos, format!("{n} is out of range (0..=4294967295)")))
}

fn community(e: &Expr) -> Result<(u16, u16), BirdError> {
    if let ExprKind::Tuple(items) = &e.kind
        && let [a, b] = items.as_slice()
        && let (ExprKind::Num(x), ExprKind::Num(y)) = (&a.kind, &b.kind)
        && let (Ok(x), Ok(y)) = (u16::try_from(*x), u16::try_from(*y))
    {
        return Ok((x, y));
    }
    Err(err(
        &e.pos,
        "a community is (A, B) with two numbers of 16 bits",
    ))
}

fn large_community(e: &Expr) -> Result<(u32, u32, u32), BirdError> {
    if let ExprKind::Tuple(items) = &e.kind
        && let [a, b, c] = items.as_slice()
        && let (ExprKind::Num(x), ExprKind::Num(y), ExprKind::Num(z)) = (&a.kind, &b.kind, &c.kind)
        && let (Ok(x), Ok(y), Ok(z)) = (u32::try_from(*x), u32::try_from(*y), u32::try_from(*z))
    {
        return Ok((x, y, z));
    }
    Err(err(
        &e.pos,
        "a large community is (A, B, C) with three numbers of 32 bits",
    ))
}

/// `krt_metric < N` inside `e` (a conjunction).
fn elevated_bound(e: &Expr) -> Option<u32> {
    match &e.kind {
        ExprKind::Bin(BinOp::And, a, b) => elevated_bound(a).or_else(|| elevated_bound(b)),
        ExprKind::Bin(BinOp::Lt, a, b) => match (&a.kind, &b.kind) {
            (ExprKind::Sym(s), ExprKind::Num(n)) if s == "krt_metric" => u32::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Both guards.
fn conjoin(a: &Guard, b: &Guard, pos: &Pos) -> Result<Guard, BirdError> {
    fn one<T: Clone>(
        x: &Option<T>,
        y: &Option<T>,
        what: &str,
        pos: &Pos,
    ) -> Result<Option<T>, BirdError> {
        match (x, y) {
            (Some(_), Some(_)) => Err(err(
                pos,
                format!(
                    "two conditions on {what} in one rule are not supported by rr-daemon's policies"
                ),
            )),
            (Some(v), None) | (None, Some(v)) => Ok(Some(v.clone())),
            (None, None) => Ok(None),
        }
    }
    Ok(Guard {
        prefixes: one(&a.prefixes, &b.prefixes, "the prefix", pos)?,
        communities: one(&a.communities, &b.communities, "communities", pos)?,
        large: one(&a.large, &b.large, "large communities", pos)?,
    })
}

/// Either guard: only between guards on the same one thing.
fn disjoin(a: Guard, b: Guard, pos: &Pos) -> Result<Guard, BirdError> {
    let only = |g: &Guard| {
        (
            g.prefixes.is_some(),
            g.communities.is_some(),
            g.large.is_some(),
        )
    };
    if only(&a) != only(&b)
        || [only(&a).0, only(&a).1, only(&a).2]
            .iter()
            .filter(|x| **x)
            .count()
            != 1
    {
        return Err(err(
            pos,
            "`||` between conditions on different things is not supported by rr-daemon's policies",
        ));
    }
    let cat = |x: Option<Vec<_>>, y: Option<Vec<_>>| match (x, y) {
        (Some(mut x), Some(y)) => {
            x.extend(y);
            Some(x)
        }
        _ => None,
    };
    Ok(Guard {
        prefixes: cat(a.prefixes, b.prefixes),
        communities: match (a.communities, b.communities) {
            (Some(mut x), Some(y)) => {
                x.extend(y);
                Some(x)
            }
            _ => None,
        },
        large: match (a.large, b.large) {
            (Some(mut x), Some(y)) => {
                x.extend(y);
                Some(x)
            }
            _ => None,
        },
    })
}

/// Whether `s` belongs to the metric/LOCAL_PREF rule: an assignment to `krt_metric` or
/// `preference`, or of `bgp_local_pref` from `krt_metric`.
fn is_metric_stmt(s: &Stmt) -> bool {
    match s {
        Stmt::Assign { target, value, .. } => match target.as_str() {
            "krt_metric" | "preference" => true,
            "bgp_local_pref" => mentions(value, "krt_metric"),
            _ => false,
        },
        Stmt::If { then, els, .. } => stmts_metric_only(then) && stmts_metric_only(els),
        _ => false,
    }
}

fn stmts_metric_only(stmts: &[Stmt]) -> bool {
    stmts.iter().all(is_metric_stmt)
}

fn stmts_reject_only(stmts: &[Stmt]) -> bool {
    !stmts.is_empty()
        && stmts.iter().all(|s| match s {
            Stmt::Reject(_) => true,
            Stmt::If { then, els, .. } => stmts_reject_only(then) && els.is_empty(),
            _ => false,
        })
}

fn mentions(e: &Expr, sym: &str) -> bool {
    match &e.kind {
        ExprKind::Sym(s) => s == sym,
        ExprKind::Not(x) => mentions(x, sym),
        ExprKind::Bin(_, a, b) => mentions(a, sym) || mentions(b, sym),
        ExprKind::Tuple(v) | ExprKind::Set(v) | ExprKind::Call(_, v) => {
            v.iter().any(|x| mentions(x, sym))
        }
        _ => false,
    }
}

/// Folds a `continue` rule into the next rule when both match the same routes and the
/// next one accepts or continues: `if (net ~ P) then { bgp_community.add(..); accept; }`
/// is one rule.
fn merge(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for r in rules {
        if let Some(last) = out.last_mut()
            && last.action == Action::Continue
            && last.when == r.when
            && r.action != Action::Reject
        {
            last.changes.extend(r.changes);
            last.action = r.action;
            continue;
        }
        out.push(r);
    }
    out
}

/// Calico's IP pool as the kernel protocol's export filter programs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KernelPool {
    pub(super) prefix: IpNet,
    /// `None`: not installed (`reject`); else the tunnel mode.
    pub(super) ipip: Option<&'static str>,
}

/// The kernel protocol's export filter, translated.
#[derive(Clone, Debug, Default)]
pub(super) struct Kernel {
    pub(super) pools: Vec<KernelPool>,
    pub(super) node_subnet: Option<IpNet>,
    pub(super) tunnel_device: Option<String>,
    /// The filter sets `krt_metric` itself (Calico >= 3.32's `SetMetricForBGPRoutes`),
    /// with this normal metric.
    pub(super) sets_metric: Option<u32>,
}

/// The kernel protocol's export filter: `if (net ~ POOL) then { [krt_tunnel ...;] accept
/// | reject; }` per pool, Calico's metric rule, and `accept;` at the end (routes outside
/// every pool are installed as they are).
pub(super) fn kernel(body: &[Stmt], end: &Pos, found: &mut Found) -> Result<Kernel, BirdError> {
    let mut k = Kernel::default();
    let mut ended = false;
    for s in body {
        if ended {
            found.notes.push(Note {
                pos: stmt_pos(s).clone(),
                text: "unreachable after accept".to_owned(),
            });
            continue;
        }
        match s {
            Stmt::Accept(_) => ended = true,
            Stmt::Reject(p) => {
                return Err(err(
                    p,
                    "the kernel protocol's export filter must install routes outside the pools \
                     (end with accept)",
                ));
            }
            Stmt::If { then, els, pos, .. }
                if stmts_metric_only(then) && stmts_metric_only(els) =>
            {
                let before = found.metric_rule;
                found.metric_rule = Some(None);
                let mut n = None;
                find_metric(then, &mut n);
                k.sets_metric = Some(n.unwrap_or(1024));
                found.metric_rule = before;
                found.notes.push(Note {
                    pos: pos.clone(),
                    text: "Calico's kernel metric rule (krt_metric = 2147483647 - \
                           bgp_local_pref): [fib] metric_from_local_pref"
                        .to_owned(),
                });
            }
            Stmt::If {
                cond,
                then,
                els,
                pos,
            } => {
                if !els.is_empty() {
                    return Err(err(
                        pos,
                        "else: not supported in the kernel protocol's filter",
                    ));
                }
                let prefix = match &cond.kind {
                    ExprKind::Bin(BinOp::Match, a, b) if sym_is(a, "net") => match &b.kind {
                        ExprKind::Prefix(p) => p.trunc(),
                        ExprKind::PrefixSet(set)
                            if set.len() == 1
                                && set[0].ge == set[0].prefix.prefix_len()
                                && set[0].le == set[0].prefix.max_prefix_len() =>
                        {
                            set[0].prefix
                        }
                        _ => return Err(err(&b.pos, "expected a pool's prefix (net ~ PREFIX)")),
                    },
                    _ if mentions(cond, "bgp_next_hop") => {
                        return Err(err(
                            &cond.pos,
                            "a kernel route chosen by its next hop (Calico's WireGuard peers) is \
                             not supported by rr-daemon's [fib]",
                        ));
                    }
                    _ => {
                        return Err(err(
                            &cond.pos,
                            "the kernel protocol's filter is understood as one `net ~ POOL` \
                             condition per IP pool",
                        ));
                    }
                };
                let pool = kernel_pool(prefix, then, pos, &mut k)?;
                if k.pools.iter().any(|p| p.prefix == pool.prefix) {
                    return Err(err(pos, format!("pool {prefix} twice")));
                }
                k.pools.push(pool);
            }
            other => {
                return Err(err(
                    stmt_pos(other),
                    "not understood in the kernel protocol's export filter (one `if (net ~ \
                     POOL) then {...}` per pool, then accept)",
                ));
            }
        }
    }
    if !ended {
        return Err(err(
            end,
            "the kernel protocol's export filter must end with accept (routes outside the \
             pools are installed as they are)",
        ));
    }
    Ok(k)
}

fn find_metric(stmts: &[Stmt], n: &mut Option<u32>) {
    for s in stmts {
        match s {
            Stmt::Assign { target, value, .. } if target == "krt_metric" && n.is_none() => {
                if let ExprKind::Num(v) = value.kind {
                    *n = u32::try_from(v).ok();
                }
            }
            Stmt::If { then, els, .. } => {
                find_metric(then, n);
                find_metric(els, n);
            }
            _ => {}
        }
    }
}

fn sym_is(e: &Expr, s: &str) -> bool {
    matches!(&e.kind, ExprKind::Sym(x) if x == s)
}

fn tunnel_of(value: &Expr, k: &mut Kernel) -> Result<bool, BirdError> {
    match &value.kind {
        ExprKind::Str(s) if s.is_empty() => Ok(false),
        ExprKind::Str(s) => {
            match &k.tunnel_device {
                Some(d) if d != s => {
                    return Err(err(
                        &value.pos,
                        format!("a second tunnel device {s:?} (rr-daemon has one: {d:?})"),
                    ));
                }
                _ => k.tunnel_device = Some(s.clone()),
            }
            Ok(true)
        }
        _ => Err(err(&value.pos, "krt_tunnel takes a device name in quotes")),
    }
}

/// The body of one pool's rule.
fn kernel_pool(
    prefix: IpNet,
    body: &[Stmt],
    pos: &Pos,
    k: &mut Kernel,
) -> Result<KernelPool, BirdError> {
    let bad = |p: &Pos| {
        err(
            p,
            "a pool's kernel rule is `accept`, `reject`, `krt_tunnel = \"DEV\"; accept` or \
             Calico's cross-subnet test",
        )
    };
    match body {
        [Stmt::Reject(_)] => Ok(KernelPool { prefix, ipip: None }),
        [Stmt::Accept(_)] => Ok(KernelPool {
            prefix,
            ipip: Some("never"),
        }),
        [Stmt::Assign { target, value, .. }, Stmt::Accept(_)] if target == "krt_tunnel" => {
            let tunnel = tunnel_of(value, k)?;
            Ok(KernelPool {
                prefix,
                ipip: Some(if tunnel { "always" } else { "never" }),
            })
        }
        [
            Stmt::If {
                cond, then, els, ..
            },
            Stmt::Accept(_),
        ] => {
            // if (defined(bgp_next_hop) && (bgp_next_hop ~ SUBNET)) then krt_tunnel="";
            // else krt_tunnel="DEV";
            let subnet = cross_subnet(cond).ok_or_else(|| bad(&cond.pos))?;
            let (
                [
                    Stmt::Assign {
                        target: t1,
                        value: v1,
                        ..
                    },
                ],
                [
                    Stmt::Assign {
                        target: t2,
                        value: v2,
                        ..
                    },
                ],
            ) = (then.as_slice(), els.as_slice())
            else {
                return Err(bad(pos));
            };
            if t1 != "krt_tunnel" || t2 != "krt_tunnel" || tunnel_of(v1, k)? || !tunnel_of(v2, k)? {
                return Err(bad(pos));
            }
            if let Some(s) = k.node_subnet
                && s != subnet
            {
                return Err(err(
                    &cond.pos,
                    format!("a second node subnet {subnet} (the first was {s})"),
                ));
            }
            k.node_subnet = Some(subnet);
            Ok(KernelPool {
                prefix,
                ipip: Some("cross-subnet"),
            })
        }
        [first, ..] => Err(bad(stmt_pos(first))),
        [] => Err(bad(pos)),
    }
}

/// `defined(bgp_next_hop) && (bgp_next_hop ~ SUBNET)`: the subnet.
fn cross_subnet(e: &Expr) -> Option<IpNet> {
    match &e.kind {
        ExprKind::Bin(BinOp::And, a, b) => {
            if !matches!(&a.kind, ExprKind::Defined(x) if x == "bgp_next_hop") {
                return None;
            }
            cross_subnet(b)
        }
        ExprKind::Bin(BinOp::Match, a, b) if sym_is(a, "bgp_next_hop") => match &b.kind {
            ExprKind::Prefix(p) => Some(p.trunc()),
            _ => None,
        },
        _ => None,
    }
}

/// Where a statement starts.
pub(super) fn stmt_pos(s: &Stmt) -> &Pos {
    match s {
        Stmt::If { pos, .. }
        | Stmt::Assign { pos, .. }
        | Stmt::Call { pos, .. }
        | Stmt::Method { pos, .. }
        | Stmt::Accept(pos)
        | Stmt::Reject(pos) => pos,
    }
}
