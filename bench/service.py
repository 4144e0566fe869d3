#!/usr/bin/env python3
"""Issue 13's measurements, on the state bench/run.py leaves in its work directory:

- `mars-agent check --read-data` against `restic check --read-data` (same data, same run);
- throttle accuracy: the upload rate achieved by a backup of fresh incompressible data at
  each throttle setting, against the setting.

Usage: bench/service.py --work DIR   (the --work of a finished bench/run.py)
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ROOT, start_azsim, timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = args.work
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    azsim_bin, agent_bin = (os.path.join(target, "profiling", b) for b in ("azsim", "mars-agent"))
    state = os.path.join(work, "azsim")
    server = start_azsim(azsim_bin, state)
    agent = [agent_bin, "--home", os.path.join(work, "agent-home")]
    try:
        ca = os.path.join(state, "tls", "ca.pem")
        env = {**os.environ, "RESTIC_PASSWORD": "benchmark passphrase 0123456789"}
        restic = ["restic", "-r", os.path.join(work, "restic-repo"), "--cache-dir", os.path.join(work, "restic-cache"), "-q"]
        ours, ours_rss = timed([*agent, "check", "--read-data"])
        theirs, theirs_rss = timed([*restic, "check", "--read-data"], env=env)
        print()
        print("| check --read-data | mars-agent | restic | ratio | target |")
        print("|---|---|---|---|---|")
        print(f"| seconds | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | ≤ 0.5 |")
        print(f"| peak RSS (MiB) | {ours_rss:.0f} | {theirs_rss:.0f} | {ours_rss / theirs_rss:.2f} | |")

        print()
        print("| throttle setting | data | seconds | achieved | achieved / setting |")
        print("|---|---|---|---|---|")
        size = 96 << 20
        for label, rate in (("4MiB/s", 4 << 20), ("16MiB/s", 16 << 20)):
            subprocess.run([*agent, "throttle", "set", "--work-hours", "00:00-23:59", "--work-days", "mon-sun",
                            "--work-rate", label, "--non-work-rate", label], check=True, capture_output=True)
            folder = os.path.join(work, f"throttle-{rate}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "fresh.bin"), "wb") as f:
                f.write(os.urandom(size))
            started = time.perf_counter()
            report = json.loads(subprocess.run([*agent, "--json", "backup", "--include", folder],
                                               capture_output=True, text=True, check=True).stdout)[0]
            seconds = time.perf_counter() - started
            achieved = report["bytesUploaded"] / seconds
            print(f"| {label} | {report['bytesUploaded'] / 2**20:.0f} MiB | {seconds:.1f} | "
                  f"{achieved / 2**20:.2f} MiB/s | {achieved / rate:.2f} |")
        subprocess.run([*agent, "throttle", "off"], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
