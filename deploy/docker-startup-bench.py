#!/usr/bin/env python3
"""Pod startup latency on one Docker node: a Deployment of N replicas of an image present on the host, from the
Deployment's creation to each pod Running and Ready (as a watch on one replica sees it), with the agent's CPU time
and resident memory while it starts them. Prints a table.

Usage: docker-startup-bench.py KUBECONFIG AGENT_PID IMAGE [REPLICAS]
(deploy/dev.sh bench-docker starts the cluster, the agent and the image, then runs this.)
"""

import os
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


def main():
    kubeconfig, pid, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    replicas = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    config.load_kube_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    ready_at, seen_at = {}, {}
    done = threading.Event()

    def watch_pods():
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_pod, "default", label_selector="app=latency", timeout_seconds=600):
            pod, now = event["object"], time.monotonic()
            seen_at.setdefault(pod.metadata.name, now)
            conditions = (pod.status and pod.status.conditions) or []
            if pod.status and pod.status.phase == "Running" and any(
                c.type == "Ready" and c.status == "True" for c in conditions
            ):
                ready_at.setdefault(pod.metadata.name, now)
            if len(ready_at) >= replicas:
                done.set()
                w.stop()
                return

    watcher = threading.Thread(target=watch_pods, daemon=True)
    watcher.start()
    time.sleep(1)
    cpu_before, _ = agent_usage(pid)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "latency"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "latency"}},
            "template": {
                "metadata": {"labels": {"app": "latency"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "app", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "100000"]}
                    ],
                },
            },
        },
    }
    start = time.monotonic()
    apps.create_namespaced_deployment("default", body)
    peak_rss = 0
    while not done.wait(0.5):
        peak_rss = max(peak_rss, agent_usage(pid)[1])
        if time.monotonic() - start > 300:
            break
    cpu_after, rss = agent_usage(pid)
    peak_rss = max(peak_rss, rss)
    elapsed = time.monotonic() - start
    from_creation = [t - start for t in ready_at.values()]
    from_seen = [ready_at[n] - seen_at[n] for n in ready_at]
    print(f"| pods Ready | {len(ready_at)} of {replicas} in {elapsed:.1f} s |")
    if from_creation:
        print(f"| from the Deployment's creation, p50 / p99 | {percentile(from_creation, 50):.2f} s / "
              f"{percentile(from_creation, 99):.2f} s |")
        print(f"| from the pod's creation (first seen), p50 / p99 | {percentile(from_seen, 50):.2f} s / "
              f"{percentile(from_seen, 99):.2f} s |")
    print(f"| agent CPU while starting them | {cpu_after - cpu_before:.2f} s ({(cpu_after - cpu_before) / elapsed * 100:.0f}% of a core) |")
    print(f"| agent resident memory, peak while starting / after | {peak_rss / 2**20:.1f} MiB / {rss / 2**20:.1f} MiB |")
    apps.delete_namespaced_deployment("latency", "default")


if __name__ == "__main__":
    main()
