"""pytest plugin: a local HF-Hub-compatible server (see tests/hub_server.py) and the environment to reach it.

Use it from a test module with `pytest_plugins = ["fixtures_hub"]` (tests/ is on sys.path under pytest's default
import mode). huggingface_hub reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import, and its module-level `HfApi`
keeps the endpoint it was created with, so code that talks to the local hub runs in a subprocess started with
`hub_env` (the test process itself stays offline).
"""

import os
import subprocess
import sys
import textwrap

import pytest
from hub_server import HubServer

HUB_SUBPROCESS_TIMEOUT_S = 120


@pytest.fixture
def local_hub(tmp_path):
    with HubServer(tmp_path / "hub_storage") as hub:
        yield hub


@pytest.fixture
def hub_env(local_hub, tmp_path):
    """Environment for a subprocess that uses the local hub with an empty HF cache."""
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=local_hub.endpoint,
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_TOKEN="hf_local_test_token",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    return env


@pytest.fixture
def hub_python(hub_env):
    """`hub_python(code, args=())` runs `code` (sys.argv[1:] = args) in a fresh interpreter that uses the local hub;
    the test fails with the subprocess's stderr if it exits non-zero."""

    def run(code: str, args=(), timeout: float = HUB_SUBPROCESS_TIMEOUT_S) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
        result = subprocess.run(command, env=hub_env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            pytest.fail(
                f"subprocess failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-6000:]}"
            )
        return result

    return run
