//! Calico's label selector language (`has(k)`, `!has(k)`, `k == 'v'`, `k != 'v'`,
//! `k in {...}`, `&&`, `||`, `!`, `all()`, parentheses).
//!
//! Also accepted, as Calico's parser does: `k not in {...}`, `k contains 'v'`,
//! `k starts with 'v'`, `k ends with 'v'`, `global()` (true everywhere) and strings in
//! double quotes. Precedence, lowest first: `||`, `&&`, `!`; an empty selector (only
//! blanks) selects everything, as Calico's does.
//!
//! Semantics follow Calico's: `k != 'v'` and `k not in {...}` hold when `k` is absent.

use std::collections::BTreeMap;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while, take_while1},
    character::complete::{char, multispace0, multispace1},
    combinator::{all_consuming, map, value},
    multi::separated_list0,
    sequence::{delimited, preceded},
};

/// Labels of a node (`metadata.labels`).
pub type Labels = BTreeMap<String, String>;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// `all()`, `global()`, or the empty selector.
    All,
    /// `has(k)`.
    Has(String),
    /// `k == 'v'`.
    Eq(String, String),
    /// `k != 'v'` (true when `k` is absent).
    Ne(String, String),
    /// `k in {'a', 'b'}`.
    In(String, Vec<String>),
    /// `k not in {'a', 'b'}` (true when `k` is absent).
    NotIn(String, Vec<String>),
    /// `k contains 'v'`.
    Contains(String, String),
    /// `k starts with 'v'`.
    StartsWith(String, String),
    /// `k ends with 'v'`.
    EndsWith(String, String),
    /// `!s`.
    Not(Box<Self>),
    /// `a && b`.
    And(Box<Self>, Box<Self>),
    /// `a || b`.
    Or(Box<Self>, Box<Self>),
}

/// A selector that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {text:?}: {message}")]
pub struct SelectorError {
    /// The selector as written.
    pub text: String,
    /// Where it went wrong.
    pub message: String,
}

/// The longest selector accepted (Calico's resources are bounded by etcd's value size;
/// this bounds the parser's recursion and work).
pub const MAX_LEN: usize = 4096;
/// The deepest nesting of parentheses and `!` accepted.
const MAX_DEPTH: usize = 64;

impl Selector {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |message: String| SelectorError {
            text: text.to_owned(),
            message,
        };
        if text.len() > MAX_LEN {
            return Err(fail(format!("longer than {MAX_LEN} bytes")));
        }
        if text.trim().is_empty() {
            return Ok(Self::All);
        }
        match all_consuming(delimited(multispace0, |i| or_expr(i, 0), multispace0)).parse(text) {
            Ok((_, s)) => Ok(s),
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                let at = text.len() - e.input.len();
                Err(fail(format!(
                    "syntax error at byte {at}: {:?}",
                    rest(e.input)
                )))
            }
            Err(nom::Err::Incomplete(_)) => Err(fail("incomplete".to_owned())),
        }
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Self::All => true,
            Self::Has(k) => labels.contains_key(k),
            Self::Eq(k, v) => labels.get(k) == Some(v),
            Self::Ne(k, v) => labels.get(k) != Some(v),
            Self::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Self::NotIn(k, vs) => !labels.get(k).is_some_and(|x| vs.contains(x)),
            Self::Contains(k, v) => labels.get(k).is_some_and(|x| x.contains(v.as_str())),
            Self::StartsWith(k, v) => labels.get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Self::EndsWith(k, v) => labels.get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Self::Not(s) => !s.matches(labels),
            Self::And(a, b) => a.matches(labels) && b.matches(labels),
            Self::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }
}

/// The start of what could not be parsed, for the message.
fn rest(s: &str) -> String {
    s.chars().take(24).collect()
}

type Res<'a, T> = IResult<&'a str, T>;

fn ws<'a, O>(
    p: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>> {
    delimited(multispace0, p, multispace0)
}

fn too_deep(i: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Failure(nom::error::Error::new(i, nom::error::ErrorKind::TooLarge))
}

fn or_expr(i: &str, depth: usize) -> Res<'_, Selector> {
    let (mut i, mut acc) = and_expr(i, depth)?;
    loop {
        match preceded(ws(tag("||")), |x| and_expr(x, depth)).parse(i) {
            Ok((r, s)) => {
                acc = Selector::Or(Box::new(acc), Box::new(s));
                i = r;
            }
            Err(nom::Err::Error(_)) => return Ok((i, acc)),
            Err(e) => return Err(e),
        }
    }
}

fn and_expr(i: &str, depth: usize) -> Res<'_, Selector> {
    let (mut i, mut acc) = unary(i, depth)?;
    loop {
        match preceded(ws(tag("&&")), |x| unary(x, depth)).parse(i) {
            Ok((r, s)) => {
                acc = Selector::And(Box::new(acc), Box::new(s));
                i = r;
            }
            Err(nom::Err::Error(_)) => return Ok((i, acc)),
            Err(e) => return Err(e),
        }
    }
}

