#!/usr/bin/python3
"""make bench (relay part, issue 6): sluiced relaying to smtp-sink against Postfix doing the same.

Both MTAs (bench_smtp.py's private set-ups, reused) relay every recipient
user@relay.test to `relayhost = [127.0.0.1]:PORT`, where PORT is a fresh
Postfix smtp-sink (no disk, started per run, `-c` so it prints running
counters; a reader thread follows its `mesg=N` count). The client is
smtp-source (-s 20 -l 10240 -m 5000, one message per session) from
user@example.com, which both MTAs accept from 127.0.0.0/8 (mynetworks).
Runs are interleaved (sluiced, postfix, sluiced, ...), medians of --reps.

Per run:
  accepted msg/s   N / wall time of smtp-source (every message got its 250)
  end-to-end msg/s N / time from smtp-source start until the sink has
                   received N messages (the number in the issue)
  server CPU s     utime+stime of the MTA's process tree over the same span
  other CPU s      busy CPU of the machine minus MTA, smtp-source, smtp-sink
                   and this script: noise from other tenants
After each run the MTA's log is scanned for warnings, errors, deferrals and
bounces (counted and reported; a few sample lines are printed), and the
sink's final count is checked for duplicates (> N).

Every wait has a timeout; every process is stopped by PID; loopback only.
Run as root with /usr/bin/python3 (Postfix's master must start as root).

Usage: bench_relay.py [--messages 5000] [--sessions 20] [--size 10240] [--reps 3]
                      [--servers sluiced,postfix] [--json FILE]
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_smtp as B  # noqa: E402

RCPT = "user@relay.test"
SINK_BACKLOG = "100"
BAD_LINE = re.compile(r"warning|error|fatal|panic|status=(deferred|bounced)|\bbounce|defer",
                      re.IGNORECASE)


class Sink:
    """smtp-sink -c on a fresh loopback port; counts received messages from its stdout."""

    def __init__(self):
        self.port = B.free_port()
        self.count = 0
        self.t_reached = None       # monotonic time the count reached self.target
        self.target = None
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([B.SMTP_SINK, "-c", "-u", "nobody",
                                      "127.0.0.1:%d" % self.port, SINK_BACKLOG],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        B.wait_for(lambda: self.proc.poll() is not None or B.greets(self.port), 20,
                   "smtp-sink greeting on port %d" % self.port)
        if self.proc.poll() is not None:
            raise B.BenchError("smtp-sink exited: %s" % self.proc.stderr.read().decode(errors="replace"))

    def _read(self):
        # counters like "sess=7 quit=7 mesg=10\r", one update per event
        buf = b""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *updates, buf = re.split(rb"[\r\n]", buf)
            for u in reversed(updates):
                m = re.search(rb"mesg=(\d+)", u)
                if m:
                    n = int(m.group(1))
                    now = time.monotonic()
                    with self.lock:
                        self.count = max(self.count, n)
                        if self.target is not None and self.t_reached is None \
                                and self.count >= self.target:
                            self.t_reached = now
                    break

    def get(self):
        with self.lock:
            return self.count, self.t_reached

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.reader.join(timeout=5)


def relay_classes(sink_port):
    relayhost = "[127.0.0.1]:%d" % sink_port

    class SluicedRelay(B.Sluiced):
        kind = "sluiced"

        def __init__(self, root):
            super().__init__(root)
            with open(self.conf, "a") as f:
                f.write("mynetworks = 127.0.0.0/8\nrelayhost = %s\n" % relayhost)

    class PostfixRelay(B.Postfix):
        kind = "postfix"

        def __init__(self, root):
            super().__init__(root)
            with open(os.path.join(self.confdir, "main.cf"), "a") as f:
                f.write("relayhost = %s\n" % relayhost)

    return {"sluiced": SluicedRelay, "postfix": PostfixRelay}


def scan_log(path):
    """(number of suspicious lines, a few samples) in an MTA log."""
    n, samples = 0, []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if BAD_LINE.search(line):
                    n += 1
                    if len(samples) < 5:
                        samples.append(line.rstrip())
    except OSError:
        pass
    return n, samples


def count_sent(path):
    n = 0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if "status=sent" in line:
                    n += 1
    except OSError:
        pass
    return n


def run_relay(kind, root, args):
    sink = Sink()
    srv = None
    stopped = False
    try:
        srv = relay_classes(sink.port)[kind](root)
        srv.start()
        B.subprocess.run(["sync"], timeout=120)
        hz = os.sysconf("SC_CLK_TCK")
        sink.target = args.messages
        cpu0 = B.tree_cpu_ticks(srv.tree())
        busy0, self0 = B.busy_ticks(), time.process_time()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sink_cpu0 = (B.proc_stat(sink.proc.pid) or (0, 0, 0))[2]
        t0 = time.monotonic()
        src = subprocess.Popen([B.SMTP_SOURCE, "-s", str(args.sessions), "-l", str(args.size),
                                "-m", str(args.messages), "-f", B.ADDR, "-t", RCPT, "-M", B.HELO,
                                "127.0.0.1:%d" % srv.port],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_acc = None
        peak_kib = nprocs = 0
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                tree = srv.tree()
                nprocs = max(nprocs, len(tree))
                peak_kib = max(peak_kib, sum(B.vm_hwm_kib(p) for p in tree))
                next_sample = now + B.SAMPLE_S
            if t_acc is None and src.poll() is not None:
                t_acc = time.monotonic() - t0
                if src.returncode != 0:
                    raise B.BenchError("smtp-source exited %d: %s\nserver log: %s" % (
                        src.returncode, src.stdout.read().decode(errors="replace")[-2000:],
                        B.read_text(srv.log)))
            got, t_reached = sink.get()
            if t_acc is not None and t_reached is not None:
                break
            if now - t0 > args.timeout:
                if src.poll() is None:
                    src.kill()
                    src.wait(timeout=10)
                raise B.BenchError("%s: not done after %.0fs (accepted: %s, at sink %d/%d)\n%s" % (
                    kind, args.timeout, t_acc, got, args.messages, B.read_text(srv.log)))
            time.sleep(0.02)
        t_e2e = t_reached - t0
        tree = srv.tree()
        peak_kib = max(peak_kib, sum(B.vm_hwm_kib(p) for p in tree))
        cpu_s = (B.tree_cpu_ticks(tree) - cpu0) / hz
        sink_cpu_s = ((B.proc_stat(sink.proc.pid) or (0, 0, sink_cpu0))[2] - sink_cpu0) / hz
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_s = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        busy_s = (B.busy_ticks() - busy0) / hz
        other_s = max(0.0, busy_s - cpu_s - client_s - sink_cpu_s - (time.process_time() - self0))
        time.sleep(1.0)         # anything more arriving would be a duplicate
        final, _ = sink.get()
        stopped = True
        srv.stop()
        nbad, samples = scan_log(srv.log)
        return {"server": kind, "accept_s": t_acc, "e2e_s": t_e2e,
                "accepted_mps": args.messages / t_acc, "e2e_mps": args.messages / t_e2e,
                "cpu_s": cpu_s, "sink_cpu_s": sink_cpu_s, "client_cpu_s": client_s,
                "other_cpu_s": other_s, "peak_rss_mib": peak_kib / 1024.0, "procs": nprocs,
                "sink_final": final, "sent_lines": count_sent(srv.log),
                "log_bad_lines": nbad, "log_samples": samples}
    finally:
        try:
            if srv is not None and not stopped:
                srv.stop()
        finally:
            try:
                sink.stop()
            finally:
                if srv is not None:
                    srv.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--servers", default="sluiced,postfix")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    ap.add_argument("--json", help="also write every run's figures to this file")
    args = ap.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        if s not in ("sluiced", "postfix"):
            ap.error("unknown server %r (sluiced, postfix)" % s)
    for path in [B.SMTP_SOURCE, B.SMTP_SINK, B.SLUICED, B.POSTFIX, B.MASTER_CF_DIST]:
        if not os.path.exists(path):
            sys.exit("bench_relay: %s missing (make deps; make)" % path)
    if "postfix" in servers and os.geteuid() != 0:
        sys.exit("bench_relay: Postfix must be started as root (its master runs as root)")

    facts = B.machine_facts()
    started = time.monotonic()
    root = tempfile.mkdtemp(prefix="sluice-bench-relay-")
    os.chmod(root, 0o755)
    results = []
    try:
        for rep in range(args.reps):
            for kind in servers:
                r = run_relay(kind, root, args)
                r["rep"] = rep
                results.append(r)
                B.log("rep %d %-7s accepted %6.0f msg/s (%.2fs)  end-to-end %6.0f msg/s (%.2fs)  "
                      "CPU %.1fs  RSS %.1f MiB  sink got %d  log: %d status=sent, %d suspicious "
                      "lines  other CPU %.1fs" % (
                          rep + 1, kind, r["accepted_mps"], r["accept_s"], r["e2e_mps"], r["e2e_s"],
                          r["cpu_s"], r["peak_rss_mib"], r["sink_final"], r["sent_lines"],
                          r["log_bad_lines"], r["other_cpu_s"]))
                for line in r["log_samples"]:
                    B.log("    | " + line)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    load_end = open("/proc/loadavg").read().split()[:3]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "args": vars(args), "runs": results}, f, indent=1)

    def med(kind, key):
        v = [r[key] for r in results if r["server"] == kind]
        return statistics.median(v) if v else float("nan")

    print("\nRelay to smtp-sink: %d x %d B messages, smtp-source -s %d (1 msg/session), %s -> %s, "
          "relayhost = [127.0.0.1]:sink; median of %d interleaved runs" % (
              args.messages, args.size, args.sessions, B.ADDR, RCPT, args.reps))
    print("Machine: %d CPUs (%s), Postfix %s, sluiced %s; load average at start %s, at end %s; "
          "wall %.0f s" % (facts["nproc"], facts["cpu"], facts["postfix"], facts["sluiced"],
                           " ".join(facts["loadavg"]), " ".join(load_end), elapsed))
    print("")
    print("| server | accepted msg/s | end-to-end msg/s | server CPU s | peak RSS MiB | max procs |")
    print("|---|--:|--:|--:|--:|--:|")
    for kind in servers:
        print("| %s | %.0f | %.0f | %.1f | %.1f | %d |" % (
            kind, med(kind, "accepted_mps"), med(kind, "e2e_mps"), med(kind, "cpu_s"),
            med(kind, "peak_rss_mib"), max(r["procs"] for r in results if r["server"] == kind)))
    if "sluiced" in servers and "postfix" in servers:
        print("| **sluiced / Postfix** | **%.2f×** | **%.2f×** | %.2f× | %.2f× | |" % (
            med("sluiced", "accepted_mps") / med("postfix", "accepted_mps"),
            med("sluiced", "e2e_mps") / med("postfix", "e2e_mps"),
            med("sluiced", "cpu_s") / med("postfix", "cpu_s"),
            med("sluiced", "peak_rss_mib") / med("postfix", "peak_rss_mib")))
    print("")
    print("Every run (accepted / end-to-end msg/s / other tenants' CPU s):")
    for kind in servers:
        print("- %s: %s" % (kind, ", ".join("%.0f/%.0f/%.1f" % (
            r["accepted_mps"], r["e2e_mps"], r["other_cpu_s"])
            for r in results if r["server"] == kind)))
    dups = [r for r in results if r["sink_final"] != args.messages]
    bad = [r for r in results if r["log_bad_lines"]]
    if dups:
        print("Sink count differs from %d: %s" % (args.messages, ", ".join(
            "%s rep %d: %d" % (r["server"], r["rep"] + 1, r["sink_final"]) for r in dups)))
    if bad:
        print("Suspicious log lines: %s" % ", ".join(
            "%s rep %d: %d" % (r["server"], r["rep"] + 1, r["log_bad_lines"]) for r in bad))


if __name__ == "__main__":
    main()
