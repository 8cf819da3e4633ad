//! `rr-daemon agent` in operation, against a real etcd (Debian's `etcd-server`) and BIRD 2,
//! each in a namespace of the test's own on one bridge: etcd at 192.0.2.1, the agent's
//! node `node-1` at 192.0.2.101, BIRD 2 (AS 65002) at 192.0.2.200, peered with the node by
//! a BGPPeer.
//!
//! - A BGPPeer's `localASNumber` (BIRD's `local as` in confd's protocol): BIRD sees the
//!   node's block with the AS path `65100` alone, as from BIRD under confd; and
//!   `numAllowedLocalASNumbers` (`allow local as N`): of BIRD's routes with our AS in the
//!   path once, twice or not at all, exactly those with our AS at most N times reach the
//!   node's kernel, and raising N in the datastore brings the next one.
//! - The `[control]` socket of `--config`: `rr-daemon ctl --socket PATH reload` lists the
//!   datastore again (the report names etcd's revision), the read commands answer.
//! - A compaction past the running agent's watched revision: the agent is stopped
//!   (SIGSTOP) while etcd's watch stream fills and the history is compacted, a new block
//!   is written; continued, the agent lists again (its log says the watch was
//!   compacted), the block reaches BIRD, and neither side's session resets.
//!
//! Needs root (namespaces), etcd and BIRD 2 (`sudo tests/scripts/install-peers.sh`). Each
//! test takes a few seconds:
//!   cargo test -p interop-tests --test agent_ops_interop

use std::path::{Path, PathBuf};
use std::time::Duration;

use interop_tests::{
    Bird, BirdVersion, Etcd, Hub, Netns, Proc, WorkDir, calico_resource, ctl_json, etcd_and_node,
    poll, same_since, tail,
};
use serde_json::{Value, json};

const RES: &str = "/calico/resources/v3/projectcalico.org";
const AS: u32 = 64512;
const LOCAL_AS: u32 = 65100;
const BIRD_AS: u32 = 65002;
const ETCD: &str = "192.0.2.1";
const NODE: &str = "192.0.2.101";
const BIRD: &str = "192.0.2.200";
const BLOCK: &str = "192.168.1.0/26";
const API: &str = "127.0.0.1:9179";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn tor_peer(allowed: u32) -> String {
    calico_resource(
        "BGPPeer",
        "tor",
        json!({ "node": "node-1", "peerIP": BIRD, "asNumber": BIRD_AS,
                "localASNumber": LOCAL_AS, "numAllowedLocalASNumbers": allowed }),
    )
}

fn affinity(node: &str, block: &str) -> (String, String) {
    (
        format!(
            "/calico/ipam/v2/host/{node}/ipv4/block/{}",
            block.replace('/', "-")
        ),
        json!({ "state": "confirmed", "deleted": false }).to_string(),
    )
}

/// BIRD's routes towards the node: 10.20.1.0/24 with our AS once in the path, .2 with it
/// twice, .3 with the session's local AS once, .4 without (BIRD prepends its own AS).
fn bird_config() -> String {
    format!(
        r#"router id {BIRD};
protocol device {{ scan time 2; }}
protocol static originated {{
  ipv4;
  route 10.20.1.0/24 blackhole;
  route 10.20.2.0/24 blackhole;
  route 10.20.3.0/24 blackhole;
  route 10.20.4.0/24 blackhole;
}}
filter to_agent {{
  if net = 10.20.1.0/24 then bgp_path.prepend({AS});
  if net = 10.20.2.0/24 then {{ bgp_path.prepend({AS}); bgp_path.prepend({AS}); }}
  if net = 10.20.3.0/24 then bgp_path.prepend({LOCAL_AS});
  accept;
}}
protocol bgp agent {{
  local {BIRD} as {BIRD_AS};
  neighbor {NODE} as {LOCAL_AS};
  hold time 240;
  ipv4 {{ import all; export filter to_agent; }};
}}
"#
    )
}

