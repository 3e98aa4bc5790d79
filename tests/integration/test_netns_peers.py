"""Real peers that only use the system resolver (postfix-policyd-spf-python,
OpenDMARC) behind sluiced: the scenarios in tests/netns/ run in a private
network namespace whose resolver is our test DNS server on 127.0.0.1:53."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_resolver_bound_peers_in_netns():
    env = dict(os.environ, SLUICE_IN_NETNS="1")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "/usr/bin/python3", "-m",
                        "pytest", "-q", "-p", "no:cacheprovider", os.path.join(REPO, "tests", "netns")],
                       env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert " passed" in out and "skipped" not in out.splitlines()[-1], out
