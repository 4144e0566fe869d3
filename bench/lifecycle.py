#!/usr/bin/env python3
"""Stored size before and after expiry on the benchmark data's history (issue 12).

Four backups of the shared data set through a local `azsim up` (profiling build): B1 and
B3 kept only until tomorrow (`--retain-until`), B2 and B4 by the vault's DefaultPolicy,
with `mutate`/`revert` between them so each point has some data of its own. Then the
simulated clock moves three days on, a listing sweeps (expiry + garbage collection), and
the vault's stored bytes are measured again; B2 and B4 are restored and compared with the
data they were taken from.

Usage: bench/lifecycle.py --data DIR [--work DIR]   (DIR: a generated bench data set)
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (ADMIN_ID, ADMIN_SECRET, PORTS, ROOT, SHARED, SUBSCRIPTION, TENANT, curl_json, du, sh,  # noqa: E402
                 start_azsim)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work")
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="azsim-lifecycle-")
    sh(["cargo", "build", "--profile", "profiling", "--locked", "-p", "azsim", "-p", "agent"], cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    azsim_bin, agent_bin = (os.path.join(target, "profiling", b) for b in ("azsim", "mars-agent"))
    data = args.data
    subprocess.run([sys.executable, SHARED, "revert", "--root", data], capture_output=True)
    state = os.path.join(work, "azsim")
    shutil.rmtree(state, ignore_errors=True)
    server = start_azsim(azsim_bin, state)
    try:
        ca = os.path.join(state, "tls", "ca.pem")
        arm = f"https://localhost:{PORTS['arm']}"

        def token():
            return curl_json("--cacert", ca, f"https://localhost:{PORTS['entra']}/{TENANT}/oauth2/v2.0/token",
                             "-d", "grant_type=client_credentials", "-d", f"client_id={ADMIN_ID}",
                             "--data-urlencode", f"client_secret={ADMIN_SECRET}",
                             "--data-urlencode", "scope=https://management.azure.com/.default")["access_token"]

        base = f"{arm}/subscriptions/{SUBSCRIPTION}/resourceGroups/bench"
        auth = ["--cacert", ca, "-H", f"Authorization: Bearer {token()}", "-H", "Content-Type: application/json"]
        curl_json(*auth, "-X", "PUT", f"{base}?api-version=2025-04-01", "-d", '{"location":"westeurope"}')
        curl_json(*auth, "-X", "PUT", f"{base}/providers/Microsoft.RecoveryServices/vaults/bench?api-version=2026-11-01",
                  "-d", '{"location":"westeurope","properties":{}}')
        credentials = os.path.join(work, "bench.VaultCredentials")
        sh([azsim_bin, "vault-credentials", "-g", "bench", "-v", "bench", "-o", credentials, "--data-dir", state,
            "--entra-port", str(PORTS["entra"]), "--vault-server-port", str(PORTS["arm"])], stdout=subprocess.DEVNULL)
        home, cache = os.path.join(work, "agent-home"), os.path.join(work, "agent-cache")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        passphrase = os.path.join(work, "passphrase")
        with open(passphrase, "w") as f:
            f.write("benchmark passphrase 0123456789")
        agent = [agent_bin, "--home", home]
        sh([*agent, "install", "--cache-dir", cache, "--ca-file", ca], stdout=subprocess.DEVNULL)
        sh([*agent, "register", "--vault-credentials", credentials, "--passphrase-file", passphrase,
            "--server-name", "bench"], stdout=subprocess.DEVNULL)
        tomorrow = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%d")

        def backup(*extra):
            out = subprocess.run([*agent, "--json", "backup", "--include", data, *extra],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out)[0]["recoveryPoint"]

        def stored():
            usages = curl_json("--cacert", ca, "-H", f"Authorization: Bearer {token()}",
                               f"{base}/providers/Microsoft.RecoveryServices/vaults/bench/usages?api-version=2026-11-01")
            return sum(u["currentValue"] for u in usages["value"] if u["name"]["value"].endswith("StorageUsage"))

        points = {"B1": backup("--retain-until", tomorrow)}
        sh([sys.executable, SHARED, "mutate", "--root", data], stdout=subprocess.DEVNULL)
        points["B2"] = backup()
        sh([sys.executable, SHARED, "revert", "--root", data], stdout=subprocess.DEVNULL)
        points["B3"] = backup("--retain-until", tomorrow)
        sh([sys.executable, SHARED, "mutate", "--root", data], stdout=subprocess.DEVNULL)
        points["B4"] = backup()
        before, before_du = stored(), du(os.path.join(state, "blobs"))
        sh([azsim_bin, "clock", "advance", "3d", "--data-dir", state, *ports], stdout=subprocess.DEVNULL)
        started = time.perf_counter()
        listed = json.loads(subprocess.run([*agent, "--json", "recovery-points"], capture_output=True, text=True,
                                           check=True).stdout)
        sweep = time.perf_counter() - started
        after, after_du = stored(), du(os.path.join(state, "blobs"))
        kept = sorted(p["name"] for p in listed)
        assert kept == sorted([points["B2"], points["B4"]]), (kept, points)
        out = os.path.join(work, "restore-b4")
        shutil.rmtree(out, ignore_errors=True)
        sh([*agent, "restore", points["B4"], "--target", out], stdout=subprocess.DEVNULL)
        sh(["diff", "-r", data, out])
        sh([sys.executable, SHARED, "revert", "--root", data], stdout=subprocess.DEVNULL)
        out = os.path.join(work, "restore-b2")
        shutil.rmtree(out, ignore_errors=True)
        sh([*agent, "restore", points["B2"], "--target", out], stdout=subprocess.DEVNULL)
        sh([sys.executable, SHARED, "mutate", "--root", data], stdout=subprocess.DEVNULL)
        sh(["diff", "-r", data, out])
        sh([sys.executable, SHARED, "revert", "--root", data], stdout=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait()
    print()
    print("| | stored bytes (usages) | blobs on disk |")
    print("|---|---|---|")
    print(f"| 4 points (B1–B4) | {before / 2**20:.1f} MiB | {before_du / 2**20:.1f} MiB |")
    print(f"| after B1 and B3 expired (sweep + collection {sweep:.2f} s) | {after / 2**20:.1f} MiB | {after_du / 2**20:.1f} MiB |")
    print("B2 and B4 restored byte-exact (diff -r).")


if __name__ == "__main__":
    main()