fn unary(i: &str, depth: usize) -> Res<'_, Selector> {
    if depth > MAX_DEPTH {
        return Err(too_deep(i));
    }
    let (i, _) = multispace0(i)?;
    if let Some(r) = i.strip_prefix('!') {
        let (r, s) = unary(r, depth + 1)?;
        return Ok((r, Selector::Not(Box::new(s))));
    }
    if let Some(r) = i.strip_prefix('(') {
        let (r, s) = or_expr(r, depth + 1)?;
        let (r, _) = ws(char(')')).parse(r)?;
        return Ok((r, s));
    }
    let (i, s) = term(i)?;
    let (i, _) = multispace0(i)?;
    Ok((i, s))
}

/// A label key: Kubernetes' characters (`kubernetes.io/hostname`, `rack_1`).
fn key(i: &str) -> Res<'_, String> {
    map(
        take_while1(|c: char| c.is_ascii_alphanumeric() || "._/-".contains(c)),
        str::to_owned,
    )
    .parse(i)
}

/// A quoted string: `'...'` or `"..."`, no escapes (as Calico's).
fn string(i: &str) -> Res<'_, String> {
    map(
        alt((
            delimited(char('\''), take_while(|c| c != '\''), char('\'')),
            delimited(char('"'), take_while(|c| c != '"'), char('"')),
        )),
        str::to_owned,
    )
    .parse(i)
}

fn set(i: &str) -> Res<'_, Vec<String>> {
    delimited(
        ws(char('{')),
        separated_list0(ws(char(',')), string),
        ws(char('}')),
    )
    .parse(i)
}

fn call<'a>(
    name: &'static str,
) -> impl Parser<&'a str, Output = (), Error = nom::error::Error<&'a str>> {
    value((), (tag(name), ws(char('(')), char(')')))
}

#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    Starts,
    Ends,
}

fn term(i: &str) -> Res<'_, Selector> {
    alt((
        value(Selector::All, call("all")),
        value(Selector::All, call("global")),
        map(
            (tag("has"), ws(char('(')), ws(key), char(')')),
            |(_, _, k, _)| Selector::Has(k),
        ),
        comparison,
    ))
    .parse(i)
}

