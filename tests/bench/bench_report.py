#!/usr/bin/python3
"""bench_report: `sluice report` against pflogsumm (issue 13's benchmark).

Generates (once, into a cache directory) a ~200 MB mail log of about one
million lines: sluiced's (`sluice/<service>[pid]`) and Postfix's
(`postfix/<service>[pid]`) traffic mixed in time order, with the filters'
key=value lines (sluice-dkim, sluice-spf, sluice-dmarc, sluice-spam,
sluice-ratelimit, the MTA's milter actions), OpenDKIM, OpenDMARC and
policyd-spf lines beside Postfix, rejects at every stage, deferrals with
later retries, bounces with their DSN notices, several thousand distinct
senders and clients. The generator is seeded, so the log is the same on
every run.

Then times, five runs each, interleaved (one run of each in turn, so that
the shared machine's drifting load meets all alike; medians):
- `sluice report --format json` on the whole log (as an admin runs it:
  --jobs defaults to the online CPUs),
- the same with `--jobs 1` (one pass in one thread: the work per byte),
- `sluice report --format json` on the Postfix part only,
- `pflogsumm` (Debian's) on the Postfix part (pflogsumm reads only one
  syslog_name; it is one Perl process);
checks that sluice report and pflogsumm give the same grand totals on the
Postfix part and that --jobs 1 gives the same JSON as the default, and
prints MB/s by wall time (the throughput) and by CPU time (user + sys),
peak RSS (GNU time's %M), and the ratios. Goal (issue 13): >= 20x
pflogsumm's throughput (MB/s) with RSS under 100 MB.

    /usr/bin/python3 tests/bench/bench_report.py [--lines N] [--runs N]
        [--cache DIR] [--json FILE] [--regen]

SLUICE_BIN names the binaries' directory (default bin/). Nothing here uses
the network.
"""
import argparse
import calendar
import heapq
import json
import os
import random
import re
import statistics
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "bin"))
PFLOGSUMM = "/usr/sbin/pflogsumm"
TIME = "/usr/bin/time"
GEN_VERSION = 1          # bump when the generator's output changes
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
START = calendar.timegm((2026, 12, 1, 0, 0, 0))
SPAN_S = 2 * 86400       # two days of traffic

QID_CHARS = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
HEX = "0123456789ABCDEF"
HOST_OURS, HOST_POSTFIX = "mail-in1.example.com", "mail-in2.example.com"


