#!/usr/bin/python3
"""bench_ratelimit: sluice-ratelimit (embedded LMDB backend, and Redis)
against Debian's postfwd2 (1.35) over the Postfix policy protocol, with
tests/bench/policy_load.c as the load client (one epoll thread, persistent
connections, as Postfix's smtpd keeps them).

The same rule set for everyone, written in both syntaxes (sluice reads
postfwd's, so the file is the same text):
    id=SASL;   sasl_username=~.;  action=rate(sasl_username/50/3600/DEFER_IF_PERMIT 4.7.1 ...)
    id=CLIENT; action=rate(client_address/80/3600/DEFER_IF_PERMIT 4.7.1 ...)
and the same requests: RCPT-stage requests of SASL users, each from its
own client address, 100 requests per user (request i is user i % users,
users = requests / 100), every instance unique ("{n}"), so every server
does the same work: exactly half the requests pass (DUNNO, counted twice)
and half are over the SASL limit (DEFER_IF_PERMIT); the script checks
these counts. Each run starts the server
afresh (empty counters); for each connection count (1 and 50) the three
servers run interleaved, REPS times, and the medians are reported:
requests/s, p50/p99 latency, and sluice / postfwd2 ratios.

- sluice-ratelimit: bin/sluice-ratelimit -f, one process (ratelimit_workers
  = 1), its decision log written to a file as in production.
  embedded: ratelimit_state_file in the temp dir; redis: a private
  redis-server on a loopback TCP port (the shared multi-MX set-up).
- postfwd2: Debian's /usr/sbin/postfwd2 (Net::Server::PreFork children, the
  rate counters in its cache daemon), run under perl -T with a small
  module that makes Sys::Syslog calls no-ops: this machine has no
  /dev/log, and without it postfwd2's children die at start (so postfwd2's
  request log is not written: in its favour). The pass/over check allows
  postfwd2 10% (its children keep local caches); sluice-ratelimit must be
  exact.
Every process is stopped by PID. Loopback only.

Usage: bench_ratelimit.py [--reps 3] [--quick] [--json FILE]
Run as root with /usr/bin/python3 (postfwd2 drops to nobody).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin"))
POSTFWD = "/usr/sbin/postfwd2"
PER_USER = 100

from test_ratelimit_driver import REDIS, RedisServer  # noqa: E402
from bench_spf import build_client, free_port, wait_port  # noqa: E402 (the same policy_load client)

RULES = ("id=SASL; sasl_username=~.; action=rate(sasl_username/50/3600/DEFER_IF_PERMIT 4.7.1 "
         "too many messages from you)\n"
         "id=CLIENT; action=rate(client_address/80/3600/DEFER_IF_PERMIT 4.7.1 "
         "too many messages from your host)\n")

NO_SYSLOG_PM = """package SluiceBenchNoSyslog;
# bench_ratelimit: no /dev/log on this machine; Sys::Syslog calls succeed and go nowhere
use Sys::Syslog ();
{
    no warnings 'redefine';
    *Sys::Syslog::openlog = sub { 1 };
    *Sys::Syslog::syslog = sub { 1 };
    *Sys::Syslog::setlogsock = sub { 1 };
    *Sys::Syslog::closelog = sub { 1 };
}
1;
"""


def log(m):
    print(m, file=sys.stderr, flush=True)


def write_requests(path, users, name="user", net=10):
    """users templates; request i is template i % users with {n} = i (unique instance)."""
    with open(path, "w") as f:
        for u in range(users):
            f.write("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                    "client_address=%d.%d.%d.9\nclient_name=mx%d.example.net\n"
                    "helo_name=mx%d.example.net\nsasl_method=PLAIN\nsasl_username=%s%d\n"
                    "sender=%s%d@example.com\nrecipient=rcpt{n}@example.org\n"
                    "queue_id=\ninstance=%s.{n}\nsize=0\n\n"
                    % (net, u // 250, u % 250, u, u, name, u, name, u, name))


class Sluice:
    def __init__(self, tmp, run, redis=None):
        self.port = free_port()
        d = os.path.join(tmp, "sluice-%s" % run)
        os.makedirs(d)
        with open(os.path.join(d, "rules"), "w") as f:
            f.write(RULES)
        self.conf = os.path.join(d, "sluice.conf")
        extra = ""
        if redis:
            extra = ("ratelimit_backend = redis\nratelimit_redis_server = 127.0.0.1:%d\n"
                     "ratelimit_redis_prefix = bench%s:\n" % (redis.port, run))
        with open(self.conf, "w") as f:
            f.write("myhostname = mx.bench\nmail_owner = root\nmaillog_file = %s/ratelimit.log\n"
                    "ratelimit_rules = %s/rules\nratelimit_state_file = %s/state.lmdb\n"
                    "ratelimit_socket = inet:127.0.0.1:%d\n%s" % (d, d, d, self.port, extra))
        self.log = os.path.join(d, "ratelimit.log")
        self.redis = redis

    def __enter__(self):
        self.p = subprocess.Popen([os.path.join(BIN, "sluice-ratelimit"), "-c", self.conf, "-f"])
        wait_port(self.port)
        if self.redis:
            deadline = time.monotonic() + 20
            while "redis: connected" not in open(self.log, errors="replace").read():
                if time.monotonic() > deadline:
                    raise RuntimeError("sluice-ratelimit: no redis connection")
                time.sleep(0.02)
        return self

    def __exit__(self, *a):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=30)


class Postfwd:
    def __init__(self, tmp, run):
        self.port = free_port()
        self.dir = os.path.join(tmp, "postfwd-%s" % run)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)  # postfwd2 runs as nobody: pid file and cache socket
        self.rules = os.path.join(self.dir, "postfwd.cf")
        with open(self.rules, "w") as f:
            f.write(RULES)
        self.shim = os.path.join(tmp, "perl")
        if not os.path.exists(self.shim):
            os.makedirs(self.shim)
            with open(os.path.join(self.shim, "SluiceBenchNoSyslog.pm"), "w") as f:
                f.write(NO_SYSLOG_PM)
            os.chmod(self.shim, 0o755)
        self.pidfile = os.path.join(self.dir, "postfwd.pid")

    def __enter__(self):
        subprocess.run(["perl", "-T", "-w", "-I" + self.shim, "-MSluiceBenchNoSyslog", POSTFWD,
                        "-f", self.rules, "--server_socket", "tcp:127.0.0.1:%d" % self.port,
                        "--cache_socket", "unix::%s/cache.sock" % self.dir, "--pidfile", self.pidfile,
                        "-u", "nobody", "-g", "nogroup",
                        # every child forked up front and kept (a persistent connection holds one)
                        "--min_servers", "56", "--max_servers", "64", "--min_spare_servers", "4",
                        "--max_spare_servers", "63"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.pidfile) or not open(self.pidfile).read().strip():
            if time.monotonic() > deadline:
                raise RuntimeError("postfwd2 wrote no pid file")
            time.sleep(0.02)
        with open(self.pidfile) as f:
            self.pid = int(f.read().split()[0])
        try:
            wait_port(self.port)
        except RuntimeError:
            self.__exit__()
            raise
        return self

    def session(self):
        """PIDs of postfwd2's processes: its session (it daemonizes with setsid)."""
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.pid:  # field 6: session id
                    pids.append(int(d))
        return pids

    def __exit__(self, *a):
        pids = self.session()
        for p in [self.pid] + pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.session():
            time.sleep(0.05)
        for p in self.session():
            log("postfwd2 process %d did not stop: SIGKILL" % p)
            os.kill(p, signal.SIGKILL)


