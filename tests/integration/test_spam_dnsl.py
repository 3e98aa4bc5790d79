"""sluice-spam's DNS lists against a real DNS server (unbound) on loopback.

Proves: ip lists are asked about the first untrusted relay (and the client),
domain lists about URL domains; answers map to symbols by address, range
and bitmask; a list's "refused" code gives <LIST>_BLOCKED with score 0 and a
warning, never a hit; a list whose test entry does not answer is disabled
at start-up; a list that does not answer a message's query costs at most
spam_dns_timeout; behind sluiced the client address is looked up and each
decision line notes what the lists did."""

import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import BIN, headers
from test_spam_sluiced import MSG, Session, spam_spec, SluiceSpam

ZONE = """
2.0.0.127.bl.test. 300 A 127.0.0.2
99.2.0.192.bl.test. 300 A 127.0.0.2
98.2.0.192.bl.test. 300 A 127.0.0.5
97.2.0.192.bl.test. 300 A 127.255.255.254
96.2.0.192.bl.test. 300 A 127.0.0.99
2.0.0.127.half.test. 300 A 127.0.0.2
test.dbl.test. 300 A 127.0.0.2
spammy.example.dbl.test. 300 A 127.0.0.6
"""

LISTS = """
# zone       kind   answer                               symbol      score
bl.test      ip     127.0.0.2                            TEST_SBL    4.0
bl.test      ip     127.0.0.4-127.0.0.7                  TEST_XBL    3.0
bl.test      ip     127.255.255.252-127.255.255.255      BLOCKED     0
half.test    ip     127.0.0.2                            HALF_HIT    1.0
dead.test    ip     127.0.0.2                            DEAD_HIT    1.0
dbl.test     domain bitmask:2                            DBL_BLACK   2.5
dbl.test     domain bitmask:4                            DBL_RED     0.5
"""


def relay_msg(ip, body=b"hello"):
    return (b"Received: from relay.example (relay.example [%s]) by mx.example.org;"
            b" Sat, 21 Nov 2026 12:00:00 +0000\n" % ip.encode() +
            b"From: a@example.org\nTo: b@example.com\nSubject: dnsl\n"
            b"Date: Sat, 21 Nov 2026 11:59:00 +0000\nMessage-ID: <dnsl@example.org>\n\n" + body + b"\n")


@pytest.fixture(scope="module")
def dns():
    # queries for 95.2.0.192.half.test are dropped (a list that does not answer one
    # message); everything under dead.test too (a list whose test entry fails)
    with DnsServer(ZONE, deny=["95.2.0.192.half.test", "dead.test"], log_queries=True) as d:
        yield d


@pytest.fixture
def conf(tmp_path, dns):
    lists = tmp_path / "lists"
    lists.write_text(LISTS)
    rules = tmp_path / "empty.cf"
    rules.write_text("# no rules: only list symbols score\n")
    c = tmp_path / "sluice.conf"
    c.write_text("spam_rules_files = %s\nspam_dns_lists = %s\nspam_dns_timeout = 1s\n"
                 "dns_servers = %s\ndns_timeout = 1s\ndns_tries = 1\n" % (rules, lists, dns.addr))
    return c


def check(conf, *msgs, tmp_path):
    files = []
    for i, m in enumerate(msgs):
        p = tmp_path / ("m%d.eml" % i)
        p.write_bytes(m)
        files.append(str(p))
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "--json", "-c", str(conf)] + files,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(l)["symbols"] for l in out.stdout.splitlines()]


def test_selftest_disables_dead_list(conf):
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "-n", "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ("dns lists: bl.test ip ok, half.test ip ok, dead.test ip disabled (test entry: timeout), "
            "dbl.test domain ok") in out.stdout, out.stdout


def test_answers_to_symbols(conf, tmp_path):
    got = check(conf,
                relay_msg("192.0.2.99"),
                relay_msg("192.0.2.98"),
                relay_msg("192.0.2.97"),
                relay_msg("192.0.2.96"),
                relay_msg("192.0.2.1", b"see http://www.spammy.example/offer and http://clean.example/"),
                tmp_path=tmp_path)
    assert got[0] == {"TEST_SBL": 4.0}, got
    assert got[1] == {"TEST_XBL": 3.0}, got
    assert got[2] == {"BL_TEST_BLOCKED": 0.0}, got          # refused: never a hit
    assert got[3] == {}, got                                 # 127.0.0.99: no line, ignored
    assert got[4] == {"DBL_BLACK": 2.5, "DBL_RED": 0.5}, got  # 127.0.0.6: bits 2 and 4


