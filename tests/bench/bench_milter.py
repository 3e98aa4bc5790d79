#!/usr/bin/python3
"""make bench (milter part): DKIM signing milters behind an MTA, with smtp-source.

Two comparisons, each with runs interleaved and medians of --reps:

1. Issue 3 (our milter client): sluiced + OpenDKIM against Postfix + OpenDKIM.
   The same OpenDKIM (Debian's 2.11, signing: the clients are in its
   InternalHosts) behind each MTA, over a unix socket and over inet, with the
   same smtp-source load (--sessions parallel sessions, 1 msg/session).
   Reports accepted msg/s, the ratio sluiced/Postfix per socket type,
   sluiced's inet/unix ratio, and the end-of-DATA latency of single
   messages (a stall shows there as ~40 ms: 20 parallel sessions hide it
   in the throughput).

2. Issue 4 (our milter): Postfix + sluice-dkim against Postfix + OpenDKIM,
   same RSA-2048 key (from `sluice keygen`), unix and inet, 1 and 4
   concurrent SMTP sessions (so 1 and 4 milter connections), signing (smtp-
   source from an internal host) and verifying (smtp_send.py sends a
   dkimpy-signed message from 127.0.0.2; the key is on a DNS server on
   loopback, both milters cache it): accepted msg/s and, from a probe that sends
   --probe messages one at a time on one session, p50/p99 of the time from
   the end of DATA to Postfix's 250 (the milter's end-of-message work is in
   it). Every run checks that a delivered message carries a DKIM-Signature
   (sign) or dkim=pass (verify).
   Postfix + OpenDKIM over inet stalls 45-90 ms per message (neither sets
   TCP_NODELAY), so those runs send at most --inet-cap messages per session.

Part 1 also reports CPU ms per message of the MTA, OpenDKIM and smtp-source,
and the ratio sluiced + OpenDKIM could reach if sluiced used no CPU at all:
on a machine where the run is CPU-bound, the goal cannot exceed it.

Reuses bench_smtp.py's server set-ups.

Usage: bench_milter.py [--messages 2000] [--sessions 20] [--size 10240] [--reps 5]
                       [--only mta|dkim] [--probe 200] [--inet-cap 150]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_smtp as B  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from dnsserver import DnsServer  # noqa: E402
from postfix_dkim_harness import SluiceDkim, dkimpy_sign, keygen, milter_socket_up  # noqa: E402

OPENDKIM = "/usr/sbin/opendkim"


class OpenDKIM:
    def __init__(self, root, keydir, sock, dns_port=None):
        self.dir = tempfile.mkdtemp(prefix="opendkim-", dir=root)
        self.sock = sock
        conf = os.path.join(self.dir, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("\n".join(["Syslog no", "Background no", "Mode sv", "Domain example.com", "Selector sel",
                               "KeyFile %s/sel.private" % keydir, "Canonicalization relaxed/relaxed",
                               "SignatureAlgorithm rsa-sha256", "Socket " + sock, "UMask 000",
                               "PidFile %s/opendkim.pid" % self.dir, "UserID root", "RequireSafeKeys no",
                               "InternalHosts 127.0.0.1"]
                              + (["Nameservers 127.0.0.1@%d" % dns_port, "QueryCache yes"] if dns_port else []))
                    + "\n")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        B.wait_for(self.up, 20, "opendkim on " + sock)

    def pid(self):
        return self.proc.pid

    def up(self):
        if self.proc.poll() is not None:
            raise B.BenchError("opendkim exited")
        return milter_socket_up(self.sock)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def milter_spec_for(kind, sock):
    """OpenDKIM's Sendmail-style socket in Postfix's smtpd_milters syntax (sluiced takes both)."""
    if sock.startswith("local:"):
        return "unix:" + sock[6:]
    port, host = sock[5:].split("@")
    return "inet:%s:%s" % (host, port)


class SluiceDkimd:
    """sluice-dkim signing with the same key (and InternalHosts-like
    dkim_internal_hosts default 127.0.0.1) on a unix or inet socket."""

    def __init__(self, root, keydir, kind, dns=None):
        self.dir = tempfile.mkdtemp(prefix="sluice-dkim-", dir=root)
        os.chmod(self.dir, 0o755)
        spec = ("unix:%s/dkim.sock" % self.dir) if kind == "unix" else "inet:127.0.0.1:%d" % B.free_port()
        self.d = SluiceDkim(self.dir, "dkim_domain = example.com\ndkim_selector = sel\n"
                            "dkim_key_file = %s/sel.private\n" % keydir, spec, umask=0, dns=dns).start()
        self.spec = spec

    def pid(self):
        return self.d.proc.pid

    def stop(self):
        self.d.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_milter(milter, sock_kind, keydir, root, dns=None):
    """-> (handle with stop(), smtpd_milters value); dns: a DnsServer for verifying"""
    if milter == "sluice-dkim":
        h = SluiceDkimd(root, keydir, sock_kind, dns)
        return h, h.spec
    if sock_kind == "unix":
        sock = "local:%s/od-%d.sock" % (root, B.free_port())
    else:
        sock = "inet:%d@127.0.0.1" % B.free_port()
    return OpenDKIM(root, keydir, sock, dns.port if dns else None), milter_spec_for(sock_kind, sock)


def check_signed(srv, want=b"DKIM-Signature:"):
    """the run was real: a delivered message carries a DKIM-Signature (or dkim=pass)"""
    new = srv.maildir_new()
    names = sorted(os.listdir(new)) if os.path.isdir(new) else []
    if not names:
        return
    with open(os.path.join(new, names[0]), "rb") as f:
        head = f.read(65536).split(b"\n\n", 1)[0]
    if want not in head:
        raise B.BenchError("%s: delivered message without %s:\n%s" % (
            srv.kind, want.decode(), head.decode(errors="replace")))


def make_class(mta, milter, sock_kind, keydir, root, probe=0, size=10240, verify=None):
    """A bench_smtp server class: MTA ("sluiced"/"postfix") with milter in smtpd_milters.
    verify: None (signing: smtp-source from 127.0.0.1, an internal host) or (DnsServer,
    signed message file): smtp_send.py sends that file from 127.0.0.2 and the milter verifies."""
    base = B.Sluiced if mta == "sluiced" else B.Postfix

    class WithMilter(base):
        kind = "%s+%s" % (mta, milter)
        latencies = []
        milter_cpu_s = 0.0

        def start(self):
            self._m, spec = start_milter(milter, sock_kind, keydir, root, verify[0] if verify else None)
            conf = self.conf if mta == "sluiced" else os.path.join(self.confdir, "main.cf")
            with open(conf, "a") as f:
                f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
            super().start()

        def stop(self):
            try:
                check_signed(self, b"dkim=pass" if verify else b"DKIM-Signature:")
                WithMilter.milter_cpu_s = cpu_s(self._m.pid())
                if probe:
                    WithMilter.latencies = probe_latency(
                        self.port, probe, size, *((VERIFY_SOURCE, open(verify[1], "rb").read())
                                                  if verify else ()))
                super().stop()
            finally:
                self._m.stop()

    if verify:
        def source_cmd(self, port, n, sessions):
            return ["/usr/bin/python3", os.path.join(HERE, "smtp_send.py"), "-s", str(sessions), "-m", str(n),
                    "-f", B.ADDR, "-t", B.ADDR, "-b", VERIFY_SOURCE, "-F", verify[1],
                    "127.0.0.1:%d" % port]
        WithMilter.source_cmd = source_cmd
    return WithMilter


HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY_SOURCE = "127.0.0.2"     # not an internal host: the milters verify


def probe_latency(port, n, size, source="127.0.0.1", message=None):
    """n messages one after another on one SMTP session: ms from the end of DATA to the
    reply. message: a fixed message (bytes) instead of a generated one."""
    s = socket.create_connection(("127.0.0.1", port), 30, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise B.BenchError("probe: connection closed")
            if line[3:4] != b"-":
                return int(line[:3])
    body = (b"From: <%s>\r\nTo: <%s>\r\nSubject: probe\r\n\r\n" % (B.ADDR.encode(), B.ADDR.encode())
            + (b"x" * 78 + b"\r\n") * max(1, size // 80))
    if message is not None:
        body = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    out = []
    try:
        reply()
        s.sendall(b"EHLO probe.test\r\n")
        reply()
        for _ in range(n):
            s.sendall(b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (B.ADDR.encode(), B.ADDR.encode()))
            for _ in range(3):
                reply()
            s.sendall(body)
            t0 = time.monotonic()
            s.sendall(b".\r\n")
            code = reply()
            out.append((time.monotonic() - t0) * 1000)
            if code != 250:
                raise B.BenchError("probe: end of data got %d" % code)
        s.sendall(b"QUIT\r\n")
    finally:
        s.close()
    return out


def cpu_s(pid):
    """user + system CPU seconds of one process so far"""
    try:
        st = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--only", choices=("mta", "dkim"))
    ap.add_argument("--probe", type=int, default=200, help="latency probe messages per run (dkim part)")
    ap.add_argument("--inet-cap", type=int, default=150,
                    help="dkim part: messages per session for Postfix + OpenDKIM over inet (it stalls)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="sluice-bench-milter-")
    os.chmod(root, 0o755)
    keydir = os.path.join(root, "keys")
    (key,) = keygen(keydir, "example.com", "sel", "rsa")     # RSA-2048, sel.private
    os.chmod(key.private, 0o644)
    # the verify load: a 10 KiB message signed by dkimpy with the same key
    verify_file = os.path.join(root, "signed.eml")
    plain = (b"From: <%s>\nTo: <%s>\nSubject: bench verify\nDate: Sun, 22 Nov 2026 00:00:00 +0000\n"
             b"Message-ID: <verify@example.com>\n\n" % (B.ADDR.encode(), B.ADDR.encode())
             + (b"x" * 78 + b"\n") * max(1, args.size // 80))
    with open(verify_file, "wb") as f:
        f.write(dkimpy_sign(plain, key))
    dns = DnsServer(key.zone) if args.only != "mta" else None
    results, lat, cpu = {}, {}, {}
    try:
        for rep in range(args.reps):
            for sock_kind in ("unix", "inet"):
                if args.only != "dkim":
                    pair = [("sluiced", "opendkim"), ("postfix", "opendkim")]
                    for mta, milter in (pair if rep % 2 == 0 else pair[::-1]):
                        probe = args.probe if not (mta == "postfix" and sock_kind == "inet") \
                            else min(args.probe, 50)
                        cls = make_class(mta, milter, sock_kind, keydir, root, probe, args.size)
                        r = B.run_server(cls, root, "single", args)
                        lat.setdefault(("mta", cls.kind, sock_kind), []).extend(cls.latencies)
                        results.setdefault(("mta", cls.kind, sock_kind, args.sessions), []).append(
                            r["accepted_mps"])
                        # CPU ms per message: the MTA's processes, the milter, smtp-source
                        cpu.setdefault((cls.kind, sock_kind), []).append(
                            (1000 * r["cpu_s"] / args.messages, 1000 * cls.milter_cpu_s / args.messages,
                             1000 * r["client_cpu_s"] / args.messages))
                        B.log("rep %d %-20s %-4s s=%-2d accepted %7.0f msg/s  delivered %7.0f msg/s" % (
                            rep + 1, cls.kind, sock_kind, args.sessions, r["accepted_mps"],
                            r["delivered_mps"]))
                if args.only != "mta":
                    for op, sessions in (("sign", 1), ("sign", 4), ("verify", 1), ("verify", 4)):
                        a = argparse.Namespace(**vars(args))
                        a.sessions = sessions
                        pair = [("postfix", "sluice-dkim"), ("postfix", "opendkim")]
                        for mta, milter in (pair if rep % 2 == 0 else pair[::-1]):
                            stalls = milter == "opendkim" and sock_kind == "inet"
                            probe = min(args.probe, 50) if stalls else args.probe
                            cls = make_class(mta, milter, sock_kind, keydir, root, probe, args.size,
                                             (dns, verify_file) if op == "verify" else None)
                            # Postfix + OpenDKIM over TCP stall ~45-90 ms per message
                            a.messages = min(args.messages, args.inet_cap * sessions) if stalls \
                                else args.messages
                            r = B.run_server(cls, root, "single", a)
                            key_ = ("dkim", cls.kind, sock_kind, op, sessions)
                            results.setdefault(key_, []).append(r["accepted_mps"])
                            lat.setdefault(key_, []).extend(cls.latencies)
                            B.log("rep %d %-20s %-4s %-6s s=%-2d accepted %7.0f msg/s  probe p50 %.2f ms" % (
                                rep + 1, cls.kind, sock_kind, op, sessions, r["accepted_mps"],
                                pct(cls.latencies, 0.5)))
    finally:
        if dns:
            dns.stop()
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    if args.only != "dkim":
        print("\nsluiced + OpenDKIM vs Postfix + OpenDKIM (signing, %d x %d KiB messages, %d sessions, "
              "1 msg/session; median of %d)" % (args.messages, args.size // 1024, args.sessions, args.reps))
        print("| socket | sluiced+opendkim msg/s | postfix+opendkim msg/s | ratio |")
        print("|---|--:|--:|--:|")
        for sk in ("unix", "inet"):
            a = med[("mta", "sluiced+opendkim", sk, args.sessions)]
            b = med[("mta", "postfix+opendkim", sk, args.sessions)]
            print("| %s | %.0f | %.0f | %.2fx |" % (sk, a, b, a / b))
        print("\nlatency, end of DATA -> 250, one message at a time (ms p50 / p99): " + ", ".join(
            "%s %s %.2f / %.2f" % (k, sk, pct(lat[("mta", k, sk)], 0.5), pct(lat[("mta", k, sk)], 0.99))
            for sk in ("unix", "inet") for k in ("sluiced+opendkim", "postfix+opendkim")))
        print("sluiced inet/unix: %.2f (no TCP stall when within 10 %%)" % (
            med[("mta", "sluiced+opendkim", "inet", args.sessions)] /
            med[("mta", "sluiced+opendkim", "unix", args.sessions)]))
        print("\nCPU ms per message (medians): MTA processes / OpenDKIM / smtp-source")
        for sk in ("unix", "inet"):
            c = {k: [statistics.median(x[i] for x in cpu[(k, sk)]) for i in range(3)]
                 for k in ("sluiced+opendkim", "postfix+opendkim")}
            for k in c:
                print("  %-4s %-17s %.2f / %.2f / %.2f" % (sk, k, *c[k]))
            pf, sl = c["postfix+opendkim"], c["sluiced+opendkim"]
            # CPU-bound on this machine: the best sluiced could do is to use no CPU at all
            print("  %-4s bound on sluiced+OpenDKIM / Postfix+OpenDKIM if sluiced used no CPU: %.2f "
                  "(OpenDKIM and smtp-source CPU as measured behind sluiced)" % (
                      sk, sum(pf) / (sl[1] + sl[2])))
    if args.only != "mta":
        print("\nPostfix + sluice-dkim vs Postfix + OpenDKIM (RSA-2048, %d x %d KiB messages, "
              "1 msg/session, median of %d; sign: smtp-source from 127.0.0.1, verify: smtp_send.py "
              "from 127.0.0.2 with a dkimpy-signed message; latency: end of DATA -> 250, %d probe "
              "messages per run)" % (args.messages, args.size // 1024, args.reps, args.probe))
        print("| socket | op | sessions | sluice-dkim msg/s | OpenDKIM msg/s | ratio | sluice-dkim p50/p99 ms "
              "| OpenDKIM p50/p99 ms |")
        print("|---|---|--:|--:|--:|--:|--:|--:|")
        for sk in ("unix", "inet"):
            for op in ("sign", "verify"):
                for sessions in (1, 4):
                    ka = ("dkim", "postfix+sluice-dkim", sk, op, sessions)
                    kb = ("dkim", "postfix+opendkim", sk, op, sessions)
                    print("| %s | %s | %d | %.0f | %.0f | %.2fx | %.2f / %.2f | %.2f / %.2f |" % (
                        sk, op, sessions, med[ka], med[kb], med[ka] / med[kb], pct(lat[ka], 0.5),
                        pct(lat[ka], 0.99), pct(lat[kb], 0.5), pct(lat[kb], 0.99)))
    print("load average at the end (1/5/15 min): %s" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
