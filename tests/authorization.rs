//! Authorization on real replicas with real kubectl: RBAC's default roles bound in one namespace grant what
//! they say there and nothing elsewhere (a `view` user gets 403 on writes, and cannot read, list or watch
//! another namespace); no one binds or grants what they do not hold; `kubectl auth can-i` and `whoami`
//! answer; `--as` impersonates only for those allowed to; an agent's own credentials act only for its node; a
//! user over its request rate or its watches gets 429, and no one else does.

mod harness;

use std::time::Duration;

use harness::agent::Agent;
use harness::kubectl::Kubectl;
use harness::{eventually, TestCluster};
use raftsman::security::{kubeconfig, pki::Issued};

/// Waits until `k` may run `args` (a binding reaches the replica's caches a moment after it is written).
async fn eventually_allowed(k: &Kubectl, args: &[&str]) -> String {
    eventually(Duration::from_secs(20), &format!("kubectl {} to be allowed", args.join(" ")), || async {
        let out = k.run(args);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_bound_in_a_namespace_grant_only_there_and_only_what_they_say() {
    let cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    for ns in ["a", "b"] {
        admin.ok(&["create", "namespace", ns]);
        admin.ok(&["-n", ns, "create", "configmap", "c", &format!("--from-literal=in={ns}")]);
    }
    admin.ok(&["-n", "a", "create", "secret", "generic", "s", "--from-literal=k=v"]);
    // The default roles are there, as kubectl shows them.
    let roles = eventually_allowed(&admin, &["get", "clusterroles", "view", "edit", "admin", "cluster-admin"]).await;
    assert_eq!(roles.lines().count(), 5, "{roles}");

    // Phase 1: a user with no binding is authenticated and may do nothing but ask.
    let vera = Kubectl::as_user(&cluster, 0, "vera", &[]);
    let refused = vera.fails(&["-n", "a", "get", "configmaps"]);
    assert!(
        refused.contains(r#"configmaps is forbidden: User "vera" cannot list resource "configmaps" in API group "" in the namespace "a""#),
        "{refused}"
    );
    assert_eq!(vera.run(&["auth", "can-i", "list", "configmaps", "-n", "a"]).stdout, b"no\n");

    // Phase 2: view in namespace a: reads there, nothing else.
    admin.ok(&["-n", "a", "create", "rolebinding", "vera-view", "--clusterrole=view", "--user=vera"]);
    let listed = eventually_allowed(&vera, &["-n", "a", "get", "configmaps", "c", "-o", "jsonpath={.data.in}"]).await;
    assert_eq!(listed, "a");
    assert_eq!(vera.ok(&["auth", "can-i", "list", "configmaps", "-n", "a"]), "yes\n");
    let no = vera.run(&["auth", "can-i", "create", "configmaps", "-n", "a"]);
    assert_eq!((no.status.code(), no.stdout.as_slice()), (Some(1), &b"no\n"[..]));
    let write = vera.fails(&["-n", "a", "create", "configmap", "mine", "--from-literal=k=v"]);
    assert!(write.contains(r#"User "vera" cannot create resource "configmaps""#), "{write}");
    assert!(vera.fails(&["-n", "a", "delete", "configmap", "c"]).contains("forbidden"));
    assert!(vera.fails(&["-n", "a", "get", "secret", "s"]).contains("forbidden"), "view reads no secrets");
    for args in [
        &["-n", "b", "get", "configmaps"][..],
        &["-n", "b", "get", "configmap", "c"],
        &["get", "configmaps", "--all-namespaces"],
        &["get", "--raw", "/api/v1/namespaces/b/configmaps?watch=true&timeoutSeconds=1"],
        &["-n", "b", "get", "configmaps", "-l", "anything=else"],
    ] {
        let refused = vera.fails(args);
        assert!(refused.contains("forbidden"), "kubectl {}: {refused}", args.join(" "));
    }
    assert_eq!(admin.json(&["-n", "a", "get", "configmap", "c"])["data"]["in"], "a", "refused writes changed nothing");
    let rules = vera.ok(&["-n", "a", "auth", "can-i", "--list"]);
    let configmaps = rules.lines().find(|l| l.starts_with("configmaps ")).unwrap_or_default();
    assert!(configmaps.contains("[get list watch]"), "{rules}");
    assert!(!rules.lines().any(|l| l.starts_with("secrets ")), "{rules}");
    let whoami = vera.ok(&["auth", "whoami"]);
    assert!(whoami.contains("vera") && whoami.contains("system:authenticated"), "{whoami}");

    // Phase 3: impersonation: the admin may act as vera (and is then refused as vera); vera may not act as
    // anyone.
    assert_eq!(admin.ok(&["auth", "can-i", "list", "configmaps", "-n", "a", "--as=vera"]), "yes\n");
    let as_vera = admin.fails(&["-n", "b", "get", "configmaps", "--as=vera"]);
    assert!(as_vera.contains(r#"User "vera" cannot list"#), "{as_vera}");
    let impersonating = vera.fails(&["-n", "a", "get", "configmaps", "--as=system:admin", "--as-group=system:masters"]);
    assert!(impersonating.contains(r#"cannot impersonate resource "users""#), "{impersonating}");

    // Phase 4: an admin of namespace a binds roles there, but never one granting more than it holds.
    let ada = Kubectl::as_user(&cluster, 0, "ada", &[]);
    admin.ok(&["-n", "a", "create", "rolebinding", "ada-admin", "--clusterrole=admin", "--user=ada"]);
    eventually_allowed(&ada, &["-n", "a", "get", "rolebindings"]).await;
    ada.ok(&["-n", "a", "create", "rolebinding", "sam-edit", "--clusterrole=edit", "--user=sam"]);
    let escalation =
        ada.fails(&["-n", "a", "create", "rolebinding", "sam-all", "--clusterrole=cluster-admin", "--user=sam"]);
    assert!(escalation.contains("is attempting to bind permissions it does not hold"), "{escalation}");
    let role = ada.fails(&["-n", "a", "create", "role", "nodes", "--verb=get", "--resource=nodes"]);
    assert!(role.contains("is attempting to grant permissions it does not hold"), "{role}");
    ada.ok(&["-n", "a", "create", "role", "secrets", "--verb=get", "--resource=secrets"]);
    let bindings = admin.ok(&["-n", "a", "get", "rolebindings", "-o", "name"]);
    assert!(!bindings.contains("sam-all") && bindings.contains("sam-edit"), "{bindings}");
    assert!(ada.fails(&["-n", "b", "get", "configmaps"]).contains("forbidden"));

    // Phase 5: a binding deleted takes its grant with it.
    admin.ok(&["-n", "a", "delete", "rolebinding", "vera-view"]);
    eventually(Duration::from_secs(20), "vera's grant to end with her binding", || async {
        (!vera.run(&["-n", "a", "get", "configmaps"]).status.success()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_acts_only_for_its_own_node() {
    let cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    let agent = Agent::fake(&cluster, "n1", &[]);
    eventually_allowed(&admin, &["get", "node", "n1"]).await;
    admin.ok(&["create", "secret", "generic", "for-n1", "--from-literal=k=v"]);
    admin.ok(&["create", "secret", "generic", "for-n2", "--from-literal=k=v"]);
    let pod = |name: &str, node: &str, secret: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  containers:\n  \
             - {{name: c, image: busybox, env: [{{name: S, valueFrom: {{secretKeyRef: {{name: {secret}, key: k}}}}}}]}}\n"
        )
    };
    admin.ok(&["apply", "-f", &admin.manifest("p1.yaml", &pod("p1", "n1", "for-n1"))]);
    admin.ok(&["apply", "-f", &admin.manifest("p2.yaml", &pod("p2", "n2", "for-n2"))]);
    admin.ok(&["label", "node", "n1", "seen=before"]);

    // The agent's own credentials, as it keeps them.
    let pki = agent.data_dir.join("pki");
    let read = |file: &str| std::fs::read_to_string(pki.join(file)).unwrap();
    let issued = Issued { cert_pem: read("node.crt"), key_pem: read("node.key") };
    let server = format!("https://{}", cluster.local.members[0].api_addr);
    let node = Kubectl::with_kubeconfig(&kubeconfig::render(&server, Some(&read("ca.crt")), Some(&issued), "n1"));

    // Its pods' secrets, its node and its pods: yes.
    let secret = eventually_allowed(&node, &["get", "secret", "for-n1", "-o", "jsonpath={.data.k}"]).await;
    assert_eq!(secret, "dg==");
    node.ok(&["label", "node", "n1", "seen=after", "--overwrite"]);
    assert_eq!(admin.json(&["get", "node", "n1"])["metadata"]["labels"]["seen"], "after");
    // Another node's pods' secrets, any list of secrets, another Node, another node's pods: no.
    let other = node.fails(&["get", "secret", "for-n2"]);
    assert!(other.contains(r#"User "system:node:n1" cannot get resource "secrets""#), "{other}");
    assert!(other.contains("no relationship found between node"), "{other}");
    assert!(node.fails(&["get", "secrets"]).contains("forbidden"));
    let n2 = admin.manifest("n2.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n");
    admin.ok(&["apply", "-f", &n2]);
    assert!(node.fails(&["label", "node", "n2", "taken=yes"]).contains("forbidden"));
    assert!(node.fails(&["delete", "node", "n2"]).contains("forbidden"));
    let n3 = admin.manifest("n3.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n3}\n");
    let created = node.fails(&["create", "-f", &n3]);
    assert!(created.contains(r#"may not create nodes "n3" of another node"#), "{created}");
    assert!(node.fails(&["delete", "pod", "p2", "--grace-period=0"]).contains("forbidden"));
    assert!(node.fails(&["create", "configmap", "x", "--from-literal=k=v"]).contains("forbidden"));
    let nodes = admin.ok(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("n3") && admin.json(&["get", "node", "n2"])["metadata"]["labels"]["taken"].is_null());
    assert_eq!(admin.ok(&["get", "pod", "p2", "-o", "name"]).trim(), "pod/p2");

    // Tokens of the account its pods run as, bound to those pods: yes; bound to another node's pod, or to
    // nothing: no.
    let token = node.ok(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "p1"]);
    let whoami = Kubectl::with_token(&server, &read("ca.crt"), token.trim());
    let whoami = whoami.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(whoami, "system:serviceaccount:default:default");
    let other = node.fails(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "p2"]);
    assert!(other.contains("may only request tokens bound to pods bound to it"), "{other}");
    assert!(node.fails(&["create", "token", "default"]).contains("may only request tokens bound to a pod"));
    admin.ok(&["create", "serviceaccount", "builder"]);
    let unrelated =
        node.fails(&["create", "token", "builder", "--bound-object-kind", "Pod", "--bound-object-name", "p1"]);
    assert!(unrelated.contains("no relationship found between node"), "{unrelated}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_over_its_rate_or_its_watches_gets_429_and_others_do_not() {
    use futures::StreamExt;

    let cluster = TestCluster::start(1).await;
    let admin = Kubectl::for_replica(&cluster, 0).await;
    admin.ok(&["create", "rolebinding", "readers", "--clusterrole=view", "--user=busy", "--user=calm"]);
    let api = cluster.local.members[0].api_addr;
    let url: hyper::Uri = format!("https://{api}/api/v1/namespaces/default/configmaps").parse().unwrap();
    let client_of =
        |user: &str| harness::api::https_client_with(harness::api::tls_as(&cluster.local, Some((user, &[]))));
    let (busy, calm, root) = (client_of("busy"), client_of("calm"), harness::api::https_client(&cluster));
    let get = |client: &harness::api::HttpsClient, uri: hyper::Uri| client.get(uri);
    eventually(Duration::from_secs(20), "the binding to reach the caches", || async {
        (get(&calm, url.clone()).await.ok()?.status() == 200).then_some(())
    })
    .await;

    // Phase 1: twice the burst at once from one user: some are refused with Retry-After; another user and the
    // admin are served meanwhile.
    let burst = 2 * raftsman::limits::API_USER_REQUEST_BURST as usize;
    let answers: Vec<_> =
        futures::stream::iter((0..burst).map(|_| get(&busy, url.clone()))).buffer_unordered(8).collect().await;
    let codes: Vec<u16> = answers.iter().map(|a| a.as_ref().expect("an answer").status().as_u16()).collect();
    let refused: Vec<_> = answers.iter().flatten().filter(|a| a.status() == 429).collect();
    assert!(!refused.is_empty() && codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");
    assert!(refused.iter().all(|a| a.headers().get("retry-after").is_some()));
    assert_eq!(get(&calm, url.clone()).await.unwrap().status(), 200);
    assert_eq!(get(&root, url.clone()).await.unwrap().status(), 200);

    // Phase 2: a user's watches are bounded; one given back makes room for another.
    let watch: hyper::Uri = format!("{url}?watch=true").parse().unwrap();
    let max = raftsman::limits::API_USER_WATCHES_MAX;
    let mut open = Vec::new();
    for _ in 0..max {
        let response = get(&calm, watch.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        open.push(response);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&calm, watch.clone()).await.unwrap().status(), 429);
    assert_eq!(get(&root, watch.clone()).await.unwrap().status(), 200, "the admin is exempt");
    open.pop();
    eventually(Duration::from_secs(10), "a watch slot to be given back", || async {
        (get(&calm, watch.clone()).await.ok()?.status() == 200).then_some(())
    })
    .await;
}
