"""The Azure CLI against a real `azsim up`: the session's stack comes from the pytest-azsim
plugin's `azsim` fixture, and every `az` runs with its own config directory, trusting
azsim's CA. `az` resolves `*.vault.localhost` through `resolver/sitecustomize.py` (loaded
from PYTHONPATH), so no hosts file is edited."""
import json
import os
import subprocess

import pytest
from pytest_azsim import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID, azsim_binary  # noqa: F401

RESOLVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resolver")


def az_binary():
    explicit = os.environ.get("AZ_BIN")
    if explicit:
        return explicit
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, ".venv-cli", "bin", "az")


class Az:
    """Runs `az` with a private config dir; `json` parses the output."""

    def __init__(self, config_dir, ca_path):
        self.env = dict(os.environ)
        self.env.update({
            "AZURE_CONFIG_DIR": str(config_dir),
            "REQUESTS_CA_BUNDLE": ca_path,
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
            "AZURE_CORE_NO_COLOR": "true",
            "PYTHONPATH": RESOLVER,
        })

    def run(self, *args, check=True):
        result = subprocess.run([az_binary(), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"az {' '.join(args)} exited {result.returncode}:\n{result.stderr}\n{result.stdout}")
        return result

    def json(self, *args):
        out = self.run(*args, "-o", "json").stdout
        return json.loads(out) if out.strip() else None


@pytest.fixture(scope="session")
def az(azsim, tmp_path_factory):
    """An `az` logged in to azsim as the well-known admin app."""
    cli = Az(tmp_path_factory.mktemp("az-config"), azsim.ca_path)
    cli.run("cloud", "register", "-n", "azsim", "--endpoint-resource-manager", azsim.arm_url + "/",
            "--suffix-keyvault-dns", f".vault.localhost:{azsim.keyvault_port}")
    cli.run("cloud", "set", "-n", "azsim")
    cli.run("config", "set", "core.instance_discovery=false")
    cli.run("login", "--service-principal", "-u", ADMIN_CLIENT_ID, "-p", ADMIN_CLIENT_SECRET, "--tenant", TENANT_ID)
    return cli
