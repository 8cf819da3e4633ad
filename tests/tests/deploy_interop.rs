//! The container image's contract, run here without pulling an image: the binary that
//! `deploy/Dockerfile` copies, run the way it sets it up. From the Dockerfile are read,
//! for each target (`reflector`, `node`), the user (`USER`), the binary's file
//! capabilities (`setcap`), and the configuration path (`CMD`). The binary then runs in
//! a network namespace of the test's own, with `/etc` replaced by a tmpfs holding only
//! the mounted configuration (as in the `scratch` image), as that user, its bounding set
//! cut down to what `docker run --cap-drop ALL --cap-add ...` (or Kubernetes'
//! `capabilities.add`) leaves. It must bind port 179 and serve its API with exactly the
//! Dockerfile's capabilities in effect, honour `RR_ROUTER_ID`/`RR_ASN`/`RR_CLUSTER_ID`,
//! and, as a node, put its blackhole into the kernel; with a capability missing it must
//! fail for that reason. The same again with ambient capabilities on a binary without
//! file capabilities, as systemd's `AmbientCapabilities=` gives them.
//!
//! The binary: `RR_STATIC_BINARY` (tests/run.sh passes the output of
//! deploy/build-static.sh), else this package's debug build of the same CLI. Needs root.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interop_tests::{Netns, Proc, WorkDir, poll, require_root};

const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_ADMIN: u64 = 1 << 12;

fn binary() -> PathBuf {
    match std::env::var_os("RR_STATIC_BINARY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_speaker")),
    }
}

/// What the Dockerfile sets up for one target.
#[derive(Debug)]
struct Target {
    uid: u32,
    gid: u32,
    /// `setcap` argument, e.g. `cap_net_admin,cap_net_bind_service=+ep`.
    file_caps: String,
    /// The capability names, e.g. `net_admin`, `net_bind_service`.
    caps: Vec<String>,
    /// `--config PATH` of `CMD`.
    config_path: String,
    /// `CMD` whole.
    cmd: Vec<String>,
    /// `STOPSIGNAL`, without `SIG`.
    stop_signal: String,
}

fn dockerfile() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reads `target`'s stage of the Dockerfile: its `COPY --from=build /out/X/rr-daemon`,
/// the `setcap CAPS /out/X/rr-daemon` of the build stage, `USER` and `CMD`.
fn target(text: &str, target: &str) -> Target {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}")))
        .unwrap_or_else(|| panic!("no stage {target}"));
    let stage: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with("FROM "))
        .copied()
        .collect();
    let copied = stage
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("COPY --from=build ")?;
            let (src, dst) = rest.split_once(' ')?;
            (dst.trim() == "/usr/local/bin/rr-daemon").then(|| src.to_owned())
        })
        .unwrap_or_else(|| panic!("{target}: no COPY of the binary"));
    let file_caps = lines
        .iter()
        .find_map(|l| {
            let at = l.find("setcap ")?;
            let mut words = l[at + 7..].split_whitespace();
            let caps = words.next()?;
            (words.next()? == copied).then(|| caps.to_owned())
        })
        .unwrap_or_else(|| panic!("{target}: no setcap of {copied}"));
    let caps = file_caps
        .split('=')
        .next()
        .unwrap()
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_owned())
        .collect();
    let user = stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap_or_else(|| panic!("{target}: no USER"));
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let cmd = stage
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap_or_else(|| panic!("{target}: no CMD"));
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    assert_eq!(cmd[0], "--config", "{target}: CMD");
    let stop_signal = stage
        .iter()
        .find_map(|l| l.strip_prefix("STOPSIGNAL "))
        .map_or("TERM", |s| s.trim_start_matches("SIG"))
        .to_owned();
    Target {
        uid: uid.parse().expect("numeric uid"),
        gid: gid.parse().expect("numeric gid"),
        file_caps,
        caps,
        config_path: cmd[1].clone(),
        cmd,
        stop_signal,
    }
}

/// How the capabilities reach the non-root process.
#[derive(Clone, Copy, Debug)]
enum Grant {
    /// The binary's file capabilities, the bounding set cut to `bounding`.
    File,
    /// Ambient capabilities on a binary without file capabilities (systemd).
    Ambient,
}

/// The daemon as the container runs it; the namespace and the work dir go with it.
struct Running {
    proc: Proc,
    ns: Netns,
    dir: WorkDir,
}

impl Running {
    fn log(&self) -> String {
        fs::read_to_string(self.proc.stderr_path()).unwrap_or_default()
    }

