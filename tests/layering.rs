//! The dependency rule between the layers, checked on the source: the pure Kubernetes API machinery
//! (`src/apis/`) imports neither the store nor the servers nor anything that does I/O, so that the API server,
//! the controllers, the scheduler and the agent can all build on it.

use std::path::{Path, PathBuf};

/// The crates a file under `src/apis/` may name in a `use`: the standard library, its own modules, `limits`,
/// and the pure libraries the machinery is built from (tests may also use proptest).
const APIS_MAY_USE: &[&str] = &[
    "std",
    "core",
    "alloc",
    "self",
    "super",
    "crate::apis",
    "crate::limits",
    "k8s_openapi",
    "serde",
    "serde_json",
    "schemars",
    "json_patch",
    "thiserror",
    "jiff",
    "base64",
    "percent_encoding",
    "proptest",
];

/// Paths that must not appear anywhere under `src/apis/`, whether in a `use` or written out in full.
const APIS_MUST_NOT_NAME: &[&str] = &[
    "crate::store",
    "crate::apiserver",
    "crate::cluster",
    "crate::controllers",
    "crate::bench",
    "crate::proto",
    "tokio::",
    "axum::",
    "hyper::",
    "hyper_util::",
    "tonic::",
    "http::",
    "futures::",
    "openraft::",
    "rocksdb::",
    "tracing::",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The root a `use` line names (`crate::limits` for `use crate::limits::X`, `serde_json` for
/// `use serde_json::{...}`), or None when the line is not a `use`.
fn use_root(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("pub ").unwrap_or(line.trim_start());
    let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
    let path = rest.strip_prefix("use ")?;
    let mut parts = path.split("::");
    let first = parts.next()?.trim_end_matches(';').trim();
    if first == "crate" {
        let second: String = parts.next()?.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        return Some(format!("crate::{second}"));
    }
    Some(first.to_owned())
}

/// Every line of the files under `src/apis/` that breaks the rule, as `path:line: text`.
fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(files.len() > 5, "src/apis/ holds the API machinery");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            // A root in upper case is the file's own type (`use Subresource::*`), not a crate.
            let bad_use = use_root(code).is_some_and(|root| {
                !root.starts_with(|c: char| c.is_ascii_uppercase()) && !APIS_MAY_USE.contains(&root.as_str())
            });
            let bad_path = APIS_MUST_NOT_NAME.iter().any(|p| {
                code.match_indices(p)
                    .any(|(at, _)| at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
            });
            if bad_use || bad_path {
                found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_api_machinery_imports_neither_the_store_nor_the_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/apis");
    let found = violations(&root);
    assert!(found.is_empty(), "src/apis/ must stay pure (see ARCHITECTURE.md):\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_forbidden_import() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for i in 0..6 {
        std::fs::write(
            dir.path().join(format!("pure{i}.rs")),
            "use serde_json::Value;\nuse super::catalog;\nuse Kind::*;\n",
        )
        .expect("a file");
    }
    assert!(violations(dir.path()).is_empty());
    std::fs::write(dir.path().join("bad.rs"), "use crate::store::Store;\nfn f() { tokio::spawn(async {}); }\n")
        .expect("a file");
    std::fs::write(dir.path().join("bad2.rs"), "use crate::apiserver::errors::ApiError;\nuse axum::Router;\n")
        .expect("a file");
    let found = violations(dir.path());
    assert_eq!(found.len(), 4, "{found:?}");
}
