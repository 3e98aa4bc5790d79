"""sluice-spam's Bayes store on Redis against a real redis-server started
here (private temp dir, free loopback port or a unix socket, stopped by
PID). The driver is the unit-test binary test_spam_bayes: with REDIS_ADDR
set, its test_redis_same_as_lmdb learns the hash-split training half of
tests/data/spam/spamassassin-sample into LMDB and into Redis, and checks
that both give the same totals, the same probability for every message of
the other half, the same learn-twice / move / forget results and the same
expiry, and its test_redis_reconnect checks that connections killed by
the server cost no failed call (one retry on a new connection). Here we also check what Redis holds: only hashed keys and
numbers, no text of the messages."""
import os
import shutil
import socket
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin-asan"))
DRIVER = os.path.join(BIN, "tests", "test_spam_bayes")
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

if not os.path.exists(REDIS):
    pytest.skip("needs redis-server", allow_module_level=True)
if not os.path.exists(DRIVER):
    pytest.skip("needs %s (make asan)" % DRIVER, allow_module_level=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """redis-server in tmp, on a loopback port or a unix socket; stopped by PID."""

    def __init__(self, tmp, unix=False, password=None):
        self.dir = str(tmp)
        self.password = password
        self.sock = os.path.join(self.dir, "redis.sock") if unix else None
        self.port = 0 if unix else free_port()
        args = [REDIS, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.sock:
            args += ["--unixsocket", self.sock, "--unixsocketperm", "700"]
        if password:
            args += ["--requirepass", password]
        self.log = open(os.path.join(self.dir, "redis.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") in (b"PONG", "NOAUTH"):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start: %s" %
                                   open(os.path.join(self.dir, "redis.log")).read()[-2000:])
            time.sleep(0.05)

    @property
    def addr(self):
        return "unix:" + self.sock if self.sock else "127.0.0.1:%d" % self.port

    def _connect(self):
        if self.sock:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
        else:
            s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(10)
        return s

    def command(self, *args, db=0):
        """One command (after AUTH/SELECT); the decoded reply (bulk strings as bytes)."""
        s = self._connect()
        f = s.makefile("rb")
        try:
            pre = []
            if self.password:
                pre.append(("AUTH", self.password))
            if db:
                pre.append(("SELECT", str(db)))
            for cmd in pre + [args]:
                out = b"*%d\r\n" % len(cmd)
                for a in cmd:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
                reply = read_reply(f)
            return reply
        finally:
            f.close()
            s.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()   # by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return rest.split(b" ")[0].decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise OSError("bad reply %r" % line)


def run_driver(redis, db=0):
    env = dict(os.environ)
    env.update(REDIS_ADDR=redis.addr, REDIS_PASSWORD=redis.password or "", REDIS_DB=str(db),
               SPAM_BAYES_TEST_FILTER="test_redis*")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
    p = subprocess.run([DRIVER], cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out[-4000:]
    assert "[  PASSED  ] 2 test(s)." in out, out[-4000:]
    assert "SKIPPED" not in out, out[-4000:]
    assert "redis and lmdb agree on" in out, out[-4000:]
    return out


@pytest.fixture
def redis_tcp(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


@pytest.fixture
def redis_unix(tmp_path):
    r = Redis(tmp_path, unix=True, password="s3cret pass")
    yield r
    r.stop()


def check_only_hashes(r, db=0):
    keys = r.command("KEYS", "*", db=db)
    assert keys, "nothing stored"
    kinds = {}
    for k in keys:
        # prefix "test:<pid>:" (or "recon:<pid>:") then t<8 bytes> | m<16 bytes> | n | salt
        assert k.startswith(b"test:") or k.startswith(b"recon:"), k
        rest = k.split(b":", 2)[2]
        kind = rest[:1]
        if k.startswith(b"test:"):
            kinds[kind] = kinds.get(kind, 0) + 1
        if kind == b"t":
            assert len(rest) == 9, k
            fields = r.command("HGETALL", k, db=db)
            names = set(fields[0::2])
            assert names <= {b"s", b"h", b"t"}, fields
            assert all(v.isdigit() for v in fields[1::2]), fields
        elif kind == b"m":
            assert len(rest) == 17, k
            assert r.command("GET", k, db=db) in (b"s", b"h")
        else:
            assert rest in (b"n", b"salt"), k
    assert kinds.get(b"t", 0) > 1000
    assert kinds.get(b"m", 0) >= 40   # the training half, plus nothing else learned at the end
    # no word of the messages anywhere: values are counts, keys hashes
    for k in keys:
        assert b"localhost" not in k and b"received" not in k.lower()


def test_redis_same_as_lmdb_tcp(redis_tcp):
    out = run_driver(redis_tcp)
    print(out.splitlines()[-10:])
    check_only_hashes(redis_tcp)


def test_redis_same_as_lmdb_unix_socket_password_db(redis_unix):
    run_driver(redis_unix, db=3)
    check_only_hashes(redis_unix, db=3)
    assert redis_unix.command("DBSIZE") == 0   # nothing written outside the database chosen


def test_redis_wrong_password_is_an_error(redis_unix):
    env = dict(os.environ)
    env.update(REDIS_ADDR=redis_unix.addr, REDIS_PASSWORD="wrong",
               SPAM_BAYES_TEST_FILTER="test_redis*")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
    p = subprocess.run([DRIVER], cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode(errors="replace")
    assert p.returncode != 0, out[-2000:]
    assert "AUTH" in out, out[-2000:]