def test_timeout_costs_at_most_the_deadline(conf, tmp_path):
    t0 = time.monotonic()
    got = check(conf, relay_msg("192.0.2.95"), tmp_path=tmp_path)
    elapsed = time.monotonic() - t0
    assert got == [{}], got
    # start-up self-test (dead.test: 1 s) + this message's look-ups (half.test: 1 s)
    assert elapsed < 5, elapsed


def test_behind_sluiced_client_listed(sluiced_factory, dns, tmp_path):
    s = sluiced_factory()
    spec = spam_spec(s.tmp, "unix")
    lists = tmp_path / "lists"
    lists.write_text(LISTS)
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
    mport = free_port()
    sp = SluiceSpam(s.tmp, "mynetworks = 127.0.0.1/32\nspam_dns_lists = %s\nspam_dns_timeout = 1s\n"
                    "dns_servers = %s\ndns_timeout = 1s\ndns_tries = 1\n"
                    "spam_metrics_listen = 127.0.0.1:%d\n" % (lists, dns.addr, mport),
                    spec, conf_path=s.conf_path).start()
    try:
        s.start()
        sess = Session(s, source="127.0.0.2")            # 2.0.0.127.bl.test is listed
        try:
            code, text = sess.send(relay_msg("192.0.2.97"))
            assert code == 250, text
            code, text = sess.send(relay_msg("192.0.2.96"), rcpt="carol@example.com")
            assert code == 250, text
        finally:
            sess.close()
        (p,) = s.wait_delivered("bob", 1)
        syms = headers(open(p, "rb").read(), "X-Spam-Symbols")
        assert syms == ["BL_TEST_BLOCKED(0.00), HALF_HIT(1.00), TEST_SBL(4.00)"], syms  # client + relay
        log = wait_for(lambda: "milter=spam" in s.log_text() and s.log_text(), 20, "decision")
        assert "dns lists: bl.test ip ok" in log, log
        assert "warning: spam: dns list bl.test refuses our queries (answer 127.255.255.254)" in log, log
        # an answer no line matches is noted in the decision line and ignored
        s.wait_delivered("carol", 1)
        line = wait_for(lambda: [l for l in s.log_text().splitlines() if "dnsl_unmatched" in l], 20, "note")
        assert "dnsl_unmatched=bl.test:127.0.0.99" in line[0], line
        # the list look-ups are counted in /metrics (one query per list and subject)
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
            text = r.read().decode()
        m = re.search(r'^sluice_dns_queries_total\{filter="spam"\} (\d+)', text, re.M)
        assert m and int(m.group(1)) >= 4, text
    finally:
        sp.stop()


def test_client_lists_are_asked_at_connect(sluiced_factory, dns, tmp_path):
    """The client's IP lists are asked when the client connects, not at MAIL
    FROM: the question for 3.0.0.127.bl.test reaches the DNS server while the
    session has sent no more than EHLO; the message then scores as usual."""
    import smtplib
    s = sluiced_factory()
    spec = spam_spec(s.tmp, "unix")
    lists = tmp_path / "lists"
    lists.write_text(LISTS)
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
    sp = SluiceSpam(s.tmp, "mynetworks = 127.0.0.1/32\nspam_dns_lists = %s\nspam_dns_timeout = 1s\n"
                    "dns_servers = %s\ndns_timeout = 1s\ndns_tries = 1\n" % (lists, dns.addr),
                    spec, conf_path=s.conf_path).start()
    try:
        s.start()
        q = "3.0.0.127.bl.test. A IN"
        assert q not in dns.queries()
        with smtplib.SMTP(s.host, s.port, timeout=20, source_address=("127.0.0.3", 0)) as c:
            c.ehlo("client.example")
            wait_for(lambda: q in dns.queries(), 20, "the client's list query before MAIL")
            c.sendmail("a@example.org", ["bob@example.com"], relay_msg("192.0.2.97").replace(b"\n", b"\r\n"))
        s.wait_delivered("bob", 1)
        assert dns.queries().count(q) == 1, dns.queries()   # not asked again at MAIL
    finally:
        sp.stop()
