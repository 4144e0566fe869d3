"""The official Azure SDK clients against a real `azsim up`, started for the session by the
pytest-azsim plugin (python/pytest-azsim, installed by scripts/test-all): fresh data
directory, free ports, `*.localhost` resolved to loopback in this process only. Only
authority URLs and CA trust change in the clients.
"""
import os

import pytest
from pytest_azsim import (  # noqa: F401  (re-exported for the test modules)
    ADMIN_CLIENT_ID,
    ADMIN_CLIENT_SECRET,
    HOST_IDENTITY_CLIENT_ID,
    IDENTITY_HEADER,
    TENANT_ID,
    azsim_binary,
)


def mars_agent_binary():
    return os.path.join(os.path.dirname(azsim_binary()), "mars-agent")


@pytest.fixture
def clean_env(monkeypatch):
    """No ambient Azure settings leak between tests."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch
