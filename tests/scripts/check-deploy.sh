#!/usr/bin/env bash
# Checks deploy/ beyond what the Rust tests run:
#   1. every Kubernetes manifest against the Kubernetes OpenAPI schemas (kubernetes-validate
#      from PyPI, strict: unknown fields are errors), after a deliberately broken copy
#      is seen to fail;
#   2. the manifests against each other and the daemon: each --config file is a key of
#      the ConfigMap, each image a target of deploy/Dockerfile, each env name one the
#      daemon reads, probes on /healthz and /readyz; and every file of the ConfigMap
#      passes `rr-daemon check` with the overrides a pod would give it;
#   3. deploy/systemd/rr-daemon.service with `systemd-analyze verify` (Debian's systemd
#      package when missing), in a scratch root that holds the binary and its man pages,
#      where any warning fails;
#   4. the configs of docs/peers/ in the parser of the daemon each is written for.
#
#   tests/scripts/check-deploy.sh [BINARY]     (default: a debug build of rr-daemon)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${1:-}
if [ -z "$bin" ]; then
    cargo build -q --locked -p rr-daemon --bin rr-daemon
    dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    bin="$dir/debug/rr-daemon"
fi
bin=$(realpath "$bin")
work=$(mktemp -d /tmp/rr-check-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "--- Kubernetes manifests against the OpenAPI schemas"
if ! command -v kubernetes-validate >/dev/null; then
    python3 -m pip install -q kubernetes-validate
fi
# A validator that passes everything proves nothing: a wrong type must fail.
sed 's/replicas: 2/replicas: "two"/' deploy/kubernetes/route-reflector.yaml >"$work/broken.yaml"
if kubernetes-validate --strict --quiet "$work/broken.yaml" >/dev/null 2>&1; then
    echo "check-deploy: kubernetes-validate accepted a broken manifest" >&2
    exit 1
fi
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
echo "ok: $(ls deploy/kubernetes/*.yaml | wc -l) files"

echo "--- manifests, Dockerfile and daemon agree"
python3 - "$bin" "$work" <<'PY'
import glob, os, re, subprocess, sys, yaml

bin, work = sys.argv[1], sys.argv[2]
docs = [d for f in sorted(glob.glob("deploy/kubernetes/*.yaml"))
        for d in yaml.safe_load_all(open(f)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
cm = by_kind["ConfigMap"][0]["data"]
secret = by_kind["Secret"][0]["stringData"]
dockerfile = open("deploy/Dockerfile").read()
targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
known_env = {"RR_ROUTER_ID", "RR_ASN", "RR_CLUSTER_ID", "RUST_LOG"}
fail = []
checked = 0
for w in by_kind.get("StatefulSet", []) + by_kind.get("DaemonSet", []):
    name = w["metadata"]["name"]
    spec = w["spec"]["template"]["spec"]
    assert spec.get("hostNetwork") is True, f"{name}: hostNetwork"
    for c in spec["containers"]:
        image_target = c["image"].rsplit(":", 1)[1]
        if image_target not in targets:
            fail.append(f"{name}: image {c['image']}: no target {image_target} in deploy/Dockerfile")
        args = c["args"]
        path = args[args.index("--config") + 1]
        key = os.path.basename(path)
        if key not in cm:
            fail.append(f"{name}: --config {path}: no key {key} in the ConfigMap")
            continue
        for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c[probe]["httpGet"]["path"]
            if got != want:
                fail.append(f"{name}: {probe} on {got}, not {want}")
        caps = c["securityContext"]["capabilities"]
        if caps["drop"] != ["ALL"]:
            fail.append(f"{name}: capabilities not dropped")
        want_caps = {"reflector": ["NET_BIND_SERVICE"], "node": ["NET_ADMIN", "NET_BIND_SERVICE"]}[image_target]
        if sorted(caps["add"]) != want_caps:
            fail.append(f"{name}: capabilities {caps['add']}, want {want_caps}")
        ann = w["spec"]["template"]["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if ann.get("prometheus.io/scrape") != "true" or int(ann["prometheus.io/port"]) != ports["metrics"]:
            fail.append(f"{name}: metrics annotations")
        env = {}
        for e in c.get("env", []):
            if e["name"] not in known_env:
                fail.append(f"{name}: env {e['name']} is not read by rr-daemon")
            env[e["name"]] = e.get("value", "")
            if "valueFrom" in e:
                assert e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
                # A pod IP the file's topology expects: a reflector host or a node.
                rack = {"a": 1, "b": 2}[w["metadata"]["labels"]["rr-daemon.example/rack"]]
                env[e["name"]] = f"10.0.{rack}.10" if image_target == "reflector" else f"10.0.{rack}.21"
        # The file as the pod sees it, the Secret's files where it mounts them.
        text = cm[key]
        for skey, value in secret.items():
            local = os.path.join(work, "secret-" + skey)
            open(local, "w").write(value)
            text = text.replace(f"/run/secrets/rr-daemon/{skey}", local)
        conf = os.path.join(work, key)
        open(conf, "w").write(text)
        r = subprocess.run([bin, "check", "--config", conf], env={**os.environ, **env},
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail.append(f"{name}: rr-daemon check {key} with {env}: {r.stderr.strip()}")
        else:
            checked += 1
            print(f"ok: {name}: {r.stdout.strip()}")
if fail:
    print("\n".join("check-deploy: " + f for f in fail), file=sys.stderr)
    sys.exit(1)
assert checked >= 4, checked
PY

echo "--- systemd unit"
if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q systemd >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q systemd >/dev/null; }
    fi
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "check-deploy: SKIPPED the systemd unit: systemd-analyze is missing and cannot be installed here" >&2
else
    root="$work/root"
    mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd" \
        "$root/usr/share/man/man1"
    cp "$bin" "$root/usr/local/bin/rr-daemon"
    cp "$(type -P kill || echo /bin/kill)" "$root/bin/kill"
    # The units it refers to (network-online.target, multi-user.target, sysinit.target).
    cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
    cp deploy/systemd/rr-daemon.service "$root/etc/systemd/system/"
    "$bin" man --dir "$root/usr/share/man/man1"
    out=$(MANPATH="$root/usr/share/man" SYSTEMD_LOG_LEVEL=notice \
        systemd-analyze verify --root="$root" rr-daemon.service 2>&1) || {
        echo "$out" >&2
        echo "check-deploy: systemd-analyze verify failed" >&2
        exit 1
    }
    # verify exits 0 on unknown keys and the like: any message is a failure.
    if [ -n "$out" ]; then
        echo "$out" >&2
        echo "check-deploy: systemd-analyze verify warned" >&2
        exit 1
    fi
    # ... and it does warn: a key it does not know must show.
    echo "Bogus=1" >>"$root/etc/systemd/system/rr-daemon.service"
    if [ -z "$(MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" rr-daemon.service 2>&1)" ]; then
        echo "check-deploy: systemd-analyze verify does not report an unknown key" >&2
        exit 1
    fi
    grep -q '^Type=notify$' deploy/systemd/rr-daemon.service
    grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' deploy/systemd/rr-daemon.service
    echo "ok: systemd-analyze $(systemd-analyze --version | head -n 1 | cut -d' ' -f2)"
fi
echo "--- docs/peers: ours, BIRD 2, BIRD 1.6, FRR and GoBGP configs of the same setups"
# Each in its own daemon's parser: `rr-daemon check`, `bird -p`, BIRD 1.6's `bird -p`
# (tests/scripts/install-peers.sh puts it in target/peers/bird16, or BIRD16_DIR), FRR's
# `vtysh --dryrun`. GoBGP is not installed here: its files are only checked to be TOML.
bird16="${BIRD16_DIR:-target/peers/bird16}/usr/sbin/bird"
key="$work/key"
echo "change-me" >"$key"
n=0
for f in docs/peers/*/*; do
    case "$f" in
        *.gobgp.toml) python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f" ;;
        *.toml)
            sed "s#/etc/rr-daemon/secrets/[a-z]*#$key#" "$f" >"$work/peer.toml"
            "$bin" check --config "$work/peer.toml" >/dev/null || { echo "in $f" >&2; exit 1; } ;;
        *.bird2.conf) bird -p -c "$f" ;;
        *.bird16.conf)
            if [ -x "$bird16" ]; then
                "$bird16" -p -c "$f"
            else
                echo "check-deploy: BIRD 1.6 is not at $bird16 (tests/scripts/install-peers.sh)" >&2
                exit 1
            fi ;;
        *.frr.conf) vtysh --dryrun -f "$(realpath "$f")" ;;
        *) echo "check-deploy: $f: which daemon reads it?" >&2; exit 1 ;;
    esac
    n=$((n + 1))
done
echo "ok: $n files"

echo "check-deploy: all checks passed"
