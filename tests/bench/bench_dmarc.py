#!/usr/bin/python3
"""bench_dmarc: sluice-dmarc against Debian's OpenDMARC 1.4.2, directly over
the milter protocol (no MTA in the loop), with tests/bench/milter_load.c as
the load client.

The same message for every daemon: From example.com (p=reject), signed by
dkimpy with a key from `sluice keygen`, carrying the Authentication-Results
an OpenDKIM-style verifier with our authserv-id (mx.test) would add
(dkim=pass header.d=example.com header.b=<first 8 of b=>), sent from a
client address (127.0.0.2, HELO mail.example.com, MAIL FROM
alice@example.com) that the domain's SPF record allows. Every run's first
message must come back with dmarc=pass.

Daemons: OpenDMARC with TrustedAuthservIDs mx.test and SPFSelfValidate on
(it checks SPF itself and takes DKIM from the trusted A-R); sluice-dmarc
with dmarc_self_validate = no (OpenDMARC's model: trusted A-R, SPF computed
when missing) and = yes (it verifies DKIM and checks SPF itself, ignoring
every A-R: more work, reported beside it). Sockets unix and inet; 1 and 4
connections; runs interleaved (A B C C B A ...) REPS times; medians of
msg/s, p50/p99 per message, and the ratio to OpenDMARC.

OpenDMARC resolves through the system resolver (libresolv), which on this
machine points off the machine: the whole benchmark therefore runs in a
private network + mount namespace (unshare) where /etc/resolv.conf names
127.0.0.1 and the test DNS server (unbound, tests/fixtures/dnsserver.py)
listens on 127.0.0.1:53. Nothing leaves loopback.

OpenDMARC over inet stalls ~44 ms per message (Nagle + delayed ACK, as
OpenDKIM does), so its inet runs send at most --inet-cap messages per
connection (the rate is still messages/second).

Usage: bench_dmarc.py [--messages 4000] [--reps 3] [--inet-cap 100] [--json FILE]
Run as root with /usr/bin/python3.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)

INNER = "SLUICE_BENCH_DMARC_INNER"


def log(m):
    print(m, file=sys.stderr, flush=True)


def reexec_in_namespace():
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                       env=dict(os.environ, **{INNER: "1"}))
    sys.exit(r.returncode)


def private_resolver(tmp):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rc = os.path.join(tmp, "resolv.conf")
    with open(rc, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", rc, "/etc/resolv.conf"], check=True)


class OpenDmarcd:
    def __init__(self, d, spec):
        os.makedirs(d, exist_ok=True)
        self.d, self.spec = d, spec
        sock = spec if spec.startswith("unix:") else "inet:%s@127.0.0.1" % spec.rsplit(":", 1)[1]
        ignore = os.path.join(d, "ignore.hosts")
        with open(ignore, "w") as f:
            f.write("127.0.0.1\n")
        self.conf = os.path.join(d, "opendmarc.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "Socket " + sock, "PidFile %s/od.pid" % d, "UserID root", "Syslog false",
                "Background false", "AuthservID mx.test", "TrustedAuthservIDs mx.test",
                "SPFSelfValidate true", "SPFIgnoreResults false", "RejectFailures true",
                "IgnoreHosts " + ignore, "IgnoreAuthenticatedClients true",
                "PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat",
                "RequiredHeaders false", "FailureReports false"]) + "\n")
        self.out = open(os.path.join(d, "stdout"), "ab")
        if spec.startswith("unix:") and os.path.exists(spec[5:]):
            os.unlink(spec[5:])
        self.proc = subprocess.Popen(["/usr/sbin/opendmarc", "-f", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        from bench_dkim import wait_socket
        wait_socket(spec)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def run_load(exe, spec, msgfile, conns, n):
    r = subprocess.run([exe, "-s", spec, "-m", msgfile, "-c", str(conns), "-n", str(n), "-a", "127.0.0.2",
                        "-H", "mail.example.com", "-f", "alice@example.com", "-t", "bob@example.net"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("milter_load %s: %s" % (spec, r.stderr))
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000, help="messages per run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096, help="body bytes")
    ap.add_argument("--json")
    ap.add_argument("--inet-cap", type=int, default=100,
                    help="messages per connection for OpenDMARC over inet (it stalls ~44 ms each)")
    args = ap.parse_args()
    if os.environ.get(INNER) != "1":
        reexec_in_namespace()

    from bench_dkim import build_client, message
    from dnsserver import DnsServer
    from postfix_dkim_harness import dkimpy_sign, keygen, sig_tags, headers
    from test_dmarc_sluiced import SluiceDmarc

    tmp = tempfile.mkdtemp(prefix="sluice-bench-dmarc-")
    os.chmod(tmp, 0o755)
    private_resolver(tmp)
    exe = build_client(tmp)
    (rsa,) = keygen(os.path.join(tmp, "keys"), "example.com", "sel", "rsa")
    signed = dkimpy_sign(message(args.size), rsa, headers=(b"From", b"To", b"Subject", b"Date",
                                                             b"Message-ID", b"MIME-Version",
                                                             b"Content-Type"))
    b8 = sig_tags(headers(signed.replace(b"\r\n", b"\n"), "DKIM-Signature")[0])["b"][:8]
    ar = ("Authentication-Results: mx.test;\r\n\tdkim=pass (2048-bit key; unprotected) "
          "header.d=example.com header.i=@example.com header.a=rsa-sha256 header.s=sel "
          "header.b=%s\r\n" % b8).encode()
    msgfile = os.path.join(tmp, "msg.eml")
    with open(msgfile, "wb") as f:
        f.write(ar + signed)
    zone = (rsa.zone +
            'example.com. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"\n'
            '_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"\n'
            'example.com. 300 IN A 192.0.2.10\n'
            'mail.example.com. 300 IN A 127.0.0.2\n'
            'mail.example.com. 300 IN TXT "v=spf1 a -all"\n')
    daemons, results = [], []
    with DnsServer(zone, port=53) as dns:
        try:
            specs = {}
            for kind in ("unix", "inet"):
                specs[kind] = {}
                for mode in ("no", "yes"):
                    d = os.path.join(tmp, "sluice-%s-%s" % (kind, mode))
                    os.makedirs(d)
                    s = SluiceDmarc(d, "dmarc_self_validate = %s\ndmarc_trusted_authserv_ids = mx.test\n"
                                    "dmarc_ignore_hosts = 127.0.0.1\n" % mode, kind, dns=dns).start()
                    daemons.append(s)
                    specs[kind]["sluice-dmarc self_validate=" + mode] = s.spec
                from postfix_dkim_harness import free_port
                od_spec = ("unix:" + os.path.join(tmp, "od-%s.sock" % kind)) if kind == "unix" else \
                    "inet:127.0.0.1:%d" % free_port()
                od = OpenDmarcd(os.path.join(tmp, "od-" + kind), od_spec)
                daemons.append(od)
                specs[kind]["opendmarc"] = od_spec
            for kind in ("unix", "inet"):
                names = sorted(specs[kind])
                for conns in (1, 4):
                    runs = {nm: [] for nm in names}
                    for nm in names:   # warm-up + correctness check
                        r = run_load(exe, specs[kind][nm], msgfile, conns, max(conns, 100))
                        if "dmarc=pass" not in r["first_mods"] or r["errors"]:
                            raise RuntimeError("%s %s: no dmarc=pass: %r" % (nm, kind, r))
                    for rep in range(args.reps):
                        order = names if rep % 2 == 0 else list(reversed(names))
                        for nm in order:
                            n = args.messages
                            if nm == "opendmarc" and kind == "inet":
                                n = min(n, args.inet_cap * conns)
                            runs[nm].append(run_load(exe, specs[kind][nm], msgfile, conns, n))
                    for nm in names:
                        rr = runs[nm]
                        row = {"socket": kind, "conns": conns, "daemon": nm,
                               "msgs_per_s": statistics.median(x["msgs_per_s"] for x in rr),
                               "p50_ms": statistics.median(x["p50_ms"] for x in rr),
                               "p99_ms": statistics.median(x["p99_ms"] for x in rr),
                               "errors": sum(x["errors"] for x in rr)}
                        results.append(row)
                        log("%-5s c=%d %-32s %8.1f msg/s  p50 %6.2f ms  p99 %6.2f ms" % (
                            kind, conns, nm, row["msgs_per_s"], row["p50_ms"], row["p99_ms"]))
        finally:
            for d in daemons:
                d.stop()
    loadavg = open("/proc/loadavg").read().split()[:3]
    idx = {(r["socket"], r["conns"], r["daemon"]): r for r in results}
    print("| socket | conns | OpenDMARC msg/s | sluice-dmarc (self_validate=no) msg/s | ratio | "
          "sluice-dmarc (self_validate=yes) msg/s | ratio | p50/p99 ms OpenDMARC | no | yes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("unix", "inet"):
        for conns in (1, 4):
            o = idx[(kind, conns, "opendmarc")]
            a = idx[(kind, conns, "sluice-dmarc self_validate=no")]
            b = idx[(kind, conns, "sluice-dmarc self_validate=yes")]
            print("| %s | %d | %.0f | %.0f | %.2f | %.0f | %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |" % (
                kind, conns, o["msgs_per_s"], a["msgs_per_s"], a["msgs_per_s"] / o["msgs_per_s"],
                b["msgs_per_s"], b["msgs_per_s"] / o["msgs_per_s"], o["p50_ms"], o["p99_ms"],
                a["p50_ms"], a["p99_ms"], b["p50_ms"], b["p99_ms"]))
    print("load average at the end (1/5/15 min): %s" % " ".join(loadavg))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "loadavg": loadavg, "args": vars(args)}, f, indent=1)
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
