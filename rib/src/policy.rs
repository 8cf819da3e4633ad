//! Import and export policy: an ordered list of rules, each a match and actions.
//!
//! A policy is evaluated in two halves so that its cost stays per attribute set, not per
//! route: [`Policy::evaluate`] (cheap, per prefix) says which rules fired as a bit mask, and
//! [`Policy::apply`] (allocating) builds the modified attributes once per distinct mask,
//! which callers cache.

use std::net::IpAddr;

use bgp_wire::attr::{Community, LargeCommunity, NextHop};
use ipnet::IpNet;
use thiserror::Error;

use crate::attrs::{AttrSet, Attrs};

/// The most rules a policy holds: fired rules are reported as a `u64` mask.
pub const MAX_RULES: usize = 64;

/// A policy that cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// More than [`MAX_RULES`] rules.
    #[error("a policy holds at most {MAX_RULES} rules, got {0}")]
    TooManyRules(usize),
}

/// One entry of a prefix list: `prefix` and the lengths accepted (`ge`..=`le`, both
/// defaulting to the prefix's own length, as in common router configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixMatch {
    /// The covering prefix.
    pub prefix: IpNet,
    /// Shortest accepted length.
    pub ge: Option<u8>,
    /// Longest accepted length.
    pub le: Option<u8>,
}

impl PrefixMatch {
    /// Exactly `prefix`.
    pub fn exact(prefix: IpNet) -> Self {
        Self {
            prefix,
            ge: None,
            le: None,
        }
    }

    /// `prefix` and anything more specific up to `le`.
    pub fn orlonger(prefix: IpNet, le: u8) -> Self {
        Self {
            prefix,
            ge: None,
            le: Some(le),
        }
    }

    /// Whether `p` is inside the prefix with a length in range.
    pub fn matches(&self, p: &IpNet) -> bool {
        let own = self.prefix.prefix_len();
        let (ge, le) = match (self.ge, self.le) {
            (None, None) => (own, own),
            (ge, le) => (ge.unwrap_or(own), le.unwrap_or(p.max_prefix_len())),
        };
        (ge..=le).contains(&p.prefix_len()) && self.prefix.contains(p)
    }
}

/// What a rule looks at; every condition set must hold (an empty match matches all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Match {
    /// The prefix is in one of these (empty: any prefix).
    pub prefixes: Vec<PrefixMatch>,
    /// The route carries one of these communities (empty: no condition).
    pub communities: Vec<Community>,
    /// The route carries one of these large communities (empty: no condition).
    pub large_communities: Vec<LargeCommunity>,
    /// The AS_PATH is longer than this (RFC 4271 §9.1.2.2 length).
    pub as_path_longer_than: Option<u32>,
}

/// What a rule's conditions read of a route's attributes: the decoded [`Attrs`] or the
/// interned [`AttrSet`] alike.
pub trait Matchable {
    /// Whether the route carries the community `c`.
    fn has_community(&self, c: Community) -> bool;
    /// Whether the route carries the large community `c`.
    fn has_large_community(&self, c: &LargeCommunity) -> bool;
}

impl Matchable for Attrs {
    fn has_community(&self, c: Community) -> bool {
        Self::has_community(self, c)
    }
    fn has_large_community(&self, c: &LargeCommunity) -> bool {
        self.large_communities.binary_search(c).is_ok()
    }
}

impl Matchable for AttrSet {
    fn has_community(&self, c: Community) -> bool {
        Self::has_community(self, c)
    }
    fn has_large_community(&self, c: &LargeCommunity) -> bool {
        self.large_communities().binary_search(c).is_ok()
    }
}

impl Match {
    fn matches<A: Matchable + ?Sized>(&self, prefix: &IpNet, attrs: &A, route_len: u32) -> bool {
        (self.prefixes.is_empty() || self.prefixes.iter().any(|m| m.matches(prefix)))
            && (self.communities.is_empty()
                || self.communities.iter().any(|c| attrs.has_community(*c)))
            && (self.large_communities.is_empty()
                || self
                    .large_communities
                    .iter()
                    .any(|c| attrs.has_large_community(c)))
            && self.as_path_longer_than.is_none_or(|n| route_len > n)
    }
}

/// A change a rule makes to a route it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modify {
    /// Sets LOCAL_PREF.
    SetLocalPref(u32),
    /// Sets MULTI_EXIT_DISC.
    SetMed(u32),
    /// Sets the next hop.
    SetNextHop(IpAddr),
    /// Adds a community.
    AddCommunity(Community),
    /// Removes a community.
    RemoveCommunity(Community),
    /// Adds a large community.
    AddLargeCommunity(LargeCommunity),
    /// Removes a large community.
    RemoveLargeCommunity(LargeCommunity),
}

/// What a matching rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Apply the rule's changes and accept the route.
    Accept,
    /// Refuse the route.
    Reject,
    /// Apply the rule's changes and go on with the next rule.
    Continue,
}

/// One rule: when `when` matches, apply `then` and decide `verdict`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The condition.
    pub when: Match,
    /// The changes.
    pub then: Vec<Modify>,
    /// The decision.
    pub verdict: Verdict,
}

/// An ordered list of rules and what to do with routes no rule decided.
///
/// Peers with equal export policies may share an update group, so policies compare by
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    rules: Vec<Rule>,
    accept_rest: bool,
}

