"""The official Python `kubernetes` client against one raftsman replica: CRUD, patches and watches on pods and
deployments. Every step asserts on the state the API serves. Usage: client.py KUBECONFIG"""

import sys
import threading

from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()
NS = "default"
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def pod(name):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.36")]),
    )


# Phase 1: a watch started first sees the pod's whole life.
events = []


def watch_pods():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, NS, label_selector="app=py", timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()


watcher = threading.Thread(target=watch_pods)
watcher.start()

# Phase 2: pod CRUD with defaults, patches and a conflicting replace.
created = core.create_namespaced_pod(NS, pod("py-1"))
check(created.metadata.uid and created.metadata.resource_version, "create returns uid and resourceVersion")
check(created.spec.containers[0].image_pull_policy == "IfNotPresent", "container defaults applied")
check(created.status.phase == "Pending", "a new pod is Pending")
read = core.read_namespaced_pod("py-1", NS)
check(read.metadata.uid == created.metadata.uid, "read returns the created pod")
names = [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector="app=py").items]
check(names == ["py-1"], "list by label selector")
patched = core.patch_namespaced_pod("py-1", NS, {"metadata": {"labels": {"tier": "fe"}}})
check(patched.metadata.labels == {"app": "py", "tier": "fe"}, "strategic merge patch adds a label")
stale = read
stale.metadata.labels["stale"] = "yes"
try:
    core.replace_namespaced_pod("py-1", NS, stale)
    check(False, "replace with a stale resourceVersion must fail")
except ApiException as e:
    check(e.status == 409, "stale replace is a 409 Conflict")
check("stale" not in core.read_namespaced_pod("py-1", NS).metadata.labels, "a refused replace changed nothing")
try:
    core.create_namespaced_pod(NS, pod("py-1"))
    check(False, "creating twice must fail")
except ApiException as e:
    check(e.status == 409 and "AlreadyExists" in e.body, "second create is AlreadyExists")
core.delete_namespaced_pod("py-1", NS)
try:
    core.read_namespaced_pod("py-1", NS)
    check(False, "a deleted pod must be gone")
except ApiException as e:
    check(e.status == 404, "deleted pod is NotFound")
watcher.join(timeout=10)
# The label patch is one MODIFIED; the scheduler may add another (PodScheduled=False: this cluster has no nodes).
kinds = [t for t, _ in events]
check(kinds[0] == "ADDED" and kinds[-1] == "DELETED" and len(kinds) >= 3 and set(kinds[1:-1]) == {"MODIFIED"},
      f"watch saw the pod's life: {events}")

# Phase 3: deployments: create, scale, strategic patch keeps ports, JSON and merge patches, status.
deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="pyd"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "pyd"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "pyd"}),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="web", image="nginx:1.25", ports=[client.V1ContainerPort(container_port=80)]
                    )
                ]
            ),
        ),
    ),
)
d = apps.create_namespaced_deployment(NS, deployment)
check(d.metadata.generation == 1 and d.spec.strategy.type == "RollingUpdate", "deployment defaults")
apps.patch_namespaced_deployment_scale("pyd", NS, {"spec": {"replicas": 3}})
check(apps.read_namespaced_deployment_scale("pyd", NS).spec.replicas == 3, "scale subresource")
smp = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}
d = apps.patch_namespaced_deployment("pyd", NS, smp)
container = d.spec.template.spec.containers[0]
check(container.image == "nginx:1.26" and container.ports[0].container_port == 80, "SMP keeps the ports")
check(d.metadata.generation == 3, f"generation follows spec changes: {d.metadata.generation}")
d = apps.patch_namespaced_deployment("pyd", NS, [{"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}])
check(d.metadata.labels == {"x": "1"}, "JSON patch")
status = apps.read_namespaced_deployment_status("pyd", NS)
check(status.metadata.name == "pyd", "status subresource reads")

# Phase 4: server-side apply through the dynamic client (legacy discovery).
dyn = dynamic.DynamicClient(client.ApiClient())
deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
manifest = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "ssa1", "namespace": NS},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "ssa1"}},
        "template": {
            "metadata": {"labels": {"app": "ssa1"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
        },
    },
}
applied = deployments.server_side_apply(body=manifest, field_manager="py", namespace=NS)
check(applied.spec.replicas == 2, "server-side apply creates")
managers = [m["manager"] for m in applied.to_dict()["metadata"]["managedFields"]]
check("py" in managers, f"the field manager is recorded: {managers}")

# Phase 5: foreground deletion, waited for with a watch.
apps.delete_namespaced_deployment("pyd", NS, propagation_policy="Foreground")
# Watched from the list's revision, so a deletion finished before the watch starts is not waited for.
listed = apps.list_namespaced_deployment(NS, field_selector="metadata.name=pyd")
gone = not listed.items
for event in [] if gone else watch.Watch().stream(
    apps.list_namespaced_deployment, NS, field_selector="metadata.name=pyd", timeout_seconds=20,
    resource_version=listed.metadata.resource_version,
):
    if event["type"] == "DELETED":
        gone = True
        break
check(gone or not apps.list_namespaced_deployment(NS, field_selector="metadata.name=pyd").items, "pyd deleted")
apps.delete_namespaced_deployment("ssa1", NS)

# Phase 6: delete a collection by label; what the selector leaves out stays.
for i in range(3):
    core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"bulk-{i}", labels={"bulk": "yes"})))
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="keep", labels={"bulk": "no"})))
core.delete_collection_namespaced_config_map(NS, label_selector="bulk=yes")
left = sorted(c.metadata.name for c in core.list_namespaced_config_map(NS, field_selector="metadata.name!=kube-root-ca.crt").items)
check(left == ["keep"], f"deletecollection removed only the selected objects: {left}")

print(f"python client: {checks} checks passed")
