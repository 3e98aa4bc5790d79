"""Tests that run inside a private network namespace (made by
tests/integration/test_netns_peers.py with `unshare --net --mount`): there,
a real DNS server answers on 127.0.0.1:53 and /etc/resolv.conf points at it
(bind-mounted, the real file is untouched), so peers that only use the
system resolver (policyd-spf, OpenDMARC) see our test zones. The namespace
has no route anywhere: nothing can leave loopback."""

import os
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))

# The integration harness (Sluiced, SmtpRaw, fixtures), loaded under its own
# name and re-exported, so `from conftest import ...` works the same here.
import importlib.util

_spec = importlib.util.spec_from_file_location("sluice_itest", os.path.join(HERE, "..", "integration", "conftest.py"))
_itest = importlib.util.module_from_spec(_spec)
sys.modules["sluice_itest"] = _itest
_spec.loader.exec_module(_itest)
for _name in dir(_itest):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_itest, _name)

IN_NETNS = os.environ.get("SLUICE_IN_NETNS") == "1"


@pytest.fixture(scope="session", autouse=True)
def private_resolver():
    if not IN_NETNS:
        pytest.skip("runs only inside the test network namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fd, path = tempfile.mkstemp(prefix="resolv.")
    with os.fdopen(fd, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:3 attempts:2\n")
    subprocess.run(["mount", "--bind", path, "/etc/resolv.conf"], check=True)
    yield
    subprocess.run(["umount", "/etc/resolv.conf"])
    os.unlink(path)