/// etcd, the node and BIRD on one bridge, the datastore written, the agent started.
struct World {
    etcd: Etcd,
    node: Netns,
    bird: Bird,
    agent: Proc,
    control: PathBuf,
    _bird_ns: Netns,
    _hub: Hub,
    dir: WorkDir,
}

impl World {
    fn new(tag: &str, allowed: u32) -> Self {
        let (dir, hub, etcd, node) = etcd_and_node(tag, ETCD, NODE);
        let bird_ns = Netns::create("bird").expect("netns");
        hub.attach(&bird_ns, &[&format!("{BIRD}/24")])
            .expect("attach");
        let bird = Bird::start_config(
            BirdVersion::V2,
            &bird_ns,
            dir.path(),
            "tor",
            "agent",
            false,
            &bird_config(),
        )
        .expect("BIRD 2");
        let block = affinity("node-1", BLOCK);
        etcd.put_all(&[
            (
                format!("{RES}/bgpconfigurations/default"),
                calico_resource(
                    "BGPConfiguration",
                    "default",
                    json!({ "asNumber": AS, "nodeToNodeMeshEnabled": false }),
                ),
            ),
            (
                format!("{RES}/nodes/node-1"),
                json!({
                    "kind": "Node",
                    "apiVersion": "projectcalico.org/v3",
                    "metadata": { "name": "node-1" },
                    "spec": { "bgp": { "ipv4Address": format!("{NODE}/24") } },
                })
                .to_string(),
            ),
            (
                format!("{RES}/ippools/default-ipv4-ippool"),
                calico_resource(
                    "IPPool",
                    "default-ipv4-ippool",
                    json!({ "cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Never" }),
                ),
            ),
            (format!("{RES}/bgppeers/tor"), tor_peer(allowed)),
            block,
        ])
        .expect("datastore");
        let control = dir.path().join("agent-ctl.sock");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[fib]\nenabled = true\n[control]\nsocket = \"{}\"\n",
                control.display()
            ),
        )
        .unwrap();
        let d = dir.path().join("node-1");
        std::fs::create_dir_all(&d).unwrap();
        let args: Vec<String> = ["agent", "--config", config.to_str().unwrap()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let endpoint = etcd.endpoint();
        let env = [
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", endpoint.as_str()),
            ("NODENAME", "node-1"),
            ("RUST_LOG", "info"),
        ];
        let agent = node
            .spawn(&d, "agent", exe(), &args, &env, false)
            .expect("agent");
        Self {
            etcd,
            node,
            bird,
            agent,
            control,
            _bird_ns: bird_ns,
            _hub: hub,
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.agent.stderr_path()).unwrap_or_default()
    }

    fn context(&self) -> String {
        format!(
            "agent:\n{}\nBIRD:\n{}",
            tail(self.agent.stderr_path(), 40),
            tail(self.bird.log_path(), 20)
        )
    }

    /// The agent's one peer (BIRD), once its API answers.
    fn peer(&self) -> Option<Value> {
        let v = ctl_json(&self.node, exe(), API, &["peers"]).ok()?;
        let peers = v.as_array()?;
        assert!(peers.len() <= 1, "one peer only: {v}");
        peers.first().cloned()
    }

    /// Waits until the session is Established on both sides.
    fn wait_established(&self) {
        let up = poll(Duration::from_secs(60), Duration::from_millis(200), || {
            let p = self.peer()?;
            let bird_up = self
                .bird
                .protocol_state("agent")
                .is_ok_and(|s| s.contains("Established"));
            (p["state"] == "Established" && bird_up).then_some(())
        });
        assert!(up.is_some(), "session not up\n{}", self.context());
    }

    /// The node's kernel routes among BIRD's four, sorted.
    fn kernel_routes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 1..=4 {
            let dst = format!("10.20.{i}.0/24");
            let r = self
                .node
                .exec("ip", &["-j", "route", "show", "exact", &dst])
                .unwrap_or_default();
            let v: Value = serde_json::from_str(&r).unwrap_or(Value::Null);
            if let Some(r) = v.as_array().and_then(|a| a.first())
                && r["gateway"] == BIRD
            {
                out.push(dst);
            }
        }
        out
    }

    /// Waits until the kernel holds exactly `want` of BIRD's routes, and they stay so
    /// for a second (the others arrived in the same burst and were refused).
    fn wait_kernel(&self, want: &[&str]) {
        let got = poll(Duration::from_secs(30), Duration::from_millis(200), || {
            (self.kernel_routes() == want).then_some(())
        });
        assert!(
            got.is_some(),
            "kernel has {:?}, wanted {want:?}\n{}",
            self.kernel_routes(),
            self.context()
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(self.kernel_routes(), want, "{}", self.context());
    }

    /// BIRD's routes for `prefix` from the agent: their AS paths.
    fn bird_paths(&self, prefix: &str) -> Vec<String> {
        self.bird
            .routes(&[prefix])
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.prefix == prefix)
            .map(|r| r.as_path)
            .collect()
    }

    /// BIRD's `since` of its session with the agent (changes when the session resets).
    fn bird_since(&self) -> String {
        self.bird.since().unwrap_or_default()
    }

    /// `rr-daemon ctl --socket CONTROL ARGS` in the node's namespace: (success, its
    /// output or the error).
    fn ctl_socket(&self, args: &[&str]) -> (bool, String) {
        let exe = exe().to_string_lossy();
        let control = self.control.to_string_lossy();
        let mut argv = vec!["ctl", "--socket", &control];
        argv.extend_from_slice(args);
        match self.node.exec(&exe, &argv) {
            Ok(out) => (true, out),
            Err(e) => (false, e),
        }
    }
}

