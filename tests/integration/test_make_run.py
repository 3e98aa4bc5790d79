"""`make run`: tools/run.sh with the embedded conf/sluice.conf as shipped
(every filter on: dkim signing + verifying, spf, dmarc, spam, ratelimit), in
a temp copy of the tree's layout, on a machine without usable DNS
(dns_servers = a loopback port where nothing listens): run.sh makes the
certificate and the DKIM key, everything starts, a message from the signing
domain arrives signed with the chain's headers, an inbound one takes every
filter's temperror path quickly and is delivered, `sluice report` shows it."""

import os
import pwd
import re
import shutil
import smtplib
import subprocess
import time

import dkim
import pytest

from conftest import BIN, REPO, wait_for
from test_sluice_start import EmbeddedTree
from postfix_dkim_harness import headers

FILTERS = ("dkim", "spf", "dmarc", "spam", "ratelimit")
pytestmark = pytest.mark.skipif(not all(os.path.exists(os.path.join(BIN, "sluice-" + f)) for f in FILTERS),
                                reason="the five filters are not built")

SMTP_TIMEOUT = 30     # smtplib's timeout: the filters' temperror paths must be well inside it


class RunTree(EmbeddedTree):
    """EmbeddedTree plus tools/run.sh, with var/ left for run.sh to make."""

    def __init__(self, extra=""):
        super().__init__(extra)
        shutil.rmtree(self.path("var"))
        os.makedirs(self.path("tools"))
        shutil.copy2(os.path.join(REPO, "tools/run.sh"), self.path("tools/run.sh"))


