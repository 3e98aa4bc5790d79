#!/usr/bin/python3
"""spf_driver: run bin/sluice-spf from Python tests (stdlib only).

  conf = write_conf(tmpdir, dns_addr, "spf_helo_reject = No_Check\\n")
  results = run_queries(conf, [Query("t1", "192.0.2.1", "a@example.com", "mx.example.com")])
  with SpfDaemon(tmpdir, dns_addr) as d:  # daemon on 127.0.0.1:d.port, stopped by PID
      reply = policy(d.port, {"client_address": ..., "sender": ..., ...})
"""
import os
import signal
import socket
import subprocess
import time
from collections import namedtuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin"))
SPF = os.path.join(BIN, "sluice-spf")


def hx(s):
    if s is None:
        s = ""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return "x" + s.hex()


def unhx(s):
    return bytes.fromhex(s[1:]).decode("utf-8", "replace")


Query = namedtuple("Query", "id ip sender helo scope receiver default_exp",
                   defaults=("mfrom", "", ""))
Answer = namedtuple("Answer", "id result mechanism explanation reason problem header terms queries")


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_conf(tmpdir, dns_addr, extra="", name="sluice.conf"):
    path = os.path.join(str(tmpdir), name)
    with open(path, "w") as f:
        f.write(f"""myhostname = receiver.com
dns_servers = {dns_addr}
dns_timeout = 1s
dns_tries = 1
mail_owner = root
maillog_file = {os.path.join(str(tmpdir), 'spf.log')}
spf_lookup_time = 20s
""" + extra + "\n")
    return path


def run_queries(conf, queries, timeout=120, env=None):
    """One sluice-spf -q process for all queries; returns {id: Answer}."""
    lines = "".join("%s %s %s %s %s %s %s\n" % (q.id, hx(q.ip), hx(q.sender), hx(q.helo), q.scope,
                                                hx(q.receiver), hx(q.default_exp)) for q in queries)
    p = subprocess.run([SPF, "-c", conf, "-q"], input=lines.encode(), capture_output=True,
                       timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError("sluice-spf -q exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
    out = {}
    for line in p.stdout.decode().splitlines():
        f = line.split(" ")
        if len(f) != 9:
            raise AssertionError("bad query output line: %r" % line)
        out[f[0]] = Answer(f[0], f[1], unhx(f[2]), unhx(f[3]), unhx(f[4]), unhx(f[5]), unhx(f[6]),
                           int(f[7]), int(f[8]))
    return out


def policy_bytes(attrs):
    req = {"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP"}
    req.update(attrs)
    return "".join("%s=%s\n" % kv for kv in req.items()).encode() + b"\n"


def read_reply(sock, timeout=30):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        if not chunk:
            return None if not buf else buf.decode()
        buf += chunk
    return buf.decode()


def policy(port, attrs, host="127.0.0.1"):
    """One request on a new connection; returns the action= value."""
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(policy_bytes(attrs))
        r = read_reply(s)
    assert r and r.startswith("action="), r
    return r[len("action="):].rstrip("\n")


class SpfDaemon:
    """bin/sluice-spf -f on 127.0.0.1:port (or spec), started and stopped by PID."""

    def __init__(self, tmpdir, dns_addr, extra="", socket_spec=None):
        self.tmp = str(tmpdir)
        self.port = free_port()
        self.spec = socket_spec or "inet:127.0.0.1:%d" % self.port
        self.conf = write_conf(self.tmp, dns_addr, "spf_socket = %s\n%s" % (self.spec, extra),
                               name="spfd-%d.conf" % self.port)
        self.log = os.path.join(self.tmp, "spf.log")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([SPF, "-c", self.conf, "-f"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sluice-spf exited %s: %s" % (
                    self.proc.returncode, self.proc.stdout.read().decode(errors="replace")))
            try:
                if self.spec.startswith("unix:"):
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(self.spec[5:])
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("sluice-spf did not listen")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
