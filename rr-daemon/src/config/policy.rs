//! `[[policy]]` onto [`rib::Policy`]: one rule per `[[policy.rule]]`, in file order.

use rib::policy::{MAX_RULES, Match, Modify, Policy, Rule, Verdict};

use super::error::{ConfigError, Doc, KeyPath};
use super::raw::RawPolicy;
use super::values::{Action, DefaultAction};

/// Builds `policy[i]`; the caller checks that its name is unique. A rule's changes apply
/// in a fixed order: LOCAL_PREF, MED, next hop, then communities added and removed, then
/// large communities added and removed.
pub(super) fn build(doc: &Doc<'_>, i: usize, p: &RawPolicy) -> Result<Policy, ConfigError> {
    let path = KeyPath::item("policy", i);
    match p.name.as_str() {
        "" => return Err(doc.error(&path.key("name"), "must not be empty")),
        "all" | "none" => {
            return Err(doc.error(
                &path.key("name"),
                format!("{:?} is built in and cannot be redefined", p.name),
            ));
        }
        _ => {}
    }
    if p.rule.len() > MAX_RULES {
        return Err(doc.error(
            &path.key("rule").index(MAX_RULES),
            format!("a policy holds at most {MAX_RULES} rules"),
        ));
    }
    let mut rules = Vec::with_capacity(p.rule.len());
    for (j, r) in p.rule.iter().enumerate() {
        let mut then = Vec::new();
        then.extend(r.set_local_pref.map(Modify::SetLocalPref));
        then.extend(r.set_med.map(Modify::SetMed));
        then.extend(r.set_next_hop.map(Modify::SetNextHop));
        then.extend(list(&r.add_communities).map(|c| Modify::AddCommunity(c.0)));
        then.extend(list(&r.remove_communities).map(|c| Modify::RemoveCommunity(c.0)));
        then.extend(list(&r.add_large_communities).map(|c| Modify::AddLargeCommunity(c.0)));
        then.extend(list(&r.remove_large_communities).map(|c| Modify::RemoveLargeCommunity(c.0)));
        let verdict = match r.action {
            Action::Accept => Verdict::Accept,
            Action::Continue => Verdict::Continue,
            Action::Reject if then.is_empty() => Verdict::Reject,
            Action::Reject => {
                return Err(doc.error(
                    &path.key("rule").index(j).key("action"),
                    "a rule that rejects changes nothing: drop its set_/add_/remove_ keys, \
                     or accept or continue",
                ));
            }
        };
        rules.push(Rule {
            when: Match {
                prefixes: list(&r.prefixes).map(|p| p.0).collect(),
                communities: list(&r.communities).map(|c| c.0).collect(),
                large_communities: list(&r.large_communities).map(|c| c.0).collect(),
                as_path_longer_than: r.as_path_longer_than,
            },
            then,
            verdict,
        });
    }
    let accept_rest = p.default_action == Some(DefaultAction::Accept);
    Policy::new(rules, accept_rest).map_err(|e| doc.error(&path.key("rule"), e.to_string()))
}

/// The items of an optional list.
fn list<T: Clone>(v: &Option<Vec<T>>) -> impl Iterator<Item = T> + '_ {
    v.iter().flatten().cloned()
}
