"""The pytest entry point: the `azsim` session fixture and its command-line options."""
import os

import pytest

from .stack import start


def pytest_addoption(parser):
    group = parser.getgroup("azsim")
    group.addoption("--azsim-bin", default=os.environ.get("AZSIM_BIN"),
                    help="the azsim binary (default: $AZSIM_BIN, the checkout's target/, then PATH)")
    group.addoption("--azsim-seed", default=os.environ.get("AZSIM_SEED"),
                    help="a seed file (JSON) applied when the stack starts")


@pytest.fixture(scope="session")
def azsim(request, tmp_path_factory):
    """A running azsim for the whole session (free ports, temporary data directory)."""
    stack = start(
        tmp_path_factory.mktemp("azsim"),
        binary=request.config.getoption("--azsim-bin"),
        seed=request.config.getoption("--azsim-seed"),
    )
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = stack.ca_path
    try:
        yield stack
    finally:
        stack.stop()
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