def sign_foreign(msg):
    """msg signed for example.org with a key published nowhere."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    return dkim.sign(msg, b"sel", b"example.org", key) + msg


def send(port, sender, msg, source="127.0.0.1"):
    """smtplib send; returns the seconds it took."""
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=SMTP_TIMEOUT, source_address=(source, 0)) as c:
        c.ehlo("client.test")
        c.sendmail(sender, ["user@example.com"], msg)
    return time.monotonic() - t0


def test_make_run_offline_every_filter():
    # as shipped, plus (test only) SPF and DMARC for clients other than
    # 127.0.0.1, so that 127.0.0.2 is "outside" and its checks need DNS
    t = RunTree("spf_skip_addresses = 127.0.0.1, ::1\ndmarc_ignore_hosts = 127.0.0.1, ::1\n")
    out_path = t.path("run.out")
    sup = None
    try:
        with open(out_path, "wb") as out:
            sup = subprocess.Popen(["sh", t.path("tools/run.sh")], cwd="/", stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "started:" in t.log() or sup.poll() is not None, timeout=120,
                 what="make run (log: %s)" % t.log())
        out = open(out_path).read()
        log = t.log()
        assert sup.poll() is None, out + log
        assert re.search(r"started: 5 filter\(s\) and sluiced, all answering", log), log
        assert "restarting" not in log and "fatal" not in log, log
        # what run.sh made: certificate, DKIM key (root-only is fine), the TXT record printed
        assert os.path.getsize(t.path("var/tls/cert.pem")) > 0
        key = os.stat(t.path("var/dkim/sel.private"))
        assert key.st_mode & 0o077 == 0, oct(key.st_mode)
        rec = open(t.path("var/dkim/sel.txt")).read()
        txt = "".join(re.findall(r'"([^"]*)"', rec))
        assert txt.startswith("v=DKIM1;") and "sel._domainkey" in out and txt[-40:] in out.replace('"\n\t\t"', ""), out
        assert "swaks --server 127.0.0.1:%d --from you@example.com --to user@example.com" % t.port in out, out
        if os.geteuid() == 0:
            # what the daemons write as mail_owner (nobody here) is theirs
            nobody = pwd.getpwnam("nobody").pw_uid
            for d in ("var/lib", "var/spool"):
                assert os.stat(t.path(d)).st_uid == nobody, d
            for f in ("ratelimit.lmdb", "spam-bayes.lmdb"):
                assert os.stat(t.path("var/lib/" + f)).st_uid == nobody, f
        # sluice status: the six daemons, each with a pid and (filters) a socket
        st = t.sluice("status", "-c", t.conf)
        assert st.returncode == 0 and "(down)" not in st.stdout, st.stdout + st.stderr
        rows = {r.split()[0]: r.split() for r in st.stdout.splitlines()[2:] if r.strip()}
        assert set(rows) == set(FILTERS) | {"sluiced"}, st.stdout
        run = os.path.realpath(t.path("var/run"))
        for name in FILTERS:
            assert int(rows[name][1]) > 0 and rows[name][-1] == "%s/%s.sock" % (run, name), st.stdout
            assert os.path.exists(rows[name][-1])
        assert int(rows["sluiced"][1]) > 0

        # the swaks message: from the signing domain, on 127.0.0.1
        new = t.path("var/mail/example.com/user/new")
        msg = (b"From: You <you@example.com>\r\nTo: user@example.com\r\nSubject: make run\r\n"
               b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <make-run-1@example.com>\r\n\r\n"
               b"Hello from make run.\r\n")
        took = send(t.port, "you@example.com", msg)
        assert took < SMTP_TIMEOUT, took
        files = wait_for(lambda: os.path.isdir(new) and os.listdir(new), timeout=SMTP_TIMEOUT,
                         what="delivery to var/mail (log: %s)" % t.log())
        data = open(os.path.join(new, files[0]), "rb").read()
        assert len(headers(data, "DKIM-Signature")) == 1, data[:3000]
        assert dkim.verify(data.replace(b"\n", b"\r\n"),
                           dnsfunc=lambda n, timeout=5: txt.encode() if n == b"sel._domainkey.example.com." else b"")
        ar = headers(data, "Authentication-Results")
        assert ar and all(a.startswith("mail.example.com;") for a in ar), ar
        assert b"X-Comment: SPF check N/A" in data, data[:3000]     # sluice-spf ran (local client)
        (status,) = headers(data, "X-Spam-Status")
        assert status.startswith("No, score="), status
        assert headers(data, "X-Spam-Level") == [""] and headers(data, "X-Spam-Symbols"), data[:3000]

        # sluice report on the run's log: the message
        wait_for(lambda: "status=sent" in t.log(), timeout=SMTP_TIMEOUT, what="delivery logged")
        r = t.sluice("report", t.path("var/maillog"))
        assert r.returncode == 0, r.stderr
        assert re.search(r"^\s+1\s+received$", r.stdout, re.M), r.stdout
        assert re.search(r"^\s+1\s+delivered$", r.stdout, re.M), r.stdout
        assert re.search(r"^\s+1\s+\d+\s+you@example\.com$", r.stdout, re.M), r.stdout

        # inbound from "outside" (127.0.0.2) with a signature whose key is in
        # no DNS: SPF, DKIM and DMARC all take their temperror path, at once,
        # and the message is delivered
        msg = sign_foreign(b"From: Olga <olga@example.org>\r\nTo: user@example.com\r\nSubject: inbound\r\n"
                           b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <make-run-2@example.org>\r\n"
                           b"\r\nHello from outside.\r\n")
        took = send(t.port, "olga@example.org", msg, source="127.0.0.2")
        assert took < SMTP_TIMEOUT, took
        files = wait_for(lambda: len(os.listdir(new)) == 2 and os.listdir(new), timeout=SMTP_TIMEOUT,
                         what="inbound delivery (log: %s)" % t.log())
        (p,) = [os.path.join(new, f) for f in files if b"make-run-2" in open(os.path.join(new, f), "rb").read()]
        data = open(p, "rb").read()
        (spf,) = headers(data, "Received-SPF")
        assert spf.startswith("TempError"), spf
        ar = " ".join(headers(data, "Authentication-Results"))
        assert "dkim=temperror" in ar and "dmarc=temperror" in ar, ar
        (status,) = headers(data, "X-Spam-Status")
        assert status.startswith("No, score=") and "SPF_TEMPERROR" in status, status

        r = t.sluice("stop", "-c", t.conf, timeout=90)
        assert r.returncode == 0, r.stderr
        sup.wait(timeout=30)
    finally:
        if sup and sup.poll() is None:
            sup.kill()
            sup.wait()
        t.cleanup()
