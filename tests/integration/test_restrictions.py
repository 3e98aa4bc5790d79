"""Postfix-style restrictions against a real DNS server on loopback."""

import json
import os

import pytest

from conftest import DATA, SmtpRaw, wait_for
from dnsserver import DnsServer

ZONE = """
2.0.0.127.rbl.test. 300 IN A 127.0.0.2
2.0.0.127.rbl.test. 300 IN TXT "listed: see http://rbl.test/127.0.0.2"
3.0.0.127.rbl.test. 300 IN A 127.255.255.254
4.0.0.127.rbl.test. 300 IN A 127.0.0.4
good.test. 300 IN MX 10 mx.good.test.
mx.good.test. 300 IN A 192.0.2.10
aonly.test. 300 IN A 192.0.2.11
nullmx.test. 300 IN MX 0 .
helo.good.test. 300 IN A 192.0.2.12
5.0.0.127.in-addr.arpa. 300 IN PTR host5.good.test.
host5.good.test. 300 IN A 127.0.0.5
6.0.0.127.in-addr.arpa. 300 IN PTR liar.good.test.
liar.good.test. 300 IN A 192.0.2.99
"""


@pytest.fixture(scope="module")
def dns():
    with DnsServer(ZONE, deny=["slow.test"]) as d:
        yield d


def start(factory, dns, conf):
    return factory(f"dns_servers = {dns.addr}\ndns_timeout = 2s\ndns_tries = 1\n" + conf).start()


def session(s, source="127.0.0.1", helo="client.good.test"):
    c = SmtpRaw("127.0.0.1", s.port, source=source)
    code, text = c.reply()
    assert code == 220, text
    assert c.cmd("EHLO " + helo)[0] == 250
    return c


def rcpt_reply(s, source="127.0.0.1", sender="s@good.test", rcpt="alice@example.com", helo="client.good.test"):
    c = session(s, source, helo)
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    r = c.cmd("RCPT TO:<%s>" % rcpt)
    c.close()
    return r


