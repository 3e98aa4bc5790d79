"""sluice-spam behind a REAL Postfix (Debian's, private instance from
tests/fixtures/postfix.py), smtpd_milters over unix and inet sockets.

Proves with Postfix's milter client (not ours): the X-Spam-* headers are
added in SpamAssassin's form, outside X-Spam-* headers are removed, a
message at spam_reject_score is refused with 550 5.7.1 at end of DATA,
mail from Postfix's mynetworks is not scanned, and each decision is logged
with Postfix's queue id (macro i)."""

import os
import re

import pytest

from conftest import wait_for
from filterd import postfix_stack, smtp_send
from postfix_dkim_harness import headers
from test_spam_sluiced import MSG, SluiceSpam, spam_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix needs root")


@pytest.fixture(scope="module", params=["unix", "inet"])
def pfstack(request):
    yield from postfix_stack("sluice-spam-pf-", lambda tmp: SluiceSpam(
        tmp, "mynetworks = 127.0.0.1/32\n", spam_spec(tmp, request.param), umask=0))


def send(pf, body, source, rcpt="bob@example.com", sender="olga@example.org"):
    return smtp_send(pf.port, body, source, rcpt, sender)


def read(p):
    return open(p, "rb").read()


def test_postfix_headers_and_reject(pfstack):
    pf, sp = pfstack
    code, text = send(pf, MSG % (b"one", b"pf1", b"flag-me-please"), "127.0.0.2", rcpt="bob@example.com")
    assert code == 250, text
    qid = re.search(r"queued as (\w+)", text).group(1)
    (p,) = pf.wait_delivered("bob@example.com", 1)
    data = read(p)
    assert headers(data, "X-Spam-Flag") == ["YES"], data
    assert headers(data, "X-Spam-Level") == ["*******"]
    (status,) = headers(data, "X-Spam-Status")
    assert re.fullmatch(r"Yes, score=7\.5 required=6\.0 tests=T_FLAG_ME,T_SUBJ_HELLO autolearn=no "
                        r"version=sluice-\d+\.\d+\.\d+", status), status
    assert headers(data, "X-Spam-Symbols") == ["T_FLAG_ME(7.00), T_SUBJ_HELLO(0.50)"]
    assert b"forged" not in data
    os.unlink(p)

    code, text = send(pf, MSG % (b"two", b"pf2", b"reject-me-please"), "127.0.0.2", rcpt="carol@example.com")
    assert code == 550 and "5.7.1 Message rejected as spam" in text, (code, text)

    lines = wait_for(lambda: [l for l in sp.output().splitlines() if "milter=spam" in l][-2:]
                     if len([l for l in sp.output().splitlines() if "milter=spam" in l]) >= 2 else None,
                     20, "two decision lines")
    assert re.search(r": %s: milter=spam action=add_header score=7\.50 " % qid, lines[0]), lines
    assert re.search(r": \w+: milter=spam action=reject score=20\.50 .*symbols=T_REJECT_ME\(20\.00\)",
                     lines[1]), lines


def test_postfix_mynetworks_not_scanned(pfstack):
    pf, sp = pfstack
    code, text = send(pf, MSG % (b"three", b"pf3", b"reject-me-please"), "127.0.0.1", rcpt="sue@example.com")
    assert code == 250, text
    (p,) = pf.wait_delivered("sue@example.com", 1)
    assert headers(read(p), "X-Spam-Symbols") == []
    os.unlink(p)
    wait_for(lambda: "skipped=mynetworks" in sp.output(), 20, "skip logged")
