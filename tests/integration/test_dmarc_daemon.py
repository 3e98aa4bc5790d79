"""sluice-dmarc as a daemon: command line (-n, --help, --version, bad
configuration with file:line), SIGHUP reload (a broken file keeps the old
generation), JSON log lines, Sendmail's inet:port@host socket spec, DNS
time-outs (dmarc_on_temperror), RFC 7489 mode with the Public Suffix List.
Behind sluiced (smtpd_milters = sluice-dmarc only) with the test zones of
test_dmarc_sluiced.py on a real DNS server on loopback."""

import json
import os
import re
import subprocess

import pytest

from conftest import wait_for
from dnsserver import DnsServer
from postfix_dkim_harness import BIN
from test_dmarc_sluiced import (BAD_IP, GOOD_IP, ZONE, Session, SluiceDmarc, dkey,  # noqa: F401
                                message, our_ar, read)

SLOW_ZONE = 'slow.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"\n'


@pytest.fixture(scope="module")
def slow_dns(dkey):
    with DnsServer(ZONE + SLOW_ZONE + dkey.zone, deny=["_dmarc.slow.example"]) as d:
        yield d


@pytest.fixture
def solo(sluiced_factory, slow_dns):
    made = []

    def make(dmarc_conf="", kind="unix", spec=None):
        s = sluiced_factory()
        dm = SluiceDmarc(s.tmp, dmarc_conf, kind, conf_path=s.conf_path, dns=slow_dns)
        if spec:
            dm.spec = spec
            with open(s.conf_path, "a") as f:
                f.write("dmarc_socket = %s\n" % spec)
            dm.port = int(spec.split(":")[1].split("@")[0])
        with open(s.conf_path, "a") as f:
            f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" %
                    ("inet:127.0.0.1:%d" % dm.port if spec else dm.spec))
        made.append(dm)
        dm.start()
        s.start()
        return s, dm

    yield make
    for d in made:
        d.stop()


def run(*args):
    return subprocess.run([os.path.join(BIN, "sluice-dmarc")] + list(args), capture_output=True,
                          text=True, timeout=30)


def test_command_line(tmp_path):
    r = run("--version")
    assert r.returncode == 0 and re.match(r"sluice-dmarc \(sluice\) \d+\.\d+\.\d+$", r.stdout.strip())
    r = run("--help")
    assert r.returncode == 0 and "-c" in r.stdout and "-n" in r.stdout
    good = tmp_path / "good.conf"
    good.write_text("myhostname = mx.test\ndmarc_socket = unix:%s/d.sock\n" % tmp_path)
    r = run("-c", str(good), "-n")
    assert r.returncode == 0 and "dmarc configuration ok" in r.stdout, r.stdout + r.stderr
    for text, what in [("dmarc_mode = dmarc3\n", "dmarc_mode"),
                       ("\n\ndmarc_quarantine_action = drop\n", "dmarc_quarantine_action"),
                       ("dmarc_socket = tcp:1\n", "dmarc_socket"),
                       ("dmarc_ignore_hosts = 999.1.2.3\n", "dmarc_ignore_hosts"),
                       ("dmarc_reject_reply = 100%\n", "dmarc_reject_reply")]:
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        r = run("-c", str(bad), "-n")
        assert r.returncode != 0 and what in r.stderr, (text, r.stdout, r.stderr)
        if "\n\n" in text:
            assert "bad.conf:3:" in r.stderr, r.stderr
    r = run("-x")
    assert r.returncode == 2


def test_sighup_reload_and_json_log(solo):
    s, dm = solo("dmarc_enforce = no\nlog_format = json")
    sess = Session(s.port, BAD_IP)
    try:
        code, text = sess.send(message(), "a@reject.example")
        assert code == 250, text                     # only reports
        (p,) = s.wait_delivered("bob", 1)
        assert "dmarc=fail (p=reject dis=reject)" in our_ar(read(p))[0]
        # a broken file: the old generation stays
        with open(s.conf_path, "a") as f:
            f.write("dmarc_mode = broken\n")
        dm.hup()
        wait_for(lambda: "reload failed" in s.log_text(), what="reload failure logged")
        code, text = sess.send(message(), "a@reject.example")
        assert code == 250, text
        # fixed and enforcing: the same SMTP session now gets the new generation
        with open(s.conf_path, "a") as f:
            f.write("dmarc_mode = dmarcbis\ndmarc_enforce = yes\n")
        dm.hup()
        wait_for(lambda: "configuration reloaded" in s.log_text(), what="reload logged")
        code, text = sess.send(message(), "a@reject.example")
        assert code == 550 and "5.7.1" in text, text
    finally:
        sess.close()
    assert dm.alive()
    events = []
    for line in s.log_text().splitlines():
        if line.startswith("{") and '"program":"sluice-dmarc"' in line:
            j = json.loads(line)
            if j.get("milter") == "dmarc":
                events.append(j)
    assert len(events) == 3, events
    e = events[-1]
    assert e["action"] == "reject" and e["dmarc"] == "fail" and e["header_from"] == "reject.example"
    assert e["policy_domain"] == "reject.example" and e["p"] == "reject" and e["client_ip"] == BAD_IP
    assert e["spf"] == "reject.example/mfrom/fail" and e["envelope_to"] == "example.com"
    assert e["queue_id"] and e["queue_id"] != "NOQUEUE"
    assert events[0]["enforced"] == "no" and events[0]["disposition"] == "reject"
    # issue 13's common keys at the end (docs/EVENTS.md); reason stays the text
    assert e["filter"] == "dmarc" and e["result"] == "fail" and e["reason_code"] == "dmarc_policy"
    assert e["sender"].endswith("@reject.example") and e["ms"].isdigit(), e
    assert " reason_code=dmarc_policy ms=" in e["message"] and e["reason"] != "dmarc_policy"


