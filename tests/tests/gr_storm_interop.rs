//! The Calico upgrade storm: five mesh nodes of ours (`[mesh]`, `[fib]`, each announcing
//! its block as a blackhole), three of them killed with -9 together and started again
//! together with `--graceful-restart`. The two others never lose a route: every block is
//! in their kernels, via the right node, at every poll (every 100 ms) from the kill to
//! the end. The restarted nodes do not wait for each other (each sets the Restart State
//! bit): their recovery ends with the End-of-RIBs of the two others, in seconds, not at
//! the restart time (120 s), and then their kernels hold every block again; `ip monitor
//! route` in their namespaces shows no route deleted across the restart (the blocks of
//! the nodes that restart with them are held until those nodes' End-of-RIBs).
//!
//! Addresses .2 .9 .10 .11 .30 on 192.0.2.0/24 (string order differs from numeric: the
//! mesh's passive rule is Calico's). Every namespace is made here (`bgpt-<pid>-<n>-...`).
//! Needs root. `KEEP_WORK=1` keeps the work dir; a failed test keeps it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use interop_tests::{Daemon, Hub, Netns, StopOnDrop, WorkDir, poll_ok, require_root};
use serde_json::Value;

const AS: u32 = 64512;
const HOLD: u16 = 3;
const NODES: [&str; 5] = [
    "192.0.2.2",
    "192.0.2.9",
    "192.0.2.10",
    "192.0.2.11",
    "192.0.2.30",
];
/// The nodes killed and restarted: indexes into [`NODES`].
const RESTARTED: [usize; 3] = [0, 1, 2];
/// How long the three stay down (beyond the hold time, far within the restart time).
const DOWN_FOR: Duration = Duration::from_secs(4);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// Node `i`'s block.
fn block(i: usize) -> String {
    format!("192.168.{i}.0/26")
}

fn config(i: usize) -> String {
    let me = NODES[i];
    let nodes: Vec<String> = NODES.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
         hold_time = {HOLD}\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{me}:9179\"\n\n\
         [mesh]\nnodes = [{}]\n\n\
         [fib]\ntable = 254\nmetric_from_local_pref = false\n\n\
         [[originate]]\nprefix = \"{}\"\nblackhole = true\n",
        nodes.join(", "),
        block(i)
    )
}

/// Our routes (protocol 12) in `ns`'s main table: `(dst, "blackhole" | gateway)`.
fn kernel(ns: &Netns) -> Result<BTreeSet<(String, String)>, String> {
    let out = ns.ip(&["-j", "route", "show", "table", "main", "proto", "12"])?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let dst = r["dst"].as_str().unwrap_or_default().to_owned();
                    let how = if r["type"] == "blackhole" {
                        "blackhole".to_owned()
                    } else {
                        r["gateway"].as_str().unwrap_or("?").to_owned()
                    };
                    (dst, how)
                })
                .collect()
        })
        .unwrap_or_default())
}

/// What node `i`'s kernel holds when all is well: its block as a blackhole, every other
/// block via its node.
fn wanted(i: usize) -> BTreeSet<(String, String)> {
    (0..NODES.len())
        .map(|j| {
            let how = if i == j { "blackhole" } else { NODES[j] };
            (block(j), how.to_owned())
        })
        .collect()
}

