//! Unit tests of the pure pod sync: the plan, the back-off and the status.

use super::*;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn healthy(_: &ContainerReport) -> Health {
    Health::UNPROBED
}

fn pod(uid: &str, policy: RestartPolicy, containers: &[&str]) -> DesiredPod {
    DesiredPod {
        pod: PodRef { uid: uid.into(), namespace: "default".into(), name: format!("pod-{uid}") },
        sandbox: SandboxSpec::default(),
        restart_policy: policy,
        init_containers: Vec::new(),
        containers: containers
            .iter()
            .map(|c| ContainerSpec {
                name: (*c).into(),
                image: "busybox".into(),
                command: vec!["sleep".into(), "1d".into()],
                args: Vec::new(),
                env: vec![],
                working_dir: None,
                ..Default::default()
            })
            .collect(),
        deleting: None,
        grace: Duration::from_secs(30),
        terminal: false,
        waiting: BTreeMap::new(),
    }
}

/// The plan's view of a pod that refers to nothing and whose images are there.
fn desired_alone(pod: &Pod) -> DesiredPod {
    let failures = HashMap::new();
    let context = PodContext {
        sources: &Sources::default(),
        volumes_dir: PathBuf::from("/v"),
        volumes_missing: None,
        image_failures: &failures,
        dns: None,
        service_variables: &[],
        now: at(0),
    };
    desired_pod(pod, &context)
}

fn running(uid: &str, name: &str, attempt: u32, started: i64) -> ContainerReport {
    ContainerReport {
        pod_uid: uid.into(),
        name: name.into(),
        attempt,
        state: ContainerState::Running { started_at: at(started) },
        ids: None,
    }
}

fn exited(uid: &str, name: &str, attempt: u32, code: i32, started: i64, finished: i64) -> ContainerReport {
    ContainerReport {
        pod_uid: uid.into(),
        name: name.into(),
        attempt,
        state: ContainerState::Exited {
            exit_code: code,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: None,
            started_at: at(started),
            finished_at: at(finished),
        },
        ids: None,
    }
}

fn starts(actions: &[Action]) -> Vec<(String, String, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { pod, container, attempt, .. } => Some((pod.uid.clone(), container.name.clone(), *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn new_pods_start_every_container_once() {
    let desired = [pod("a", RestartPolicy::Always, &["x", "y"])];
    let actions = plan(&desired, &[], &healthy, at(0));
    assert_eq!(starts(&actions), vec![("a".into(), "x".into(), 0), ("a".into(), "y".into(), 0)]);
    let reports = [running("a", "x", 0, 0), running("a", "y", 0, 0)];
    assert!(plan(&desired, &reports, &healthy, at(1)).is_empty(), "running containers are left alone");
}

#[test]
fn back_off_is_upstreams() {
    assert_eq!(restart_backoff(0, Duration::ZERO), Duration::ZERO, "the first restart is at once");
    assert_eq!(restart_backoff(1, Duration::ZERO), Duration::from_secs(10));
    assert_eq!(restart_backoff(2, Duration::ZERO), Duration::from_secs(20));
    assert_eq!(restart_backoff(5, Duration::ZERO), Duration::from_secs(160));
    assert_eq!(restart_backoff(6, Duration::ZERO), Duration::from_secs(300));
    assert_eq!(restart_backoff(600, Duration::ZERO), Duration::from_secs(300), "no overflow");
    assert_eq!(restart_backoff(4, Duration::from_secs(600)), Duration::ZERO, "a long run resets it");
}

#[test]
fn restart_policies() {
    let ok = [exited("a", "x", 0, 0, 0, 1)];
    let failed = [exited("a", "x", 0, 3, 0, 1)];
    for (policy, on_ok, on_failure) in [
        (RestartPolicy::Always, true, true),
        (RestartPolicy::OnFailure, false, true),
        (RestartPolicy::Never, false, false),
    ] {
        let desired = [pod("a", policy, &["x"])];
        assert_eq!(!starts(&plan(&desired, &ok, &healthy, at(2))).is_empty(), on_ok, "{policy:?} after exit 0");
        assert_eq!(
            !starts(&plan(&desired, &failed, &healthy, at(2))).is_empty(),
            on_failure,
            "{policy:?} after exit 3"
        );
    }
}

#[test]
fn crash_loop_waits_its_back_off() {
    let desired = [pod("a", RestartPolicy::Always, &["x"])];
    let reports = [exited("a", "x", 2, 1, 100, 101)];
    // Attempt 2 ended at 101: the third restart waits 20 s.
    assert!(plan(&desired, &reports, &healthy, at(120)).is_empty());
    assert_eq!(starts(&plan(&desired, &reports, &healthy, at(121))), vec![("a".into(), "x".into(), 3)]);
    assert_eq!(
        next(RestartPolicy::Always, Some(&reports[0]), at(110)),
        Next::BackOff { until: at(121), backoff: Duration::from_secs(20) }
    );
}

#[test]
fn deletion_stops_then_deletes() {
    let mut deleting = pod("a", RestartPolicy::Always, &["x", "y"]);
    deleting.deleting = Some(Duration::from_secs(7));
    let reports = [running("a", "x", 0, 0), exited("a", "y", 0, 0, 0, 1)];
    let actions = plan(std::slice::from_ref(&deleting), &reports, &healthy, at(5));
    assert_eq!(
        actions,
        vec![Action::Stop {
            pod_uid: "a".into(),
            container: "x".into(),
            grace: Duration::from_secs(7),
            pre_stop: None
        }]
    );
    let reports = [exited("a", "x", 0, 137, 0, 6), exited("a", "y", 0, 0, 0, 1)];
    let actions = plan(std::slice::from_ref(&deleting), &reports, &healthy, at(6));
    assert_eq!(actions, vec![Action::Delete { pod: deleting.pod.clone() }]);
    // Nothing was ever started: deleted at once, nothing started.
    assert_eq!(
        plan(std::slice::from_ref(&deleting), &[], &healthy, at(0)),
        vec![Action::Delete { pod: deleting.pod.clone() }]
    );
}

#[test]
fn orphans_are_stopped_then_removed_and_terminal_pods_left_alone() {
    let reports = [running("gone", "x", 0, 0), exited("gone", "y", 0, 0, 0, 1), exited("done", "x", 0, 0, 0, 1)];
    let actions = plan(&[], &reports[..2], &healthy, at(5));
    assert_eq!(
        actions,
        vec![Action::Stop {
            pod_uid: "gone".into(),
            container: "x".into(),
            grace: Duration::from_secs(limits::AGENT_ORPHAN_GRACE_SECS),
            pre_stop: None,
        }]
    );
    assert_eq!(plan(&[], &reports[1..2], &healthy, at(5)), vec![Action::Remove { pod_uid: "gone".into() }]);
    let mut done = pod("done", RestartPolicy::Always, &["x"]);
    done.terminal = true;
    assert!(plan(&[done], &reports[2..], &healthy, at(5)).is_empty(), "a terminal pod neither restarts nor goes away");
}

fn placement() -> Placement {
    Placement { host_ip: "127.0.0.1".into(), pod_ip: Some("10.244.0.7".into()), runtime: "fake" }
}

fn condition_of<'a>(status: &'a PodStatus, kind: &str) -> &'a PodCondition {
    status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == kind).unwrap()
}