def test_sendmail_socket_spec_and_rfc7489_mode(solo):
    from test_dmarc_sluiced import free_port
    port = free_port()
    s, dm = solo("dmarc_mode = rfc7489", kind="inet", spec="inet:%d@127.0.0.1" % port)
    # the organizational domain of mail.reject.example by the PSL is reject.example
    sess = Session(s.port, GOOD_IP)
    try:
        code, text = sess.send(message(b"a@mail.reject.example"), "a@reject.example")
        assert code == 250, text
    finally:
        sess.close()
    (p,) = s.wait_delivered("bob", 1)
    ar = our_ar(read(p))[0]
    assert "dmarc=pass" in ar and "header.from=mail.reject.example" in ar, ar
    code, text = Session(s.port, BAD_IP).send(message(b"a@mail.reject.example"), "a@reject.example")
    assert code == 550 and "mail.reject.example" in text, text
    assert re.search(r"milter=dmarc action=reject .*discovery=psl", s.log_text())


@pytest.mark.parametrize("on_temperror,code", [("accept", 250), ("tempfail", 451)])
def test_dns_timeout(solo, on_temperror, code):
    s, dm = solo("dmarc_on_temperror = %s" % on_temperror)
    got, text = Session(s.port, BAD_IP).send(message(b"a@slow.example"), "a@slow.example")
    assert got == code, text
    if code == 451:
        assert "4.3.0" in text, text
    else:
        (p,) = s.wait_delivered("bob", 1)
        assert "dmarc=temperror" in our_ar(read(p))[0]
    assert re.search(r"milter=dmarc action=(accept|tempfail) dmarc=temperror", s.log_text())
    assert dm.alive()


def test_failure_report_through_sluice_sendmail(solo):
    """dmarc_failure_reports = yes: a fo=1 failure at rep.example makes an
    RFC 9991 report that the real sluice-sendmail hands to sluiced, which
    delivers it to the verified ruf= address; the unverified one gets none."""
    import email
    import email.policy
    s, dm = solo("dmarc_failure_reports = yes\ndmarc_failure_report_from = dmarc-reports@example.com")
    code, text = Session(s.port, BAD_IP).send(message(b"Olga <olga@rep.example>"), "olga@rep.example")
    assert code == 550 and "rep.example" in text, text
    (p,) = s.wait_delivered("postmaster", 1)
    msg = email.message_from_bytes(read(p), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg
    assert msg.get_param("report-type") == "feedback-report"
    assert msg["Auto-Submitted"] == "auto-generated"
    parts = list(msg.iter_parts())
    fb = parts[1].get_payload()[0] if parts[1].is_multipart() else parts[1]
    text = read(p).decode(errors="replace")
    assert "Feedback-Type: auth-failure" in text and "Reported-Domain: rep.example" in text, text
    assert "Delivery-Result: reject" in text and "Source-IP: 127.0.0.3" in text, text
    assert "olga@" not in text                       # redacted by default
    assert fb is not None
    log = s.log_text()
    assert re.search(r"milter=dmarc failure_report=sent header_from=rep\.example "
                     r"ruf=postmaster@example\.com verification=verified", log), log[-3000:]
    assert re.search(r"milter=dmarc failure_report=not_verified header_from=rep\.example "
                     r"ruf=x@unverified\.example", log), log[-3000:]
    assert dm.alive()


def test_sigterm_waits_for_the_message_in_flight(solo):
    """SIGTERM: a message between MAIL FROM and its end is still judged, then
    the daemon exits (0) with its "stopped" line; idle, it exits (0) too.
    sluiced does not wait for the milter at MAIL and RCPT (no-reply steps), so
    under load the milter may not have read MAIL yet when the signal comes
    ("0 messages in flight"): then the round proves nothing and is run again."""
    import signal
    for attempt in range(5):
        s, dm = solo()
        sess = Session(s.port, BAD_IP)
        try:
            assert sess.c.cmd("MAIL FROM:<a@reject.example>")[0] == 250
            assert sess.c.cmd("RCPT TO:<bob@example.com>")[0] == 250
            dm.proc.send_signal(signal.SIGTERM)
            line = wait_for(lambda: re.search(r"stopping \((\d+) messages in flight\)", s.log_text()),
                            what="stopping logged")
            if line.group(1) == "0":
                continue
            assert line.group(1) == "1", s.log_text()
            assert dm.proc.poll() is None                 # still serving the message
            assert sess.c.cmd("DATA")[0] == 354
            sess.c.send(message().replace(b"\n", b"\r\n") + b".\r\n")
            code, text = sess.c.reply()
            assert code == 550 and "5.7.1" in text, text
        finally:
            sess.close()
        assert dm.proc.wait(timeout=10) == 0
        assert "dmarc: stopped (0 messages unfinished)" in s.log_text()
        break
    else:
        pytest.fail("the milter never had the message in flight when SIGTERM came (5 rounds)")
    # idle
    s2, dm2 = solo()
    dm2.proc.send_signal(signal.SIGTERM)
    assert dm2.proc.wait(timeout=10) == 0
