#!/usr/bin/python3
"""make bench (milter part): sluiced + OpenDKIM against Postfix + OpenDKIM.

The same OpenDKIM (Debian's 2.11, signing: the clients are in its
InternalHosts) behind each MTA, over a unix socket and over inet, with the
same smtp-source load; runs interleaved, medians of --reps. Reports accepted
msg/s, the ratio sluiced/Postfix per socket type, and sluiced's inet/unix
ratio (a milter client without TCP_NODELAY stalls ~40 ms per message on
inet; within 10 % means no stall). Reuses bench_smtp.py's server set-ups.

Usage: bench_milter.py [--messages 2000] [--sessions 20] [--size 10240] [--reps 5]
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

OPENDKIM = "/usr/sbin/opendkim"


class OpenDKIM:
    def __init__(self, root, keydir, sock):
        self.dir = tempfile.mkdtemp(prefix="opendkim-", dir=root)
        self.sock = sock
        conf = os.path.join(self.dir, "opendkim.conf")
        with open(conf, "w") as f:
            f.write("\n".join(["Syslog no", "Background no", "Mode sv", "Domain example.com", "Selector sel",
                               "KeyFile %s/sel.private" % keydir, "Canonicalization relaxed/relaxed",
                               "SignatureAlgorithm rsa-sha256", "Socket " + sock, "UMask 000",
                               "PidFile %s/opendkim.pid" % self.dir, "UserID root", "RequireSafeKeys no",
                               "InternalHosts 127.0.0.1"]) + "\n")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        B.wait_for(self.up, 20, "opendkim on " + sock)

    def up(self):
        if self.proc.poll() is not None:
            raise B.BenchError("opendkim exited")
        try:
            if self.sock.startswith("local:"):
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock[6:])
            else:
                port, host = self.sock[5:].split("@")
                s = socket.create_connection((host, int(port)))
            s.close()
            return True
        except OSError:
            return False

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


def make_classes(sock_kind, keydir, root):
    state = {}

    def start_dkim():
        if sock_kind == "unix":
            sock = "local:%s/od-%d.sock" % (root, B.free_port())
        else:
            sock = "inet:%d@127.0.0.1" % B.free_port()
        state["od"] = OpenDKIM(root, keydir, sock)
        return milter_spec_for(sock_kind, sock)

    def stop_dkim():
        if "od" in state:
            state.pop("od").stop()

    class SluicedDKIM(B.Sluiced):
        kind = "sluiced+opendkim"

        def start(self):
            spec = start_dkim()
            with open(self.conf, "a") as f:
                f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
            super().start()

        def stop(self):
            try:
                super().stop()
            finally:
                stop_dkim()

    class PostfixDKIM(B.Postfix):
        kind = "postfix+opendkim"

        def start(self):
            spec = start_dkim()
            with open(os.path.join(self.confdir, "main.cf"), "a") as f:
                f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
            super().start()

        def stop(self):
            try:
                super().stop()
            finally:
                stop_dkim()

    return SluicedDKIM, PostfixDKIM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="sluice-bench-milter-")
    os.chmod(root, 0o755)
    keydir = os.path.join(root, "keys")
    os.makedirs(keydir)
    subprocess.run(["opendkim-genkey", "-D", keydir, "-d", "example.com", "-s", "sel", "-b", "2048"],
                   check=True, capture_output=True)
    os.chmod(os.path.join(keydir, "sel.private"), 0o644)
    results = {}
    try:
        for rep in range(args.reps):
            for sock_kind in ("unix", "inet"):
                sl, pf = make_classes(sock_kind, keydir, root)
                for cls in (sl, pf):
                    r = B.run_server(cls, root, "single", args)
                    key = (cls.kind, sock_kind)
                    results.setdefault(key, []).append(r["accepted_mps"])
                    B.log("rep %d %-17s %-4s accepted %7.0f msg/s  delivered %7.0f msg/s" % (
                        rep + 1, cls.kind, sock_kind, r["accepted_mps"], r["delivered_mps"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print("\nsluiced + OpenDKIM vs Postfix + OpenDKIM (signing, %d x %d KiB messages, %d sessions, "
          "1 msg/session; median of %d)" % (args.messages, args.size // 1024, args.sessions, args.reps))
    print("| socket | sluiced+opendkim msg/s | postfix+opendkim msg/s | ratio |")
    print("|---|--:|--:|--:|")
    for sk in ("unix", "inet"):
        a, b = med[("sluiced+opendkim", sk)], med[("postfix+opendkim", sk)]
        print("| %s | %.0f | %.0f | %.2fx |" % (sk, a, b, a / b))
    print("sluiced inet/unix: %.2f (no TCP stall when within 10 %%)" % (
        med[("sluiced+opendkim", "inet")] / med[("sluiced+opendkim", "unix")]))


if __name__ == "__main__":
    main()
