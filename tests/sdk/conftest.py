"""Starts a real `azsim up` (fresh data directory, free ports) for the whole session and
points the official Azure SDK clients at it: only authority URLs and CA trust change.

`*.localhost` names are resolved to loopback inside this process (as glibc does not),
never by editing the machine's hosts file.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

TENANT_ID = "a2e0c0de-5e11-4a55-9a2e-000000000001"
ADMIN_CLIENT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000000a"
ADMIN_CLIENT_SECRET = "azsim~DevAdminSecret.0000000000000000000000"
IDENTITY_HEADER = "azsim-identity-header"
HOST_IDENTITY_CLIENT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000000b"

_real_getaddrinfo = socket.getaddrinfo


def _loopback_for_localhost(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_for_localhost


def _azsim_binary():
    explicit = os.environ.get("AZSIM_BIN")
    if explicit:
        return explicit
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    for profile in ("debug", "release"):
        candidate = os.path.join(target, profile, "azsim")
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("azsim binary not found: run `cargo build -p azsim` or set AZSIM_BIN")


class Azsim:
    def __init__(self, process, data_dir, urls):
        self.process = process
        self.data_dir = data_dir
        self.entra_url = urls["entra"]
        self.mi_url = urls["mi"]
        self.keyvault_url = urls["keyvault"]
        self.keyvault_port = int(self.keyvault_url.rsplit(":", 1)[1])
        self.keyvault_mgmt_url = urls["keyvault_mgmt"]
        self.arm_url = urls["arm"]
        self.ca_path = os.path.join(data_dir, "tls", "ca.pem")

    def vault_url(self, vault):
        return f"https://{vault}.vault.localhost:{self.keyvault_port}"

    def admin_token(self):
        response = requests.post(
            f"{self.entra_url}/{TENANT_ID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ADMIN_CLIENT_ID,
                "client_secret": ADMIN_CLIENT_SECRET,
                "scope": "api://azsim/.default",
            },
            verify=self.ca_path,
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def admin(self, method, path, body=None, base=None):
        response = requests.request(
            method,
            f"{base or self.entra_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token()}"},
            verify=self.ca_path,
            timeout=10,
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def azsim():
    data_dir = tempfile.mkdtemp(prefix="azsim-sdk-")
    process = subprocess.Popen(
        [
            _azsim_binary(), "up", "--data-dir", data_dir, "--entra-port", "0", "--mi-port", "0",
            "--keyvault-port", "0", "--keyvault-mgmt-port", "0", "--vault-server-port", "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    patterns = {
        "entra": r"entra-sim\s+(https://\S+)",
        "mi": r"managed identity\s+(http://\S+)/msi/token",
        "keyvault": r"keyvault-sim\s+(https://\S+)",
        "keyvault_mgmt": r"keyvault mgmt\s+(https://\S+)",
        "arm": r"vault-server \(ARM\)\s+(https://\S+)",
    }
    urls = {}
    deadline = time.time() + 60
    for line in process.stdout:
        for name, pattern in patterns.items():
            if match := re.search(pattern, line):
                urls[name] = match.group(1)
        if line.startswith("Run `eval") or time.time() > deadline:
            break
    assert set(urls) == set(patterns), f"azsim up did not report its URLs: {urls}"
    sim = Azsim(process, data_dir, urls)
    os.environ["REQUESTS_CA_BUNDLE"] = sim.ca_path
    yield sim
    process.terminate()
    process.wait(timeout=15)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def clean_env(monkeypatch):
    """No ambient Azure settings leak between tests."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch
