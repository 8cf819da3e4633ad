//! `rr-daemon agent`: a BGPPeer's `reachableBy`, and local workload peering, against a real
//! etcd (Debian's `etcd-server`) and BIRD 2, each in a namespace of the test's own.
//!
//! - `reachableBy`: the node (192.0.2.101) has no route to its peer, BIRD 2 at
//!   10.225.0.4 behind the etcd namespace (the gateway, 192.0.2.1, forwarding); the
//!   BGPPeer's `reachableBy: 192.0.2.1` puts `10.225.0.4 via 192.0.2.1 proto bird` into the
//!   node's kernel (confd's `route 10.225.0.4/32 via 192.0.2.1` in `bird_aggr.cfg`), the
//!   session comes up through it and BIRD's route arrives; the BGPPeer deleted, the
//!   session and the static route go.
//! - Local workload peering: a workload namespace behind the node's `cali1` veth as Felix
//!   wires one (the node's `localWorkloadPeeringIPV4` 169.254.1.1 on `cali1`, the
//!   workload's 192.168.1.5/32 routed to it), BIRD 2 in it (AS 65010) peering with
//!   169.254.1.1. Felix's endpoint status file names the BGPPeer (`localWorkloadSelector`):
//!   `--print-sessions` shows `Local_Workload_192_168_1_5`, passive, the session comes up,
//!   routes go both ways (the workload's prefix into the node's kernel, the node's block to
//!   the workload), readiness leaves it out (as calico-node's); the file removed, the
//!   session goes.
//!
//! Needs root (namespaces), etcd and BIRD 2 (`sudo tests/scripts/install-peers.sh`). Each
//! test takes a few seconds:
//!   cargo test -p interop-tests --test agent_workload_interop

use std::path::Path;
use std::time::Duration;

use interop_tests::{
    Bird, BirdVersion, Etcd, Hub, Link, Netns, Proc, WorkDir, calico_resource, ctl_json,
    etcd_and_node, poll, tail,
};
use serde_json::{Value, json};

const RES: &str = "/calico/resources/v3/projectcalico.org";
const AS: u32 = 64512;
const ETCD: &str = "192.0.2.1";
const NODE: &str = "192.0.2.101";
const API: &str = "127.0.0.1:9179";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn node_resource() -> String {
    json!({
        "kind": "Node",
        "apiVersion": "projectcalico.org/v3",
        "metadata": { "name": "node-1" },
        "spec": { "bgp": { "ipv4Address": format!("{NODE}/24") } },
    })
    .to_string()
}

/// etcd on a bridge (its namespace is the hub), the node attached.
struct Base {
    etcd: Etcd,
    hub: Hub,
    node: Netns,
    dir: WorkDir,
}

impl Base {
    fn new(tag: &str) -> Self {
        let (dir, hub, etcd, node) = etcd_and_node(tag, ETCD, NODE);
        Self {
            etcd,
            hub,
            node,
            dir,
        }
    }

    /// Starts the agent of node-1 with `[fib]` on, and `env` added.
    fn agent(&self, env: &[(&str, &str)]) -> Proc {
        let config = self.dir.path().join("agent.toml");
        std::fs::write(&config, "[fib]\nenabled = true\n").unwrap();
        let d = self.dir.path().join("node-1");
        std::fs::create_dir_all(&d).unwrap();
        let args: Vec<String> = vec![
            "agent".into(),
            "--config".into(),
            config.display().to_string(),
        ];
        let endpoint = self.etcd.endpoint();
        let mut all = vec![
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", endpoint.as_str()),
            ("NODENAME", "node-1"),
            ("RUST_LOG", "info"),
        ];
        all.extend_from_slice(env);
        self.node
            .spawn(&d, "agent", exe(), &args, &all, false)
            .expect("agent")
    }

