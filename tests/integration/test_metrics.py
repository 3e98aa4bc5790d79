"""Prometheus /metrics (issue 13): sluiced with metrics_listen, sluice-dkim
(milter) with dkim_metrics_listen and sluice-spf (policy service) with
spf_metrics_listen, all on free loopback ports, DNS from unbound on
loopback.

Proves: every endpoint's text passes `promtool check metrics` (no output,
exit 0); one message moves sluiced's received counter, its delivery counter
and end-of-data histogram, sluice-dkim's message counter and sluice-spf's
request and DNS query counters by exactly one each; a rejected RCPT moves
sluice_rejects_total{stage="RCPT",reason="unknown_recipient"} by one; an SPF
look-up that the DNS server never answers moves sluice-spf's DNS timeout
counter and its temperror requests by one; with sluice-spf stopped a
request moves sluice_policy_failures_total, with sluice-dkim stopped a
session moves sluice_milter_failures_total (last: it stops them); the
session gauge goes back to 0 when the sessions end; other paths are 404.
One stack for the module (the tests only read differences)."""

import os
import re
import shutil
import smtplib
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import Sluiced, free_port, wait_for
from dnsserver import DnsServer
from filterd import FilterDaemon

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

ZONE = """
example.org. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
slow.example.org. 300 IN TXT "v=spf1 -all"
"""