impl Policy {
    /// A policy of `rules` (at most [`MAX_RULES`]); routes that reach the end are accepted
    /// when `accept_rest`.
    pub fn new(rules: Vec<Rule>, accept_rest: bool) -> Result<Self, PolicyError> {
        if rules.len() > MAX_RULES {
            return Err(PolicyError::TooManyRules(rules.len()));
        }
        Ok(Self { rules, accept_rest })
    }

    /// Accepts everything unchanged (an explicit policy, which RFC 8212 requires on eBGP).
    pub fn accept_all() -> Self {
        Self {
            rules: Vec::new(),
            accept_rest: true,
        }
    }

    /// Refuses everything.
    pub fn reject_all() -> Self {
        Self {
            rules: Vec::new(),
            accept_rest: false,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Runs the rules over a route: `None` when refused, else the mask of rules whose
    /// changes apply (bit `i` for rule `i`).
    pub fn evaluate<A: Matchable + ?Sized>(
        &self,
        prefix: &IpNet,
        attrs: &A,
        route_len: u32,
    ) -> Option<u64> {
        let mut mask = 0u64;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.when.matches(prefix, attrs, route_len) {
                continue;
            }
            match rule.verdict {
                Verdict::Reject => return None,
                Verdict::Accept => return Some(mask | 1 << i),
                Verdict::Continue => mask |= 1 << i,
            }
        }
        self.accept_rest.then_some(mask)
    }

    /// Applies the changes of the rules in `mask`, in rule order.
    pub fn apply(&self, mask: u64, attrs: &mut Attrs) {
        for (i, rule) in self.rules.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            for m in &rule.then {
                apply_one(*m, attrs);
            }
        }
    }
}

fn apply_one(m: Modify, a: &mut Attrs) {
    match m {
        Modify::SetLocalPref(v) => a.local_pref = Some(v),
        Modify::SetMed(v) => a.med = Some(v),
        Modify::SetNextHop(IpAddr::V4(v)) => a.next_hop = Some(NextHop::V4(v)),
        Modify::SetNextHop(IpAddr::V6(v)) => {
            a.next_hop = Some(NextHop::V6 {
                global: v,
                link_local: None,
            });
        }
        Modify::AddCommunity(c) => {
            if let Err(at) = a.communities.binary_search(&c) {
                a.communities.insert(at, c);
            }
        }
        Modify::RemoveCommunity(c) => a.communities.retain(|x| *x != c),
        Modify::AddLargeCommunity(c) => {
            if let Err(at) = a.large_communities.binary_search(&c) {
                a.large_communities.insert(at, c);
            }
        }
        Modify::RemoveLargeCommunity(c) => a.large_communities.retain(|x| *x != c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn test_prefix_match_ge_le() {
        let exact = PrefixMatch::exact(net("10.0.0.0/8"));
        assert!(exact.matches(&net("10.0.0.0/8")));
        assert!(!exact.matches(&net("10.1.0.0/16")));
        let range = PrefixMatch {
            prefix: net("10.0.0.0/8"),
            ge: Some(16),
            le: Some(24),
        };
        assert!(!range.matches(&net("10.0.0.0/8")));
        assert!(range.matches(&net("10.1.0.0/16")));
        assert!(range.matches(&net("10.1.2.0/24")));
        assert!(!range.matches(&net("10.1.2.0/25")));
        assert!(!range.matches(&net("11.1.0.0/16")));
        let ge = PrefixMatch {
            prefix: net("10.0.0.0/8"),
            ge: Some(24),
            le: None,
        };
        assert!(ge.matches(&net("10.1.2.128/25")));
        assert!(!ge.matches(&net("10.1.0.0/16")));
    }

    #[test]
    fn test_rules_in_order() {
        let c = Community::new(65000, 1);
        let p = Policy::new(
            vec![
                Rule {
                    when: Match {
                        as_path_longer_than: Some(3),
                        ..Match::default()
                    },
                    then: vec![],
                    verdict: Verdict::Reject,
                },
                Rule {
                    when: Match::default(),
                    then: vec![Modify::AddCommunity(c), Modify::SetLocalPref(200)],
                    verdict: Verdict::Continue,
                },
                Rule {
                    when: Match {
                        communities: vec![c],
                        ..Match::default()
                    },
                    then: vec![Modify::SetMed(7)],
                    verdict: Verdict::Accept,
                },
            ],
            false,
        )
        .unwrap();
        let a = Attrs::default();
        assert_eq!(p.evaluate(&net("10.0.0.0/8"), &a, 4), None);
        // Rule 2 looks at the route as received, not as rule 1 changed it.
        let mask = p.evaluate(&net("10.0.0.0/8"), &a, 1);
        assert_eq!(mask, None);
        let mut with_c = Attrs::default();
        with_c.communities.push(c);
        let mask = p.evaluate(&net("10.0.0.0/8"), &with_c, 1).unwrap();
        assert_eq!(mask, 0b110);
        let mut out = with_c.clone();
        p.apply(mask, &mut out);
        assert_eq!(out.local_pref, Some(200));
        assert_eq!(out.med, Some(7));
        assert_eq!(out.communities, vec![c]);
    }
}
