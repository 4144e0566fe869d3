#!/usr/bin/env python3
"""Restore A/B: full restores of the newest recovery point a `bench/run.py` run left in
--work, alternating between mars-agent binaries against one vault-server, or (with
--azsim given twice or more) between server binaries with one mars-agent. Per binary: mean
agent CPU (user + sys), mean server CPU, median wall time, peak RSS (median and max).

This machine's speed swings by 20-30 % between minutes; alternating the binaries within one
run and comparing CPU (not only wall time) is what shows a change of a few percent.

Usage: bench/restore_ab.py [--work DIR] [--runs N] [--restore-dir DIR] [--azsim BIN ...] BINARY [BINARY ...]
  --work  the work directory of an earlier `bench/run.py --work DIR` (default /tmp/bench-work)
  --runs  restores per binary (default 5)
  --restore-dir  where to restore (default /dev/shm/bench-ab: a tmpfs, as the benchmark)
  --azsim  a server binary (`azsim`; default the profiling build's). Given twice or more,
          the servers are compared: each restore starts the server it is timed against
          (with the one mars-agent BINARY) and stops it afterwards.
A binary may be a script that sets an environment and execs mars-agent or azsim (for
allocator or other settings). Needs: a profiling build (`cargo build --profile profiling -p
azsim -p agent`), /usr/bin/time, curl.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from run import ROOT, start_azsim


def server_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def newest_point(agent, home):
    points = subprocess.run([agent, "--home", home, "--json", "recovery-points"],
                            capture_output=True, text=True, check=True).stdout
    return json.loads(points)[0]["name"]


def restore(agent, home, point, target, server):
    """One full restore into a fresh `target`: (wall s, peak RSS MiB, agent CPU s, server CPU s)."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    before, start = server_cpu_seconds(server.pid), time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", agent, "--home", home,
                          "restore", point, "--target", target], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{agent} restore failed:\n{run.stderr}")
    rss, user, system = re.findall(r"^(\d+) ([\d.]+) ([\d.]+)$", run.stderr, re.M)[-1]
    return wall, int(rss) / 1024, float(user) + float(system), server_cpu_seconds(server.pid) - before


def stop(server):
    server.terminate()
    server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/bench-work")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--restore-dir", default="/dev/shm/bench-ab")
    parser.add_argument("--azsim", action="append", default=[])
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    servers = args.azsim or [os.path.join(target_dir, "profiling", "azsim")]
    if len(servers) > 1 and len(args.binaries) > 1:
        sys.exit("compare agents or servers, not both: give one mars-agent with several --azsim")
    state, home = os.path.join(args.work, "azsim"), os.path.join(args.work, "agent-home")
    if not os.path.isdir(state) or not os.path.isdir(home):
        sys.exit(f"{args.work} holds no benchmark state: run bench/run.py --work {args.work} first")
    agent = args.binaries[0]
    try:
        if len(servers) > 1:
            results = {server: [] for server in servers}
            for _ in range(args.runs):
                for binary in servers:
                    server = start_azsim(binary, state)
                    try:
                        point = newest_point(agent, home)
                        results[binary].append(restore(agent, home, point, args.restore_dir, server))
                    finally:
                        stop(server)
        else:
            results = {binary: [] for binary in args.binaries}
            server = start_azsim(servers[0], state)
            try:
                point = newest_point(agent, home)
                for _ in range(args.runs):
                    for binary in args.binaries:
                        results[binary].append(restore(binary, home, point, args.restore_dir, server))
            finally:
                stop(server)
    finally:
        shutil.rmtree(args.restore_dir, ignore_errors=True)
    for binary, runs in results.items():
        walls, rss, agent_cpu, served = zip(*runs)
        print(f"{binary}: agent CPU {statistics.mean(agent_cpu):.2f} s, server CPU {statistics.mean(served):.2f} s, "
              f"wall median {statistics.median(walls):.2f} s, RSS median {statistics.median(rss):.0f} MiB "
              f"max {max(rss):.0f} MiB ({args.runs} runs)")


if __name__ == "__main__":
    main()
