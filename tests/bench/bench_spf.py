#!/usr/bin/python3
"""bench_spf: sluice-spf vs postfix-policyd-spf-python vs spfquery (libspf2).

Policy requests/second and p50/p99 latency with 1 and 50 concurrent
clients (persistent connections driven by tests/bench/policy_load.c, a C
epoll client: the earlier asyncio client was the bottleneck), cold and
warm DNS cache, a mix of pass / fail / include chains /
a / mx / none, the same zones for everyone (unbound on 127.0.0.1:53 in a
private network + mount namespace whose /etc/resolv.conf points at it, so
the peers' system resolvers use it too), runs interleaved per scenario.

Run as root: /usr/bin/python3 tests/bench/bench_spf.py [--quick] [--json FILE]
(re-executes itself under `unshare --net --mount`; nothing leaves loopback).

- sluice-spf: the daemon (bin/sluice-spf -f) on a TCP port, persistent connections.
- policyd-spf: spawned per connection with the socket as stdin/stdout, exactly
  as Postfix's spawn(8) runs it (a small accept-and-exec wrapper here).
- spfquery: one process per check (libspf2), as a shell-out peer would use it.
"Cold" = a freshly started server (empty answer cache) on names not asked
before; "warm" = the same requests again. The DNS server is authoritative and
local, so cold costs are DNS round trips on loopback, not Internet latency.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin"))
Z = "bench.test"


def in_namespace():
    if os.environ.get("SLUICE_BENCH_NS") == "1":
        return
    if os.geteuid() != 0:
        raise SystemExit("bench_spf: needs root (network + mount namespace for the peers' resolvers)")
    env = dict(os.environ, SLUICE_BENCH_NS="1")
    os.execvpe("unshare", ["unshare", "--net", "--mount", "--propagation", "private",
                           sys.executable] + sys.argv, env)


def ns_setup(tmp):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rc = os.path.join(tmp, "resolv.conf")
    with open(rc, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", rc, "/etc/resolv.conf"], check=True)


def make_zone(ndom):
    """Zone text and per-domain (kind, good ip, bad ip)."""
    lines, doms = [], []
    lines.append('inc1.%s. 300 IN TXT "v=spf1 include:inc2.%s -all"' % (Z, Z))
    lines.append('inc2.%s. 300 IN TXT "v=spf1 ip4:10.9.0.0/16 a:relay.%s ~all"' % (Z, Z))
    lines.append("relay.%s. 300 IN A 10.8.0.1" % Z)
    kinds = ["pass", "fail", "include", "a", "mx", "none"]
    for i in range(ndom):
        k = kinds[i % len(kinds)]
        d = "d%d.%s" % (i, Z)
        n = i % 250 + 1
        if k == "pass":
            lines.append('%s. 300 IN TXT "v=spf1 ip4:10.1.%d.0/24 -all"' % (d, n))
            doms.append((d, "10.1.%d.7" % n))
        elif k == "fail":
            lines.append('%s. 300 IN TXT "v=spf1 ip4:10.2.%d.0/24 -all"' % (d, n))
            doms.append((d, "10.99.%d.7" % n))
        elif k == "include":
            lines.append('%s. 300 IN TXT "v=spf1 include:inc1.%s -all"' % (d, Z))
            doms.append((d, "10.9.%d.7" % n))
        elif k == "a":
            lines.append('%s. 300 IN TXT "v=spf1 a a:mail.%s -all"' % (d, d))
            lines.append("mail.%s. 300 IN A 10.3.%d.9" % (d, n))
            doms.append((d, "10.3.%d.9" % n))
        elif k == "mx":
            lines.append('%s. 300 IN TXT "v=spf1 mx -all"' % d)
            lines.append("%s. 300 IN MX 10 mx1.%s." % (d, d))
            lines.append("%s. 300 IN MX 20 mx2.%s." % (d, d))
            lines.append("mx1.%s. 300 IN A 10.4.%d.1" % (d, n))
            lines.append("mx2.%s. 300 IN A 10.4.%d.2" % (d, n))
            doms.append((d, "10.4.%d.2" % n))
        else:
            lines.append("%s. 300 IN A 10.5.%d.1" % (d, n))
            doms.append((d, "10.5.%d.1" % n))
    lines.append('warm.%s. 300 IN TXT "v=spf1 -all"' % Z)
    return "\n".join(lines) + "\n", doms


def requests_for(doms, n, offset=0):
    out = []
    for i in range(n):
        d, ip = doms[(i + offset) % len(doms)]
        out.append({"request": "smtpd_access_policy", "protocol_state": "RCPT",
                    "protocol_name": "ESMTP", "client_address": ip, "client_name": "unknown",
                    "helo_name": "helo%d.%s" % (i % 50, Z), "sender": "u%d@%s" % (i, d),
                    "recipient": "rcpt@example.net", "instance": "bench-%d-%d" % (offset, i)})
    return out


def wire(req):
    return "".join("%s=%s\n" % kv for kv in req.items()) + "\n"


def build_client(d):
    """tests/bench/policy_load.c (C, epoll): Python's asyncio client was the bottleneck."""
    exe = os.path.join(d, "policy_load")
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "policy_load.c"),
                    "-o", exe], check=True)
    return exe


