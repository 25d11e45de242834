#!/usr/bin/env python3
"""Plots the samples of `raftsman bench --suite soak` (the CSV it writes) into one PNG: each replica's resident
memory, each replica's data dir and snapshot size, and the store's revision, against minutes.

usage: plot-soak.py SAMPLES.csv OUTPUT.png [TITLE]
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def number(cell):
    return float(cell) if cell else float("nan")


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[-1])
    with open(argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{argv[1]}: no samples")
    columns = rows[0].keys()
    minutes = [number(r["minute"]) for r in rows]

    def series(prefix):
        return {c[len(prefix):]: [number(r[c]) for r in rows] for c in columns if c.startswith(prefix)}

    figure, (rss, disk, revision) = plt.subplots(3, 1, sharex=True, figsize=(9, 10))
    for member, values in series("rss_mib_").items():
        rss.plot(minutes, values, marker=".", label=member)
    rss.set_ylabel("RSS, MiB")
    colors = {}
    for member, values in series("data_mib_").items():
        (line,) = disk.plot(minutes, values, marker=".", label=f"{member} data dir")
        colors[member] = line.get_color()
    for member, values in series("snapshot_mib_").items():
        disk.plot(minutes, values, linestyle="--", color=colors.get(member), label=f"{member} snapshot")
    disk.set_ylabel("on disk, MiB")
    revision.plot(minutes, [number(r["revision"]) for r in rows], marker=".", color="black")
    revision.set_ylabel("store revision")
    revision.set_xlabel("minutes")
    for axes in (rss, disk, revision):
        axes.grid(True, alpha=0.3)
        axes.set_ylim(bottom=0)
    rss.legend()
    disk.legend(fontsize="small", ncol=2)
    figure.suptitle(argv[3] if len(argv) == 4 else "raftsman soak")
    figure.tight_layout()
    figure.savefig(argv[2], dpi=100)
    print(f"wrote {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