fn comparison(i: &str) -> Res<'_, Selector> {
    let (i, k) = key(i)?;
    let (i, _) = multispace0(i)?;
    let (i, op) = alt((
        value(Op::Eq, tag("==")),
        value(Op::Ne, tag("!=")),
        value(Op::NotIn, (tag("not"), multispace1, tag("in"))),
        value(Op::In, tag("in")),
        value(Op::Contains, tag("contains")),
        value(Op::Starts, (tag("starts"), multispace1, tag("with"))),
        value(Op::Ends, (tag("ends"), multispace1, tag("with"))),
    ))
    .parse(i)?;
    let (i, _) = multispace0(i)?;
    match op {
        Op::In | Op::NotIn => {
            let (i, vs) = set(i)?;
            Ok((
                i,
                if matches!(op, Op::In) {
                    Selector::In(k, vs)
                } else {
                    Selector::NotIn(k, vs)
                },
            ))
        }
        _ => {
            let (i, v) = string(i)?;
            let s = match op {
                Op::Eq => Selector::Eq(k, v),
                Op::Ne => Selector::Ne(k, v),
                Op::Contains => Selector::Contains(k, v),
                Op::Starts => Selector::StartsWith(k, v),
                _ => Selector::EndsWith(k, v),
            };
            Ok((i, s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn m(sel: &str, kv: &[(&str, &str)]) -> bool {
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&labels(kv))
    }

    #[test]
    fn the_forms_calico_documents() {
        let rack = [("rack", "r1"), ("route-reflector", "true")];
        assert!(m("all()", &[]));
        assert!(m("", &[]));
        assert!(m("  ", &rack));
        assert!(m("global()", &rack));
        assert!(m("has(rack)", &rack));
        assert!(!m("has(zone)", &rack));
        assert!(m("!has(zone)", &rack));
        assert!(m("rack == 'r1'", &rack));
        assert!(m("rack==\"r1\"", &rack));
        assert!(!m("rack == 'r2'", &rack));
        assert!(m("rack != 'r2'", &rack));
        assert!(m("zone != 'a'", &rack), "!= holds on an absent label");
        assert!(m("rack in {'r0', 'r1'}", &rack));
        assert!(!m("rack in {}", &rack));
        assert!(!m("zone in {'a'}", &rack));
        assert!(m("zone not in {'a'}", &rack));
        assert!(!m("rack not in { 'r1' }", &rack));
        assert!(m("route-reflector == 'true' && rack == 'r1'", &rack));
        assert!(!m("route-reflector == 'true' && rack == 'r2'", &rack));
        assert!(m("rack == 'r2' || has(route-reflector)", &rack));
        assert!(m("!(rack == 'r2')", &rack));
        assert!(m("!!has(rack)", &rack));
        assert!(m("rack contains '1'", &rack));
        assert!(m("rack starts with 'r'", &rack));
        assert!(m("rack ends with '1'", &rack));
        assert!(m(
            "kubernetes.io/hostname == 'n1'",
            &[("kubernetes.io/hostname", "n1")]
        ));
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        // a || b && c == a || (b && c)
        let s = Selector::parse("has(a) || has(b) && has(c)").unwrap();
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(!s.matches(&labels(&[("b", "")])));
        let s = Selector::parse("(has(a) || has(b)) && has(c)").unwrap();
        assert!(!s.matches(&labels(&[("a", "")])));
        assert!(s.matches(&labels(&[("b", ""), ("c", "")])));
        // ! binds tighter than &&.
        let s = Selector::parse("!has(a) && has(b)").unwrap();
        assert!(s.matches(&labels(&[("b", "")])));
        assert!(!s.matches(&labels(&[("a", ""), ("b", "")])));
    }

    #[test]
    fn errors_say_where() {
        for bad in [
            "has(",
            "rack ==",
            "rack == r1",
            "rack = 'r1'",
            "rack in 'r1'",
            "&& has(a)",
            "has(a) &&",
            "(has(a)",
            "has(a))",
            "all",
            "rack == 'r1' extra",
        ] {
            let e = Selector::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid selector"), "{e}");
        }
        let deep = format!("{}has(a){}", "(".repeat(500), ")".repeat(500));
        assert!(Selector::parse(&deep).is_err());
        let long = "has(a) || ".repeat(1000);
        assert!(Selector::parse(&long).is_err());
    }

    /// A random selector and its text.
    fn arb_selector() -> impl Strategy<Value = Selector> {
        let k = prop::sample::select(vec!["a", "b", "rack", "x.io/y"]).prop_map(str::to_owned);
        let v = prop::sample::select(vec!["", "1", "r1", "true"]).prop_map(str::to_owned);
        let leaf = prop_oneof![
            Just(Selector::All),
            k.clone().prop_map(Selector::Has),
            (k.clone(), v.clone()).prop_map(|(k, v)| Selector::Eq(k, v)),
            (k.clone(), v.clone()).prop_map(|(k, v)| Selector::Ne(k, v)),
            (k.clone(), prop::collection::vec(v.clone(), 0..3))
                .prop_map(|(k, v)| Selector::In(k, v)),
            (k, prop::collection::vec(v, 0..3)).prop_map(|(k, v)| Selector::NotIn(k, v)),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|s| Selector::Not(Box::new(s))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Selector::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Selector::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    /// Writes `s` fully parenthesised.
    fn text(s: &Selector) -> String {
        let set = |vs: &[String]| {
            vs.iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match s {
            Selector::All => "all()".into(),
            Selector::Has(k) => format!("has({k})"),
            Selector::Eq(k, v) => format!("{k} == '{v}'"),
            Selector::Ne(k, v) => format!("{k} != \"{v}\""),
            Selector::In(k, vs) => format!("{k} in {{{}}}", set(vs)),
            Selector::NotIn(k, vs) => format!("{k} not in {{ {} }}", set(vs)),
            Selector::Contains(k, v) => format!("{k} contains '{v}'"),
            Selector::StartsWith(k, v) => format!("{k} starts with '{v}'"),
            Selector::EndsWith(k, v) => format!("{k} ends with '{v}'"),
            Selector::Not(x) => format!("!({})", text(x)),
            Selector::And(a, b) => format!("({}) && ({})", text(a), text(b)),
            Selector::Or(a, b) => format!("({})||({})", text(a), text(b)),
        }
    }

    proptest! {
        /// Printing and parsing gives back the same tree, so the evaluator sees exactly
        /// what was written.
        #[test]
        fn round_trip(s in arb_selector()) {
            prop_assert_eq!(Selector::parse(&text(&s)).unwrap(), s);
        }

        /// Arbitrary text never panics.
        #[test]
        fn any_text_is_safe(t in "[ a-z()!&|='{},.]{0,64}") {
            let _ = Selector::parse(&t);
        }

        /// `!s` is the complement of `s` on any labels.
        #[test]
        fn negation_complements(s in arb_selector(), a in any::<bool>(), r in 0..3u8) {
            let mut l = Labels::new();
            if a { l.insert("a".into(), "1".into()); }
            if r > 0 { l.insert("rack".into(), if r == 1 { "r1".into() } else { "true".into() }); }
            let n = Selector::Not(Box::new(s.clone()));
            prop_assert_eq!(n.matches(&l), !s.matches(&l));
        }
    }
}
