#!/usr/bin/python3
"""make bench: sluiced against Debian's Postfix 3.7, side by side, with smtp-source.

Every run gets a fresh temp dir (queue, Maildir base, log) and a freshly started
server on a free 127.0.0.1 port; runs are interleaved (sluiced, postfix,
sluiced, postfix, ...) for each mode, REPS times, and the medians are reported.
Per run it measures:

  accepted msg/s   N / wall time of smtp-source (every message got its 250)
  delivered msg/s  N / time from smtp-source start until N files are in new/
  peak RSS         max over samples (every 0.1 s) of the sum of VmHWM over the
                   server's processes (master and all its descendants); counts
                   shared pages (libc, ...) once per process
  peak PSS         the same with Pss from smaps_rollup (every 0.5 s): shared
                   pages divided among the processes sharing them
  server CPU s     utime+stime (+ reaped children) of the server's processes
                   from smtp-source's start until the last delivery
  other CPU s      busy CPU of the whole machine minus server, smtp-source and
                   this script during the run: noise from other tenants

Postfix is configured entirely under the temp dir (own config_directory,
queue_directory, data_directory, maillog_file, no chroot) and never touches
/etc/postfix or a system instance. smtp-sink (no disk) runs once per mode as
a ceiling reference. Every server started here is stopped by PID in a
finally block. Python stdlib only; run with /usr/bin/python3 (as root, since
Postfix needs to be started as root).

Usage: bench_smtp.py [--messages 5000] [--sessions 20] [--size 10240]
                     [--reps 5] [--modes single,multi] [--no-sink] [--json FILE]
"""

import argparse
import datetime
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICED = os.path.join(REPO, "bin", "sluiced")
POSTFIX = "/usr/sbin/postfix"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
MASTER_CF_DIST = "/usr/share/postfix/master.cf.dist"

ADDR = "user@example.com"
HELO = "bench.test"
VMAIL_UID = 5000        # owner of Postfix's virtual_mailbox_base (>= virtual_minimum_uid)
VMAIL_GID = 5000
SAMPLE_S = 0.1
PSS_SAMPLE_S = 0.5      # smaps_rollup is dearer to read than status

MODES = {
    "single": ("1 msg/session", []),
    "multi": ("many msgs/session (-d)", ["-d"]),
}


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- helpers

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def greets(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            ok = s.recv(512).startswith(b"220")
            s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


def read_text(path, tail=3000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-tail:]
    except OSError:
        return ""


def proc_stat(pid):
    """(ppid, starttime, utime+stime+cutime+cstime ticks) or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] = state (field 3); field n is rest[n - 3]
    if rest[0] == "Z":
        return None
    return int(rest[1]), int(rest[19]), sum(int(x) for x in rest[11:15])


def proc_tree(root):
    """root and all its live descendants: {pid: (starttime, cpu_ticks)}."""
    children = {}
    info = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = proc_stat(pid)
        if st is None:
            continue
        info[pid] = st
        children.setdefault(st[0], []).append(pid)
    out = {}
    todo = [root] if root in info else []
    while todo:
        pid = todo.pop()
        out[pid] = (info[pid][1], info[pid][2])
        todo.extend(children.get(pid, ()))
    return out


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def busy_ticks():
    """Non-idle CPU ticks of the whole machine (all CPUs) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]        # minus idle and iowait


def tree_cpu_ticks(tree):
    return sum(c for _, c in tree.values())


def alive(pid, starttime):
    st = proc_stat(pid)
    return st is not None and st[1] == starttime


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def reap_leftovers(seen, timeout=15):
    """Wait for every process we saw in a server's tree to be gone; SIGKILL
    stragglers (same pid and start time, so never someone else's process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p, st in seen.items() if alive(p, st)]
        if not left:
            return
        time.sleep(0.1)
    for p, st in seen.items():
        if alive(p, st):
            log("  warning: process %d still alive after stop; SIGKILL" % p)
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- servers

class Server:
    kind = "?"

    def __init__(self, root):
        self.dir = tempfile.mkdtemp(prefix=self.kind + "-", dir=root)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.mail = os.path.join(self.dir, "mail")
        self.log = os.path.join(self.dir, "maillog")
        self.seen = {}          # pid -> starttime of every process seen in the tree

    def maildir_new(self):
        return os.path.join(self.mail, "example.com", "user", "new")

    def tree(self):
        pid = self.master_pid()
        t = proc_tree(pid) if pid else {}
        for p, (st, _) in t.items():
            self.seen[p] = st
        return t

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Sluiced(Server):
    kind = "sluiced"
    binary = SLUICED

    def __init__(self, root):
        super().__init__(root)
        os.makedirs(self.mail)
        with open(os.path.join(self.dir, "vmailbox"), "w") as f:
            f.write("%s example.com/user/\n" % ADDR)
        me = pwd.getpwuid(os.getuid()).pw_name
        self.conf = os.path.join(self.dir, "sluice.conf")
        with open(self.conf, "w") as f:
            f.write(f"""myhostname = mx.test