def test_reject_rbl_client(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_client_restrictions = reject_rbl_client rbl.test")
    code, text = rcpt_reply(s, source="127.0.0.2")
    assert code == 554 and "5.7.1" in text
    assert "Client host [127.0.0.2] blocked using rbl.test; listed: see http://rbl.test/127.0.0.2" in text
    # 127.255.255.254 means "query refused": never a listing, logged as a list error
    code, _ = rcpt_reply(s, source="127.0.0.3")
    assert code == 250
    assert "list error answer 127.255.255.254" in s.log_text()
    # not listed at all
    assert rcpt_reply(s, source="127.0.0.7")[0] == 250


def test_reject_rbl_client_filter(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_client_restrictions = reject_rbl_client rbl.test=127.0.0.[3..9]")
    assert rcpt_reply(s, source="127.0.0.2")[0] == 250   # 127.0.0.2 is outside the filter
    assert rcpt_reply(s, source="127.0.0.4")[0] == 554


def test_reject_unknown_sender_domain(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_sender_restrictions = reject_unknown_sender_domain")
    assert rcpt_reply(s, sender="a@good.test")[0] == 250
    assert rcpt_reply(s, sender="a@aonly.test")[0] == 250        # A fallback (RFC 5321 5.1)
    code, text = rcpt_reply(s, sender="a@nx.test")
    assert code == 450 and "4.1.8" in text and "Sender address rejected: Domain not found" in text
    code, text = rcpt_reply(s, sender="a@nullmx.test")
    assert code == 550 and "nullMX" in text
    code, text = rcpt_reply(s, sender="a@slow.test")                # DNS timeout: temporary
    assert code == 450
    assert rcpt_reply(s, sender="")[0] == 250                        # null sender is exempt


def test_reject_unknown_recipient_domain(sluiced_factory, dns):
    s = start(sluiced_factory, dns,
              "smtpd_recipient_restrictions = reject_unknown_recipient_domain\n"
              "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination")
    code, text = rcpt_reply(s, rcpt="x@nx.test")
    assert code == 450 and "4.1.2" in text and "Recipient address rejected: Domain not found" in text
    assert rcpt_reply(s, rcpt="x@good.test")[0] == 250
    assert rcpt_reply(s, rcpt="alice@example.com")[0] == 250       # our own domain: no DNS needed


def test_reject_unknown_client_hostname(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_peername_lookup = yes\n"
              "smtpd_client_restrictions = reject_unknown_client_hostname")
    assert rcpt_reply(s, source="127.0.0.5")[0] == 250             # PTR + matching A
    code, text = rcpt_reply(s, source="127.0.0.6")                  # PTR, A does not match
    assert code == 450 and "cannot find your hostname, [127.0.0.6]" in text
    code, text = rcpt_reply(s, source="127.0.0.8")                  # no PTR at all
    assert code == 450
    log = s.log_text()
    assert "connect from host5.good.test[127.0.0.5]" in log
    assert "connect from unknown[127.0.0.6]" in log


def test_reject_unknown_reverse_client_hostname(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_peername_lookup = yes\n"
              "smtpd_client_restrictions = reject_unknown_reverse_client_hostname")
    assert rcpt_reply(s, source="127.0.0.6")[0] == 250             # PTR exists (forward mismatch ok)
    code, text = rcpt_reply(s, source="127.0.0.8")
    assert code == 450 and "cannot find your reverse hostname" in text


def test_helo_restrictions(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_helo_restrictions = reject_invalid_helo_hostname, "
              "reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname")
    assert rcpt_reply(s, helo="helo.good.test")[0] == 250
    code, text = rcpt_reply(s, helo="bad_host!name")
    assert code == 501 and "Helo command rejected: Invalid name" in text
    code, text = rcpt_reply(s, helo="localhost")
    assert code == 504 and "need fully-qualified hostname" in text
    code, text = rcpt_reply(s, helo="nowhere.nx.test")
    assert code == 450 and "Helo command rejected: Host not found" in text
    assert rcpt_reply(s, helo="[127.0.0.1]")[0] == 250


def test_access_tables_and_warn_if_reject(sluiced_factory, dns, tmp_path):
    access = tmp_path / "sender_access"
    access.write_text("# Postfix access(5) source file\nspammer@good.test REJECT no thanks\n"
                      "good.test   DUNNO\nbad.test 550 5.7.0 go away\n"
                      "held@good.test HOLD\nprepend@good.test PREPEND X-Tag: tagged\n")
    cidr = tmp_path / "client.cidr"
    cidr.write_text("127.0.0.9/32 REJECT\n")
    s = start(sluiced_factory, dns,
              f"smtpd_sender_restrictions = check_sender_access texthash:{access}\n"
              f"smtpd_client_restrictions = warn_if_reject check_client_access cidr:{cidr}")
    code, text = rcpt_reply(s, sender="spammer@good.test")
    assert code == 554 and "<spammer@good.test>: Sender address rejected: no thanks" in text
    code, text = rcpt_reply(s, sender="x@bad.test")
    assert code == 550 and "5.7.0" in text and "go away" in text
    assert rcpt_reply(s, sender="other@good.test")[0] == 250
    # warn_if_reject: logged, not enforced
    assert rcpt_reply(s, source="127.0.0.9")[0] == 250
    assert "reject_warning: RCPT from unknown[127.0.0.9]" in s.log_text()
    # PREPEND adds a header; HOLD parks the message in hold/
    for sender in ("prepend@good.test", "held@good.test"):
        c = session(s)
        c.cmd("MAIL FROM:<%s>" % sender)
        c.cmd("RCPT TO:<carol@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
        c.close()
    (p,) = s.wait_delivered("carol", 1)
    assert open(p, "rb").read().split(b"\n\n")[0].count(b"X-Tag: tagged") == 1
    wait_for(lambda: len(s.queue_files("hold")) == 1, what="message in hold/")


def test_reject_unauth_pipelining(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_data_restrictions = reject_unauth_pipelining")
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("EHLO client.good.test")
    c.cmd("MAIL FROM:<s@good.test>")
    c.cmd("RCPT TO:<alice@example.com>")
    # message content sent before the 354 reply
    c.send(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    code, text = c.reply()
    assert code == 554 and "5.5.0" in text and "synchronization" in text
    assert not s.delivered("alice")


def test_smtpd_delay_reject_no(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "smtpd_delay_reject = no\n"
              "smtpd_sender_restrictions = reject_unknown_sender_domain")
    c = session(s)
    code, text = c.cmd("MAIL FROM:<a@nx.test>")
    assert code == 450 and "Domain not found" in text


def test_json_log_format(sluiced_factory, dns):
    s = start(sluiced_factory, dns, "log_format = json")
    rcpt_reply(s, rcpt="x@outside.test", source="127.0.0.2")
    wait_for(lambda: "disconnect from unknown[127.0.0.2]" in s.log_text(), what="disconnect line")
    events = [json.loads(l) for l in s.log_text().splitlines() if l.strip()]
    # Postfix's program field: syslog_name (default sluice) / service
    assert {e["program"] for e in events} <= {"sluice/master", "sluice/smtpd", "sluice/qmgr"}, events
    assert [e for e in events if e["program"] == "sluice/smtpd"]
    conn = [e for e in events if e["message"].startswith("connect from")]
    assert conn and "queue_id" not in conn[0]
    disc = [e for e in events if e["message"].startswith("disconnect from unknown[127.0.0.2]")]
    assert disc and disc[0].get("mail") == "1" and disc[0]["commands"], disc