    /// `Uid:` and `CapEff:` of the daemon's process.
    fn identity(&self) -> (u32, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        (
            field("Uid:").parse().unwrap(),
            u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        )
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = self
            .ns
            .exec(
                binary().to_str().unwrap(),
                &["ctl", "--api", "127.0.0.1:9179", "--json", "status"],
            )
            .ok()?;
        serde_json::from_str(&out).ok()
    }
}

/// Starts `binary` in a namespace of its own as `t` says, with `config` mounted at the
/// configuration path, `bounding` capabilities left to the process and `env`.
fn start(
    t: &Target,
    grant: Grant,
    bounding: &[&str],
    config: &str,
    env: &[(&str, &str)],
) -> Running {
    let dir = WorkDir::new("deploy").unwrap();
    let ns = Netns::create("deploy").unwrap();
    // A copy of the binary, with the Dockerfile's file capabilities or none.
    let exe = dir.path().join("rr-daemon");
    fs::copy(binary(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    if let Grant::File = grant {
        let ok = std::process::Command::new("setcap")
            .arg(&t.file_caps)
            .arg(&exe)
            .status()
            .expect("setcap (libcap2-bin) is installed")
            .success();
        assert!(ok, "setcap {} failed", t.file_caps);
    }
    let src = dir.path().join("mounted.toml");
    fs::write(&src, config).unwrap();
    let set = |caps: &[&str]| {
        let mut s = "-all".to_owned();
        for c in caps {
            s.push_str(&format!(",+{c}"));
        }
        s
    };
    let mut setpriv = format!(
        "setpriv --reuid={} --regid={} --clear-groups --bounding-set={}",
        t.uid,
        t.gid,
        set(bounding)
    );
    if let Grant::Ambient = grant {
        let s = set(bounding);
        setpriv.push_str(&format!(" --inh-caps={s} --ambient-caps={s}"));
    }
    // The image's /etc: nothing but the mounted file (its own mount namespace, so the
    // host's /etc is untouched).
    let conf_dir = Path::new(&t.config_path)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let script = format!(
        "mount -t tmpfs rr-deploy-test /etc && mkdir -p {conf_dir} && \
         cp {src} {path} && chmod 0444 {path} && exec {setpriv} {exe} {cmd}",
        src = src.display(),
        path = t.config_path,
        exe = exe.display(),
        cmd = t.cmd.join(" "),
    );
    let args: Vec<String> = ["--mount", "--propagation", "private", "sh", "-c", &script]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let proc = ns
        .spawn(
            dir.path(),
            "daemon",
            Path::new("unshare"),
            &args,
            env,
            false,
        )
        .unwrap();
    Running { proc, ns, dir }
}

fn caps_mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(|c| match c.as_str() {
            "net_bind_service" => NET_BIND_SERVICE,
            "net_admin" => NET_ADMIN,
            other => panic!("unexpected capability {other} in the Dockerfile"),
        })
        .fold(0, |a, b| a | b)
}

const REFLECTOR: &str = "[speaker]\nasn = 65000\nlisten = [\"127.0.0.1:179\"]\n\
    [api]\nlisten = \"127.0.0.1:9179\"\n\
    [[peer_group]]\nname = \"nodes\"\nasn = 65000\nrr_client = true\n\
    [[dynamic_neighbors]]\nprefix = \"127.0.0.0/8\"\ngroup = \"nodes\"\n";

const NODE: &str = "[speaker]\nasn = 64512\nrouter_id = \"10.0.0.1\"\nlisten = [\"127.0.0.1:179\"]\n\
    [api]\nlisten = \"127.0.0.1:9179\"\n\
    [[originate]]\nprefix = \"192.168.77.0/26\"\nblackhole = true\n\
    [fib]\nprotocol = 12\n";

fn up(r: &mut Running) -> serde_json::Value {
    let s = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        assert!(r.proc.is_running(), "the daemon exited: {}", r.log());
        r.status()
    });
    s.unwrap_or_else(|| panic!("the API never answered: {}", r.log()))
}

fn listening_on_179(r: &Running) -> bool {
    r.ns.exec("ss", &["-Hltn", "sport = :179"])
        .is_ok_and(|o| o.contains("127.0.0.1:179"))
}

fn blackhole(r: &Running) -> bool {
    r.ns.ip(&["route", "show", "proto", "bird"])
        .is_ok_and(|o| o.contains("blackhole 192.168.77.0/26"))
}

