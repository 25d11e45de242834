//! Kubeconfig files, as kubectl and the Kubernetes clients read them: one cluster, one user, one context;
//! and the credentials of a kubeconfig's current context (`read_identity`), which an agent may use instead of
//! joining with the node token.

use std::path::Path;

use base64::Engine;
use serde_yaml_ng::Value;

use super::pki::Issued;

/// A kubeconfig for the API at `server` (`https://host:port`, or `http://` for an insecure one): it trusts
/// `authority_pem` and shows `identity`'s client certificate, each when given. `context` names the context,
/// whose namespace is `default`.
pub fn render(server: &str, authority_pem: Option<&str>, identity: Option<&Issued>, context: &str) -> String {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let authority =
        authority_pem.map_or(String::new(), |pem| format!("\n    certificate-authority-data: {}", b64(pem)));
    let user = match identity {
        Some(issued) => format!(
            "\n    client-certificate-data: {}\n    client-key-data: {}",
            b64(&issued.cert_pem),
            b64(&issued.key_pem)
        ),
        None => " {}".to_owned(),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: raftsman
  cluster:
    server: {server}{authority}
users:
- name: admin
  user:{user}
contexts:
- name: {context}
  context:
    cluster: raftsman
    user: admin
    namespace: default
current-context: {context}
"
    )
}

/// The cluster authority and client certificate of a kubeconfig's current context, all PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub authority_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not YAML: {source}")]
    Yaml { path: String, source: serde_yaml_ng::Error },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// The credentials of the current context of the kubeconfig at `path`: its cluster's
/// `certificate-authority(-data)` and its user's `client-certificate(-data)` and `client-key(-data)`; files
/// named relative to the kubeconfig's directory.
pub fn read_identity(path: &Path) -> Result<Identity, KubeconfigError> {
    let shown = path.display().to_string();
    let read = |file: &Path| {
        std::fs::read_to_string(file)
            .map_err(|source| KubeconfigError::Read { path: file.display().to_string(), source })
    };
    let config: Value = serde_yaml_ng::from_str(&read(path)?)
        .map_err(|source| KubeconfigError::Yaml { path: shown.clone(), source })?;
    let invalid = |problem: String| KubeconfigError::Invalid { path: shown.clone(), problem };
    let current = config["current-context"].as_str().ok_or_else(|| invalid("no current-context".into()))?;
    let named = |list: &str, name: &str| -> Result<Value, KubeconfigError> {
        let entries = config[list].as_sequence().cloned().unwrap_or_default();
        let entry = entries.into_iter().find(|e| e["name"].as_str() == Some(name));
        entry.ok_or_else(|| invalid(format!("no {list} entry named {name:?}")))
    };
    let context = named("contexts", current)?;
    let cluster = named("clusters", context["context"]["cluster"].as_str().unwrap_or_default())?;
    let user = named("users", context["context"]["user"].as_str().unwrap_or_default())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let pem = |entry: &Value, field: &str| -> Result<String, KubeconfigError> {
        if let Some(data) = entry[format!("{field}-data").as_str()].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| invalid(format!("{field}-data is not base64: {e}")))?;
            return String::from_utf8(bytes).map_err(|_| invalid(format!("{field}-data is not PEM")));
        }
        match entry[field].as_str() {
            Some(file) => read(&dir.join(file)),
            None => Err(invalid(format!("the current context has no {field} or {field}-data"))),
        }
    };
    Ok(Identity {
        authority_pem: pem(&cluster["cluster"], "certificate-authority")?,
        cert_pem: pem(&user["user"], "client-certificate")?,
        key_pem: pem(&user["user"], "client-key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insecure_kubeconfig_has_an_empty_user_and_a_secure_one_carries_its_credentials() {
        let plain = render("http://127.0.0.1:6443", None, None, "raftsman-n1");
        assert!(plain.contains("server: http://127.0.0.1:6443\nusers:"), "{plain}");
        assert!(plain.contains("  user: {}\n"), "{plain}");
        let issued = Issued { cert_pem: "CERT".into(), key_pem: "KEY".into() };
        let secure = render("https://127.0.0.1:6443", Some("CA"), Some(&issued), "raftsman-n1");
        assert!(secure.contains("    certificate-authority-data: Q0E=\n"), "{secure}");
        assert!(
            secure.contains("  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n"),
            "{secure}"
        );
        assert!(secure.contains("current-context: raftsman-n1\n"));
    }

    #[test]
    fn the_identity_of_a_rendered_kubeconfig_is_what_it_was_rendered_with() {
        let dir = tempfile::tempdir().unwrap();
        let issued = Issued { cert_pem: "CERT\n".into(), key_pem: "KEY\n".into() };
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, render("https://127.0.0.1:6443", Some("CA\n"), Some(&issued), "c")).unwrap();
        let identity = read_identity(&path).unwrap();
        assert_eq!(
            (identity.authority_pem.as_str(), identity.cert_pem.as_str(), identity.key_pem.as_str()),
            ("CA\n", "CERT\n", "KEY\n")
        );
        std::fs::write(&path, render("http://127.0.0.1:6443", None, None, "c")).unwrap();
        let e = read_identity(&path).unwrap_err().to_string();
        assert!(e.contains("no certificate-authority"), "{e}");
    }
}