MSG = ("From: Olga <olga@example.org>\r\nTo: bob@example.com\r\nSubject: metrics %d\r\n"
       "Date: Wed, 02 Dec 2026 12:00:00 +0000\r\nMessage-ID: <metrics%d@example.org>\r\n\r\n"
       "counted\r\n")

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset of (label, value)): float} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, "unparsable line %r" % line
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name, **labels):
    """Sum over every series of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    daemons = []
    with DnsServer(ZONE, deny=["slow.example.org"]) as dns:
        # picked once unbound listens: it cannot take one of them any more
        ports = {}
        while len(set(ports.values())) < 3:
            ports = {"sluiced": free_port(), "dkim": free_port(), "spf": free_port()}
        s = Sluiced(tmp)
        # spf_skip_addresses empty: the test client is on 127.0.0.1
        spf = FilterDaemon("spf", s.tmp, "spf_metrics_listen = 127.0.0.1:%d\nspf_skip_addresses =" % ports["spf"],
                           kind="inet", conf_path=s.conf_path, dns=dns)
        dkim = FilterDaemon("dkim", s.tmp, "dkim_metrics_listen = 127.0.0.1:%d" % ports["dkim"],
                            conf_path=s.conf_path, dns=dns)
        with open(s.conf_path, "a") as f:
            f.write("metrics_listen = 127.0.0.1:%d\n" % ports["sluiced"])
            f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % dkim.spec)
            f.write("smtpd_policy_service_retry_delay = 0\n")
            f.write("smtpd_recipient_restrictions = reject_unauth_destination, "
                    "check_policy_service inet:127.0.0.1:%d\n" % spf.port)
        try:
            for d in (spf, dkim):
                daemons.append(d.start())
            s.start()
            daemons.append(s)
            yield s, ports, spf, dkim
        finally:
            for d in daemons:	# all at once: libmilter takes seconds to stop
                if d.proc.poll() is None:
                    d.proc.terminate()
            for d in reversed(daemons):
                d.stop()


def test_promtool_accepts_every_endpoint(stack):
    _, ports, _, _ = stack
    for who, port in ports.items():
        text = scrape(port)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                           timeout=30)
        assert r.returncode == 0 and not r.stdout and not r.stderr, (who, r.stdout, r.stderr, text)
        assert "\nprocess_resident_memory_bytes " in text, who
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(ports["sluiced"], "/")
    assert e.value.code == 404


def test_a_message_moves_each_counter_by_one(stack):
    s, ports, _, _ = stack
    before = {who: parse(scrape(port)) for who, port in ports.items()}
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.sendmail("olga@example.org", ["bob@example.com"], MSG % (1, 1))
    s.wait_delivered("bob", 1)
    # the delivery is counted when it is logged, just after the file lands
    wait_for(lambda: value(parse(scrape(ports["sluiced"])), "sluice_deliveries_total", status="sent",
                           transport="virtual") > value(before["sluiced"], "sluice_deliveries_total",
                                                        status="sent", transport="virtual"),
             what="the delivery counted (log: %s)" % s.log_text()[-2000:])
    after = {who: parse(scrape(port)) for who, port in ports.items()}

    def moved(who, name, **labels):
        return total(after[who], name, **labels) - total(before[who], name, **labels)

    assert moved("sluiced", "sluice_messages_received_total") == 1
    assert moved("sluiced", "sluice_deliveries_total", status="sent", transport="virtual") == 1
    assert moved("sluiced", "sluice_end_of_data_seconds_count") == 1
    assert moved("sluiced", "sluice_rejects_total") == 0
    assert moved("dkim", "sluice_filter_messages_total", filter="dkim") == 1
    assert moved("dkim", "sluice_filter_duration_seconds_count", filter="dkim") == 1
    assert moved("spf", "sluice_filter_requests_total", filter="spf") == 1
    assert moved("spf", "sluice_filter_requests_total", filter="spf", result="pass") == 1
    assert moved("spf", "sluice_dns_queries_total", filter="spf") >= 1
    # the sessions ended: the gauge is back where it was
    wait_for(lambda: value(parse(scrape(ports["sluiced"])), "sluice_smtp_sessions") == 0,
             what="sluice_smtp_sessions back to 0")
    queue = parse(scrape(ports["sluiced"]))
    assert ("sluice_queue_messages", frozenset({("queue", "deferred")})) in queue


def test_a_rejected_rcpt_moves_the_reject_counter(stack):
    s, ports, _, _ = stack
    key = dict(stage="RCPT", reason="unknown_recipient")
    before = parse(scrape(ports["sluiced"]))
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("olga@example.org")
        code, _ = c.rcpt("nobody@example.com")
        assert code == 550
    after = parse(scrape(ports["sluiced"]))
    assert value(after, "sluice_rejects_total", **key) - value(before, "sluice_rejects_total", **key) == 1
    assert total(after, "sluice_rejects_total") - total(before, "sluice_rejects_total") == 1
    assert total(after, "sluice_messages_received_total") == total(before, "sluice_messages_received_total")


def test_a_dns_timeout_moves_the_timeout_counter(stack):
    s, ports, _, _ = stack
    before = parse(scrape(ports["spf"]))
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("olga@slow.example.org")
        c.rcpt("bob@example.com")	# answered after the look-up timed out (dns_timeout 1s)
    after = parse(scrape(ports["spf"]))

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("sluice_dns_timeouts_total", filter="spf") == 1
    assert moved("sluice_filter_requests_total", filter="spf", result="temperror") == 1
    assert moved("sluice_filter_duration_seconds_count", filter="spf") == 1


def test_dead_filters_move_the_failure_counters(stack):
    """Last in the module: it stops the filters."""
    s, ports, spf, dkim = stack
    spf_service = "inet:127.0.0.1:%d" % spf.port
    before = parse(scrape(ports["sluiced"]))
    spf.stop()
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("olga@example.org")
        code, _ = c.rcpt("bob@example.com")
        assert code == 451	# smtpd_policy_service_default_action
    mid = parse(scrape(ports["sluiced"]))
    assert total(mid, "sluice_policy_failures_total", filter=spf_service) - \
        total(before, "sluice_policy_failures_total", filter=spf_service) == 1
    assert total(mid, "sluice_rejects_total", stage="RCPT") - total(before, "sluice_rejects_total", stage="RCPT") == 1
    dkim.stop()	# libmilter takes seconds: the teardown is spared them
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("olga@example.org")
        assert c.rcpt("bob@example.com")[0] == 451	# milter_default_action = tempfail
    after = parse(scrape(ports["sluiced"]))
    assert total(after, "sluice_milter_failures_total", action="tempfail") - \
        total(mid, "sluice_milter_failures_total", action="tempfail") == 1, s.log_text()[-2000:]