    /// The agent's peers (empty until its API answers).
    fn peers(&self) -> Vec<Value> {
        ctl_json(&self.node, exe(), API, &["peers"])
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The agent's peer `addr`, Established, and BIRD's `proto` Established too.
    fn wait_established(&self, bird: &Bird, addr: &str, proto: &str, agent: &Proc) {
        let up = poll(Duration::from_secs(60), Duration::from_millis(200), || {
            let ours = self
                .peers()
                .iter()
                .any(|p| p["address"] == addr && p["state"] == "Established");
            let theirs = bird
                .protocol_state(proto)
                .is_ok_and(|s| s.contains("Established"));
            (ours && theirs).then_some(())
        });
        assert!(up.is_some(), "session not up\n{}", context(agent, bird));
    }

    /// `ip -j route show exact DST` in the node: the route, if any.
    fn route(&self, dst: &str) -> Option<Value> {
        let out = self
            .node
            .exec("ip", &["-j", "route", "show", "exact", dst])
            .ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.first().cloned()
    }
}

fn context(agent: &Proc, bird: &Bird) -> String {
    format!(
        "agent:\n{}\nBIRD:\n{}",
        tail(agent.stderr_path(), 40),
        tail(bird.log_path(), 20)
    )
}

#[test]
fn agent_reachable_by_routes_the_peer_via_its_gateway() {
    let b = Base::new("agent-reachable-by");
    // The gateway: etcd's namespace forwards between the bridge and the peer's link.
    b.hub
        .ns()
        .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .expect("forwarding");
    let far = Netns::create("far").expect("netns");
    Link::new(b.hub.ns(), &["10.225.0.1/24"], &far, &["10.225.0.4/24"]).expect("link");
    far.ip(&["route", "add", "192.0.2.0/24", "via", "10.225.0.1"])
        .expect("route back");
    // Without reachableBy the node cannot reach the peer at all.
    assert!(
        b.node.exec("ip", &["route", "get", "10.225.0.4"]).is_err(),
        "the node must have no route to the peer of its own"
    );
    let bird = Bird::start_config(
        BirdVersion::V2,
        &far,
        b.dir.path(),
        "far",
        "agent",
        false,
        &format!(
            r#"router id 10.225.0.4;
protocol device {{ scan time 2; }}
protocol static {{ ipv4; route 10.30.0.0/24 blackhole; }}
protocol bgp agent {{
  local 10.225.0.4 as 65002;
  neighbor {NODE} as {AS};
  multihop;
  connect delay time 1;
  connect retry time 2;
  ipv4 {{ import all; export all; }};
}}
"#
        ),
    )
    .expect("BIRD 2");
    let peer_key = format!("{RES}/bgppeers/far-rr");
    b.etcd
        .put_all(&[
            (
                format!("{RES}/bgpconfigurations/default"),
                calico_resource(
                    "BGPConfiguration",
                    "default",
                    json!({ "asNumber": AS, "nodeToNodeMeshEnabled": false }),
                ),
            ),
            (format!("{RES}/nodes/node-1"), node_resource()),
            (
                peer_key.clone(),
                calico_resource(
                    "BGPPeer",
                    "far-rr",
                    json!({ "peerIP": "10.225.0.4", "asNumber": 65002, "reachableBy": ETCD }),
                ),
            ),
        ])
        .expect("datastore");
    let agent = b.agent(&[]);
    b.wait_established(&bird, "10.225.0.4", "agent", &agent);
    // confd's static route, ours (proto bird), via the gateway.
    let r = b.route("10.225.0.4").expect("the static route");
    assert_eq!(r["gateway"], ETCD, "{r}");
    assert_eq!(r["protocol"], "bird", "{r}");
    // BIRD's route over the session, via BIRD's address, resolved through the static route.
    let got = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        b.route("10.30.0.0/24")
    })
    .unwrap_or_else(|| panic!("no 10.30.0.0/24\n{}", context(&agent, &bird)));
    assert_eq!(got["gateway"], ETCD, "recursive: via the gateway: {got}");
    let fib = ctl_json(&b.node, exe(), API, &["fib"]).expect("fib");
    assert!(
        fib["routes"]
            .to_string()
            .contains("10.225.0.4/32 via 192.0.2.1"),
        "{fib}"
    );

    // The BGPPeer deleted: its session and its static route go (after the agent's 2 s
    // linger for a peer that might come back).
    b.etcd.delete(&peer_key).unwrap();
    let gone = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        (b.peers().is_empty() && b.route("10.225.0.4").is_none()).then_some(())
    });
    assert!(
        gone.is_some(),
        "peer or static route left: {:?} {:?}\n{}",
        b.peers(),
        b.route("10.225.0.4"),
        context(&agent, &bird)
    );
    assert!(b.route("10.30.0.0/24").is_none(), "BIRD's route stayed");
}