#[test]
fn test_reflector_image_runs_with_net_bind_service_only() {
    require_root().unwrap();
    let t = target(&dockerfile(), "reflector");
    assert_eq!(t.caps, ["net_bind_service"], "the reflector's capabilities");
    assert_ne!(t.uid, 0, "the image's user is not root");
    let caps: Vec<&str> = t.caps.iter().map(String::as_str).collect();
    for grant in [Grant::File, Grant::Ambient] {
        let env = [
            ("RR_ROUTER_ID", "10.244.3.9"),
            ("RR_CLUSTER_ID", "1.0.0.7"),
            ("RR_ASN", ""),
        ];
        let mut r = start(&t, grant, &caps, REFLECTOR, &env);
        let s = up(&mut r);
        assert_eq!(s["router_id"], "10.244.3.9", "{grant:?}: RR_ROUTER_ID");
        assert_eq!(s["asn"], 65000, "{grant:?}: the file's asn (RR_ASN empty)");
        assert!(listening_on_179(&r), "{grant:?}: port 179");
        let (uid, eff) = r.identity();
        assert_eq!(uid, t.uid, "{grant:?}");
        assert_eq!(eff, caps_mask(&t.caps), "{grant:?}: CapEff {eff:#x}");
        assert!(
            r.log().contains("cluster id 1.0.0.7"),
            "{grant:?}: RR_CLUSTER_ID: {}",
            r.log()
        );
        // `docker stop`: the image's STOPSIGNAL.
        r.proc.signal(&t.stop_signal).unwrap();
        let st = r
            .proc
            .wait_exit(Duration::from_secs(10))
            .expect("exits on STOPSIGNAL");
        assert!(st.success(), "{grant:?}: {st:?}");
        drop(r.dir);
    }
    // RR_ASN replaces the file's.
    let mut r = start(
        &t,
        Grant::File,
        &caps,
        REFLECTOR.replacen("asn = 65000", "asn = 65001", 1).as_str(),
        &[("RR_ROUTER_ID", "10.244.3.9"), ("RR_ASN", "65000")],
    );
    assert_eq!(up(&mut r)["asn"], 65000);
    drop(r);
    // Without the capability in its bounding set, the non-root process cannot bind 179.
    // (With file capabilities the kernel refuses to run it at all: it cannot get what
    // the file demands.)
    for grant in [Grant::File, Grant::Ambient] {
        let mut r = start(&t, grant, &[], REFLECTOR, &[("RR_ROUTER_ID", "10.244.3.9")]);
        let st = r.proc.wait_exit(Duration::from_secs(20)).expect("it stops");
        assert!(!st.success(), "{grant:?}");
        let log = r.log();
        assert!(
            log.contains("Permission denied") || log.contains("Operation not permitted"),
            "{grant:?}: {log}"
        );
    }
}

#[test]
fn test_node_image_programs_the_kernel_with_net_admin() {
    require_root().unwrap();
    let t = target(&dockerfile(), "node");
    let mut want = t.caps.clone();
    want.sort();
    assert_eq!(
        want,
        ["net_admin", "net_bind_service"],
        "the node's capabilities"
    );
    let caps: Vec<&str> = t.caps.iter().map(String::as_str).collect();
    for grant in [Grant::File, Grant::Ambient] {
        let mut r = start(&t, grant, &caps, NODE, &[("RR_ROUTER_ID", "10.244.4.2")]);
        let s = up(&mut r);
        assert_eq!(s["router_id"], "10.244.4.2");
        assert!(
            poll(Duration::from_secs(10), Duration::from_millis(100), || {
                blackhole(&r).then_some(())
            })
            .is_some(),
            "{grant:?}: no blackhole route: {}",
            r.log()
        );
        let (uid, eff) = r.identity();
        assert_eq!(uid, t.uid);
        assert_eq!(
            eff,
            NET_ADMIN | NET_BIND_SERVICE,
            "{grant:?}: CapEff {eff:#x}"
        );
        r.proc.signal(&t.stop_signal).unwrap();
        assert!(
            r.proc
                .wait_exit(Duration::from_secs(10))
                .is_some_and(|s| s.success())
        );
    }
    // The reflector's capabilities are not enough for a node: BGP runs, routes do not.
    let reflector = target(&dockerfile(), "reflector");
    let only: Vec<&str> = reflector.caps.iter().map(String::as_str).collect();
    let t_ambient = Target {
        caps: reflector.caps.clone(),
        ..t
    };
    let mut r = start(&t_ambient, Grant::Ambient, &only, NODE, &[]);
    up(&mut r);
    let failed = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        r.log()
            .lines()
            .any(|l| {
                l.contains("Operation not permitted") && l.contains("add 192.168.77.0/26 blackhole")
            })
            .then_some(())
    });
    assert!(failed.is_some(), "no refused route in the log: {}", r.log());
    assert!(!blackhole(&r), "a route went in without CAP_NET_ADMIN");
}
