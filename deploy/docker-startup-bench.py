#!/usr/bin/env python3
"""Pod startup latency on one Docker node, two ways, each beside the Docker CLI doing the same containers in the
same sitting (a sandbox from the agent's pause image on the agent's pod network, and the app joined to it):

- burst: a Deployment of N replicas of an image present on the host, from the Deployment's creation (and from
  each pod's first appearance) to each pod Running and Ready, as a watch on one replica sees it; the CLI does
  the N pairs 16 at a time;
- steady: N bare pods created at RATE pods a second, each timed from its own creation to Running and Ready
  (upstream's pod startup SLO is measured so, below the node's throughput); the CLI starts a pair at the same
  rate, each timed from its first command to its app container started.

With the agent's CPU time and resident memory while it starts them. Prints a table.

Usage: docker-startup-bench.py KUBECONFIG AGENT_PID IMAGE [PODS [RATE]]
(deploy/dev.sh bench-docker starts the cluster, the agent and the image, then runs this.)
"""

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

from kubernetes import client, config, watch


def agent_usage(pid):
    """CPU seconds so far and resident bytes now of the agent process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def pod_body(name, image, labels):
    """A pod (or, without a name, a pod template) of one container sleeping in `image`."""
    metadata = {"labels": labels, **({"name": name} if name else {})}
    return {
        "metadata": metadata,
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "100000"]}],
        },
    }


class ReadyWatch:
    """When each pod of a label selector was first seen and first Running and Ready, by a watch on one replica."""

    def __init__(self, core, selector, count):
        self.seen_at, self.ready_at, self.count = {}, {}, count
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.follow, args=(core, selector), daemon=True)
        self.thread.start()
        time.sleep(1)

    def follow(self, core, selector):
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_pod, "default", label_selector=selector, timeout_seconds=600):
            pod, now = event["object"], time.monotonic()
            self.seen_at.setdefault(pod.metadata.name, now)
            conditions = (pod.status and pod.status.conditions) or []
            if pod.status and pod.status.phase == "Running" and any(
                c.type == "Ready" and c.status == "True" for c in conditions
            ):
                self.ready_at.setdefault(pod.metadata.name, now)
            if len(self.ready_at) >= self.count:
                self.done.set()
                w.stop()
                return

    def wait(self, pid, start, limit=300):
        """Waits for every pod (at most `limit` s after `start`); returns the agent's peak resident bytes."""
        peak = 0
        while not self.done.wait(0.5) and time.monotonic() - start < limit:
            peak = max(peak, agent_usage(pid)[1])
        return max(peak, agent_usage(pid)[1])


def docker(*args):
    subprocess.run(["docker", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def pause_image():
    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "raftsman/pause"],
                         check=True, capture_output=True, text=True).stdout.split()
    return out[0]


def cli_pair(i, image, pause):
    """One pod's containers through the Docker CLI, as the agent makes them; returns the seconds it took."""
    started = time.monotonic()
    sandbox = f"raftsman-bench-cli-{i}"
    docker("run", "-d", "--pull", "never", "--name", sandbox, "--label", "raftsman-bench-cli=1",
           "--network", "raftsman-pods", "--ipc", "shareable", pause)
    docker("run", "-d", "--pull", "never", "--label", "raftsman-bench-cli=1", "--network", f"container:{sandbox}",
           "--ipc", f"container:{sandbox}", image, "sleep", "100000")
    return time.monotonic() - started


def cli_cleanup():
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=raftsman-bench-cli=1"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_gone(core, selector, limit=120):
    deadline = time.monotonic() + limit
    while core.list_namespaced_pod("default", label_selector=selector).items and time.monotonic() < deadline:
        time.sleep(1)


def row(name, values):
    print(f"| {name} | " + " | ".join(values) + " |")


def p50_p99(values):
    if not values:
        return "none"
    return f"{percentile(values, 50):.2f} s / {percentile(values, 99):.2f} s"


def burst(core, apps, pid, image, pause, n):
    pods = ReadyWatch(core, "app=latency", n)
    cpu_before, _ = agent_usage(pid)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "latency"},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "latency"}},
            "template": pod_body(None, image, {"app": "latency"}),
        },
    }
    start = time.monotonic()
    apps.create_namespaced_deployment("default", body)
    peak_rss = pods.wait(pid, start)
    cpu, rss = agent_usage(pid)
    elapsed = time.monotonic() - start
    from_creation = [t - start for t in pods.ready_at.values()]
    from_seen = [pods.ready_at[p] - pods.seen_at[p] for p in pods.ready_at]
    apps.delete_namespaced_deployment("latency", "default")
    wait_gone(core, "app=latency")

    cli_start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: cli_pair(i, image, pause), range(n)))
    cli_elapsed = time.monotonic() - cli_start
    cli_cleanup()

    print(f"\nburst: a Deployment of {n} pods\n")
    row("measure", ["figure"])
    row("---", ["---"])
    row("pods Running and Ready", [f"{len(pods.ready_at)} of {n} in {elapsed:.1f} s"])
    row("from the pod's creation (first seen), p50 / p99", [p50_p99(from_seen)])
    row("from the Deployment's creation, p50 / p99", [p50_p99(from_creation)])
    row("agent CPU while starting them", [f"{cpu - cpu_before:.2f} s ({(cpu - cpu_before) / elapsed * 100:.0f}% of a core)"])
    row("agent resident memory, peak / after", [f"{peak_rss / 2**20:.1f} MiB / {rss / 2**20:.1f} MiB"])
    row(f"Docker CLI: the same {2 * n} containers, 16 pairs at a time", [f"{cli_elapsed:.1f} s"])


def steady(core, pid, image, pause, n, rate):
    pods = ReadyWatch(core, "app=steady", n)
    cpu_before, _ = agent_usage(pid)
    created_at = {}
    start = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        name = f"steady-{i}"
        created_at[name] = time.monotonic()
        core.create_namespaced_pod("default", pod_body(name, image, {"app": "steady"}))
    peak_rss = pods.wait(pid, start)
    cpu, rss = agent_usage(pid)
    elapsed = time.monotonic() - start
    latency = [pods.ready_at[p] - created_at[p] for p in pods.ready_at]
    core.delete_collection_namespaced_pod("default", label_selector="app=steady")
    wait_gone(core, "app=steady")

    cli = []
    cli_start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = []
        for i in range(n):
            time.sleep(max(0.0, cli_start + i / rate - time.monotonic()))
            futures.append(pool.submit(cli_pair, i, image, pause))
        cli = [f.result() for f in futures]
    cli_cleanup()

    print(f"\nsteady: {n} pods created at {rate:g} a second\n")
    row("measure", ["raftsman", "Docker CLI, same containers and rate"])
    row("---", ["---", "---"])
    row("pods Running and Ready", [f"{len(pods.ready_at)} of {n} in {elapsed:.1f} s", f"{n} in {time.monotonic() - cli_start:.1f} s"])
    row("each from its creation, p50 / p99", [p50_p99(latency), p50_p99(cli)])
    row("agent CPU while starting them", [f"{cpu - cpu_before:.2f} s ({(cpu - cpu_before) / elapsed * 100:.0f}% of a core)", ""])
    row("agent resident memory, peak / after", [f"{peak_rss / 2**20:.1f} MiB / {rss / 2**20:.1f} MiB", ""])


def main():
    kubeconfig, pid, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
    config.load_kube_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    pause = pause_image()
    try:
        burst(core, apps, pid, image, pause, n)
        steady(core, pid, image, pause, n, rate)
    finally:
        cli_cleanup()


if __name__ == "__main__":
    main()
