//! Compiles the protobuf definitions in proto/ into tonic clients and servers, and records what `/version`
//! reports about the build: the git commit and tree state, the build date and the compiler's version.
//!
//! The build facts never fail the build: without git (a source tarball) the commit and tree state are empty,
//! and the date is `SOURCE_DATE_EPOCH`'s, else the commit's, else the Unix epoch, so that the same sources
//! build the same binary. The facts are read again when the checked-out commit changes; the tree state is the
//! one seen then.

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/etcd.proto", "proto/raft.proto", "proto/operations.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    build_facts();
    Ok(())
}

/// Sets `RAFTSMAN_GIT_COMMIT`, `RAFTSMAN_GIT_TREE_STATE`, `RAFTSMAN_BUILD_DATE` and `RAFTSMAN_RUSTC_VERSION`
/// for the crate's code.
fn build_facts() {
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let tree_state = match (&commit, git(&["status", "--porcelain", "--untracked-files=no"])) {
        (Some(_), Some(changes)) if changes.is_empty() => "clean",
        (Some(_), Some(_)) => "dirty",
        _ => "",
    };
    let epoch = |s: String| s.trim().parse::<i64>().ok();
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(epoch)
        .or_else(|| commit.as_ref().and_then(|_| git(&["show", "-s", "--format=%ct", "HEAD"])).and_then(epoch))
        .unwrap_or(0);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("cargo:rustc-env=RAFTSMAN_GIT_COMMIT={}", commit.as_deref().unwrap_or_default());
    println!("cargo:rustc-env=RAFTSMAN_GIT_TREE_STATE={tree_state}");
    println!("cargo:rustc-env=RAFTSMAN_BUILD_DATE={}", rfc3339(seconds));
    println!("cargo:rustc-env=RAFTSMAN_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit moves HEAD or the branch it points to. Only files that exist are named: cargo reruns the
    // script on every build for one that does not.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `git args` in the package's directory: its trimmed output, or None when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|out| out.status.success())?;
    String::from_utf8(out.stdout).ok().map(|s| s.trim().to_owned())
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (`2025-04-22T16:03:23Z`).
fn rfc3339(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days to the civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}
