//! CONFIG.md against the parser: every key of every table is documented in its table's
//! section with a default, every documented key exists, and every default that is a
//! plain value is the real one: a file that sets the key to the documented default
//! resolves to the same configuration as a file that leaves it out.

use std::collections::{BTreeMap, BTreeSet};

use rr_daemon::config::{Config, tables};

const DOC: &str = include_str!("../CONFIG.md");

/// The section (its `## ` heading) that documents each table.
fn section_of(table: &str) -> &'static str {
    match table {
        "speaker" => "`[speaker]`",
        "api" => "`[api]`",
        "control" => "`[control]`",
        "fib" | "fib.ip_pool" | "fib.static_route" => "`[fib]`",
        "learn" => "`[learn]`",
        "mesh" => "`[mesh]`",
        "peer" | "peer_group" => "`[[peer]]`",
        "dynamic_neighbors" => "`[[dynamic_neighbors]]`",
        "policy" | "policy.rule" => "`[[policy]]`",
        "route" => "`[[route]]`",
        "originate" => "`[[originate]]`",
        "bmp" => "`[[bmp]]`",
        other => panic!("no section for table {other:?}: add it here and to CONFIG.md"),
    }
}

/// One row of a key table: its keys (a row may name several) and its default cell
/// (`None` in a table without a default column).
#[derive(Debug)]
struct Row {
    keys: Vec<String>,
    default: Option<String>,
}

/// The rows of the key tables of each `## ` section, by heading.
fn sections() -> BTreeMap<String, Vec<Row>> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut heading = String::new();
    let mut default_col: Option<usize> = None;
    // Inside a table of keys (its header starts with `key`, or `rule key`, ...).
    let mut key_table = false;
    for line in DOC.lines() {
        if line.starts_with('#') {
            // `### ...` subsections belong to no table's section.
            heading = match line.strip_prefix("## ") {
                Some(h) => h.to_owned(),
                None => line.to_owned(),
            };
            key_table = false;
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        if cells[0] == "key" || cells[0].ends_with(" key") {
            default_col = cells.iter().position(|c| *c == "default");
            key_table = true;
            continue;
        }
        if cells[0].starts_with("---") {
            continue;
        }
        if !cells[0].starts_with('`') {
            // The header of another kind of table (the BIRD mapping, ...): not keys.
            key_table = false;
            continue;
        }
        if !key_table {
            continue;
        }
        let keys = cells[0]
            .split(", ")
            .map(|k| k.trim_matches('`').to_owned())
            .collect();
        out.entry(heading.clone()).or_default().push(Row {
            keys,
            default: default_col.map(|i| cells[i].to_owned()),
        });
    }
    out
}

fn section<'a>(all: &'a BTreeMap<String, Vec<Row>>, table: &str) -> &'a [Row] {
    let want = section_of(table);
    all.iter()
        .find(|(h, _)| h.starts_with(want))
        .map(|(_, rows)| rows.as_slice())
        .unwrap_or_else(|| panic!("CONFIG.md has no section {want}"))
}

#[test]
fn test_every_key_is_documented_with_a_default() {
    let all = sections();
    let mut missing = Vec::new();
    for (table, keys) in tables() {
        if table.is_empty() {
            // The top level: each table has a section ([bfd], ... of other front ends
            // only need a heading naming them).
            for t in keys {
                let known = [
                    "peer_group",
                    "peer",
                    "speaker",
                    "api",
                    "fib",
                    "learn",
                    "mesh",
                ]
                .contains(t)
                    || ["dynamic_neighbors", "policy", "route", "originate"].contains(t);
                let named = DOC.lines().any(|l| {
                    l.starts_with("## ")
                        && (l.contains(&format!("`[{t}]`")) || l.contains(&format!("`[[{t}]]`")))
                });
                if !known && !named {
                    missing.push(format!("table [{t}] has no section"));
                }
            }
            continue;
        }
        let rows = section(&all, table);
        for key in keys {
            match rows.iter().find(|r| r.keys.iter().any(|k| k == key)) {
                None => missing.push(format!("{table}.{key} is not documented")),
                Some(Row {
                    default: Some(d), ..
                }) if d.is_empty() => missing.push(format!("{table}.{key} has no default")),
                Some(_) => {}
            }
        }
    }
    assert!(missing.is_empty(), "CONFIG.md:\n{}", missing.join("\n"));
}