#[test]
fn agent_local_as_and_allowed_local_as_against_bird2() {
    let w = World::new("agent-ops-local-as", 1);
    w.wait_established();
    // Our AS once (64512, or the session's 65100) is allowed, twice is a loop.
    w.wait_kernel(&["10.20.1.0/24", "10.20.3.0/24", "10.20.4.0/24"]);
    let p = w.peer().unwrap();
    assert_eq!(p["asn"], BIRD_AS, "{p}");
    // BIRD under confd (`local as 65100` in the protocol) prepends only the local AS.
    let paths = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let p = w.bird_paths(BLOCK);
        (!p.is_empty()).then_some(p)
    })
    .unwrap_or_else(|| panic!("BIRD has no {BLOCK}\n{}", w.context()));
    assert_eq!(paths, [LOCAL_AS.to_string()], "{}", w.context());
    // The refused path is kept as a loop, never chosen.
    let r = ctl_json(&w.node, exe(), API, &["routes", "10.20.2.0/24"]).expect("routes");
    assert!(
        r.to_string().contains("our AS is in the AS_PATH"),
        "10.20.2.0/24: {r}"
    );

    // Two allowed: the session starts again (the key resets it) and takes the fourth.
    w.etcd
        .put(&format!("{RES}/bgppeers/tor"), &tor_peer(2))
        .unwrap();
    w.wait_kernel(&[
        "10.20.1.0/24",
        "10.20.2.0/24",
        "10.20.3.0/24",
        "10.20.4.0/24",
    ]);
    assert!(
        w.log().contains("key=\"allow_local_as\""),
        "the reset names its key\n{}",
        w.context()
    );
}

#[test]
fn agent_control_socket_reload_lists_again() {
    let w = World::new("agent-ops-ctl", 0);
    w.wait_established();
    let ok = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        w.control.exists().then_some(())
    });
    assert!(ok.is_some(), "no control socket\n{}", w.context());
    // Read commands over the socket.
    let (ok, out) = w.ctl_socket(&["peers"]);
    assert!(ok, "{out}");
    assert!(out.contains(BIRD), "{out}");
    // A reload lists the datastore again: at etcd's revision, nothing to change.
    let rev = w.etcd.revision().unwrap();
    let (ok, out) = w.ctl_socket(&["reload"]);
    assert!(ok, "{out}\n{}", w.context());
    assert!(
        out.contains(&format!("the datastore at revision {rev}: unchanged")),
        "{out}"
    );
    assert_eq!(
        w.log()
            .matches("ctl reload: the datastore listed again")
            .count(),
        1,
        "{}",
        w.context()
    );
    // A change is in the next reload's report, if the watch has not applied it first:
    // either way the new block reaches BIRD, and the session stays.
    let since = w.bird_since();
    let (k, v) = affinity("node-1", "192.168.2.0/26");
    w.etcd.put(&k, &v).unwrap();
    let (ok, out) = w.ctl_socket(&["reload"]);
    assert!(ok, "{out}");
    assert!(out.contains("the datastore at revision"), "{out}");
    let got = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        (!w.bird_paths("192.168.2.0/26").is_empty()).then_some(())
    });
    assert!(got.is_some(), "BIRD lacks the new block\n{}", w.context());
    let now = w.bird_since();
    assert!(
        same_since(&now, &since),
        "BIRD's session reset: {since} -> {now}"
    );
    assert_eq!(w.peer().unwrap()["flaps"], 0);
}

