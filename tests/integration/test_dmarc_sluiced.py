"""sluice-dmarc behind sluiced in the integrated chain (smtpd_milters =
sluice-dkim, sluice-dmarc), over unix and inet sockets, with a real DNS
server on loopback serving SPF, DMARC and DKIM records.

Also the shared pieces of the sluice-dmarc integration tests (the zone, the
messages, SluiceDmarc: one sluice-dmarc process, tests/fixtures/filterd.py's
FilterDaemon); test_dmarc_postfix.py imports them.

Proves: p=reject with failing alignment -> 550 5.7.1 naming the From domain;
p=quarantine -> hold/; aligned SPF or DKIM pass -> delivered with
dmarc=pass; a forged `Authentication-Results: mx.test; dkim=pass` is not
trusted in either dmarc_self_validate mode; OpenDMARC's historic bypass
inputs get the safe result and the daemon keeps running; several messages
on one SMTP session do not leak state into each other."""

import os
import re

import pytest

from conftest import SmtpRaw, wait_for
from dnsserver import DnsServer
from filterd import FilterDaemon, free_port
from postfix_dkim_harness import SluiceDkim, dkimpy_sign, headers, keygen

# Source addresses: 127.0.0.2 is in the SPF records below, 127.0.0.3 is not
# (127.0.0.1 is in dmarc_ignore_hosts by default).
GOOD_IP, BAD_IP = "127.0.0.2", "127.0.0.3"

ZONE = """reject.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.reject.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:agg@reject.example"
quar.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.quar.example. 300 IN TXT "v=DMARC1; p=quarantine"
none.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.none.example. 300 IN TXT "v=DMARC1; p=none"
elsewhere.example. 300 IN TXT "v=spf1 ip4:127.0.0.3 -all"
helo.reject.example. 300 IN TXT "v=spf1 ip4:127.0.0.3 -all"
rep.example. 300 IN TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.rep.example. 300 IN TXT "v=DMARC1; p=reject; fo=1; ruf=mailto:postmaster@example.com,mailto:x@unverified.example"
rep.example._report._dmarc.example.com. 300 IN TXT "v=DMARC1"
"""


def message(frm=b"Alice <a@reject.example>", extra=b"", subject=b"dmarc test"):
    """A message (LF line ends) with the given From value(s) (bytes or list)."""
    froms = frm if isinstance(frm, list) else [frm]
    h = extra + b"".join(b"From: " + f + b"\n" for f in froms)
    return (h + b"To: bob@example.com\nSubject: " + subject + b"\n"
            b"Date: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <m@reject.example>\n\n"
            b"Hello Bob.\n")


FORGED_AR = (b"Authentication-Results: mx.test; dkim=pass header.d=reject.example "
             b"header.b=AAAAAAAA; spf=pass smtp.mailfrom=a@reject.example; "
             b"dmarc=pass header.from=reject.example\n")
HELO_RSPF = (b"Received-SPF: pass (helo) identity=helo; client-ip=127.0.0.3; "
             b"helo=helo.reject.example; envelope-from=\"a@reject.example\"; receiver=mx.test\n")

# (name, message, MAIL FROM, HELO) of OpenDMARC's historic bypass inputs, all
# sent from BAD_IP with p=reject at reject.example: each must be refused.
BYPASSES = [
    ("two From fields (CVE-2019-16378)", message([b"a@none.example", b"a@reject.example"]),
     "a@none.example"),
    ("one From, two domains (CVE-2019-16378)", message(b"a@none.example, b@reject.example"),
     "a@none.example"),
    ("unbalanced angle", message(b"<a@b.example"), "a@reject.example"),
    ("unbalanced angle 2", message(b"Alice <a@reject.example"), "a@reject.example"),
    ("HELO Received-SPF pass (CVE-2019-20790)", message(extra=HELO_RSPF), "a@reject.example"),
    ("injected A-R (CVE-2020-12272)", message(extra=FORGED_AR), "a@reject.example"),
    ("no From", message([]), "a@reject.example"),
]


@pytest.fixture(scope="module")
def dkey(tmp_path_factory):
    (k,) = keygen(tmp_path_factory.mktemp("dmarckeys"), "reject.example", "s1", "rsa")
    return k


@pytest.fixture(scope="module")
def dmarc_dns(dkey):
    with DnsServer(ZONE + dkey.zone) as d:
        yield d


class SluiceDmarc(FilterDaemon):
    """sluice-dmarc -c CONF -f. conf_path: an existing sluice.conf to append to
    (shared with sluiced), or None for a fresh one in tmp. kind: "unix" or "inet".
    alive(): the process runs and is the one in the pid file."""

    def __init__(self, tmp, conf="", kind="unix", conf_path=None, dns=None, umask=None):
        super().__init__("dmarc", tmp, conf, kind, conf_path=conf_path, dns=dns, umask=umask,
                         conf_name="dmarc.conf")


