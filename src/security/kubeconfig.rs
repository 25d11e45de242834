//! Kubeconfig files, as kubectl and the Kubernetes clients read them: one cluster, one user, one context.

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
}
