//! Records the git commit the daemons are built from (`LBSUITE_COMMIT` in the
//! environment wins, for builds outside a checkout), for `*_build_info{commit}`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=LBSUITE_COMMIT");
    let commit = std::env::var("LBSUITE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // Rebuilt when HEAD moves: the HEAD file and the branch it names.
            for name in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", name]) {
                    if Path::new(&p).exists() {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                    if Path::new(&p).exists() {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        });
    if let Some(commit) = commit {
        println!("cargo:rustc-env=LBSUITE_COMMIT={commit}");
    }
}
