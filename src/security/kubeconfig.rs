//! Kubeconfig files, as kubectl and the Kubernetes clients read them: one cluster, one user, one context;
//! and the credentials of a kubeconfig's current context (`read_identity`), which an agent may use instead of
//! joining with the node token.

use std::path::Path;

use base64::Engine;

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
    #[error(transparent)]
    Parse(#[from] kube::config::KubeconfigError),
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// The credentials of the current context of the kubeconfig at `path` (read by kube's parser, which makes
/// file names absolute against the kubeconfig's directory): its cluster's `certificate-authority(-data)` and
/// its user's `client-certificate(-data)` and `client-key(-data)`.
pub fn read_identity(path: &Path) -> Result<Identity, KubeconfigError> {
    use secrecy::ExposeSecret;
    let config = kube::config::Kubeconfig::read_from(path)?;
    let invalid = |problem: String| KubeconfigError::Invalid { path: path.display().to_string(), problem };
    let current = config.current_context.as_deref().ok_or_else(|| invalid("no current-context".into()))?;
    let context = config.contexts.iter().find(|c| c.name == current).and_then(|c| c.context.as_ref());
    let context = context.ok_or_else(|| invalid(format!("no context named {current:?}")))?;
    let cluster = config.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.as_ref());
    let cluster = cluster.ok_or_else(|| invalid(format!("no cluster named {:?}", context.cluster)))?;
    let user = context.user.as_deref().unwrap_or_default();
    let auth = config.auth_infos.iter().find(|u| u.name == user).and_then(|u| u.auth_info.as_ref());
    let auth = auth.ok_or_else(|| invalid(format!("no user named {user:?}")))?;
    // Inline data (base64) wins over a file, as kubectl reads them.
    let pem = |data: Option<&str>, file: Option<&String>, field: &str| -> Result<String, KubeconfigError> {
        if let Some(data) = data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| invalid(format!("{field}-data is not base64: {e}")))?;
            return String::from_utf8(bytes).map_err(|_| invalid(format!("{field}-data is not PEM")));
        }
        let file = file.ok_or_else(|| invalid(format!("the current context has no {field} or {field}-data")))?;
        std::fs::read_to_string(file).map_err(|source| KubeconfigError::Read { path: file.clone(), source })
    };
    let key_data = auth.client_key_data.as_ref().map(|k| k.expose_secret());
    Ok(Identity {
        authority_pem: pem(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_ref(),
            "certificate-authority",
        )?,
        cert_pem: pem(auth.client_certificate_data.as_deref(), auth.client_certificate.as_ref(), "client-certificate")?,
        key_pem: pem(key_data, auth.client_key.as_ref(), "client-key")?,
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