#[test]
fn agent_compaction_past_the_watch_while_running() {
    let mut w = World::new("agent-ops-compact", 0);
    w.wait_established();
    let got = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        (!w.bird_paths(BLOCK).is_empty()).then_some(())
    });
    assert!(got.is_some(), "BIRD lacks {BLOCK}\n{}", w.context());
    let since = w.bird_since();
    let uptime = w.peer().unwrap()["uptime_s"].as_u64().unwrap();

    // The agent stops reading: etcd's watch stream for it fills (8 MB of values, past
    // HTTP/2's windows), then etcd's queue of the watch (1,024 responses in 3.4) with
    // 1,500 revisions of a key each; etcd leaves the watcher behind, and the history
    // before the current revision is compacted away. Then the change: a new block. On a
    // loaded machine the agent's buffers have been seen to take everything in once (no
    // compaction reaches it; the change still applies): at most three rounds, until
    // one is a compaction.
    let mut blocks = Vec::new();
    for round in 0..3 {
        w.agent.signal("STOP").expect("SIGSTOP");
        let filler = "x".repeat(10_000);
        let t = std::time::Instant::now();
        for t in 0..8 {
            let kvs: Vec<(String, String)> = (0..100)
                .map(|i| {
                    (
                        format!("{RES}/kubecontrollersconfigurations/filler-{round}-{t}-{i}"),
                        filler.clone(),
                    )
                })
                .collect();
            w.etcd.put_all(&kvs).expect("filler");
        }
        let kvs: Vec<(String, String)> = (0..1500)
            .map(|i| {
                (
                    format!("{RES}/kubecontrollersconfigurations/one-{round}-{i}"),
                    "x".to_owned(),
                )
            })
            .collect();
        w.etcd.put_each(&kvs).expect("filler");
        println!("round {round}: filler written in {:?}", t.elapsed());
        let rev = w.etcd.revision().unwrap();
        w.etcd.compact(rev).expect("compaction");
        let block = format!("192.168.{}.0/26", 2 + round);
        let (k, v) = affinity("node-1", &block);
        w.etcd.put(&k, &v).unwrap();
        w.agent.signal("CONT").expect("SIGCONT");
        let got = poll(Duration::from_secs(30), Duration::from_millis(200), || {
            (!w.bird_paths(&block).is_empty()).then_some(())
        });
        assert!(got.is_some(), "BIRD lacks {block}\n{}", w.context());
        blocks.push(block);
        if w.log().contains("the watch's revision was compacted") {
            break;
        }
    }
    assert!(
        w.log().contains("the watch's revision was compacted"),
        "the agent saw no compaction in three rounds: the test did not test it\n{}",
        w.context()
    );
    let now = w.bird_since();
    assert!(
        same_since(&now, &since),
        "BIRD's session reset: {since} -> {now}"
    );
    let p = w.peer().unwrap();
    assert_eq!(p["flaps"], 0, "{p}");
    assert!(p["uptime_s"].as_u64().unwrap() >= uptime, "{p}");
    // Every block is there, once.
    assert_eq!(w.bird_paths(BLOCK), [LOCAL_AS.to_string()]);
    for b in &blocks {
        assert_eq!(w.bird_paths(b), [LOCAL_AS.to_string()], "{b}");
    }
    let _ = &w.dir;
}
