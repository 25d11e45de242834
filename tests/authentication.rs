//! The Kubernetes API over TLS with authentication, on real replicas: the admin kubeconfig a replica writes
//! works for kubectl; a request without credentials gets 401 (except the health and version endpoints), so
//! does a bad bearer token, while a token of the static token file is someone; a certificate of another
//! authority or plain HTTP gets no answer at all; an agent joins with the node token and nothing else.

mod harness;

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use harness::agent::Agent;
use harness::api::{connect_with, read_all, tls_as};
use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};
use raftsman::security::pki::{Authority, Usage};

/// The status code and body of `GET path` on replica 0 over TLS with `tls`, with an optional bearer token.
async fn get(
    cluster: &TestCluster,
    tls: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut stream = connect_with(cluster.local.members[0].api_addr, tls).await.expect("a TLS connection");
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n{authorization}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_all(&mut stream).await).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_valid_credentials_get_401_and_the_admin_kubeconfig_works() {
    let tokens = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tokens.path(), "s3cr3t-token,jane,1001,\"devs,ops\"\n").unwrap();
    let token_flag = format!("--token-auth-file={}", tokens.path().display());
    let cluster = TestCluster::start_with(1, &[&token_flag]).await;
    let k = Kubectl::for_replica(&cluster, 0).await;

    // Phase 1: the admin kubeconfig is https, its key readable by its owner only, and kubectl works with it.
    let kubeconfig = std::fs::read_to_string(&k.kubeconfig).unwrap();
    let api = cluster.local.members[0].api_addr;
    assert!(kubeconfig.contains(&format!("server: https://{api}")), "{kubeconfig}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&k.kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);
    k.ok(&["create", "configmap", "c1", "--from-literal=k=v"]);
    assert_eq!(k.json(&["get", "configmap", "c1"])["data"]["k"], "v");

    // Phase 2: no credentials: 401 with upstream's Status, except for the public endpoints.
    let anonymous = tls_as(&cluster.local, None);
    let (code, body) = get(&cluster, anonymous.clone(), "/api/v1/namespaces/default/configmaps", None).await;
    assert_eq!(code, 401, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status["reason"].as_str(), status["code"].as_u64()), (Some("Unauthorized"), Some(401)), "{status}");
    for public in ["/readyz", "/livez", "/healthz", "/version"] {
        assert_eq!(get(&cluster, anonymous.clone(), public, None).await.0, 200, "{public}");
    }
    // kubectl with a token nobody issued says it is not logged in.
    let stranger = k.manifest("stranger.kubeconfig", &with_token(&kubeconfig, "not-a-token"));
    let out = std::process::Command::new("kubectl")
        .args(["--kubeconfig", &stranger, "get", "configmaps"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("You must be logged in to the server"), "{stderr}");

    // Phase 3: bearer tokens: one of the token file is its user (authenticated, then refused by RBAC, which
    // grants jane nothing), any other is refused even on public paths.
    let (code, body) =
        get(&cluster, anonymous.clone(), "/api/v1/namespaces/default/configmaps/c1", Some("s3cr3t-token")).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"jane\" cannot get resource \"configmaps\""#), "{body}");
    assert_eq!(get(&cluster, anonymous.clone(), "/api/v1/namespaces", Some("wrong")).await.0, 401);
    assert_eq!(get(&cluster, anonymous.clone(), "/readyz", Some("wrong")).await.0, 401);

    // Phase 4: a certificate of another authority, or plain HTTP, gets no answer.
    let stranger = Authority::create("raftsman-ca").unwrap();
    let forged = stranger.issue("system:admin", &["system:masters"], &[], Usage::Client).unwrap();
    let authority = cluster.local.authority().unwrap();
    let identity = (forged.cert_pem.as_bytes(), forged.key_pem.as_bytes());
    let tls = raftsman::security::tls::client_config(authority.cert_pem().as_bytes(), Some(identity)).unwrap();
    let refused = async {
        let mut stream = connect_with(api, tls).await?;
        stream.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: api\r\n\r\n").await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    // The handshake fails, or the server's refusal arrives as an alert: either way nothing is answered.
    if let Ok(answer) = refused.await {
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(harness::http_get(&api.to_string()), None, "plain HTTP gets no answer");
}

/// `kubeconfig` with `token` as its user's credentials instead of the client certificate.
fn with_token(kubeconfig: &str, token: &str) -> String {
    let kept = kubeconfig.lines().filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"));
    let lines: Vec<String> =
        kept.map(|l| if l == "  user:" { format!("  user:\n    token: {token}") } else { l.to_owned() }).collect();
    lines.join("\n")
}

/// Waits until `agent` has exited, and checks that its log says `why`.
async fn gives_up(agent: &mut Agent, why: &str) {
    eventually(Duration::from_secs(20), "the agent to give up", || {
        let exited = !agent.is_running();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(agent.log_text().contains(why), "{}", agent.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_joins_with_the_node_token_and_not_without_it() {
    let cluster = TestCluster::start(3).await;
    let client = harness::kube_client(&cluster, 0).await;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);

    // Phase 1: every replica wrote the same node token, readable by its owner only.
    let tokens: Vec<String> =
        cluster.local.members.iter().map(|m| std::fs::read_to_string(m.data_dir.join("node-token")).unwrap()).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cluster.local.node_token_file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Phase 2: an agent with a token whose secret is wrong is refused and registers nothing.
    let token = raftsman::security::join::NodeToken::parse(&tokens[0]).unwrap();
    let wrong = raftsman::security::join::NodeToken { secret: "0".repeat(64), ..token.clone() };
    let servers: Vec<_> = cluster.local.members.iter().map(|m| m.api_addr).collect();
    let mut impostor =
        Agent::start(&cluster, &servers, "impostor", &["--runtime", "fake", "--token", &wrong.to_string()]);
    gives_up(&mut impostor, "refused the node token").await;
    // A token of another cluster's authority is refused before its secret is sent.
    let other = Authority::create("raftsman-ca").unwrap();
    let foreign = raftsman::security::join::NodeToken::of(&other);
    let mut stranger =
        Agent::start(&cluster, &servers, "stranger", &["--runtime", "fake", "--token", &foreign.to_string()]);
    gives_up(&mut stranger, "does not have the node token's fingerprint").await;

    // Phase 3: with the token, the agent gets its node's certificate, keeps it, and registers its node.
    let mut agent = Agent::fake(&cluster, "joined", &[]);
    eventually(Duration::from_secs(30), "the joined node", || async { nodes.get_opt("joined").await.ok().flatten() })
        .await;
    let cert = std::fs::read_to_string(agent.data_dir.join("pki/node.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let user = raftsman::security::authn::User::of_certificate(&der).unwrap();
    assert_eq!((user.name.as_str(), user.groups.as_slice()), ("system:node:joined", &["system:nodes".to_owned()][..]));
    let key_mode = std::fs::metadata(agent.data_dir.join("pki/node.key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    for (name, a) in [("impostor", &impostor), ("stranger", &stranger)] {
        assert!(!a.data_dir.join("pki/node.crt").exists(), "{name} got a certificate");
        assert!(nodes.get_opt(name).await.unwrap().is_none(), "{name} registered");
    }

    // Phase 4: restarted, it uses the certificate it kept (it joins no more).
    agent.kill();
    agent.restart();
    eventually(Duration::from_secs(30), "the restarted agent to reach a replica", || async {
        (agent.logged("agent: sending requests to this api server").len() >= 2).then_some(())
    })
    .await;
    assert_eq!(agent.logged("agent: the node's certificate was signed").len(), 1, "joined once");
    assert_eq!(std::fs::read_to_string(agent.data_dir.join("pki/node.crt")).unwrap(), cert);

    // Phase 5: started on the same data dir under another name, it joins again as that node: what it kept
    // names the other one.
    agent.kill();
    let dir = agent.data_dir.to_string_lossy().into_owned();
    let renamed = Agent::start(&cluster, &servers, "renamed", &["--runtime", "fake", "--data-dir", &dir]);
    eventually(Duration::from_secs(30), "the renamed node", || async { nodes.get_opt("renamed").await.ok().flatten() })
        .await;
    let cert = std::fs::read_to_string(renamed.data_dir.join("pki/node.crt")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(raftsman::security::authn::User::of_certificate(&der).unwrap().name, "system:node:renamed");
    assert_eq!(renamed.logged("agent: the node's certificate was signed").len(), 1, "joined as renamed");
}

#[tokio::test]
async fn a_replica_refuses_to_start_without_api_tls_unless_told_to_run_insecure() {
    let binary = env!("CARGO_BIN_EXE_raftsman");
    let dir = tempfile::tempdir().unwrap();
    let ports = raftsman::cluster::local::free_ports(3).unwrap();
    let [peer, client, api] = [0, 1, 2].map(|i| format!("127.0.0.1:{}", ports[i]));
    let out = std::process::Command::new(binary)
        .args(["server", "--name", "n1", "--peer-addr", &peer, "--client-addr", &client, "--api-addr", &api])
        .arg("--insecure-peer")
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-cert-file") && stderr.contains("--insecure-api"), "{stderr}");
    assert!(!dir.path().join("n1").exists(), "nothing was written");
}

/// kubectl with `token` as its credentials, against the API of `admin`'s kubeconfig.
fn with_bearer(admin: &Kubectl, token: &str) -> Kubectl {
    let kubeconfig = std::fs::read_to_string(&admin.kubeconfig).unwrap();
    Kubectl::with_kubeconfig(&with_token(&kubeconfig, token))
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_authenticate_until_their_account_or_pod_is_gone() {
    let cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    admin.ok(&["create", "serviceaccount", "bot"]);

    // Phase 1: `kubectl create token` gives a token that is the account: authenticated, and allowed what its
    // bindings grant.
    let token = admin.ok(&["create", "token", "bot"]).trim().to_owned();
    let bot = with_bearer(&admin, &token);
    let whoami = bot.ok(&["auth", "whoami"]);
    assert!(whoami.contains("system:serviceaccount:default:bot"), "{whoami}");
    assert!(whoami.contains("system:serviceaccounts:default"), "{whoami}");
    let refused = bot.fails(&["get", "configmaps"]);
    assert!(refused.contains(r#"User "system:serviceaccount:default:bot" cannot list"#), "{refused}");
    admin.ok(&["create", "rolebinding", "bot-view", "--clusterrole=view", "--serviceaccount=default:bot"]);
    eventually(Duration::from_secs(20), "the account's binding to take effect", || async {
        bot.run(&["get", "configmaps"]).status.success().then_some(())
    })
    .await;

    // Phase 2: tokens that are not the API's, or not this cluster's, are refused.
    let elsewhere = admin.ok(&["create", "token", "bot", "--audience=vault"]).trim().to_owned();
    assert!(with_bearer(&admin, &elsewhere).fails(&["get", "configmaps"]).contains("You must be logged in"));
    let (head, rest) = token.split_once('.').unwrap();
    let tampered = format!("{head}.{}", rest.replacen(|c: char| c.is_ascii_alphabetic(), "A", 1));
    assert_ne!(tampered, token);
    assert!(with_bearer(&admin, &tampered).fails(&["get", "configmaps"]).contains("You must be logged in"));

    // Phase 3: a token bound to a pod ends with the pod; every token of an account ends with the account.
    admin.ok(&["run", "holder", "--image=busybox", "--restart=Never"]);
    let bound = admin.ok(&["create", "token", "bot", "--bound-object-kind=Pod", "--bound-object-name=holder"]);
    let holder = with_bearer(&admin, bound.trim());
    holder.ok(&["get", "configmaps"]);
    admin.ok(&["delete", "pod", "holder", "--grace-period=0", "--force"]);
    assert!(holder.fails(&["get", "configmaps"]).contains("You must be logged in"));
    bot.ok(&["get", "configmaps"]);
    admin.ok(&["delete", "serviceaccount", "bot"]);
    assert!(bot.fails(&["get", "configmaps"]).contains("You must be logged in"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_mount_their_accounts_token_and_namespaces_publish_the_cluster_authority() {
    let cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    let authority = cluster.local.authority().unwrap().cert_pem().to_owned();

    // A new namespace gets the authority's certificate from the leader; one deleted comes back.
    admin.ok(&["create", "namespace", "team"]);
    let published =
        || admin.run(&["-n", "team", "get", "configmap", "kube-root-ca.crt", "-o", r"jsonpath={.data.ca\.crt}"]);
    eventually(Duration::from_secs(20), "kube-root-ca.crt published", || async {
        (String::from_utf8_lossy(&published().stdout) == authority).then_some(())
    })
    .await;
    admin.ok(&["-n", "team", "delete", "configmap", "kube-root-ca.crt"]);
    eventually(Duration::from_secs(20), "kube-root-ca.crt published again", || async {
        (String::from_utf8_lossy(&published().stdout) == authority).then_some(())
    })
    .await;
    // One whose certificate was changed is set back.
    let forged = r#"{"data":{"ca.crt":"forged","extra":"x"}}"#;
    admin.ok(&["-n", "team", "patch", "configmap", "kube-root-ca.crt", "--type=merge", "-p", forged]);
    eventually(Duration::from_secs(20), "kube-root-ca.crt set back", || async {
        let data = admin.run(&["-n", "team", "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data}"]);
        let data: Value = serde_json::from_slice(&data.stdout).ok()?;
        (data == serde_json::json!({"ca.crt": authority.as_str()})).then_some(())
    })
    .await;
    let system = admin.ok(&["-n", "kube-system", "get", "configmap", "kube-root-ca.crt", "-o", "name"]);
    assert_eq!(system.trim(), "configmap/kube-root-ca.crt");

    // A pod mounts its account's token where clients look for it, unless it or its account says not to.
    admin.ok(&["-n", "team", "run", "mounted", "--image=busybox", "--restart=Never"]);
    let pod = admin.json(&["-n", "team", "get", "pod", "mounted", "-o", "json"]);
    let volume = &pod["spec"]["volumes"][0];
    assert!(volume["name"].as_str().unwrap().starts_with("kube-api-access-"), "{volume}");
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607, "{volume}");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt", "{volume}");
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount", "{mount}");
    assert_eq!((&mount["name"], &mount["readOnly"]), (&volume["name"], &serde_json::json!(true)));
    let overrides = r#"{"spec": {"automountServiceAccountToken": false}}"#;
    admin.ok(&["-n", "team", "run", "bare", "--image=busybox", "--restart=Never", "--overrides", overrides]);
    assert!(admin.json(&["-n", "team", "get", "pod", "bare", "-o", "json"])["spec"]["volumes"].is_null());
    admin.ok(&["-n", "team", "create", "serviceaccount", "quiet"]);
    admin.ok(&["-n", "team", "patch", "serviceaccount", "quiet", "-p", r#"{"automountServiceAccountToken": false}"#]);
    let quiet = r#"{"spec": {"serviceAccountName": "quiet"}}"#;
    admin.ok(&["-n", "team", "run", "quiet", "--image=busybox", "--restart=Never", "--overrides", quiet]);
    assert!(admin.json(&["-n", "team", "get", "pod", "quiet", "-o", "json"])["spec"]["volumes"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_serves_its_replaced_api_certificate_without_a_restart() {
    use raftsman::security::{pki, tls};
    use rustls::pki_types::pem::PemObject;
    let mut cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    let served = || async {
        let stream = connect_with(cluster.local.members[0].api_addr, harness::api::admin_tls(&cluster.local)).await;
        stream.unwrap().get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let pki_dir = cluster.local.pki.clone();
    let (cert, _) = pki::files(&pki_dir, &tls::api_files("n1"));
    let before = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap().to_vec();
    assert_eq!(served().await, before);

    // An operator puts a new certificate (and key) in place: it is served from then on, to kubectl too, while the
    // replica keeps running.
    let authority = cluster.local.authority().unwrap();
    let hosts = [cluster.local.members[0].api_addr.ip().to_string(), "localhost".to_owned()];
    let renewed = authority.issue("system:apiserver", &["system:masters"], &hosts, Usage::ServerAndClient).unwrap();
    pki::save(&pki_dir, &tls::api_files("n1"), &renewed).unwrap();
    let after = rustls::pki_types::CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap().to_vec();
    eventually(Duration::from_secs(10), "the new certificate served", || async {
        (served().await == after).then_some(())
    })
    .await;
    admin.ok(&["get", "namespaces"]);
    assert!(cluster.local.is_running(0), "no restart");
}
