#!/usr/bin/env python3
"""One workload built by kiln, `docker build` (BuildKit) and `buildah bud
--layers`, interleaved (kiln, docker, buildah, kiln, …) so that a slow
moment of the machine hits all three alike.

Modes (each a build of CTX/Dockerfile, base images already local):
  cold     --no-cache
  cached   nothing changed since the last build
  changed  one file of the context (--change, relative to CTX) changed,
           a different line each time
  push     --no-cache build, then push to an empty registry (a fresh
           CNCF registry per repetition, so nothing is there yet)

Prints one table row per mode (medians, ratios) and writes the raw times
and kiln's peak RSS (its whole process tree, from wait4) as JSON.

    bench/compare.py --kiln BIN --root DIR --ctx DIR [--reps N] [--label NAME]
                     [--modes cold,cached,changed,push] [--change FILE] [--json OUT]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOOLS = ("kiln", "docker", "buildah")
DOCKER = "/usr/bin/docker"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kiln", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--ctx", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--modes", default="cold,cached,changed,push")
    p.add_argument("--label", default="workload")
    p.add_argument("--change", default="src/pkg0/f3.txt")
    p.add_argument("--json")
    p.add_argument("--md", help="append the table, as Markdown, to this file")
    a = p.parse_args()
    bench = Bench(a)
    rows = [bench.mode(m) for m in a.modes.split(",")]
    print_table(a.label, rows)
    if a.md:
        with open(a.md, "a") as f:
            f.write(markdown(a, rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


class Bench:
    def __init__(self, a):
        self.a = a
        self.logs = tempfile.mkdtemp(prefix="bench-logs-")
        self.edits = 0

    def build(self, tool, no_cache, tag="kiln-bench"):
        nc = ["--no-cache"] if no_cache else []
        ctx = self.a.ctx
        if tool == "kiln":
            # Docker's build cache and dangling images have no limit here:
            # kiln's trims would delete during the run, and each deletion
            # slows the next builds' file creates on this disk (benchmarks.md).
            limit = ["--cache-max-size", "40GB"]
            return [self.a.kiln, "--root", self.a.root, "build", "--progress", "plain", *limit, *nc, "-t", tag, ctx]
        if tool == "docker":
            return [DOCKER, "build", "--progress", "plain", *nc, "-t", tag, ctx]
        return ["buildah", "bud", "--quiet", "--pull=false", "--layers", *nc, "-t", tag, ctx]

    def commands(self, tool, mode, registry):
        """The commands one timed repetition runs."""
        if mode == "cold":
            return [self.build(tool, True)]
        if mode in ("cached", "changed"):
            return [self.build(tool, False)]
        tag = f"{registry}/bench-{tool}:latest"
        if tool == "kiln":
            return [self.build(tool, True, tag)[:-1] + ["--push", self.a.ctx]]
        if tool == "docker":
            return [self.build(tool, True, tag), [DOCKER, "push", tag]]
        return [self.build(tool, True, tag), ["buildah", "push", "--tls-verify=false", tag]]

    def mode(self, mode):
        times = {t: [] for t in TOOLS}
        rss = []
        if mode in ("cached", "changed"):
            for tool in TOOLS:  # the cache the timed runs find
                self.run(self.build(tool, False), f"{mode}-warmup-{tool}")
        for rep in range(self.a.reps):
            for tool in TOOLS:
                if mode == "changed":
                    self.change_one_file()
                # Untimed: no tool pays for the writeback the one before it
                # (or the context generator) left dirty (hyperfine's
                # `--prepare sync`).
                os.sync()
                registry = Registry() if mode == "push" else None
                try:
                    addr = registry.addr if registry else None
                    elapsed, peak = 0.0, 0
                    for i, cmd in enumerate(self.commands(tool, mode, addr)):
                        t, r = self.run(cmd, f"{mode}-{rep}-{tool}-{i}")
                        elapsed += t
                        peak = max(peak, r)
                finally:
                    if registry:
                        registry.stop()
                times[tool].append(elapsed)
                if tool == "kiln":
                    rss.append(peak)
                print(f"  {mode} #{rep + 1} {tool}: {elapsed:.2f} s", file=sys.stderr)
        med = {t: statistics.median(v) for t, v in times.items()}
        return {
            "mode": mode,
            "times": times,
            "median": med,
            "kiln_peak_rss_kib": max(rss),
        }

    def change_one_file(self):
        self.edits += 1
        with open(os.path.join(self.a.ctx, self.a.change), "a") as f:
            f.write(f"edit {self.edits} {time.time_ns()}\n")

    def run(self, cmd, name):
        log = os.path.join(self.logs, name + ".log")
        with open(log, "w") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            with open(log) as f:
                tail = f.read()[-3000:]
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{tail}")
        return elapsed, usage.ru_maxrss


class Registry:
    """A fresh, empty CNCF registry on a free loopback port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-registry-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.addr = f"127.0.0.1:{port}"
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog: {level: error}\n"
                f"storage: {{filesystem: {{rootdirectory: {self.dir}/data}}}}\n"
                f"http: {{addr: {self.addr}}}\n"
            )
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"bench: registry on {self.addr} did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def print_table(label, rows):
    print(f"\n{label}: median seconds, ratio = kiln / other (lower is better for kiln)")
    print(f"{'mode':<9}{'kiln':>9}{'docker':>9}{'buildah':>9}{'kiln/docker':>13}{'kiln/buildah':>14}{'kiln RSS':>11}")
    for r in rows:
        m = r["median"]
        print(
            f"{r['mode']:<9}{m['kiln']:>8.2f}s{m['docker']:>8.2f}s{m['buildah']:>8.2f}s"
            f"{m['kiln'] / m['docker']:>12.2f}x{m['kiln'] / m['buildah']:>13.2f}x"
            f"{r['kiln_peak_rss_kib'] / 1024:>8.0f} MB"
        )


def markdown(a, rows):
    out = [
        f"\n### {a.label} ({a.reps} repetitions, medians)\n",
        "| mode | kiln | docker build | buildah bud | kiln/docker | kiln/buildah | kiln peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["median"]
        out.append(
            f"| {r['mode']} | {m['kiln']:.2f} s | {m['docker']:.2f} s | {m['buildah']:.2f} s "
            f"| {m['kiln'] / m['docker']:.2f}x | {m['kiln'] / m['buildah']:.2f}x "
            f"| {r['kiln_peak_rss_kib'] / 1024:.0f} MB |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