#[test]
fn status_of_a_running_pod() {
    let desired = pod("a", RestartPolicy::Always, &["y", "x"]);
    let now = ts("2026-01-01T00:00:10.7Z");
    let pending = pod_status(&desired, None, &[], &placement(), &healthy, now);
    assert_eq!(pending.phase.as_deref(), Some("Pending"));
    let waiting = pending.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    assert_eq!(condition_of(&pending, "Ready").reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(condition_of(&pending, "Ready").message.as_deref(), Some("containers with unready status: [x y]"));
    assert_eq!(condition_of(&pending, "PodScheduled").status, "True");

    let reports = [running("a", "x", 0, 1), running("a", "y", 0, 1)];
    let refs: Vec<&ContainerReport> = reports.iter().collect();
    let later = ts("2026-01-01T00:00:11Z");
    let status = pod_status(&desired, Some(&pending), &refs, &placement(), &healthy, later);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let kinds: Vec<(&str, &str)> =
        status.conditions.as_ref().unwrap().iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True")
        ]
    );
    assert_eq!(condition_of(&status, "Ready").last_transition_time, Some(Time(later)));
    assert_eq!(
        condition_of(&status, "Initialized").last_transition_time,
        Some(Time(ts("2026-01-01T00:00:10Z"))),
        "unchanged: kept"
    );
    let names: Vec<&str> = status.container_statuses.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["x", "y"], "sorted by name");
    let x = &status.container_statuses.as_ref().unwrap()[0];
    assert!(x.ready && x.started == Some(true) && x.restart_count == 0);
    assert_eq!(x.container_id.as_deref(), Some("fake://a-x-0"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.7"));
    assert_eq!(status.host_ips.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(status.start_time, pending.start_time, "startTime is kept");
    // Nothing changed: the same status again (so no write).
    assert_eq!(pod_status(&desired, Some(&status), &refs, &placement(), &healthy, ts("2026-01-01T00:00:30Z")), status);
}

#[test]
fn status_of_completed_pods() {
    for (code, phase, reason) in [(0, "Succeeded", "Completed"), (3, "Failed", "Error")] {
        let desired = pod("a", RestartPolicy::Never, &["x"]);
        let reports = [exited("a", "x", 0, code, 1, 2)];
        let status = pod_status(&desired, None, &[&reports[0]], &placement(), &healthy, at(3));
        assert_eq!(status.phase.as_deref(), Some(phase));
        let terminated = status.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (code, Some(reason)));
        assert_eq!(condition_of(&status, "Ready").reason.as_deref(), Some("PodCompleted"));
    }
    // OnFailure: a failure restarts (Running), success ends it.
    let desired = pod("a", RestartPolicy::OnFailure, &["x"]);
    let failed = [exited("a", "x", 0, 1, 1, 2)];
    assert_eq!(
        pod_status(&desired, None, &[&failed[0]], &placement(), &healthy, at(3)).phase.as_deref(),
        Some("Running")
    );
}

#[test]
fn status_of_a_crash_loop() {
    let desired = pod("a", RestartPolicy::Always, &["x"]);
    let reports = [exited("a", "x", 1, 2, 10, 11)];
    let status = pod_status(&desired, None, &[&reports[0]], &placement(), &healthy, at(12));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let x = &status.container_statuses.as_ref().unwrap()[0];
    let waiting = x.state.clone().unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(waiting.message.as_deref(), Some("back-off 10s restarting failed container=x pod=pod-a_default(a)"));
    assert_eq!(x.last_state.clone().unwrap().terminated.unwrap().exit_code, 2);
    assert_eq!(x.restart_count, 1);
    // Restarted: running, with the last attempt's end as its last state.
    let again = [running("a", "x", 2, 21)];
    let status = pod_status(&desired, Some(&status), &[&again[0]], &placement(), &healthy, at(22));
    let x = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(x.restart_count, 2);
    assert!(x.state.clone().unwrap().running.is_some());
    assert_eq!(x.last_state.clone().unwrap().terminated.unwrap().exit_code, 2);
}

#[test]
fn env_values_come_from_the_pod_and_the_containers_resources() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{
            "name": "c",
            "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}},
            "env": [
                {"name": "PLAIN", "value": "v"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['none']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            ],
        }]},
        "status": {"hostIP": "10.0.0.1"},
    }))
    .unwrap();
    let desired = desired_alone(&pod);
    let env: Vec<(&str, &str)> = desired.containers[0].env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        env,
        [
            ("PLAIN", "v"),
            ("NAME", "p"),
            ("APP", "web"),
            ("NONE", ""),
            ("NODE", "n1"),
            ("HOST", "10.0.0.1"),
            ("CPU", "2"),
            ("MEM", "64")
        ]
    );
    assert_eq!(desired.containers[0].memory_limit, Some(64 << 20));
    assert_eq!(desired.containers[0].cpu_limit_millis, Some(1500));
}

