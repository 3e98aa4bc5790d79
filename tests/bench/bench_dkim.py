#!/usr/bin/python3
"""bench_dkim: sluice-dkim against Debian's OpenDKIM 2.11, directly over the
milter protocol (no MTA in the loop), with tests/bench/milter_load.c as the
load client.

Same RSA-2048 key (from `sluice keygen`) and the same messages for both;
sign = client 127.0.0.1 (internal host) sends an unsigned message, verify =
client 127.0.0.2 sends the message signed (rsa-sha256, relaxed/relaxed) by
dkimpy; the key record is served by a real DNS server on loopback (unbound,
tests/fixtures/dnsserver.py): sluice-dkim reaches it through dns_servers,
OpenDKIM through libunbound (Nameservers 127.0.0.1@PORT; with a
ResolverConfiguration file OpenDKIM 2.11 dies under 4 verifying
connections); both cache key records (dkim_query_cache_size, QueryCache).
OpenDKIM over inet stalls ~44 ms per message, so its inet runs send at most
--inet-cap messages per connection (the rate is still messages/second).
Both daemons run at once on unix and inet sockets; for every (socket,
operation, connections) cell the runs are interleaved (A B B A ...) REPS
times and the medians reported: messages/s, p50/p99 latency per message,
and the ratio sluice-dkim / OpenDKIM. Each cell's first run checks that the
filter really signed (DKIM-Signature added) or verified (dkim=pass).
`openssl speed -seconds 3 rsa2048` (1 process and -multi NCPU) gives the
physical limit for RSA-2048 signing. Also a "dual" row: sluice-dkim signing
with RSA + Ed25519 at once (OpenDKIM cannot).

Usage: bench_dkim.py [--messages 2000] [--reps 3] [--size 4096] [--json FILE] [--no-openssl]
Run as root with /usr/bin/python3.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from dnsserver import DnsServer  # noqa: E402
from postfix_dkim_harness import SluiceDkim, dkimpy_sign, keygen, milter_socket_up  # noqa: E402


def log(m):
    print(m, file=sys.stderr, flush=True)


def build_client(d):
    exe = os.path.join(d, "milter_load")
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-pthread",
                    os.path.join(HERE, "milter_load.c"), "-o", exe], check=True)
    return exe


def message(size):
    body = []
    n = 0
    i = 0
    while n < size:
        line = "Line %05d of the benchmark message, some words to fill it up to the wanted size." % i
        body.append(line)
        n += len(line) + 2
        i += 1
    return ("From: Alice <alice@example.com>\nTo: Bob <bob@example.net>\nSubject: bench message\n"
            "Date: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <bench@example.com>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
            + "\n".join(body) + "\n").encode()


class OpenDkimd:
    def __init__(self, d, key, spec, dns_port):
        self.d = d
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "opendkim.conf")
        sock = spec if spec.startswith("unix:") else "inet:%s@127.0.0.1" % spec.rsplit(":", 1)[1]
        with open(conf, "w") as f:
            f.write("\n".join(["Syslog no", "Background no", "Mode sv", "Domain example.com",
                               "Selector " + key.selector, "KeyFile " + key.private,
                               "Canonicalization relaxed/relaxed", "SignatureAlgorithm rsa-sha256",
                               "Socket " + sock, "PidFile %s/od.pid" % d, "UserID root",
                               "RequireSafeKeys no", "InternalHosts 127.0.0.1", "AuthservID mx.test"]
                              # the verifying instance asks the test DNS server (libunbound's
                              # addr@port forwarder syntax) and caches key records like
                              # sluice-dkim does (dkim_query_cache_size): QueryCache
                              + (["Nameservers 127.0.0.1@%d" % dns_port, "QueryCache yes"]
                                 if dns_port else []))
                    + "\n")
        self.conf, self.spec, self.crashes = conf, spec, []
        self.out = open(os.path.join(d, "stdout"), "ab")
        self.start()

    def start(self):
        if self.spec.startswith("unix:") and os.path.exists(self.spec[5:]):
            os.unlink(self.spec[5:])
        self.proc = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        wait_socket(self.spec)

    def restart_if_dead(self):
        """OpenDKIM 2.11 sometimes dies under concurrent load ("fatal flex scanner internal
        error"); note it and start it again. True if it had died."""
        if self.proc.poll() is None:
            return False
        self.out.flush()
        tail = open(os.path.join(self.d, "stdout"), errors="replace").read().strip().splitlines()[-1:]
        self.crashes.append("rc %s: %s" % (self.proc.returncode, tail[0] if tail else ""))
        log("  opendkim died (%s); restarting" % self.crashes[-1])
        self.start()
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def wait_socket(spec, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if milter_socket_up(spec):
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listening on " + spec)


def run_load(exe, spec, msgfile, conns, n, addr, daemon=None):
    for attempt in range(5):
        try:
            r = subprocess.run([exe, "-s", spec, "-m", msgfile, "-c", str(conns), "-n", str(n), "-a", addr],
                               capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:   # a wedged OpenDKIM: stop it, it is restarted below
            if daemon is None:
                raise
            daemon.proc.kill()
            daemon.proc.wait()
            daemon.restart_if_dead()
            continue
        if r.returncode == 0:
            return json.loads(r.stdout)
        time.sleep(0.2)
        if daemon is None or not daemon.restart_if_dead():
            break
    raise RuntimeError("milter_load %s: %s" % (spec, r.stderr))


def openssl_speed():
    out = {}
    ncpu = os.cpu_count() or 1
    for label, extra in (("1 process", []), ("%d processes" % ncpu, ["-multi", str(ncpu)])):
        r = subprocess.run(["openssl", "speed", "-seconds", "3"] + extra + ["rsa2048"],
                           capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("rsa 2048") or line.startswith("rsa  2048"):
                out[label] = float(line.split()[-2])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000, help="messages per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096, help="body bytes")
    ap.add_argument("--json")
    ap.add_argument("--no-openssl", action="store_true")
    ap.add_argument("--inet-cap", type=int, default=100,
                    help="messages per connection for OpenDKIM over inet (it stalls ~44 ms each)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sluice-bench-dkim-")
    os.chmod(tmp, 0o755)
    exe = build_client(tmp)
    rsa, ed = keygen(os.path.join(tmp, "keys"), "example.com", "sel")
    plain = message(args.size)
    signed = dkimpy_sign(plain, rsa, headers=(b"From", b"To", b"Subject", b"Date", b"Message-ID",
                                              b"MIME-Version", b"Content-Type"))
    files = {}
    for name, data in (("sign", plain), ("verify", signed)):
        files[name] = os.path.join(tmp, name + ".eml")
        with open(files[name], "wb") as f:
            f.write(data)
    daemons = []
    results = []
    with DnsServer(rsa.zone + ed.zone) as dns:
        try:
            specs, ods = {}, {}
            for kind in ("unix", "inet"):
                sd = os.path.join(tmp, "sluice-" + kind)
                os.makedirs(sd)
                s = SluiceDkim(sd, "dkim_domain = example.com\ndkim_selector = sel\ndkim_key_file = %s\n"
                               % rsa.private, kind, dns=dns)
                s.start()
                daemons.append(s)
                dd = os.path.join(tmp, "dual-" + kind)
                os.makedirs(dd)
                dual = SluiceDkim(dd, "dkim_domain = example.com\ndkim_selector = sel, sel-ed25519\n"
                                  "dkim_key_file = %s, %s\n" % (rsa.private, ed.private), kind, dns=dns)
                dual.start()
                daemons.append(dual)
                od_spec = ("unix:" + os.path.join(tmp, "od-%s.sock" % kind)) if kind == "unix" else \
                    "inet:127.0.0.1:%d" % __import__("postfix_dkim_harness").free_port()
                # signing needs no DNS: only the verifying instance gets Nameservers
                od = OpenDkimd(os.path.join(tmp, "od-" + kind), rsa, od_spec, None)
                daemons.append(od)
                ods[kind] = od
                odv_spec = ("unix:" + os.path.join(tmp, "odv-%s.sock" % kind)) if kind == "unix" else \
                    "inet:127.0.0.1:%d" % __import__("postfix_dkim_harness").free_port()
                odv = OpenDkimd(os.path.join(tmp, "odv-" + kind), rsa, odv_spec, dns.port)
                daemons.append(odv)
                ods[kind + "-verify"] = odv
                specs[kind] = {"sluice-dkim": s.spec, "opendkim": od_spec, "sluice-dkim dual": dual.spec,
                               "opendkim-verify": odv_spec}
            for kind in ("unix", "inet"):
                for op in ("sign", "verify"):
                    for conns in (1, 4):
                        names = ["sluice-dkim", "opendkim"]
                        if op == "sign":
                            names.append("sluice-dkim dual")
                        runs = {nm: [] for nm in names}
                        addr = "127.0.0.1" if op == "sign" else "127.0.0.2"
                        odk = kind if op == "sign" else kind + "-verify"
                        sp = dict(specs[kind], opendkim=specs[kind]["opendkim" if op == "sign" else "opendkim-verify"])
                        for nm in list(names):   # warm-up + correctness check
                            try:
                                r = run_load(exe, sp[nm], files[op], conns, max(conns, 50), addr,
                                         ods[odk] if nm == "opendkim" else None)
                            except RuntimeError as e:
                                if nm != "opendkim":
                                    raise
                                log("  %s %s c=%d: OpenDKIM keeps dying: %s" % (kind, op, conns, e))
                                names.remove(nm)
                                continue
                            want = "DKIM-Signature:" if op == "sign" else "dkim=pass"
                            if want not in r["first_mods"] or r["errors"]:
                                raise RuntimeError("%s %s %s: no %s: %r" % (nm, kind, op, want, r))
                        for rep in range(args.reps):
                            order = names if rep % 2 == 0 else list(reversed(names))
                            for nm in order:
                                if nm not in names:
                                    continue
                                try:
                                    n = args.messages
                                    if nm == "opendkim" and kind == "inet":
                                        n = min(n, args.inet_cap * conns)
                                    runs[nm].append(run_load(exe, sp[nm], files[op], conns,
                                                             n, addr,
                                                             ods[odk] if nm == "opendkim" else None))
                                except RuntimeError as e:
                                    if nm != "opendkim":
                                        raise
                                    log("  %s %s c=%d: OpenDKIM keeps dying: %s" % (kind, op, conns, e))
                                    names.remove(nm)
                        for nm in names:
                            rr = runs[nm]
                            row = {"socket": kind, "op": op, "conns": conns, "daemon": nm,
                                   "msgs_per_s": statistics.median(x["msgs_per_s"] for x in rr),
                                   "p50_ms": statistics.median(x["p50_ms"] for x in rr),
                                   "p99_ms": statistics.median(x["p99_ms"] for x in rr),
                                   "errors": sum(x["errors"] for x in rr)}
                            results.append(row)
                            log("%-5s %-6s c=%d %-17s %8.1f msg/s  p50 %6.2f ms  p99 %6.2f ms" % (
                                kind, op, conns, nm, row["msgs_per_s"], row["p50_ms"], row["p99_ms"]))
        finally:
            for d in daemons:
                d.stop()
    ossl = {} if args.no_openssl else openssl_speed()
    loadavg = open("/proc/loadavg").read().split()[:3]
    # table
    print("| socket | op | conns | sluice-dkim msg/s | OpenDKIM msg/s | ratio | sluice p50/p99 ms | "
          "OpenDKIM p50/p99 ms | dual RSA+Ed25519 msg/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    idx = {(r["socket"], r["op"], r["conns"], r["daemon"]): r for r in results}
    for kind in ("unix", "inet"):
        for op in ("sign", "verify"):
            for conns in (1, 4):
                a = idx[(kind, op, conns, "sluice-dkim")]
                b = idx.get((kind, op, conns, "opendkim"))
                if b is None:
                    print("| %s | %s | %d | %.0f | crashed | - | %.2f / %.2f | - | - |" % (
                        kind, op, conns, a["msgs_per_s"], a["p50_ms"], a["p99_ms"]))
                    continue
                dual = idx.get((kind, op, conns, "sluice-dkim dual"))
                print("| %s | %s | %d | %.0f | %.0f | %.2f | %.2f / %.2f | %.2f / %.2f | %s |" % (
                    kind, op, conns, a["msgs_per_s"], b["msgs_per_s"], a["msgs_per_s"] / b["msgs_per_s"],
                    a["p50_ms"], a["p99_ms"], b["p50_ms"], b["p99_ms"],
                    "%.0f" % dual["msgs_per_s"] if dual else "-"))
    if ossl:
        print("\nopenssl speed -seconds 3 rsa2048 signs/s: " +
              ", ".join("%s %.0f" % kv for kv in ossl.items()))
    print("load average at the end (1/5/15 min): %s" % " ".join(loadavg))
    crashes = [c for od in ods.values() for c in od.crashes]
    if crashes:
        print("OpenDKIM died %d times under load and was restarted (runs repeated): %s"
              % (len(crashes), "; ".join(sorted(set(crashes)))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "opendkim_crashes": crashes, "openssl_rsa2048_signs_per_s": ossl, "loadavg": loadavg,
                       "args": vars(args)}, f, indent=1)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