def policy_run(client, tmp, port, reqs, conc):
    """reqs over conc persistent connections with policy_load; its JSON result.
    Every connection first asks one warm-up request, before the clock starts (so
    policyd-spf's per-connection processes are up)."""
    rf, wf = os.path.join(tmp, "requests"), os.path.join(tmp, "warm")
    with open(rf, "w") as f:
        f.write("".join(wire(q) for q in reqs))
    with open(wf, "w") as f:
        f.write(wire({"request": "smtpd_access_policy", "client_address": "10.0.0.1",
                      "helo_name": "warm.%s" % Z, "sender": "w@warm.%s" % Z, "instance": "w{n}"}))
    r = subprocess.run([client, "-s", "inet:127.0.0.1:%d" % port, "-r", rf, "-c", str(conc),
                        "-n", str(len(reqs)), "-W", wf, "-T", "600"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("policy_load: %s %s" % (r.stdout, r.stderr))
    return json.loads(r.stdout)


def load_stats(name, res):
    return {"impl": name, "n": res["reqs"], "rps": res["req_per_s"], "p50_ms": res["p50_ms"],
            "p99_ms": res["p99_ms"]}


def stats(name, wall, lat):
    lat = sorted(lat)
    n = len(lat)
    return {"impl": name, "n": n, "rps": n / wall if wall else 0.0,
            "p50_ms": lat[n // 2] * 1000 if n else 0, "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000 if n else 0}


class SluiceSpf:
    def __init__(self, tmp):
        self.port = free_port()
        self.conf = os.path.join(tmp, "sluice-spf.conf")
        with open(self.conf, "w") as f:
            f.write("myhostname = mx.bench\ndns_servers = 127.0.0.1:53\nmail_owner = root\n"
                    "maillog_file = %s/sluice-spf.log\nspf_socket = inet:127.0.0.1:%d\n"
                    "spf_skip_addresses =\nspf_cache_size = 200000\n" % (tmp, self.port))

    def __enter__(self):
        self.p = subprocess.Popen([os.path.join(BIN, "sluice-spf"), "-c", self.conf, "-f"])
        wait_port(self.port)
        return self

    def __exit__(self, *a):
        self.p.terminate()
        self.p.wait(timeout=20)


class PolicydSpf:
    """Accept on a TCP port; exec policyd-spf per connection with the socket as stdin/stdout."""

    def __init__(self, tmp):
        self.port = free_port()
        self.conf = os.path.join(tmp, "policyd-spf.conf")
        with open(self.conf, "w") as f:
            f.write("debugLevel = 0\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\n"
                    "PermError_reject = False\nTempError_Defer = False\nskip_addresses = 192.0.2.255/32\n"
                    "Lookup_Time = 20\n")
        self.children = []

    def __enter__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(128)
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()
        return self

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.children.append(subprocess.Popen(["/usr/bin/policyd-spf", self.conf], stdin=c, stdout=c,
                                                  stderr=subprocess.DEVNULL))
            c.close()

    def __exit__(self, *a):
        self.stop = True
        self.ls.close()
        for p in self.children:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=20)


def spfquery_run(reqs, conc):
    lat = []

    def one(q):
        t = time.perf_counter()
        subprocess.run(["spfquery", "-ip", q["client_address"], "-sender", q["sender"],
                        "-helo", q["helo_name"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex:
        list(ex.map(one, reqs))
    return time.perf_counter() - t0, lat


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d not listening" % port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    in_namespace()
    import dnsserver
    tmp = tempfile.mkdtemp(prefix="sluice-bench-spf.")
    ns_setup(tmp)
    client = build_client(tmp)
    scale = 0.2 if args.quick else 1.0
    n_sluice, n_pyspf, n_spfq = int(6000 * scale), int(900 * scale), int(300 * scale)
    zone, doms = make_zone(12000)
    dnsserver._free_port = lambda: 53
    results = []
    with dnsserver.DnsServer(zone):
        off = 0
        for conc in (1, 50):
            for temp in ("cold", "warm"):
                for impl in ("sluice-spf", "policyd-spf", "spfquery"):
                    n = {"sluice-spf": n_sluice, "policyd-spf": n_pyspf, "spfquery": n_spfq}[impl]
                    if temp == "cold":
                        off += n  # names nobody asked for before
                    reqs = requests_for(doms, n, offset=off if temp == "cold" else off - n)
                    if impl == "sluice-spf":
                        srv = SluiceSpf(tmp)
                        with srv:
                            if temp == "warm":
                                policy_run(client, tmp, srv.port, reqs, conc)  # fill the cache
                                reqs = [dict(q, instance=q["instance"] + "w") for q in reqs]
                            s = load_stats(impl, policy_run(client, tmp, srv.port, reqs, conc))
                    elif impl == "policyd-spf":
                        with PolicydSpf(tmp) as srv:
                            s = load_stats(impl, policy_run(client, tmp, srv.port, reqs, conc))
                    else:
                        wall, lat = spfquery_run(reqs, conc)
                        s = stats(impl, wall, lat)
                    s.update(conc=conc, cache=temp)
                    results.append(s)
                    print("%-11s conc=%-2d %-4s n=%-5d %8.0f req/s  p50 %7.2f ms  p99 %7.2f ms" % (
                        impl, conc, temp, s["n"], s["rps"], s["p50_ms"], s["p99_ms"]), flush=True)
    print("\n| clients | cache | sluice-spf req/s | policyd-spf req/s | spfquery checks/s | sluice/policyd | sluice/spfquery | p50/p99 ms sluice | policyd | spfquery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for conc in (1, 50):
        for temp in ("cold", "warm"):
            r = {x["impl"]: x for x in results if x["conc"] == conc and x["cache"] == temp}
            a, b, c = r["sluice-spf"], r["policyd-spf"], r["spfquery"]
            print("| %d | %s | %.0f | %.0f | %.0f | %.1fx | %.1fx | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |" % (
                conc, temp, a["rps"], b["rps"], c["rps"], a["rps"] / b["rps"], a["rps"] / c["rps"],
                a["p50_ms"], a["p99_ms"], b["p50_ms"], b["p99_ms"], c["p50_ms"], c["p99_ms"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