#[test]
fn agent_local_workload_peers_with_a_bird2_workload() {
    let b = Base::new("agent-local-workload");
    // The workload as Felix wires it: a veth `cali1` on the node holding the node's
    // peering address for local workloads, the workload's /32 routed to it.
    let wl = Netns::create("wl").expect("netns");
    Link::named(
        &b.node,
        "cali1",
        &["169.254.1.1/32"],
        &wl,
        "eth0",
        &["192.168.1.5/32"],
    )
    .expect("veth");
    b.node
        .ip(&["route", "add", "192.168.1.5/32", "dev", "cali1"])
        .expect("workload route");
    wl.ip(&[
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ])
    .expect("gateway route");
    wl.ip(&[
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])
    .expect("default route");
    let bird = Bird::start_config(
        BirdVersion::V2,
        &wl,
        b.dir.path(),
        "workload",
        "node",
        false,
        &format!(
            r#"router id 192.168.1.5;
protocol device {{ scan time 2; }}
protocol static {{ ipv4; route 10.40.0.0/24 blackhole; }}
protocol bgp node {{
  local 192.168.1.5 as 65010;
  neighbor 169.254.1.1 as {AS};
  multihop;
  connect delay time 1;
  connect retry time 2;
  ipv4 {{ import all; export all; }};
}}
"#
        ),
    )
    .expect("BIRD 2");
    b.etcd
        .put_all(&[
            (
                format!("{RES}/bgpconfigurations/default"),
                calico_resource(
                    "BGPConfiguration",
                    "default",
                    json!({ "asNumber": AS, "nodeToNodeMeshEnabled": false,
                            "localWorkloadPeeringIPV4": "169.254.1.1" }),
                ),
            ),
            (format!("{RES}/nodes/node-1"), node_resource()),
            (
                format!("{RES}/ippools/default-ipv4-ippool"),
                calico_resource(
                    "IPPool",
                    "default-ipv4-ippool",
                    json!({ "cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Never" }),
                ),
            ),
            (
                "/calico/ipam/v2/host/node-1/ipv4/block/192.168.1.0-26".to_owned(),
                json!({ "state": "confirmed", "deleted": false }).to_string(),
            ),
            (
                format!("{RES}/bgppeers/workload-bird"),
                calico_resource(
                    "BGPPeer",
                    "workload-bird",
                    json!({ "localWorkloadSelector": "app == 'bird'", "asNumber": 65010 }),
                ),
            ),
        ])
        .expect("datastore");
    // Felix's endpoint status file: the workload, chosen for the BGPPeer.
    let prefix = b.dir.path().join("felix");
    let status = prefix.join("endpoint-status");
    std::fs::create_dir_all(&status).unwrap();
    let file = status.join("k8s-pod-wl1");
    std::fs::write(
        &file,
        json!({ "ifaceName": "cali1", "mac": "ee:ee:ee:ee:ee:ee",
                "ipv4Nets": ["192.168.1.5/32"], "bgpPeerName": "workload-bird" })
        .to_string(),
    )
    .unwrap();
    let prefix_s = prefix.display().to_string();
    let env = [("CALICO_ENDPOINT_STATUS_PATH_PREFIX", prefix_s.as_str())];

    // The session as confd names and renders it.
    let endpoint = b.etcd.endpoint();
    let out = b
        .node
        .exec(
            "env",
            &[
                &format!("ETCD_ENDPOINTS={endpoint}"),
                "NODENAME=node-1",
                &format!("CALICO_ENDPOINT_STATUS_PATH_PREFIX={prefix_s}"),
                &exe().display().to_string(),
                "agent",
                "--once",
                "--print-sessions",
            ],
        )
        .expect("--print-sessions");
    let s: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(s["name"], "Local_Workload_192_168_1_5", "{s}");
    assert_eq!(
        (&s["passive"], &s["asn"], &s["source_address"]),
        (&json!(true), &json!(65010), &Value::Null),
        "{s}"
    );

    let agent = b.agent(&env);
    b.wait_established(&bird, "192.168.1.5", "node", &agent);
    // The workload's prefix in the node's kernel via the workload, the node's block at
    // the workload.
    let got = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        b.route("10.40.0.0/24")
    })
    .unwrap_or_else(|| panic!("no 10.40.0.0/24\n{}", context(&agent, &bird)));
    assert_eq!(got["gateway"], "192.168.1.5", "{got}");
    let block = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        bird.routes(&["192.168.1.0/26"])
            .ok()
            .filter(|r| r.iter().any(|r| r.prefix == "192.168.1.0/26"))
    });
    assert!(
        block.is_some(),
        "no block at the workload\n{}",
        context(&agent, &bird)
    );
    // Readiness leaves the workload's session out, as calico-node's does (`Mesh_`,
    // `Global_`, `Node_` only): no peer to wait for, ready.
    let status = ctl_json(&b.node, exe(), API, &["status"]).expect("status");
    let r = &status["readiness"];
    assert_eq!(
        (&r["peers"], &r["ready"]),
        (&json!(0), &json!(true)),
        "{status}"
    );

    // The workload no longer chosen (its file gone): the session goes.
    std::fs::remove_file(&file).unwrap();
    let gone = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        b.peers().is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "{:?}\n{}",
        b.peers(),
        context(&agent, &bird)
    );
    assert!(
        agent_log(&agent).contains("workloads for local BGP peering changed"),
        "{}",
        context(&agent, &bird)
    );
}

fn agent_log(agent: &Proc) -> String {
    std::fs::read_to_string(agent.stderr_path()).unwrap_or_default()
}
