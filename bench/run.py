#!/usr/bin/env python3
"""Backup benchmark: mars-agent (through a local vault-server over HTTPS) against restic
on the shared data set (../shared/bench/make_bench_data.py), in the same run.

Steps per tool: initial backup (B1), backup with no change (B2), `mutate`, backup (B3),
full restore (verified with diff -r), stored size, peak RSS. Page cache warm for both
tools (the data set is read once before the first step). Prints a table with the
agent/restic ratios.

Usage: bench/run.py [--work DIR] [--data DIR] [--redundancy LocallyRedundant|GeoRedundant|ZoneRedundant]
                    [--skip-restic] [--perf DIR] [--check] [--restore-dir DIR]
  --work  scratch directory (default: a new temporary directory)
  --data  an existing generated data set to reuse (default: generate one under --work)
  --redundancy  the vault's storage redundancy (default LocallyRedundant: one copy, as
          restic's repository is). GeoRedundant also reports the replication lag: the most
          objects/bytes waiting during the initial backup and how long after it the paired
          region caught up; ZoneRedundant writes three copies before each upload returns.
  --restore-dir  where both tools restore to (default: under --work). On this machine's
          root file system (ext4 without a journal) creating 20,000 files soon after
          deleting 20,000 others is slow for minutes (the allocator skips recently freed
          inodes; `perf` shows recently_deleted); a tmpfs such as /dev/shm/bench-restore
          gives both tools the same conditions run after run.
  --check  also time the integrity check that reads all data: `mars-agent check --read-data`
          against `restic check --read-data`, both after the restore
  --skip-restic  time the agent only (for iterating; the ratios need restic's run)
  --perf DIR  record each agent step with `perf record -a -g` (the whole machine: agent and
          server share its two cores) and write DIR/<step>.txt, the hottest symbols per
          process (`perf report --no-children --sort comm,dso,sym`)
Needs: restic (apt-get install restic), /usr/bin/time, python3.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench", "make_bench_data.py")
TENANT = "a2e0c0de-5e11-4a55-9a2e-000000000001"
SUBSCRIPTION = "a2e0c0de-5e11-4a55-9a2e-000000000002"
ADMIN_ID = "a2e0c0de-5e11-4a55-9a2e-00000000000a"
ADMIN_SECRET = "azsim~DevAdminSecret.0000000000000000000000"
PORTS = {"entra": 18941, "mi": 18942, "kv": 18943, "kvm": 18944, "arm": 18945}


def sh(args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


PERF_DIR = None


def timed(args, env=None, step=None):
    """Runs a command under /usr/bin/time -v: (seconds, peak RSS MiB). With --perf, the
    whole machine is sampled while it runs."""
    recorder = None
    if PERF_DIR and step:
        data = os.path.join(PERF_DIR, f"{step}.data")
        recorder = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if recorder:
        recorder.send_signal(2)
        recorder.wait()
        with open(os.path.join(PERF_DIR, f"{step}.txt"), "w") as out:
            subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso,sym",
                            "--stdio", "-g", "none", "--percent-limit", "0.5"],
                           stdout=out, stderr=subprocess.DEVNULL)
    if result.returncode not in (0, 1):
        sys.exit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    return seconds, rss


def start_azsim(azsim_bin, state):
    """`azsim up` on the benchmark's ports with its state in `state`, returned once its
    vault-server answers /health (the caller terminates it)."""
    server = subprocess.Popen(
        [azsim_bin, "up", "--data-dir", state, "--entra-port", str(PORTS["entra"]), "--mi-port", str(PORTS["mi"]),
         "--keyvault-port", str(PORTS["kv"]), "--keyvault-mgmt-port", str(PORTS["kvm"]),
         "--vault-server-port", str(PORTS["arm"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    health = ["curl", "-sf", "--cacert", os.path.join(state, "tls", "ca.pem"),
              f"https://localhost:{PORTS['arm']}/health"]
    for _ in range(200):
        if subprocess.run(health, capture_output=True).returncode == 0:
            return server
        time.sleep(0.05)
    server.terminate()
    sys.exit(f"azsim up --data-dir {state} did not answer /health within 10 s")


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def warm(path):
    subprocess.run(["tar", "cf", "/dev/null", path], check=True)


def curl_json(*args):
    import json
    out = subprocess.run(["curl", "-sf", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else None


class ReplicationWatch:
    """Samples vault-server's /admin/regions while the initial backup runs (GRS)."""

    def __init__(self, ca, arm):
        import json
        import ssl
        import threading
        import urllib.parse
        import urllib.request
        self.context = ssl.create_default_context(cafile=ca)
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": ADMIN_ID,
                                       "client_secret": ADMIN_SECRET, "scope": "api://azsim/.default"}).encode()
        token_url = f"https://localhost:{PORTS['entra']}/{TENANT}/oauth2/v2.0/token"
        with urllib.request.urlopen(token_url, data=form, context=self.context) as r:
            token = json.load(r)["access_token"]
        self.request = urllib.request.Request(f"{arm}/admin/regions", headers={"Authorization": f"Bearer {token}"})
        self.most_objects = self.most_bytes = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def pending(self):
        import json
        import urllib.request
        with urllib.request.urlopen(self.request, context=self.context) as r:
            vault = json.load(r)["vaults"][0]["replication"]
        return vault["objects"], vault["bytes"]

    def sample(self):
        while not self.stop.is_set():
            objects, size = self.pending()
            self.most_objects, self.most_bytes = max(self.most_objects, objects), max(self.most_bytes, size)
            time.sleep(0.1)

    def report(self):
        ended = time.monotonic()
        while self.pending()[0] > 0:
            time.sleep(0.05)
        caught_up = time.monotonic() - ended
        self.stop.set()
        self.thread.join()
        print(f"GRS replication: at most {self.most_objects} objects / {self.most_bytes / 2**20:.0f} MiB waiting "
              f"during the initial backup; the paired region caught up {caught_up:.2f} s after it ended")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work")
    parser.add_argument("--data")
    parser.add_argument("--redundancy", default="LocallyRedundant",
                        choices=["LocallyRedundant", "GeoRedundant", "ZoneRedundant"])
    parser.add_argument("--skip-restic", action="store_true")
    parser.add_argument("--perf")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--restore-dir")
    args = parser.parse_args()
    if args.perf:
        global PERF_DIR
        PERF_DIR = os.path.abspath(args.perf)
        os.makedirs(PERF_DIR, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="azsim-bench-")
    os.makedirs(work, exist_ok=True)
    print(f"work directory: {work}")
    sh(["cargo", "build", "--profile", "profiling", "--locked", "-p", "azsim", "-p", "agent"], cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    azsim_bin = os.path.join(target, "profiling", "azsim")
    agent_bin = os.path.join(target, "profiling", "mars-agent")

    data = args.data or os.path.join(work, "bench-data", "data")
    if not args.data:
        sh([sys.executable, SHARED, "generate", "--root", data])
    # Restore targets of an earlier run are removed now, not just before each restore:
    # ext4 avoids reusing inodes freed in the last seconds, and creating 20,000 files right
    # after deleting 20,000 spends most of its time in that search (seen with perf).
    restores = args.restore_dir or work
    os.makedirs(restores, exist_ok=True)
    for old in ("restore-agent", "restore-restic"):
        shutil.rmtree(os.path.join(restores, old), ignore_errors=True)
    sh(["sync"])
    # A previous run may have stopped between mutate and revert.
    subprocess.run([sys.executable, SHARED, "revert", "--root", data], capture_output=True)

    # ---- azsim ----
    state = os.path.join(work, "azsim")
    shutil.rmtree(state, ignore_errors=True)
    server = start_azsim(azsim_bin, state)
    try:
        ca = os.path.join(state, "tls", "ca.pem")
        arm = f"https://localhost:{PORTS['arm']}"
        token = curl_json("--cacert", ca, f"https://localhost:{PORTS['entra']}/{TENANT}/oauth2/v2.0/token",
                          "-d", "grant_type=client_credentials", "-d", f"client_id={ADMIN_ID}",
                          "--data-urlencode", f"client_secret={ADMIN_SECRET}",
                          "--data-urlencode", "scope=https://management.azure.com/.default")["access_token"]
        base = f"{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/bench"
        auth = ["--cacert", ca, "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json"]
        curl_json(*auth, "-X", "PUT", f"{base}?api-version=2025-04-01", "-d", '{"location":"westeurope"}')
        curl_json(*auth, "-X", "PUT", f"{base}/providers/Microsoft.RecoveryServices/vaults/bench?api-version=2026-11-01",
                  "-d", '{"location":"westeurope","properties":{"redundancySettings":'
                        f'{{"standardTierStorageRedundancy":"{args.redundancy}"}}}}}}')
        credentials = os.path.join(work, "bench.VaultCredentials")
        sh([azsim_bin, "vault-credentials", "-g", "bench", "-v", "bench", "-o", credentials, "--data-dir", state,
            "--entra-port", str(PORTS["entra"]), "--vault-server-port", str(PORTS["arm"])], stdout=subprocess.DEVNULL)
        home = os.path.join(work, "agent-home")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(os.path.join(work, "agent-cache"), ignore_errors=True)
        passphrase = os.path.join(work, "passphrase")
        with open(passphrase, "w") as f:
            f.write("benchmark passphrase 0123456789")
        agent = [agent_bin, "--home", home]
        sh([*agent, "install", "--cache-dir", os.path.join(work, "agent-cache"), "--ca-file", ca], stdout=subprocess.DEVNULL)
        sh([*agent, "register", "--vault-credentials", credentials, "--passphrase-file", passphrase,
            "--server-name", "bench"], stdout=subprocess.DEVNULL)
        results = {"agent": {}, "restic": {}}
        warm(data)
        lag = ReplicationWatch(ca, arm) if args.redundancy == "GeoRedundant" else None
        results["agent"]["B1"] = timed([*agent, "backup", "--include", data], step="B1")
        if lag:
            lag.report()
        results["agent"]["B2"] = timed([*agent, "backup", "--include", data], step="B2")
        sh([sys.executable, SHARED, "mutate", "--root", data], stdout=subprocess.DEVNULL)
        warm(data)
        results["agent"]["B3"] = timed([*agent, "backup", "--include", data], step="B3")
        import json
        points = json.loads(subprocess.run([*agent, "--json", "recovery-points"], capture_output=True, text=True, check=True).stdout)
        out = os.path.join(restores, "restore-agent")
        shutil.rmtree(out, ignore_errors=True)
        results["agent"]["restore"] = timed([*agent, "restore", points[0]["name"], "--target", out], step="restore")
        sh(["diff", "-r", data, out])
        if args.check:
            results["agent"]["check"] = timed([*agent, "check", "--read-data"], step="check")
        results["agent"]["size"] = du(os.path.join(state, "blobs")) + du(os.path.join(state, "vault-server.db"))
        sh([sys.executable, SHARED, "revert", "--root", data], stdout=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait()

    # ---- restic ----
    if not args.skip_restic:
        repo = os.path.join(work, "restic-repo")
        cache = os.path.join(work, "restic-cache")
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "RESTIC_PASSWORD": "benchmark passphrase 0123456789"}
        restic = ["restic", "-r", repo, "--cache-dir", cache, "-q"]
        sh([*restic, "init"], env=env, stdout=subprocess.DEVNULL)
        warm(data)
        results["restic"]["B1"] = timed([*restic, "backup", data], env=env)
        results["restic"]["B2"] = timed([*restic, "backup", data], env=env)
        sh([sys.executable, SHARED, "mutate", "--root", data], stdout=subprocess.DEVNULL)
        warm(data)
        results["restic"]["B3"] = timed([*restic, "backup", data], env=env)
        out = os.path.join(restores, "restore-restic")
        shutil.rmtree(out, ignore_errors=True)
        results["restic"]["restore"] = timed([*restic, "restore", "latest", "--target", out], env=env)
        sh(["diff", "-r", data, out + data])
        if args.check:
            results["restic"]["check"] = timed([*restic, "check", "--read-data"], env=env)
        results["restic"]["size"] = du(repo)
        sh([sys.executable, SHARED, "revert", "--root", data], stdout=subprocess.DEVNULL)

    # ---- table ----
    print()
    print("| step | mars-agent | restic | ratio | target |")
    print("|---|---|---|---|---|")
    targets = {"B1": 0.6, "B2": 0.2, "B3": 0.4, "restore": 0.5}
    names = {"B1": "initial backup", "B2": "no-op backup", "B3": "backup after mutate", "restore": "full restore",
             "check": "check --read-data"}
    steps = ("B1", "B2", "B3", "restore", "check") if args.check else ("B1", "B2", "B3", "restore")
    if args.skip_restic:
        for step in steps:
            seconds, rss = results["agent"][step]
            print(f"| {names[step]} | {seconds:.2f} s, {rss:.0f} MiB | – | – | |")
        print(f"| stored size (MiB) | {results['agent']['size'] / 2**20:.0f} | – | – | |")
        return
    for step in steps:
        (a, a_rss), (r, r_rss) = results["agent"][step], results["restic"][step]
        target = f"≤ {targets[step]}" if step in targets else ""
        print(f"| {names[step]} (s) | {a:.2f} | {r:.2f} | {a / r:.2f} | {target} |")
    for step in ("B1", "restore"):
        print(f"| peak RSS {names[step]} (MiB) | {results['agent'][step][1]:.0f} | {results['restic'][step][1]:.0f} | "
              f"{results['agent'][step][1] / results['restic'][step][1]:.2f} | ≤ 1{' and ≤ 150 MiB' if step == 'restore' else ''} |")
    a, r = results["agent"]["size"], results["restic"]["size"]
    print(f"| stored size (MiB) | {a / 2**20:.0f} | {r / 2**20:.0f} | {a / r:.2f} | ≤ 0.97 |")


if __name__ == "__main__":
    main()