smtpd_listen = 127.0.0.1:{self.port}
queue_directory = {self.dir}/queue
pid_file = {self.dir}/sluiced.pid
virtual_mailbox_domains = example.com
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.dir}/vmailbox
maillog_file = {self.log}
mail_owner = {me}
smtpd_peername_lookup = no
""")
        self.proc = None
        self.out = open(os.path.join(self.dir, "stdout"), "w")

    def master_pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-c", self.conf, "-f"], cwd=self.dir,
                                     stdout=self.out, stderr=subprocess.STDOUT)

        def up():
            if self.proc.poll() is not None:
                raise BenchError("sluiced exited with %s: %s %s" % (
                    self.proc.returncode, read_text(self.out.name), read_text(self.log)))
            return greets(self.port)
        wait_for(up, 30, "sluiced greeting on port %d" % self.port)
        self.tree()

    def stop(self):
        if self.proc is None:
            return
        self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                log("  warning: sluiced %d ignored SIGTERM for 40s; SIGKILL" % self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=10)
        reap_leftovers(self.seen)
        self.out.close()


class SluicedRef(Sluiced):
    """Another sluiced binary (--ref-bin), for A/B runs of a change (sluiced-ref)."""
    kind = "sluiced-ref"
    binary = None


class Postfix(Server):
    kind = "postfix"

    def __init__(self, root):
        super().__init__(root)
        self.confdir = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        data = os.path.join(self.dir, "data")
        for d in (self.confdir, self.queue, data, self.mail):
            os.makedirs(d)
        pw = pwd.getpwnam("postfix")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        os.chown(self.mail, VMAIL_UID, VMAIL_GID)
        os.chmod(self.mail, 0o755)
        vmailbox = os.path.join(self.confdir, "vmailbox")
        with open(vmailbox, "w") as f:
            f.write("%s example.com/user/\n" % ADDR)
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            f.write(f"""# generated by tests/bench/bench_smtp.py; a private instance
compatibility_level = 3.6
config_directory = {self.confdir}
queue_directory = {self.queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test
mydomain = test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
virtual_mailbox_domains = example.com
virtual_mailbox_maps = texthash:{vmailbox}
virtual_mailbox_base = {self.mail}
virtual_uid_maps = static:{VMAIL_UID}
virtual_gid_maps = static:{VMAIL_GID}
alias_maps =
alias_database =
biff = no
maillog_file = {self.log}
maillog_file_prefixes = {self.dir}
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME
""")
        # master.cf: the distribution file, every service without chroot, and
        # the smtp inet service on 127.0.0.1:PORT.
        out = []
        with open(MASTER_CF_DIST) as f:
            for line in f:
                fields = line.split()
                if (line[:1].isalpha() and len(fields) >= 8
                        and fields[1] in ("inet", "unix", "fifo", "pass", "unix-dgram")):
                    if fields[0] == "smtp" and fields[1] == "inet":
                        fields[0] = "127.0.0.1:%d" % self.port
                    fields[4] = "n"
                    line = "  ".join(fields[:7]) + "  " + " ".join(fields[7:]) + "\n"
                out.append(line)
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.writelines(out)
        self.pidfile = os.path.join(self.queue, "pid", "master.pid")

    def postfix(self, *args):
        return subprocess.run([POSTFIX, "-c", self.confdir] + list(args), capture_output=True,
                              text=True, timeout=120)

    def master_pid(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if proc_stat(pid) is not None else None

    def start(self):
        r = self.postfix("check")          # creates the queue subdirectories, owned right
        if r.returncode != 0:
            raise BenchError("postfix check failed: %s %s" % (r.stdout, r.stderr))
        r = self.postfix("start")
        if r.returncode != 0:
            raise BenchError("postfix start failed: %s %s %s" % (r.stdout, r.stderr,
                                                                   read_text(self.log)))
        self.started = True
        wait_for(lambda: self.master_pid(), 30, "postfix master pid file")
        wait_for(lambda: greets(self.port), 30, "postfix greeting on port %d" % self.port)
        self.tree()

    def stop(self):
        if not getattr(self, "started", False):
            return
        self.tree()
        pid = self.master_pid()
        r = self.postfix("stop")
        if r.returncode != 0:
            log("  warning: postfix stop: %s %s" % (r.stdout, r.stderr))
            if pid is not None and pid in self.seen:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        reap_leftovers(self.seen, timeout=30)


# ---------------------------------------------------------------- runs

def smtp_source_cmd(port, mode, n, sessions, size):
    return ([SMTP_SOURCE, "-s", str(sessions), "-l", str(size), "-m", str(n),
             "-f", ADDR, "-t", ADDR, "-M", HELO] + MODES[mode][1] + ["127.0.0.1:%d" % port])


def run_server(cls, root, mode, args):
    srv = cls(root)
    try:
        srv.start()
        port, new = srv.port, srv.maildir_new()
        subprocess.run(["sync"], timeout=120)
        peak_kib = peak_pss_kib = 0
        nprocs = 0
        next_pss = 0.0
        deadline = args.timeout
        hz = os.sysconf("SC_CLK_TCK")
        cpu0 = tree_cpu_ticks(srv.tree())
        busy0, self0 = busy_ticks(), time.process_time()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        # a server class may bring its own load command (e.g. a fixed message file)
        cmd = (srv.source_cmd(port, args.messages, args.sessions) if hasattr(srv, "source_cmd")
               else smtp_source_cmd(port, mode, args.messages, args.sessions, args.size))
        src = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        t_acc = t_del = None
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                tree = srv.tree()
                nprocs = max(nprocs, len(tree))
                peak_kib = max(peak_kib, sum(vm_hwm_kib(p) for p in tree))
                if now >= next_pss:
                    peak_pss_kib = max(peak_pss_kib, sum(pss_kib(p) for p in tree))
                    next_pss = now + PSS_SAMPLE_S
                next_sample = now + SAMPLE_S
            if t_acc is None and src.poll() is not None:
                t_acc = time.monotonic() - t0
                if src.returncode != 0:
                    raise BenchError("smtp-source exited %d: %s\nserver log: %s" % (
                        src.returncode, src.stdout.read().decode(errors="replace")[-2000:],
                        read_text(srv.log)))
            if t_del is None and count_files(new) >= args.messages:
                t_del = time.monotonic() - t0
            if t_acc is not None and t_del is not None:
                break
            if now - t0 > deadline:
                if src.poll() is None:
                    src.kill()
                    src.wait()
                raise BenchError("%s %s: not done after %.0fs (accepted: %s, delivered %d/%d)\n%s" % (
                    srv.kind, mode, deadline, t_acc, count_files(new), args.messages,
                    read_text(srv.log)))
            time.sleep(0.02)
        # the last samples, then CPU used by the server's processes so far
        time.sleep(0.3)
        tree = srv.tree()
        peak_kib = max(peak_kib, sum(vm_hwm_kib(p) for p in tree))
        peak_pss_kib = max(peak_pss_kib, sum(pss_kib(p) for p in tree))
        cpu_s = (tree_cpu_ticks(tree) - cpu0) / hz
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_s = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        busy_s = (busy_ticks() - busy0) / hz
        other_s = max(0.0, busy_s - cpu_s - client_s - (time.process_time() - self0))
        got = count_files(new)
        if got != args.messages:
            raise BenchError("%s: %d files in new/, expected %d" % (srv.kind, got, args.messages))
        return {"server": srv.kind, "mode": mode, "accept_s": t_acc, "deliver_s": t_del,
                "accepted_mps": args.messages / t_acc, "delivered_mps": args.messages / t_del,
                "peak_rss_mib": peak_kib / 1024.0,
                "peak_pss_mib": peak_pss_kib / 1024.0, "procs": nprocs, "cpu_s": cpu_s,
                "client_cpu_s": client_s, "other_cpu_s": other_s, "wall_s": time.monotonic() - t0}
    finally:
        try:
            srv.stop()
        finally:
            srv.cleanup()


def run_sink(root, mode, args):
    port = free_port()
    sink = subprocess.Popen([SMTP_SINK, "-c", "-u", "nobody", "127.0.0.1:%d" % port, "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sink.poll() is not None or greets(port), 20, "smtp-sink greeting")
        if sink.poll() is not None:
            raise BenchError("smtp-sink exited: %s" % sink.stderr.read().decode(errors="replace"))
        t0 = time.monotonic()
        r = subprocess.run(smtp_source_cmd(port, mode, args.messages, args.sessions, args.size),
                           capture_output=True, timeout=args.timeout)
        t = time.monotonic() - t0
        if r.returncode != 0:
            raise BenchError("smtp-source against smtp-sink exited %d: %s" % (
                r.returncode, r.stdout.decode(errors="replace")[-2000:]))
        return {"server": "smtp-sink", "mode": mode, "accept_s": t,
                "accepted_mps": args.messages / t}
    finally:
        if sink.poll() is None:
            sink.send_signal(signal.SIGTERM)
            try:
                sink.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait()


# ---------------------------------------------------------------- report

def machine_facts():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    df = sh(["df", "-hT", "/tmp"]).splitlines()
    pf = sh(["/usr/sbin/postconf", "-d", "-h", "mail_version"])
    rev = sh(["git", "-C", REPO, "log", "-1", "--format=%h %s"])
    dirty = sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--",
                "mta", "lib", "conf", "proto", "Makefile"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": "%.1f GiB" % (mem_kib / 1048576.0),
        "disk": df[-1] if df else "?",
        "kernel": platform.release(),
        "postfix": pf,
        "sluiced": "%s, working tree at %s" % (
            datetime.datetime.fromtimestamp(os.stat(SLUICED).st_mtime).strftime("bin/sluiced of %Y-%m-%d %H:%M")
            if os.path.exists(SLUICED) else "no bin/sluiced", rev) + (" (uncommitted changes: %s)" % " ".join(
            l.split()[-1] for l in dirty.splitlines()) if dirty else ""),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def med(rows, key):
    vals = [r[key] for r in rows]
    return statistics.median(vals) if vals else float("nan")


def report(args, facts, results, sinks, loadavg_end, elapsed_s):
    L = []
    L.append("Run: %s, command `make bench` (= `/usr/bin/python3 tests/bench/bench_smtp.py%s`)" % (
        facts["date"], (" " + " ".join(args.argv)) if args.argv else ""))
    L.append("")
    L.append("Machine: %d CPUs (%s), %s RAM, /tmp on `%s`, kernel %s, Postfix %s; "
             "load average at start %s, at end %s; bench wall time %.0f s." % (
                 facts["nproc"], facts["cpu"], facts["mem"], " ".join(facts["disk"].split()),
                 facts["kernel"], facts["postfix"], " ".join(facts["loadavg"]),
                 " ".join(loadavg_end), elapsed_s))
    L.append("")
    L.append("sluiced built from: %s" % facts["sluiced"])
    L.append("")
    L.append("Load: smtp-source -s %d -l %d -m %d, %s -> %s, median of %d interleaved runs "
             "per server and mode." % (args.sessions, args.size, args.messages, ADDR, ADDR, args.reps))
    L.append("")
    L.append("| mode | server | accepted msg/s | delivered msg/s | peak RSS MiB (sum VmHWM) "
             "| peak PSS MiB | max procs | server CPU s |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        for kind in args.kinds:
            rows = [r for r in results if r["server"] == kind and r["mode"] == mode]
            if not rows:
                continue
            L.append("| %s | %s | %.0f | %.0f | %.1f | %.1f | %d | %.1f |" % (
                MODES[mode][0], kind, med(rows, "accepted_mps"), med(rows, "delivered_mps"),
                med(rows, "peak_rss_mib"), med(rows, "peak_pss_mib"),
                max(r["procs"] for r in rows), med(rows, "cpu_s")))
        s = [r for r in results if r["server"] == "sluiced" and r["mode"] == mode]
        p = [r for r in results if r["server"] == "postfix" and r["mode"] == mode]
        if s and p:
            L.append("| %s | **sluiced / Postfix** | **%.2f×** | **%.2f×** | %.3f× | %.3f× | | %.2f× |" % (
                MODES[mode][0], med(s, "accepted_mps") / med(p, "accepted_mps"),
                med(s, "delivered_mps") / med(p, "delivered_mps"),
                med(s, "peak_rss_mib") / med(p, "peak_rss_mib"),
                med(s, "peak_pss_mib") / med(p, "peak_pss_mib"),
                med(s, "cpu_s") / med(p, "cpu_s")))
        for r in sinks:
            if r["mode"] == mode:
                L.append("| %s | smtp-sink (no disk, once) | %.0f | – | | | | |" % (
                    MODES[mode][0], r["accepted_mps"]))
    L.append("")
    L.append("Every run, in order (accepted msg/s / delivered msg/s / peak RSS MiB / CPU seconds "
             "used by other processes on the machine during the run, a noise indicator):")
    L.append("")
    for mode in args.modes:
        for kind in args.kinds:
            rows = [r for r in results if r["server"] == kind and r["mode"] == mode]
            if rows:
                L.append("- %s, %s: %s" % (MODES[mode][0], kind, ", ".join(
                    "%.0f/%.0f/%.1f/%.1f" % (r["accepted_mps"], r["delivered_mps"],
                                             r["peak_rss_mib"], r["other_cpu_s"])
                    for r in rows)))
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240, help="message payload bytes (-l)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--modes", default="single,multi")
    ap.add_argument("--servers", default="sluiced,postfix")
    ap.add_argument("--no-sink", action="store_true")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    ap.add_argument("--json", help="also write every run's figures to this file")
    ap.add_argument("--ref-bin", help="server sluiced-ref: this sluiced binary (A/B comparisons); "
                    "or NAME=PATH[,NAME=PATH...]: servers NAME, each that binary")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.modes = [m for m in args.modes.split(",") if m]
    servers = [s for s in args.servers.split(",") if s]
    for m in args.modes:
        if m not in MODES:
            ap.error("unknown mode %r (single, multi)" % m)
    classes = {"sluiced": Sluiced, "sluiced-ref": SluicedRef, "postfix": Postfix}
    args.kinds = ["sluiced", "sluiced-ref", "postfix"]
    for spec in (args.ref_bin or "").split(","):
        name, eq, path = spec.rpartition("=")
        if not path:
            continue
        if not os.path.exists(path):
            ap.error("--ref-bin: %s missing" % path)
        if not eq:
            SluicedRef.binary = os.path.abspath(path)
            continue
        classes[name] = type("Sluiced_" + name, (Sluiced,), {"kind": name,
                                                              "binary": os.path.abspath(path)})
        args.kinds.insert(-1, name)
    if "sluiced-ref" in servers and not SluicedRef.binary:
        ap.error("server sluiced-ref needs --ref-bin PATH")
    for s in servers:
        if s not in classes:
            ap.error("unknown server %r (sluiced, sluiced-ref, postfix)" % s)
    for path in [SMTP_SOURCE, SMTP_SINK] + ([SLUICED] if "sluiced" in servers else []) + (
            [POSTFIX, MASTER_CF_DIST] if "postfix" in servers else []):
        if not os.path.exists(path):
            sys.exit("bench: %s missing (make deps; make)" % path)
    if "postfix" in servers and os.geteuid() != 0:
        sys.exit("bench: Postfix must be started as root (its master runs as root)")

    facts = machine_facts()
    started = time.monotonic()
    root = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(root, 0o755)     # the Postfix virtual uid must reach its mailbox base
    results, sinks = [], []
    try:
        for mode in args.modes:
            for rep in range(args.reps):
                for kind in servers:
                    t = time.monotonic()
                    r = run_server(classes[kind], root, mode, args)
                    r["rep"] = rep
                    results.append(r)
                    log("%-7s %-6s rep %d: accepted %6.0f msg/s (%.2fs), delivered %6.0f msg/s "
                        "(%.2fs), RSS %.1f MiB, PSS %.1f MiB, <= %d procs, server CPU %.1fs, "
                        "smtp-source CPU %.1fs, other tenants' CPU %.1fs  [%.0fs]" % (
                            kind, mode, rep + 1, r["accepted_mps"], r["accept_s"],
                            r["delivered_mps"], r["deliver_s"], r["peak_rss_mib"],
                            r["peak_pss_mib"], r["procs"], r["cpu_s"], r["client_cpu_s"],
                            r["other_cpu_s"], time.monotonic() - t))
            if not args.no_sink:
                r = run_sink(root, mode, args)
                sinks.append(r)
                log("smtp-sink %-6s: accepted %6.0f msg/s (%.2fs)" % (mode, r["accepted_mps"],
                                                                      r["accept_s"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - started
    loadavg_end = open("/proc/loadavg").read().split()[:3]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "args": vars(args), "runs": results, "sink": sinks}, f,
                      indent=1)
    print("\n" + report(args, facts, results, sinks, loadavg_end, elapsed), flush=True)


if __name__ == "__main__":
    main()
