//! Records the commit the binary is built from, for `rr-daemon --version`: `RR_COMMIT`
//! when set (a build without `.git`, such as a container build, passes it in), else the
//! short hash of `git rev-parse HEAD`, else `unknown` (a source tarball).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=RR_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = match std::env::var("RR_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            // Rebuilt when HEAD moves: HEAD itself, and the branch it points at (a loose
            // ref, or packed-refs once git packed it). Paths from git, so that a worktree
            // (whose `.git` is a file) works too.
            for p in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                    watch(&path);
                }
            }
            if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = git(&["rev-parse", "--git-path", &head])
            {
                watch(&path);
            }
            git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=RR_COMMIT={commit}");
}

/// Reruns the script when `path` (relative to the manifest directory, as `git rev-parse
/// --git-path` answers) changes; a path that does not exist is not watched, since Cargo
/// would then rerun the script on every build.
fn watch(path: &str) {
    let p = manifest_dir().join(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}