/// Polls the kernels of `survivors` every 100 ms until `stop` (bounded by `limit`):
/// `(polls, problems)`.
fn watch(
    nss: &[&Netns],
    survivors: &[usize],
    stop: &AtomicBool,
    limit: Duration,
    out: &Mutex<(u32, Vec<String>)>,
) {
    let t = Instant::now();
    while !stop.load(Ordering::Relaxed) && t.elapsed() < limit {
        let mut problems = Vec::new();
        for (&i, ns) in survivors.iter().zip(nss) {
            match kernel(ns) {
                Ok(k) if k == wanted(i) => {}
                Ok(k) => problems.push(format!(
                    "+{:.1}s {}: {k:?}",
                    t.elapsed().as_secs_f64(),
                    NODES[i]
                )),
                Err(e) => problems.push(e),
            }
        }
        {
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            w.0 += 1;
            w.1.extend(problems);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_of_five_mesh_nodes_restart_together_and_nobody_loses_a_route() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let say = |s: &str| eprintln!("[gr-storm +{:5.1}s] {s}", started.elapsed().as_secs_f64());
    let dir = WorkDir::new("gr-storm").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let nss: Vec<Netns> = NODES
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let ns = Netns::create(&format!("n{i}")).unwrap_or_else(|e| panic!("{e}"));
            hub.attach(&ns, &[&format!("{a}/24")])
                .unwrap_or_else(|e| panic!("{e}"));
            ns
        })
        .collect();
    let mut ds: Vec<Daemon> = (0..NODES.len())
        .map(|i| {
            let sub = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
            Daemon::start(&nss[i], &sub, exe(), &config(i)).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let fail = |what: &str, ds: &[Daemon]| -> ! {
        let mut s = format!("gr-storm: {what}\n");
        for (i, d) in ds.iter().enumerate() {
            let k = kernel(&nss[i]).map_or_else(|e| e, |k| format!("{k:?}"));
            let _ = writeln!(s, "=== {} kernel: {k}\n{}", NODES[i], d.transcript(40));
        }
        let _ = write!(s, "work dir: {}", dir.path().display());
        panic!("{s}");
    };
    let converged = |ds: &[Daemon], what: &str, timeout: Duration| {
        let r = poll_ok(timeout, Duration::from_millis(100), || {
            for (i, ns) in nss.iter().enumerate() {
                let k = kernel(ns)?;
                if k != wanted(i) {
                    return Err(format!("{}: {k:?}", NODES[i]));
                }
            }
            Ok(())
        });
        match r {
            Ok(t) => say(&format!("{what}: after {:.1}s", t.as_secs_f64())),
            Err(e) => fail(&format!("{what}: {e}"), ds),
        }
    };
    converged(
        &ds,
        "every kernel holds the five blocks",
        Duration::from_secs(60),
    );

    let survivors: Vec<usize> = (0..NODES.len())
        .filter(|i| !RESTARTED.contains(i))
        .collect();
    let stop = AtomicBool::new(false);
    let seen = Mutex::new((0u32, Vec::new()));
    let mut marks = Vec::new();
    let mut monitors = Vec::new();
    let mut restarted_at = Instant::now();
    thread::scope(|s| {
        let watched: Vec<&Netns> = survivors.iter().map(|&i| &nss[i]).collect();
        let (stop_ref, seen_ref, surv) = (&stop, &seen, &survivors);
        s.spawn(move || watch(&watched, surv, stop_ref, Duration::from_secs(180), seen_ref));
        let _stop = StopOnDrop(&stop);

        for &i in &RESTARTED {
            if let Err(e) = ds[i].kill() {
                fail(&format!("kill {}: {e}", NODES[i]), &ds);
            }
        }
        let killed = Instant::now();
        say("three nodes killed (SIGKILL)");
        for &i in &RESTARTED {
            monitors.push(
                nss[i]
                    .monitor_routes(dir.path(), &format!("n{i}"))
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        thread::sleep(DOWN_FOR);
        for &i in &RESTARTED {
            marks.push(ds[i].log_mark());
            if let Err(e) = ds[i].start_again(&["--graceful-restart"]) {
                fail(&format!("restart {}: {e}", NODES[i]), &ds);
            }
        }
        restarted_at = Instant::now();
        say(&format!(
            "three nodes started again with --graceful-restart after {:.1}s down",
            killed.elapsed().as_secs_f64()
        ));
        for (k, &i) in RESTARTED.iter().enumerate() {
            let r = ds[i].wait_log(marks[k], Duration::from_secs(60), |l| {
                l.contains("graceful restart: recovery over")
            });
            if r.is_err() {
                fail(&format!("{}: recovery not over", NODES[i]), &ds);
            }
        }
        converged(
            &ds,
            "every kernel holds the five blocks again",
            Duration::from_secs(30),
        );
        thread::sleep(Duration::from_secs(1));
    });
    let (polls, problems) = seen.into_inner().unwrap_or_else(|p| p.into_inner());
    say(&format!(
        "the two survivors' kernels polled {polls} times, {} problem(s)",
        problems.len()
    ));
    if polls < 30 || !problems.is_empty() {
        let first: Vec<&String> = problems.iter().take(10).collect();
        fail(&format!("{polls} polls, problems: {first:#?}"), &ds);
    }
    // No route of ours deleted in the restarted nodes' kernels across their restart.
    for (k, mut m) in monitors.into_iter().enumerate() {
        if !m.is_running() {
            fail(&format!("{}: ip monitor exited", NODES[RESTARTED[k]]), &ds);
        }
        let _ = m.stop(Duration::from_secs(2));
        let events = std::fs::read_to_string(m.stdout_path()).unwrap_or_default();
        let deleted: Vec<&str> = events
            .lines()
            .filter(|l| l.starts_with("Deleted"))
            .collect();
        say(&format!(
            "{}: {} route event(s) across the restart, {} delete(s)",
            NODES[RESTARTED[k]],
            events.lines().count(),
            deleted.len()
        ));
        if !deleted.is_empty() {
            fail(
                &format!("{}: routes deleted: {deleted:#?}", NODES[RESTARTED[k]]),
                &ds,
            );
        }
    }
    // Recovery by the End-of-RIBs, not the restart time; when, after each restart.
    for (k, &i) in RESTARTED.iter().enumerate() {
        let log = ds[i].log_since(marks[k]);
        let line = |what: &str| log.iter().find(|l| l.contains(what)).cloned();
        let selection = line("every peer's End-of-RIB received");
        let over = line("graceful restart: recovery over");
        let fib = line("fib: initial sync over");
        say(&format!(
            "{}: {}\n    {}\n    {}",
            NODES[i],
            selection.as_deref().unwrap_or("(no selection line)"),
            over.as_deref().unwrap_or("(no recovery line)"),
            fib.as_deref().unwrap_or("(no fib line)")
        ));
        if selection.is_none()
            || log.iter().any(|l| l.contains("graceful restart time over"))
            || !fib.is_some_and(|l| l.contains("End-of-RIBs in"))
        {
            fail(
                &format!("{}: recovery did not end by the End-of-RIBs", NODES[i]),
                &ds,
            );
        }
    }
    say(&format!(
        "done {:.1}s after the restart",
        restarted_at.elapsed().as_secs_f64()
    ));
    drop(ds);
}