#[test]
fn test_every_documented_key_exists() {
    let all = sections();
    let mut by_section: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (table, keys) in tables() {
        if !table.is_empty() {
            by_section
                .entry(section_of(table))
                .or_default()
                .extend(keys.iter().copied());
        }
    }
    let mut stale = Vec::new();
    for (heading, rows) in &all {
        let Some((_, known)) = by_section.iter().find(|(s, _)| heading.starts_with(**s)) else {
            continue;
        };
        for r in rows {
            for k in &r.keys {
                if !known.contains(k.as_str()) {
                    stale.push(format!("{heading}: {k}"));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "documented but unknown to the parser:\n{}",
        stale.join("\n")
    );
}

/// The default cell as a TOML value, when it is one: `90`, `true`, `"text"`,
/// `["0.0.0.0:179"]`, optionally followed by a parenthesised remark.
fn literal(cell: &str) -> Option<String> {
    let head = cell.split(" (").next()?.trim();
    let v = head
        .strip_prefix('`')
        .and_then(|h| h.strip_suffix('`'))
        .unwrap_or(head);
    let plain = v.parse::<u64>().is_ok()
        || v == "true"
        || v == "false"
        || (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
        || (v.starts_with('[') && v.ends_with(']'));
    (plain && !v.contains('`')).then(|| v.to_owned())
}

#[test]
fn test_documented_defaults_are_the_real_ones() {
    const HEAD: &str = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n";
    const PEER: &str = "[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\n";
    let all = sections();
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for (table, base, at) in [
        ("speaker", HEAD.to_owned(), HEAD.len()),
        ("api", format!("{HEAD}[api]\n"), HEAD.len() + 6),
        ("fib", format!("{HEAD}[fib]\n"), HEAD.len() + 6),
        ("learn", format!("{HEAD}[learn]\n"), HEAD.len() + 8),
        ("peer", format!("{HEAD}{PEER}"), HEAD.len() + PEER.len()),
        (
            "bmp",
            format!("{HEAD}[[bmp]]\naddress = \"127.0.0.1\"\nport = 1\n"),
            HEAD.len() + 8,
        ),
    ] {
        let keys = tables().into_iter().find(|(t, _)| *t == table).unwrap().1;
        let plain = Config::parse(&base, "base.toml").unwrap();
        for r in section(&all, table) {
            let [key] = r.keys.as_slice() else { continue };
            if !keys.contains(&key.as_str()) {
                continue;
            }
            let Some(value) = r.default.as_deref().and_then(literal) else {
                continue;
            };
            let text = format!("{}{key} = {value}\n{}", &base[..at], &base[at..]);
            match Config::parse(&text, "set.toml") {
                Ok(set) if set == plain => checked.push(format!("{table}.{key} = {value}")),
                Ok(_) => wrong.push(format!("{table}.{key}: the default is not {value}")),
                Err(e) => wrong.push(format!("{table}.{key} = {value}: {e}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "CONFIG.md defaults:\n{}",
        wrong.join("\n")
    );
    eprintln!("{} defaults checked: {}", checked.len(), checked.join(", "));
    assert!(
        checked.len() >= 25,
        "only {} defaults checked",
        checked.len()
    );
}

/// docs/manual.md names every metric the API registers (`"rr_..."` in `src/api/metrics.rs`,
/// counters with their `_total`, gauges with their unit), and no other.
#[test]
fn test_manual_lists_every_metric() {
    let api = include_str!("../src/api/metrics.rs");
    let manual = include_str!("../../docs/manual.md");
    let registered: BTreeSet<&str> = api
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("rr_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(registered.len() >= 20, "{registered:?}");
    let documented: BTreeSet<&str> = manual
        .lines()
        .filter_map(|l| l.strip_prefix("| `rr_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    for name in &registered {
        let base = &name["rr_".len()..];
        let found = [
            base.to_owned(),
            format!("{base}_total"),
            format!("{base}_seconds"),
            format!("{base}_bytes"),
        ]
        .iter()
        .any(|n| documented.contains(n.as_str()));
        assert!(found, "docs/manual.md does not list {name}");
    }
    for d in &documented {
        let known = registered.iter().any(|r| {
            let base = &r["rr_".len()..];
            *d == base
                || d.strip_prefix(base)
                    .is_some_and(|s| ["_total", "_seconds", "_bytes"].contains(&s))
        });
        assert!(
            known,
            "docs/manual.md lists rr_{d}, which the API does not register"
        );
    }
}