def load(client, tmp, port, conns, n, exact=True):
    """n requests over conns connections (each first sends one warm-up request
    of its own user, off the clock); checks that half passed (exact=False:
    within 10%: postfwd2's children keep local caches)."""
    reqs = os.path.join(tmp, "requests-%d" % n)
    if not os.path.exists(reqs):
        write_requests(reqs, n // PER_USER)
    warm = os.path.join(tmp, "warm")
    if not os.path.exists(warm):
        write_requests(warm, 1, name="warm", net=11)
    r = subprocess.run([client, "-s", "inet:127.0.0.1:%d" % port, "-r", reqs, "-c", str(conns),
                        "-n", str(n), "-W", warm, "-T", "600"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("policy_load: %s %s" % (r.stdout, r.stderr))
    res = json.loads(r.stdout)
    passed = res["actions"].get("DUNNO", 0)
    if (exact and (passed != n // 2 or res["actions"].get("DEFER_IF_PERMIT") != n // 2)) or \
            abs(passed - n // 2) > n // 20:
        raise RuntimeError("expected %d DUNNO and %d DEFER_IF_PERMIT: %s" % (n // 2, n // 2, res["actions"]))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_ratelimit: run as root (postfwd2 drops to nobody)")
    scale = 0.2 if args.quick else 1.0
    impls = ["postfwd2", "sluice-embedded"] + (["sluice-redis"] if os.path.exists(REDIS) else [])
    counts = {"postfwd2": {1: 2000, 50: 5000}, "sluice-embedded": {1: 40000, 50: 80000},
              "sluice-redis": {1: 20000, 50: 60000}}
    tmp = tempfile.mkdtemp(prefix="sluice-bench-rl.")
    os.chmod(tmp, 0o755)
    client = build_client(tmp)
    runs = []
    redis = RedisServer(tmp).start() if "sluice-redis" in impls else None
    try:
        run_no = 0
        for rep in range(args.reps):
            for conns in (1, 50):
                order = impls if rep % 2 == 0 else list(reversed(impls))
                for impl in order:
                    run_no += 1
                    n = max(PER_USER, int(counts[impl][conns] * scale) // PER_USER * PER_USER)
                    if impl == "postfwd2":
                        srv = Postfwd(tmp, run_no)
                    else:
                        srv = Sluice(tmp, run_no, redis if impl == "sluice-redis" else None)
                    with srv:
                        res = load(client, tmp, srv.port, conns, n, exact=impl != "postfwd2")
                    res.update(impl=impl, conns=conns, rep=rep)
                    runs.append(res)
                    log("%-16s conns=%-2d rep=%d n=%-6d %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %s" % (
                        impl, conns, rep, res["reqs"], res["req_per_s"], res["p50_ms"], res["p99_ms"],
                        res["actions"]))
    finally:
        if redis:
            redis.stop()
    med = {}
    for impl in impls:
        for conns in (1, 50):
            rs = [r for r in runs if r["impl"] == impl and r["conns"] == conns]
            med[impl, conns] = {k: statistics.median(r[k] for r in rs) for k in ("req_per_s", "p50_ms", "p99_ms")}
    redis_cols = "sluice-redis" in impls
    print("\n| clients | postfwd2 req/s | sluice embedded req/s | ratio | %s p50 / p99 ms: postfwd2 | embedded |%s"
          % ("sluice redis req/s | ratio |" if redis_cols else "", " redis |" if redis_cols else ""))
    print("|---|---|---|---|%s---|---|%s" % ("---|---|" if redis_cols else "", "---|" if redis_cols else ""))
    for conns in (1, 50):
        p, e = med["postfwd2", conns], med["sluice-embedded", conns]
        row = "| %d | %.0f | %.0f | %.1fx |" % (conns, p["req_per_s"], e["req_per_s"], e["req_per_s"] / p["req_per_s"])
        if redis_cols:
            r = med["sluice-redis", conns]
            row += " %.0f | %.1fx |" % (r["req_per_s"], r["req_per_s"] / p["req_per_s"])
        row += " %.2f / %.2f | %.3f / %.3f |" % (p["p50_ms"], p["p99_ms"], e["p50_ms"], e["p99_ms"])
        if redis_cols:
            row += " %.3f / %.3f |" % (r["p50_ms"], r["p99_ms"])
        print(row)
    print("\n(medians of %d interleaved runs; every run a fresh server)" % args.reps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
