"""sluice report on the integrated server's log: `sluice start` with
sluice-dkim and sluice-spf enabled, DNS (DKIM keys, SPF records) from a real
DNS server on loopback; mail signed on the way out, verified on the way in
(pass, fail, none), SPF pass / softfail / fail (rejected at RCPT). The
report's filter counts must equal the verdict lines in the log and the
traffic sent."""

import collections
import json
import os
import re
import subprocess

import pytest

from conftest import BIN, SmtpRaw, Sluiced, wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import dkimpy_sign, keygen
from test_report import report, run_report  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice", "sluice-dkim", "sluice-spf")),
    reason="sluice, sluice-dkim and sluice-spf not built")

SPF_ZONE = """
example.com. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
example.org. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
soft.example. 300 IN TXT "v=spf1 ~all"
example.net. 300 IN TXT "v=spf1 -all"
"""

IN_MSG = (b"From: Olga <olga@example.org>\nTo: bob@example.com\nSubject: incoming\n"
          b"Date: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <in@example.org>\n\n"
          b"Hello from example.org.\n")


def smtp(port, source, sender, rcpt, body):
    c = SmtpRaw("127.0.0.1", port, source=source)
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        code, text = c.cmd("RCPT TO:<%s>" % rcpt)
        if code != 250:
            return code, text
        assert c.cmd("DATA")[0] == 354
        c.send(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
        return c.reply()
    finally:
        c.cmd("QUIT")
        c.close()


def test_filter_counts_from_the_integrated_server(report, tmp_path):
    out_keys = keygen(tmp_path / "out", "example.com", "sel", "rsa")
    in_keys = keygen(tmp_path / "in", "example.org", "s1", "rsa")
    zone = SPF_ZONE + out_keys[0].zone + in_keys[0].zone
    with DnsServer(zone) as dns:
        conf = (f"run_directory = {tmp_path}/run\n"
                f"dns_servers = {dns.addr}\n"
                "dkim_enable = yes\ndkim_domain = example.com\ndkim_selector = sel\n"
                f"dkim_key_file = {out_keys[0].private}\n"
                "spf_enable = yes\nspf_skip_addresses =\n"
                "smtpd_recipient_restrictions = reject_unauth_destination\n")
        s = Sluiced(tmp_path, conf)
        sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", s.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        s.proc = sup
        try:
            wait_for(s._greets, timeout=60, what="sluiced behind sluice start (log: %s)" % s.log_text)
            signed_in = dkimpy_sign(IN_MSG, in_keys[0])
            sent = [
                ("127.0.0.1", "alice@example.com", "bob@example.com",
                 b"From: alice@example.com\nTo: bob@example.com\nSubject: out 1\n\nhi\n"),
                ("127.0.0.1", "alice@example.com", "carol@example.com",
                 b"From: alice@example.com\nTo: carol@example.com\nSubject: out 2\n\nhi\n"),
                ("127.0.0.2", "olga@example.org", "bob@example.com", signed_in),
                ("127.0.0.2", "olga@example.org", "carol@example.com",
                 signed_in.replace(b"Hello from example.org.", b"Hello from a forger.")),
                ("127.0.0.2", "sam@soft.example", "alice@example.com",
                 b"From: sam@soft.example\nTo: alice@example.com\nSubject: unsigned\n\nhi\n"),
                ("127.0.0.2", "eve@example.net", "alice@example.com",
                 b"From: eve@example.net\nSubject: spf fail\n\nhi\n"),
            ]
            codes = [smtp(s.port, *m)[0] for m in sent]
            assert codes[-1] == 550, codes          # SPF fail: rejected at RCPT
            accepted = sum(1 for c in codes if c == 250)
            wait_for(lambda: s.log_text().count(": removed") >= accepted, 60,
                     "%d removed lines (log: %s)" % (accepted, s.log_text()[-3000:]))
        finally:
            subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path],
                           capture_output=True, timeout=90)
            try:
                sup.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sup.kill()
                sup.wait()
    log = s.log_text()
    doc = json.loads(run_report(report, "--format", "json", s.log))
    # verdicts counted straight from the log lines
    dkim = collections.Counter()
    for m in re.finditer(r"sluice-dkim\[\d+\]: \S+: milter=dkim action=\S+ (dkim|sign)=(\S+?)(,|$| )", log, re.M):
        kind, v = m.group(1), m.group(2)
        dkim[v if kind == "dkim" else {"ok": "signed", "none": "not-signed"}.get(v, "sign-error")] += 1
    spf = collections.Counter(re.findall(r"sluice-spf\[\d+\]: \S+: spf: .*?, result=(\w+),", log))
    assert dkim and spf, log[-3000:]
    flt = doc["filters"]
    assert flt["dkim"]["results"] == dict(dkim), (flt["dkim"], log[-3000:])
    assert flt["spf"]["results"] == dict(spf), (flt["spf"], log[-3000:])
    # and what the test sent
    assert dkim["signed"] == 2 and dkim["pass"] == 1 and dkim["fail"] == 1 and dkim["none"] == 1, dkim
    assert spf["pass"] >= 3 and spf["softfail"] >= 1 and spf["fail"] >= 1, spf
    assert doc["totals"]["received"] == accepted
    assert doc["totals"]["rejected"] == 1 + (5 - accepted)
    assert doc["rejects"]["by_code"].get("spf") == 1, doc["rejects"]
    # the MTA's milter decisions per milter
    assert "dkim" in doc["milter_actions"], doc["milter_actions"]