class Gen:
    """One log: messages scheduled on a heap of (time, seq, line)."""

    def __init__(self, seed, target_lines):
        self.r = random.Random(seed)
        self.target = target_lines
        self.heap = []
        self.seq = 0
        self.lines = 0
        r = self.r
        words = ["mail", "post", "news", "shop", "bank", "club", "lab", "corp", "web", "data",
                 "cloud", "city", "green", "blue", "fast", "north", "south", "east", "west", "home"]
        tlds = ["com", "org", "net", "de", "fr", "co.uk", "io", "nl", "example", "test"]
        self.sdomains = sorted({"%s%s%d.%s" % (r.choice(words), r.choice(words), r.randrange(100),
                                               r.choice(tlds)) for _ in range(900)})
        users = ["joe", "ann", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan",
                 "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter", "info", "sales",
                 "support", "noreply", "newsletter", "billing", "alerts", "admin"]
        self.senders = ["%s%s@%s" % (r.choice(users), r.choice(["", str(r.randrange(1000))]),
                                     r.choice(self.sdomains)) for _ in range(6000)]
        self.local_domains = ["example.com", "example.net", "mx.example.org"]
        self.local_users = ["%s%d" % (r.choice(users), i) for i in range(2500)]
        self.remote_rcpts = ["%s@%s" % (r.choice(users), r.choice(self.sdomains)) for _ in range(3000)]
        self.clients = []
        for i in range(4000):
            ip = "%d.%d.%d.%d" % (r.choice([192, 198, 203, 100, 172, 45, 81, 94]), r.randrange(256),
                                  r.randrange(256), r.randrange(1, 255))
            name = "unknown" if r.random() < 0.2 else "%s%d-%s%d.%s" % (
                r.choice(["mx", "mail", "smtp", "out", "mta"]), r.randrange(20),
                r.choice(["f", "out", "relay", "eu-west", "us-east"]), r.randrange(400), r.choice(self.sdomains))
            self.clients.append((name, ip))
        self.pids = {}

    # ---- helpers ----

    def stamp(self, t):
        tm = time.gmtime(int(t))
        return "%s %2d %02d:%02d:%02d" % (MONTHS[tm.tm_mon - 1], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)

    def emit(self, t, host, prog, text):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, host, prog, text))
        self.lines += 1

    def pid(self, prog):
        p = self.pids.get(prog)
        if p is None or self.r.random() < 0.002:
            p = self.pids[prog] = self.r.randrange(1000, 99999)
        return p

    def qid(self, ours):
        r = self.r
        if ours or r.random() < 0.5:   # long form (Postfix enable_long_queue_ids; sluiced's ids)
            return "4" + "".join(r.choice(QID_CHARS) for _ in range(12))
        return "".join(r.choice(HEX) for _ in range(10))

    def rcpt(self):
        r = self.r
        if r.random() < 0.6:
            return "%s@%s" % (r.choice(self.local_users), r.choice(self.local_domains)), True
        return r.choice(self.remote_rcpts), False

    # ---- one SMTP session ----

    def session(self, t, ours):
        r = self.r
        name, ip = r.choice(self.clients)
        host = HOST_OURS if ours else HOST_POSTFIX
        mta = "sluice" if ours else "postfix"
        smtpd = "%s/smtpd[%d]" % (mta, self.pid(mta + "smtpd"))
        e = lambda dt, prog, text: self.emit(t + dt, host, prog, text)
        e(0, smtpd, "connect from %s[%s]" % (name, ip))
        if r.random() < 0.6:
            e(0.05, smtpd, "Anonymous TLS connection established from %s[%s]: TLSv1.3 with cipher "
              "TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) "
              "server-digest SHA256" % (name, ip))
        helo = name if name != "unknown" else "[%s]" % ip
        sender = r.choice(self.senders) if r.random() < 0.93 else ""
        nr = 1 if r.random() < 0.7 else r.randrange(2, 6)
        rcpts = [self.rcpt() for _ in range(nr)]
        u = r.random()
        if u < 0.08:   # rejected at RCPT
            why = r.choice([
                "554 5.7.1 Service unavailable; Client host [%s] blocked using zen.spamhaus.org; "
                "https://www.spamhaus.org/query/ip/%s" % (ip, ip),
                "550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table" % rcpts[0][0],
                "554 5.7.1 <%s>: Relay access denied" % rcpts[0][0],
                "450 4.7.1 <%s>: Helo command rejected: Host not found" % helo,
                "450 4.1.8 <%s>: Sender address rejected: Domain not found" % sender,
            ])
            e(0.4, smtpd, "NOQUEUE: reject: RCPT from %s[%s]: %s; from=<%s> to=<%s> proto=ESMTP helo=<%s>"
              % (name, ip, why, sender, rcpts[0][0], helo))
            if ours and r.random() < 0.5:
                self.spf_line(t + 0.3, host, ours, sender, ip, helo, "fail")
            e(0.5, smtpd, "disconnect from %s[%s] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4" % (name, ip))
            return
        if u < 0.09:   # lost connection after CONNECT, no mail
            e(2.0, smtpd, "lost connection after CONNECT from %s[%s]" % (name, ip))
            e(2.0, smtpd, "disconnect from %s[%s] commands=0/0" % (name, ip))
            return
        if ours and r.random() < 0.02:   # over the rate limit (policy at RCPT)
            self.ratelimit_line(t + 0.2, host, sender, ip, rcpts[0][0], "over")
            e(0.3, smtpd, "NOQUEUE: reject: RCPT from %s[%s]: 450 4.7.1 <%s>: Recipient address rejected: "
              "sending limit reached (limit OUT: 100 messages per 3600 s for client_address=%s; retry in 1800 s); "
              "from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (name, ip, rcpts[0][0], ip, sender, rcpts[0][0], helo))
            e(0.5, smtpd, "disconnect from %s[%s] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4" % (name, ip))
            return
        q = self.qid(ours)
        if ours:
            self.spf_line(t + 0.1, host, ours, sender, ip, helo, r.choice(["pass"] * 6 + ["softfail", "none", "neutral"]))
            if r.random() < 0.3:
                self.ratelimit_line(t + 0.15, host, sender, ip, rcpts[0][0], "under")
        else:
            self.spf_line(t + 0.1, host, ours, sender, ip, helo, r.choice(["pass"] * 6 + ["softfail", "none", "neutral"]))
        sasl = ", sasl_method=PLAIN, sasl_username=%s" % sender.split("@")[0] if r.random() < 0.1 and sender else ""
        e(0.2, smtpd, "%s: client=%s[%s]%s" % (q, name, ip, sasl))
        cleanup = "%s/cleanup[%d]" % (mta, self.pid(mta + "cleanup"))
        msgid = "<%016x%08x.%d@%s>" % (r.getrandbits(64), r.getrandbits(32), int(t),
                                        sender.split("@")[1] if sender else "localhost")
        e(0.3, cleanup, "%s: message-id=%s" % (q, msgid))
        size = int(r.lognormvariate(9, 1.2)) + 300
        sdom = sender.split("@")[1] if sender else "localhost"
        # filters
        dres = r.choice(["pass"] * 5 + ["none", "fail"])
        mres = "pass" if dres == "pass" else r.choice(["fail", "none", "pass"])
        score = round(r.gauss(1.0, 3.0), 2)
        rejected = False
        if ours:
            dk = "sluice-dkim[%d]" % self.pid("sdkim")
            if dres == "pass":
                e(0.6, dk, "%s: milter=dkim action=accept dkim=pass, sig1=pass d=%s s=sel%d a=rsa-sha256 bits=2048"
                  % (q, sdom, r.randrange(3)))
            elif dres == "fail":
                e(0.6, dk, '%s: milter=dkim action=accept dkim=fail, sig1=fail d=%s s=sel1 a=rsa-sha256 bits=2048 '
                  'reason="body hash did not verify"' % (q, sdom))
            else:
                e(0.6, dk, "%s: milter=dkim action=accept dkim=none" % q)
            e(0.6, smtpd, "%s: milter=unix:/run/sluice/dkim.sock stage=end-of-message action=continue" % q)
            disp = "none" if mres != "fail" else r.choice(["none", "quarantine", "reject"])
            dm = "sluice-dmarc[%d]" % self.pid("sdmarc")
            e(0.65, dm, '%s: milter=dmarc action=%s dmarc=%s enforced=%s header_from=%s from_domains=1 '
              'policy_domain=%s p=%s pct=100 policy=%s disposition=%s spf_aligned=%s dkim_aligned=%s '
              'dns_queries=1 source_ip=%s helo=%s spf=%s/mfrom/pass dkim=%s'
              % (q, "reject" if disp == "reject" else "accept", mres, "yes" if disp != "none" else "no",
                 sdom, sdom, disp, disp, disp, "pass" if mres == "pass" else "fail",
                 "pass" if dres == "pass" else "fail", ip, helo, sdom, dres))
            if disp == "reject":
                e(0.7, cleanup, "%s: milter-reject: END-OF-MESSAGE from %s[%s]: 5.7.1 rejected by DMARC policy "
                  "for %s; from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (q, name, ip, sdom, sender, rcpts[0][0], helo))
                rejected = True
            else:
                sp = "sluice-spam[%d]" % self.pid("sspam")
                act = "reject" if score >= 10 else "accept"
                e(0.7, sp, "%s: milter=spam action=%s score=%.2f required=5.00 size=%d symbols=%s"
                  % (q, act, score, size, "BAYES_50(0.80),HTML_MESSAGE(0.00),DKIM_SIGNED(0.10)" if score > 0 else "none"))
                if act == "reject":
                    e(0.75, cleanup, "%s: milter-reject: END-OF-MESSAGE from %s[%s]: 5.7.1 message looks like spam "
                      "(score %.2f); from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (q, name, ip, score, sender,
                                                                                 rcpts[0][0], helo))
                    rejected = True
        else:
            od = "opendkim[%d]" % self.pid("odkim")
            if dres == "pass":
                e(0.6, od, "%s: DKIM verification successful" % q)
            elif dres == "fail":
                e(0.6, od, "%s: bad signature data" % q)
            else:
                e(0.6, od, "%s: no signature data" % q)
            e(0.65, "opendmarc[%d]" % self.pid("odmarc"), "%s: %s %s" % (q, sdom, mres))
            if mres == "fail" and r.random() < 0.3:
                e(0.7, cleanup, "%s: milter-reject: END-OF-MESSAGE from %s[%s]: 5.7.1 rejected by DMARC policy "
                  "for %s; from=<%s> to=<%s> proto=ESMTP helo=<%s>" % (q, name, ip, sdom, sender, rcpts[0][0], helo))
                rejected = True
            elif r.random() < 0.01:
                e(0.7, cleanup, "%s: reject: header Subject: Cheap pills now from %s[%s]; from=<%s> to=<%s> "
                  "proto=ESMTP helo=<%s>: 5.7.1 message content rejected" % (q, name, ip, sender, rcpts[0][0], helo))
                rejected = True
        e(1.0, smtpd, "disconnect from %s[%s] ehlo=2 starttls=1 mail=1 rcpt=%d data=1 quit=1 commands=%d"
          % (name, ip, nr, nr + 6))
        if rejected:
            return
        self.queue(t + 0.8, host, mta, q, sender, size, rcpts)

    def spf_line(self, t, host, ours, sender, ip, helo, res):
        if ours:
            self.emit(t, host, "sluice-spf[%d]" % self.pid("sspf"),
                      'NOQUEUE: spf: identity=%s, scope=mailfrom, client=[%s], helo=%s, from=<%s>, result=%s, '
                      'mechanism=ip4:%s, lookups=1, queries=2, time_ms=%d, action="PREPEND Received-SPF: %s '
                      '(mx1: domain of %s) client-ip=%s; envelope-from=%s; helo=%s; receiver=mx1"'
                      % (sender or "postmaster@" + helo, ip, helo, sender, res, ip, self.r.randrange(1, 40),
                         res.capitalize(), sender.split("@")[-1], ip, sender, helo))
        else:
            self.emit(t, host, "policyd-spf[%d]" % self.pid("pspf"),
                      "prepend Received-SPF: %s (mailfrom) identity=mailfrom; client-ip=%s; helo=%s; "
                      "envelope-from=%s; receiver=<UNKNOWN>" % (res.capitalize(), ip, helo, sender))

    def ratelimit_line(self, t, host, sender, ip, rcpt, res):
        action = "DUNNO" if res == "under" else ("DEFER_IF_PERMIT 4.7.1 sending limit reached (limit OUT: 100 "
                                                "messages per 3600 s for client_address=%s; retry in 1800 s)" % ip)
        self.emit(t, host, "sluice-ratelimit[%d]" % self.pid("srl"),
                  'NOQUEUE: ratelimit: state=RCPT, instance=%x.%x.1, client=[%s], from=<%s>, to=<%s>, '
                  'OUT=%d/100, result=%s, action="%s"' % (self.r.getrandbits(16), self.r.getrandbits(32), ip,
                                                        sender, rcpt, self.r.randrange(1, 100), res, action))

    # ---- queue manager and deliveries ----

    def queue(self, t, host, mta, q, sender, size, rcpts, bounce_notice=False):
        r = self.r
        qmgr = "%s/qmgr[%d]" % (mta, self.pid(mta + "qmgr"))
        self.emit(t, host, qmgr, "%s: from=<%s>, size=%d, nrcpt=%d (queue active)" % (q, sender, size, len(rcpts)))
        end = t
        for addr, local in rcpts:
            dt = t + r.expovariate(2.0)
            if local:
                svc = r.choice(["virtual", "lmtp"])
                relay = "virtual" if svc == "virtual" else "127.0.0.1[127.0.0.1]:24"
                text = "delivered to maildir" if svc == "virtual" else "250 2.0.0 <%s> Saved" % addr
                d = dt - t + 0.05
                self.emit(dt, host, "%s/%s[%d]" % (mta, svc, self.pid(mta + svc)),
                          "%s: to=<%s>, relay=%s, delay=%.2g, delays=0.05/0.01/0/%.2g, dsn=2.0.0, status=sent (%s)"
                          % (q, addr, relay, d, d - 0.06 if d > 0.06 else 0, text))
                end = max(end, dt)
                continue
            smtp = "%s/smtp[%d]" % (mta, self.pid(mta + "smtp"))
            rdom = addr.split("@")[1]
            mx = "mx%d.%s" % (r.randrange(3), rdom)
            mip = "%d.%d.%d.%d" % (r.randrange(1, 224), r.randrange(256), r.randrange(256), r.randrange(1, 255))
            u = r.random()
            tries = 0
            while u < 0.12 and tries < 3:   # deferred, retried later
                tries += 1
                self.emit(dt, host, smtp, "%s: to=<%s>, relay=none, delay=%d, delays=0.1/0/30/0, dsn=4.4.1, "
                          "status=deferred (connect to %s[%s]:25: Connection timed out)"
                          % (q, addr, dt - t + 30, mx, mip))
                dt += 300 * (2 ** tries) + r.random() * 60
                u = r.random() * 0.2
            if u < 0.03:   # bounced, with a DSN to the sender
                self.emit(dt, host, smtp, "%s: to=<%s>, relay=%s[%s]:25, delay=%.3g, delays=0.1/0.01/0.2/0.1, "
                          "dsn=5.1.1, status=bounced (host %s[%s] said: 550 5.1.1 <%s>: Recipient address "
                          "rejected: User unknown (in reply to RCPT TO command))"
                          % (q, addr, mx, mip, dt - t + 0.4, mx, mip, addr))
                if sender:
                    nq = self.qid(mta == "sluice")
                    self.emit(dt + 0.01, host, "%s/bounce[%d]" % (mta, self.pid(mta + "bounce")),
                              "%s: sender non-delivery notification: %s" % (q, nq))
                    self.emit(dt + 0.01, host, "%s/cleanup[%d]" % (mta, self.pid(mta + "cleanup")),
                              "%s: message-id=<%d.%x@%s>" % (nq, int(dt), r.getrandbits(32), host))
                    self.queue(dt + 0.02, host, mta, nq, "", 2500 + size // 10,
                               [(sender, sender.split("@")[1] in self.local_domains)], True)
            else:
                d = dt - t + r.random() * 2
                k = r.random()
                if k < 0.3:
                    text = "250 2.0.0 OK  %d %x%x.%d - gsmtp" % (int(dt), r.getrandbits(64), r.getrandbits(40),
                                                                 r.randrange(1000))
                elif k < 0.5:
                    text = ("250 2.6.0 <%x@%s> [InternalId=%d, Hostname=AM%dPR%02dMB%04d.eurprd%02d.prod."
                            "outlook.com] %d bytes in 0.%03d, %d.%03d KB/sec Queued mail for delivery"
                            % (r.getrandbits(64), rdom, r.getrandbits(44), r.randrange(10), r.randrange(100),
                               r.randrange(10000), r.randrange(10), size, r.randrange(1000), r.randrange(999),
                               r.randrange(1000)))
                else:
                    text = "250 2.0.0 Ok: queued as %s" % self.qid(False)
                if r.random() < 0.7:
                    self.emit(dt - 0.01, host, smtp, "Verified TLS connection established to %s[%s]:25: TLSv1.3 "
                              "with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
                              "server-signature ECDSA (P-256) server-digest SHA256" % (mx, mip))
                self.emit(dt, host, smtp, "%s: to=<%s>, relay=%s[%s]:25, delay=%.3g, delays=0.1/0.02/%.2g/%.2g, "
                          "dsn=2.0.0, status=sent (%s)" % (q, addr, mx, mip, d, r.random(), r.random(), text))
            end = max(end, dt)
        self.emit(end + 0.01, host, qmgr, "%s: removed" % q)

    def noise(self, t):
        r = self.r
        host = r.choice([HOST_OURS, HOST_POSTFIX])
        mta = "sluice" if host == HOST_OURS else "postfix"
        k = r.random()
        if k < 0.4:
            self.emit(t, host, "%s/anvil[%d]" % (mta, self.pid(mta + "anvil")),
                      "statistics: max connection rate 3/60s for (smtp:%s) at %s" % (r.choice(self.clients)[1],
                                                                                     self.stamp(t)))
        elif k < 0.7:
            self.emit(t, host, "%s/scache[%d]" % (mta, self.pid(mta + "scache")),
                      "statistics: domain lookup hits=%d miss=%d success=%d%%" % (r.randrange(50), r.randrange(50),
                                                                                  r.randrange(100)))
        else:
            self.emit(t, host, "%s/smtpd[%d]" % (mta, self.pid(mta + "smtpd")),
                      "warning: hostname %s does not resolve to address %s" % (r.choice(self.clients)[0] + ".x",
                                                                                r.choice(self.clients)[1]))

    def write(self, path_all, path_postfix):
        """Write both files; returns (lines, postfix lines)."""
        r = self.r
        t = float(START)
        # messages at a rate that spreads target lines over SPAN_S (about 11 lines a message)
        step = SPAN_S / (self.target / 11.0)
        n = npf = 0
        with open(path_all, "w") as fa, open(path_postfix, "w") as fp:
            def flush(upto):
                nonlocal n, npf
                while self.heap and self.heap[0][0] <= upto:
                    tt, _, host, prog, text = heapq.heappop(self.heap)
                    line = "%s %s %s: %s\n" % (self.stamp(tt), host, prog, text)
                    fa.write(line)
                    n += 1
                    if host == HOST_POSTFIX:
                        fp.write(line)
                        npf += 1
            while self.lines < self.target:
                t += r.expovariate(1.0 / step)
                if r.random() < 0.05:
                    self.noise(t)
                self.session(t, r.random() < 0.5)
                if len(self.heap) > 5000:
                    flush(t - 3600 * 3)
            flush(float("inf"))
        return n, npf


def generate(cache, nlines, regen):
    os.makedirs(cache, exist_ok=True)
    base = os.path.join(cache, "maillog-v%d-%d" % (GEN_VERSION, nlines))
    pa, pp = base + ".all", base + ".postfix"
    if not regen and os.path.exists(pa) and os.path.exists(pp):
        return pa, pp
    t0 = time.time()
    g = Gen(20261201, nlines)
    n, npf = g.write(pa + ".tmp", pp + ".tmp")
    os.rename(pp + ".tmp", pp)
    os.rename(pa + ".tmp", pa)
    print("generated %s: %d lines, %.1f MB (Postfix part %d lines, %.1f MB) in %.1f s"
          % (pa, n, os.path.getsize(pa) / 1e6, npf, os.path.getsize(pp) / 1e6, time.time() - t0))
    return pa, pp


def run_once(argv, out_path=None):
    """(wall s, cpu s, max RSS MB) of one run; stdout to out_path or /dev/null.
    Through /usr/bin/time: a child forked by this Python would carry Python's
    own resident pages into its ru_maxrss (exec keeps the high-water mark)."""
    out = open(out_path or os.devnull, "w")
    tf = os.path.join(os.path.dirname(out_path or "/tmp/x"), ".bench_report_time.%d" % os.getpid())
    t0 = time.monotonic()
    p = subprocess.run([TIME, "-f", "%U %S %M", "-o", tf, *argv], stdout=out, stderr=subprocess.PIPE,
                       env=dict(os.environ, TZ="UTC"))
    wall = time.monotonic() - t0
    out.close()
    if p.returncode != 0:
        raise SystemExit("bench_report: %s failed (%d): %s" % (argv[0], p.returncode, p.stderr.decode(errors="replace")))
    with open(tf) as f:
        u, s, m = f.read().split()[-3:]
    os.unlink(tf)
    return wall, float(u) + float(s), int(m) / 1024.0


def measure_all(cases, runs):
    """cases: (name, argv, path, out_path); each run once in turn, runs times; rows in order"""
    res = [[] for _ in cases]
    for _ in range(runs):
        for i, (name, argv, path, out_path) in enumerate(cases):
            res[i].append(run_once(argv, out_path))
    return [row(name, path, r) for (name, argv, path, out_path), r in zip(cases, res)]


def row(name, path, res):
    mb = os.path.getsize(path) / 1e6
    wall = statistics.median(x[0] for x in res)
    cpu = statistics.median(x[1] for x in res)
    rss = max(x[2] for x in res)
    row = {"name": name, "input_mb": round(mb, 1), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
           "mb_per_s_wall": round(mb / wall, 1), "mb_per_s_cpu": round(mb / cpu, 1), "max_rss_mb": round(rss, 1),
           "runs": [[round(a, 3), round(b, 3), round(c, 1)] for a, b, c in res]}
    print("  %-34s %7.1f MB  wall %7.2f s (%6.1f MB/s)  cpu %7.2f s (%6.1f MB/s)  RSS %6.1f MB"
          % (name, mb, wall, mb / wall, cpu, mb / cpu, rss), flush=True)
    return row


def same_totals(sluice, path, pf_out):
    """Do sluice report and pflogsumm give the same grand totals on the Postfix part?"""
    doc = json.loads(subprocess.run([sluice, "report", "--format", "json", path], capture_output=True,
                                    check=True, env=dict(os.environ, TZ="UTC")).stdout)
    text = open(pf_out).read()
    diff = {}
    for name, key in (("received", "received"), ("delivered", "delivered"), ("deferred", "deferred"),
                      ("bounced", "bounced"), ("rejected", "rejected"), ("senders", "senders"),
                      ("recipients", "recipients")):
        m = re.search(r"^\s+(\d+)\s+%s\b" % name, text, re.M)
        theirs = int(m.group(1)) if m else None
        if theirs != doc["totals"][key]:
            diff[name] = (doc["totals"][key], theirs)
    print("  grand totals on the Postfix part: %s" % ("the same in both" if not diff else
                                                      "DIFFER (sluice, pflogsumm): %s" % diff))
    return not diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                    os.path.expanduser("~/.cache"), "sluice", "bench_report"))
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--regen", action="store_true", help="generate the log again")
    ap.add_argument("--no-pflogsumm", action="store_true", help="time sluice report only")
    a = ap.parse_args()
    sluice = os.path.join(BIN, "sluice")
    if not os.access(sluice, os.X_OK):
        raise SystemExit("bench_report: no %s (make first, or set SLUICE_BIN)" % sluice)
    pa, pp = generate(a.cache, a.lines, a.regen)
    cpus = os.cpu_count()
    print("bench_report: %d runs each, interleaved, medians; %d CPUs (sluice report's default --jobs); "
          "load average %s; input %s" % (a.runs, cpus, " ".join("%.2f" % x for x in os.getloadavg()), pa))
    out, out1 = os.path.join(a.cache, "report.json"), os.path.join(a.cache, "report-jobs1.json")
    cases = [("sluice report (all)", [sluice, "report", "--format", "json", pa], pa, out),
             ("sluice report --jobs 1 (all)", [sluice, "report", "--jobs", "1", "--format", "json", pa], pa, out1),
             ("sluice report (Postfix part)", [sluice, "report", "--format", "json", pp], pp, None)]
    pf_out = os.path.join(a.cache, "pflogsumm.txt")
    with_pf = not a.no_pflogsumm and os.path.exists(PFLOGSUMM)
    if with_pf:
        cases.append(("pflogsumm (Postfix part)", [PFLOGSUMM, pp], pp, pf_out))
    rows = measure_all(cases, a.runs)
    doc = json.load(open(out))
    same = open(out, "rb").read() == open(out1, "rb").read()
    print("  --jobs %d and --jobs 1: %s" % (cpus, "the same JSON" if same else "DIFFERENT JSON"))
    result = {"log_lines": doc["input"]["lines"], "log_mb": round(os.path.getsize(pa) / 1e6, 1), "cpus": cpus,
              "load_average_end": os.getloadavg(), "totals": doc["totals"], "jobs_same_json": same,
              "rows": rows}
    if with_pf:
        result["totals_agree"] = same_totals(sluice, pp, pf_out)
        s, s1, sp, pf = rows
        result["ratio_wall"] = round(s["mb_per_s_wall"] / pf["mb_per_s_wall"], 1)
        result["ratio_cpu_jobs1"] = round(s1["mb_per_s_cpu"] / pf["mb_per_s_cpu"], 1)
        result["ratio_wall_same_input"] = round(sp["mb_per_s_wall"] / pf["mb_per_s_wall"], 1)
        met = result["ratio_wall"] >= 20 and s["max_rss_mb"] < 100
        print("  throughput ratio sluice/pflogsumm (MB/s by wall time): %.1fx (Postfix part alone: %.1fx); "
              "per CPU second, --jobs 1: %.1fx; goal >= 20x with RSS < 100 MB: %s"
              % (result["ratio_wall"], result["ratio_wall_same_input"], result["ratio_cpu_jobs1"],
                 "met" if met else "NOT met"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