class Session:
    """One SMTP session from a given source address; several messages on it."""

    def __init__(self, port, source, helo="client.test"):
        self.c = SmtpRaw("127.0.0.1", port, source=source)
        assert self.c.reply()[0] == 220
        assert self.c.cmd("EHLO %s" % helo)[0] == 250

    def send(self, body, sender, rcpt="bob@example.com"):
        code, text = self.c.cmd("MAIL FROM:<%s>" % sender)
        assert code == 250, text
        code, text = self.c.cmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, text
        assert self.c.cmd("DATA")[0] == 354
        self.c.send(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
        return self.c.reply()

    def close(self):
        try:
            self.c.cmd("QUIT")
        finally:
            self.c.close()


def our_ar(data, method="dmarc"):
    return [v for v in headers(data, "Authentication-Results")
            if v.startswith("mx.test;") and re.search(r"\b%s=" % method, v)]


def read(p):
    return open(p, "rb").read()


# ---------------------------------------------------------------- sluiced chain

@pytest.fixture
def chain(sluiced_factory, dmarc_dns):
    """make(kind, dmarc_conf) -> (sluiced, sluice-dkim, sluice-dmarc), one sluice.conf."""
    made = []

    def make(kind="unix", dmarc_conf=""):
        s = sluiced_factory()
        dmarc = None
        dk_spec = ("unix:" + os.path.join(s.tmp, "dkim.sock")) if kind == "unix" else \
            "inet:127.0.0.1:%d" % free_port()
        dk = SluiceDkim(s.tmp, "", dk_spec, conf_path=s.conf_path, dns=dmarc_dns)
        dmarc = SluiceDmarc(s.tmp, dmarc_conf, kind, conf_path=s.conf_path, dns=dmarc_dns)
        with open(s.conf_path, "a") as f:
            f.write("smtpd_milters = %s, %s\nmilter_default_action = tempfail\n" % (dk.spec, dmarc.spec))
        made.extend([dk, dmarc])
        dk.start()
        dmarc.start()
        s.start()
        return s, dk, dmarc

    yield make
    for d in made:
        d.stop()


def main_cases(port, dkey, deliveries, hold_count, log_text):
    """The main cases over ONE SMTP session per source address (state must
    not leak between messages). deliveries(): paths delivered to bob so far."""
    bad = Session(port, BAD_IP)
    try:
        # p=reject, SPF fails, no DKIM
        code, text = bad.send(message(), "a@reject.example")
        assert code == 550 and "5.7.1" in text and "reject.example" in text, text
        # a forged A-R claiming our authserv-id is not trusted
        code, text = bad.send(message(extra=FORGED_AR), "a@reject.example")
        assert code == 550 and "5.7.1" in text, text
        # p=quarantine -> held
        held = hold_count()
        code, text = bad.send(message(b"q@quar.example"), "q@quar.example")
        assert code == 250, text
        wait_for(lambda: hold_count() == held + 1, what="quarantined message on hold")
        # aligned DKIM (sluice-dkim's verifier) passes although SPF fails
        n = len(deliveries())
        code, text = bad.send(dkimpy_sign(message(subject=b"signed"), dkey), "x@elsewhere.example")
        assert code == 250, text
        files = wait_for(lambda: len(deliveries()) == n + 1 and deliveries(), what="signed delivery")
        data = read(files[-1])
        ar = our_ar(data)
        assert len(ar) == 1 and "dmarc=pass" in ar[0] and "header.from=reject.example" in ar[0], ar
        # and the same session's next message is judged on its own
        code, text = bad.send(message(), "a@reject.example")
        assert code == 550, text
    finally:
        bad.close()
    good = Session(port, GOOD_IP)
    try:
        n = len(deliveries())
        for i in range(2):
            code, text = good.send(message(subject=b"pass %d" % i), "a@reject.example")
            assert code == 250, text
        files = wait_for(lambda: len(deliveries()) == n + 2 and deliveries(), what="two deliveries")
        import authres
        for p in files[-2:]:
            ar = our_ar(read(p))
            assert len(ar) == 1, ar
            assert re.search(r"dmarc=pass \(p=reject dis=none\) header\.from=reject\.example "
                             r"policy\.dmarc=none", ar[0]), ar
            # what downstream filters parse (python-authres)
            h = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + ar[0])
            assert h.authserv_id == "mx.test" and h.results[0].method == "dmarc", ar
            props = {(q.type, q.name): q.value for q in h.results[0].properties}
            assert h.results[0].result == "pass" and props[("header", "from")] == "reject.example", props
    finally:
        good.close()
    log = log_text()
    assert re.search(r"milter=dmarc action=reject dmarc=fail .*header_from=reject\.example "
                     r".*policy_domain=reject\.example .*client_ip=127\.0\.0\.3", log), log[-3000:]
    # every event carries the queue id (macro i), never NOQUEUE
    lines = [l for l in log.splitlines() if "milter=dmarc" in l]
    assert lines and not any("NOQUEUE" in l for l in lines), lines


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_chain_main_cases(chain, dkey, kind):
    s, dk, dmarc = chain(kind)
    main_cases(s.port, dkey, lambda: s.delivered("bob"), lambda: len(s.queue_files("hold")),
               s.log_text)
    assert dmarc.alive()


def test_chain_trusted_mode_with_forged_headers(chain, dkey):
    # what `sluice start` runs: sluiced and sluice-dkim ahead, dmarc trusts mx.test
    s, dk, dmarc = chain("unix", "dmarc_self_validate = no\ndmarc_trust_received_spf = yes")
    main_cases(s.port, dkey, lambda: s.delivered("bob"), lambda: len(s.queue_files("hold")),
               s.log_text)
    bad = Session(s.port, BAD_IP, helo="helo.reject.example")
    try:
        code, text = bad.send(message(extra=HELO_RSPF), "a@reject.example")
        assert code == 550, text
    finally:
        bad.close()
    log = s.log_text()
    # the signed message's DKIM came from sluice-dkim's A-R (trusted), not verified twice
    assert re.search(r"dkim=reject\.example/s1/pass dkim_source=trusted", log), log[-3000:]
    assert dmarc.alive()


def test_chain_historic_bypasses(chain):
    s, dk, dmarc = chain("unix")
    sess = Session(s.port, BAD_IP, helo="helo.reject.example")
    try:
        for name, body, sender in BYPASSES:
            code, text = sess.send(body, sender)
            assert code == 550 and "5.7.1" in text, (name, code, text)
    finally:
        sess.close()
    assert dmarc.alive()
    code, text = Session(s.port, GOOD_IP).send(message(), "a@reject.example")
    assert code == 250, text