#[test]
fn a_container_waiting_for_its_config_is_not_started_and_says_why() {
    let mut blocked = pod("u1", RestartPolicy::Always, &["app", "side"]);
    let why = Waiting { reason: "CreateContainerConfigError", message: Some("configmap \"cfg\" not found".into()) };
    blocked.waiting.insert("app".into(), why);
    let actions = plan(std::slice::from_ref(&blocked), &[], &healthy, at(0));
    let started: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { container, .. } => Some(container.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["side"]);

    let placement = Placement { host_ip: "10.0.0.1".into(), pod_ip: None, runtime: "fake" };
    let status = pod_status(&blocked, None, &[], &placement, &healthy, at(0));
    let app = &status.container_statuses.as_ref().unwrap()[0];
    let waiting = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(waiting.message.as_deref(), Some("configmap \"cfg\" not found"));
    assert_eq!(status.phase.as_deref(), Some("Pending"));

    // A container that exited and is due for a restart waits too, and shows its last end.
    let ended = exited("u1", "app", 0, 1, 0, 5);
    let status = pod_status(&blocked, None, &[&ended], &placement, &healthy, at(6));
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert_eq!(app.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert!(plan(std::slice::from_ref(&blocked), &[ended], &healthy, at(6))
        .iter()
        .all(|a| !matches!(a, Action::Start { container, .. } if container.name == "app")));
}

#[test]
fn command_and_args_are_expanded_with_the_environment() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"containers": [{"name": "c", "command": ["echo", "$(GREETING)"], "args": ["$(WHO)", "$$(WHO)"],
            "env": [{"name": "GREETING", "value": "hello"}, {"name": "WHO", "value": "world"}]}]},
    }))
    .unwrap();
    let desired = desired_alone(&pod);
    assert_eq!(desired.containers[0].command, ["echo", "hello"]);
    assert_eq!(desired.containers[0].args, ["world", "$(WHO)"]);
    assert!(desired.waiting.is_empty());
}

