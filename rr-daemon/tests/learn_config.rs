//! `[learn]`: defaults, the section's presence, and errors that name file, line and key.

use std::time::Duration;

use rr_daemon::config::Config;

const HEAD: &str = "[speaker]\nasn = 64512\nrouter_id = \"10.0.0.1\"\n";

fn parse(text: &str) -> Config {
    Config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match Config::parse(text, "test.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn test_learn_absent_is_off() {
    let c = parse(HEAD);
    assert!(!c.learn.enabled);
}

#[test]
fn test_learn_defaults() {
    let c = parse(&format!("{HEAD}[learn]\npools = [\"192.168.0.0/16\"]\n"));
    let l = &c.learn;
    assert!(l.enabled);
    assert_eq!(l.pools, vec!["192.168.0.0/16".parse().unwrap()]);
    assert_eq!(l.elevated_below, 1024);
    assert!(!l.direct);
    assert_eq!(l.direct_exclude, vec!["cali*", "kube-ipvs*"]);
    assert_eq!(l.resync, Duration::from_secs(60));
}

#[test]
fn test_learn_all_keys() {
    let c = parse(&format!(
        "{HEAD}[learn]\nenabled = true\npools = [\"192.168.0.0/16\", \"fd00:10::/48\"]\n\
         elevated_below = 100\ndirect = true\ndirect_exclude = [\"cali*\", \"tunl?\"]\n\
         resync = 30\n"
    ));
    let l = &c.learn;
    assert_eq!(l.pools.len(), 2);
    assert_eq!(l.elevated_below, 100);
    assert!(l.direct);
    assert_eq!(l.direct_exclude, vec!["cali*", "tunl?"]);
    assert_eq!(l.resync, Duration::from_secs(30));
    let off = parse(&format!("{HEAD}[learn]\nenabled = false\n"));
    assert!(!off.learn.enabled);
}

#[test]
fn test_learn_errors_name_file_line_and_key() {
    let cases = [
        (
            "[learn]\npools = [\"192.168.0.1/16\"]\n",
            "test.toml:5:10: learn.pools[0]: \"192.168.0.1/16\" has host bits set: did you mean \"192.168.0.0/16\"?",
        ),
        (
            "[learn]\npools = [\"10.0.0.0/8\", \"10.0.0.0/8\"]\n",
            "test.toml:5:24: learn.pools[1]: 10.0.0.0/8 is already given at learn.pools[0]",
        ),
        (
            "[learn]\ndirect_exclude = [\"cali*\", \"\"]\n",
            "test.toml:5:28: learn.direct_exclude[1]: \"\" is not an interface name pattern (a name with `*` and `?`, such as \"cali*\")",
        ),
        ("[learn]\nresync = 0\n", "test.toml:5:10: learn.resync:"),
        (
            "[learn]\nlern = true\n",
            "test.toml:5:1: learn.lern: unknown key",
        ),
    ];
    for (text, want) in cases {
        let got = error(&format!("{HEAD}{text}"));
        assert!(got.starts_with(want), "got:  {got}\nwant: {want}");
    }
}
