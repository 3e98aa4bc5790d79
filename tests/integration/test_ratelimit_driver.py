"""Helpers for the sluice-ratelimit integration tests (no tests here):
run bin/sluice-ratelimit on loopback, talk the policy protocol to it, run a
private redis-server. Stdlib only; processes are stopped by PID.

    with RlDaemon(tmpdir, rules="id=R; action=rate(sender/2/60/DEFER x)\\n") as d:
        policy(d.port, {"sender": "a@b.c", "instance": "m1"})   # -> "DUNNO"
    with RedisServer(tmpdir) as r:                                # 127.0.0.1:r.port
        ...
"""
import os
import shutil
import signal
import socket
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin-asan"))
RL = os.path.join(BIN, "sluice-ratelimit")
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


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


class Client:
    """A persistent policy connection (as Postfix keeps one)."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=30)

    def ask(self, **attrs):
        self.sock.sendall(policy_bytes(attrs))
        r = read_reply(self.sock)
        assert r and r.startswith("action="), r
        return r[len("action="):].rstrip("\n")

    def close(self):
        self.sock.close()


def write_conf(tmpdir, rules, extra="", name="sluice.conf", state=None, log=None):
    tmpdir = str(tmpdir)
    rpath = os.path.join(tmpdir, name + ".rules")
    with open(rpath, "w") as f:
        f.write(rules)
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write("myhostname = mx.test\nmail_owner = root\n"
                "maillog_file = %s\nratelimit_rules = %s\nratelimit_state_file = %s\n%s\n"
                % (log or os.path.join(tmpdir, "ratelimit.log"), rpath,
                   state if state is not None else os.path.join(tmpdir, "state.lmdb"), extra))
    return path


class RlDaemon:
    """bin/sluice-ratelimit -f on 127.0.0.1:port, started and stopped by PID."""

    def __init__(self, tmpdir, rules="", extra="", name=None, state=None, port=None):
        self.tmp = str(tmpdir)
        self.port = port or free_port()
        name = name or "rl-%d.conf" % self.port
        self.log = os.path.join(self.tmp, name + ".log")
        if state is None:
            state = os.path.join(self.tmp, name + ".lmdb")
        self.conf = write_conf(self.tmp, rules, "ratelimit_socket = inet:127.0.0.1:%d\n%s"
                               % (self.port, extra), name=name, state=state, log=self.log)
        self.rules = self.conf + ".rules"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([RL, "-c", self.conf, "-f"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sluice-ratelimit exited %s: %s" % (
                    self.proc.returncode, self.proc.stdout.read().decode(errors="replace")))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("sluice-ratelimit did not listen")

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

    def reload(self):
        before = self.log_text().count("configuration reloaded")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log_text().count("configuration reloaded") > before
                 or "reload failed" in self.log_text(), what="reload")

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def run(self, *args):
        """sluice-ratelimit -c conf ARGS (show/reset/-n); returns the CompletedProcess."""
        return subprocess.run([RL, "-c", self.conf] + list(args), capture_output=True, timeout=60)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class RedisServer:
    """A private redis-server on a free loopback port in tmpdir; stopped by PID."""

    def __init__(self, tmpdir, port=None, password=None, unix=False):
        self.dir = os.path.join(str(tmpdir), "redis-%d" % time.monotonic_ns())
        os.makedirs(self.dir)
        self.port = port or free_port()
        self.password = password
        self.unix = os.path.join(self.dir, "redis.sock") if unix else None
        self.proc = None

    def start(self):
        extra = (["--requirepass", self.password] if self.password else []) + \
            (["--unixsocket", self.unix, "--unixsocketperm", "700"] if self.unix else [])
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
             "--logfile", os.path.join(self.dir, "redis.log")] + extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    r = s.recv(64)
                    return r.startswith(b"+PONG") or r.startswith(b"-NOAUTH")
            except OSError:
                return False
        wait_for(up, what="redis-server on port %d" % self.port)
        return self

    def command(self, *args):
        """One command in RESP (after AUTH when there is a password); the raw reply bytes."""
        def resp(*a):
            return b"*%d\r\n" % len(a) + b"".join(
                b"$%d\r\n%s\r\n" % (len(x.encode()), x.encode()) for x in a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            if self.password:
                s.sendall(resp("AUTH", self.password))
                assert s.recv(64).startswith(b"+OK")
            s.sendall(resp(*args))
            time.sleep(0.05)
            return s.recv(65536)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
