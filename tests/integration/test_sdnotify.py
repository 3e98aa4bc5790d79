"""Type=notify readiness (the units `make install` ships): each filter daemon
run in the foreground with NOTIFY_SOCKET set sends READY=1 to that datagram
socket once it listens, as systemd expects, and exits cleanly on SIGTERM;
without NOTIFY_SOCKET nothing is sent (no error)."""

import os
import signal
import socket
import subprocess

import pytest

from conftest import BIN

DAEMONS = {
    "sluice-dkim": "dkim_socket = unix:{d}/m.sock\n",
    "sluice-dmarc": "dmarc_socket = unix:{d}/m.sock\n",
    "sluice-spam": ("spam_socket = unix:{d}/m.sock\nspam_bayes_db = {d}/bayes.lmdb\n"
                    "spam_cache_directory = {d}\n"),
    "sluice-spf": "spf_socket = unix:{d}/m.sock\n",
    "sluice-ratelimit": "ratelimit_socket = unix:{d}/m.sock\nratelimit_state_file = {d}/rl.lmdb\n",
}


@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_ready_sent_to_notify_socket(tmp_path, daemon):
    exe = os.path.join(BIN, daemon)
    if not os.path.exists(exe):
        pytest.skip(daemon + " not built")
    d = str(tmp_path)
    conf = os.path.join(d, "sluice.conf")
    with open(conf, "w") as f:
        f.write("myhostname = mx.test\nmail_owner = root\nmaillog_file = %s/log\n" % d
                + "data_directory = %s\n" % d + DAEMONS[daemon].format(d=d))
    ns_path = os.path.join(d, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(ns_path)
    ns.settimeout(60)
    p = subprocess.Popen([exe, "-f", "-c", conf], env=dict(os.environ, NOTIFY_SOCKET=ns_path),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        try:
            msg = ns.recv(4096)
        except socket.timeout:
            raise AssertionError("%s sent nothing (rc %s): %s" % (
                daemon, p.poll(), open(os.path.join(d, "log")).read() if os.path.exists(
                    os.path.join(d, "log")) else ""))
        assert b"READY=1" in msg.split(b"\n"), msg
        # ready means listening: the socket accepts a connection now
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(os.path.join(d, "m.sock"))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
        ns.close()
    assert rc == 0, (daemon, rc, p.stdout.read())
