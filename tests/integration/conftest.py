"""Shared fixtures for the integration tests: start sluiced for real on a
free loopback port with a temp queue, Maildir base and log, talk to it with
real clients, stop it by PID."""

import os
import pwd
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))

BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin"))
# Test data lives in the tree (tests/data/, copied from the suites named in each PROVENANCE.md).
DATA = os.environ.get("SLUICE_TESTDATA", os.path.join(REPO, "tests", "data"))


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=20.0, what="condition"):
    """Poll pred() until it returns a true value; fail with what on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def sigstop(pid, timeout=10.0):
    """SIGSTOP pid and wait until every thread of it is stopped: the signal
    takes effect only when the kernel next runs the process, so a process
    on a busy machine can still answer right after os.kill() returns."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return True   # gone
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("T", "t"):
                return False
        return True
    wait_for(stopped, timeout=timeout, what="process %d stopped" % pid)


class Sluiced:
    """One sluiced under test. conf: extra 'name = value' lines."""

    def __init__(self, tmp, conf="", users=("alice", "bob", "carol", "user", "postmaster"),
                 domain="example.com", listen_host="127.0.0.1"):
        self.tmp = str(tmp)
        self.port = free_port(listen_host)
        self.host = listen_host
        self.queue = os.path.join(self.tmp, "queue")
        self.mail = os.path.join(self.tmp, "mail")
        self.log = os.path.join(self.tmp, "maillog")
        self.conf_path = os.path.join(self.tmp, "sluice.conf")
        self.domain = domain
        os.makedirs(self.mail, exist_ok=True)
        with open(os.path.join(self.tmp, "vmailbox"), "w") as f:
            for u in users:
                f.write("%s@%s %s/%s/\n" % (u, domain, domain, u))
        with open(os.path.join(self.tmp, "virtual"), "w") as f:
            f.write("team@%s alice@%s, bob@%s\n" % (domain, domain, domain))
        me = pwd.getpwuid(os.getuid()).pw_name
        base = f"""
myhostname = mx.test
smtpd_listen = {listen_host}:{self.port}
queue_directory = {self.queue}
pid_file = {self.tmp}/sluiced.pid
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.tmp}/vmailbox
virtual_alias_maps = texthash:{self.tmp}/virtual
maillog_file = {self.log}
mail_owner = {me}
smtpd_workers = 2
smtpd_error_sleep_time = 0
smtpd_peername_lookup = no
graceful_stop_timeout = 3s
"""
        with open(self.conf_path, "w") as f:
            f.write(base + conf + "\n")
        self.proc = None

    def start(self, expect_fail=False):
        self.proc = subprocess.Popen([os.path.join(BIN, "sluiced"), "-c", self.conf_path, "-f"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)
        if expect_fail:
            out, _ = self.proc.communicate(timeout=20)
            return self.proc.returncode, out.decode(errors="replace")
        wait_for(self._greets, what="sluiced greeting on port %d (log: %s)" % (self.port, self.log_text()))
        return self

    def _greets(self):
        if self.proc.poll() is not None:
            raise AssertionError("sluiced exited with %s: %s %s" % (
                self.proc.returncode, self.proc.stdout.read().decode(errors="replace"), self.log_text()))
        try:
            with socket.create_connection((self.host, self.port), timeout=5) as s:
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def maildir(self, user, domain=None):
        return os.path.join(self.mail, domain or self.domain, user)

    def delivered(self, user, domain=None):
        d = os.path.join(self.maildir(user, domain), "new")
        try:
            return sorted(os.path.join(d, n) for n in os.listdir(d))
        except FileNotFoundError:
            return []

    def wait_delivered(self, user, n, timeout=30):
        return wait_for(lambda: len(self.delivered(user)) >= n and self.delivered(user), timeout,
                        "%d messages for %s (log: %s)" % (n, user, self.log_text()[-3000:]))

    def queue_files(self, sub="active"):
        d = os.path.join(self.queue, sub)
        try:
            return sorted(os.listdir(d))
        except FileNotFoundError:
            return []

    def wait_queue_empty(self, timeout=30):
        wait_for(lambda: not self.queue_files("active") and not self.queue_files("incoming"), timeout,
                 "empty queue (log: %s)" % self.log_text()[-3000:])


@pytest.fixture
def sluiced_factory(tmp_path):
    started = []

    def make(conf="", **kw):
        d = tmp_path / ("s%d" % len(started))
        d.mkdir()
        s = Sluiced(d, conf, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def sluiced(sluiced_factory):
    return sluiced_factory().start()


class SmtpRaw:
    """A raw SMTP conversation over a socket (for what smtplib hides)."""

    def __init__(self, host, port, source=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """Read one (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    if lines or self.buf:
                        break
                    return (None, "")
                self.buf += chunk
            if b"\r\n" not in self.buf:
                break
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        code = int(lines[-1][:3]) if lines and lines[-1][:3].isdigit() else None
        return (code, "\n".join(lines))

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self):
        self.sock.close()