#[test]
fn the_pull_policy_defaults_by_the_tag() {
    assert_eq!(pull_policy(None, "busybox"), PullPolicy::Always);
    assert_eq!(pull_policy(None, "busybox:latest"), PullPolicy::Always);
    assert_eq!(pull_policy(None, "localhost:5000/busybox"), PullPolicy::Always);
    assert_eq!(pull_policy(None, "localhost:5000/busybox:1.36"), PullPolicy::IfNotPresent);
    assert_eq!(pull_policy(None, "busybox@sha256:abc"), PullPolicy::IfNotPresent);
    assert_eq!(pull_policy(Some("Never"), "busybox"), PullPolicy::Never);
}

#[test]
fn init_containers_run_one_after_the_other_to_success_before_the_containers() {
    let mut p = pod("u1", RestartPolicy::Always, &["app"]);
    p.init_containers = pod("u1", RestartPolicy::Always, &["first", "second"]).containers;
    let placement = Placement { host_ip: "10.0.0.1".into(), pod_ip: None, runtime: "fake" };
    let started = |reports: &[ContainerReport], now| -> Vec<String> {
        plan(std::slice::from_ref(&p), reports, &healthy, now)
            .into_iter()
            .filter_map(|a| match a {
                Action::Start { container, attempt, .. } => Some(format!("{}/{attempt}", container.name)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(started(&[], at(0)), ["first/0"]);
    let status = pod_status(&p, None, &[], &placement, &healthy, at(0));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("PodInitializing"));
    let initialized = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Initialized").unwrap();
    assert_eq!(initialized.status, "False");
    assert_eq!(initialized.message.as_deref(), Some("containers with incomplete status: [first second]"));

    // A failed init container is restarted (Always acts as OnFailure), with back-off; nothing after it starts.
    let failed = exited("u1", "first", 0, 1, 0, 1);
    assert_eq!(started(std::slice::from_ref(&failed), at(2)), ["first/1"]);
    let failed_again = exited("u1", "first", 1, 1, 2, 3);
    assert_eq!(started(std::slice::from_ref(&failed_again), at(4)), Vec::<String>::new());

    // Once each has succeeded in turn, the containers start; the init containers are ready and completed.
    let first = exited("u1", "first", 2, 0, 20, 21);
    assert_eq!(started(std::slice::from_ref(&first), at(22)), ["second/0"]);
    let second = exited("u1", "second", 0, 0, 22, 23);
    let reports = [first.clone(), second.clone()];
    assert_eq!(started(&reports, at(24)), ["app/0"]);
    let app = running("u1", "app", 0, 24);
    let status = pod_status(&p, None, &[&first, &second, &app], &placement, &healthy, at(25));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let inits = status.init_container_statuses.as_ref().unwrap();
    assert!(inits.iter().all(|s| s.ready), "{inits:?}");
    assert_eq!(inits[0].restart_count, 2);
    let initialized = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Initialized").unwrap();
    assert_eq!(initialized.status, "True");
    // A container that has started keeps the pod initialized, whatever became of the init containers.
    assert_eq!(started(std::slice::from_ref(&app), at(26)), Vec::<String>::new());

    // With restartPolicy Never, a failed init container fails the pod.
    let mut never = p.clone();
    never.restart_policy = RestartPolicy::Never;
    assert!(plan(std::slice::from_ref(&never), std::slice::from_ref(&failed), &healthy, at(2)).is_empty());
    let status = pod_status(&never, None, &[&failed], &placement, &healthy, at(2));
    assert_eq!(status.phase.as_deref(), Some("Failed"));
}

#[test]
fn a_containers_security_context_fills_in_from_its_pods() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000, "supplementalGroups": [4000]},
            "containers": [
                {"name": "own", "securityContext": {"runAsUser": 1001, "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}},
                {"name": "inherits"},
                {"name": "root", "securityContext": {"runAsUser": 0, "runAsNonRoot": true}}]},
    }))
    .unwrap();
    let desired = desired_alone(&pod);
    let own = &desired.containers[0].security;
    assert_eq!((own.user, own.group), (Some(1001), Some(2000)));
    assert_eq!(own.supplemental_groups, [4000, 3000]);
    assert!(own.read_only_root_filesystem && own.no_new_privileges && !own.privileged);
    assert_eq!(
        (own.add_capabilities.as_slice(), own.drop_capabilities.as_slice()),
        (&["NET_ADMIN".to_string()][..], &["ALL".to_string()][..])
    );
    let inherits = &desired.containers[1].security;
    assert_eq!((inherits.user, inherits.group), (Some(1000), Some(2000)));
    assert!(!inherits.read_only_root_filesystem && !inherits.no_new_privileges);
    let refused = &desired.waiting["root"];
    assert_eq!(refused.reason, "CreateContainerConfigError");
    assert_eq!(
        refused.message.as_deref(),
        Some("container's runAsUser breaks non-root policy (pod: \"p\", container: root)")
    );
    assert!(!desired.waiting.contains_key("own") && !desired.waiting.contains_key("inherits"));
}
