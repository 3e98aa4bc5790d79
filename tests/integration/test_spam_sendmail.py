"""sluice-spam behind a REAL Sendmail (Debian's sendmail-bin 8.17, unpacked by
`make deps`, private instance from tests/fixtures/sendmail.py), with
INPUT_MAIL_FILTER over S=inet:PORT@HOST and S=unix:PATH: the X-Spam-*
headers are added in SpamAssassin's form and outside ones removed, a
message at spam_reject_score is refused with 550 5.7.1, two messages on one
SMTP session (one milter connection) are scored apart, and Sendmail's
queue id is in each decision line."""

import os
import re
import shutil
import tempfile

import pytest

import sendmail as sendmail_fixture
from conftest import SmtpRaw, wait_for
from postfix_dkim_harness import headers
from test_spam_sluiced import MSG, SluiceSpam

pytestmark = pytest.mark.skipif(not sendmail_fixture.available(),
                                reason="Sendmail not unpacked (make deps) or not root")


@pytest.fixture(scope="module", params=["inet", "unix"])
def smstack(request):
    tmp = tempfile.mkdtemp(prefix="sluice-spam-sm-")
    os.chmod(tmp, 0o755)
    if request.param == "inet":
        port = sendmail_fixture._free_port()
        ours = "inet:127.0.0.1:%d" % port
        theirs = "inet:%d@127.0.0.1" % port      # Sendmail's S= form
    else:
        ours = "unix:" + os.path.join(tmp, "spam.sock")
        theirs = ours
    sp = SluiceSpam(tmp, "mynetworks = 127.0.0.1/32\n", ours, umask=0).start()
    sm = sendmail_fixture.Sendmail(tmp, milters=[("sluice-spam", theirs)],
                                   mc_extra=["RELAY_DOMAIN(`example.com')dnl"])
    try:
        sm.start()
        yield sm, sp
    finally:
        sm.stop()
        sp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def send_on(c, body, rcpt="bob@example.com", sender="olga@example.org"):
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    assert code == 250, text
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    assert code == 250, text
    assert c.cmd("DATA")[0] == 354
    c.send(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
    return c.reply()


def test_sendmail_headers_reject_and_two_per_session(smstack):
    sm, sp = smstack
    sm.clear()
    c = SmtpRaw("127.0.0.1", sm.port, source="127.0.0.2")
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        code, text = send_on(c, MSG % (b"one", b"sm1", b"flag-me-please"))
        assert code == 250, text
        code, text = send_on(c, MSG % (b"two", b"sm2", b"nothing here"))
        assert code == 250, text
        code, text = send_on(c, MSG % (b"three", b"sm3", b"reject-me-please"))
        assert code == 550 and "5.7.1" in text, (code, text)
    finally:
        c.close()
    msgs = [m.replace(b"\r\n", b"\n") for m in sm.wait_messages(2)]
    by_subject = {headers(m, "Subject")[0]: m for m in msgs}
    flagged, clean = by_subject["hello one"], by_subject["hello two"]
    assert headers(flagged, "X-Spam-Flag") == ["YES"], flagged
    (status,) = headers(flagged, "X-Spam-Status")
    assert re.fullmatch(r"Yes, score=7\.5 required=6\.0 tests=T_FLAG_ME,T_SUBJ_HELLO autolearn=no "
                        r"version=sluice-\d+\.\d+\.\d+", status), status
    assert headers(flagged, "X-Spam-Symbols") == ["T_FLAG_ME(7.00), T_SUBJ_HELLO(0.50)"]
    assert b"forged" not in flagged and b"forged" not in clean
    assert headers(clean, "X-Spam-Flag") == []
    assert headers(clean, "X-Spam-Status")[0].startswith("No, score=0.5 ")
    lines = wait_for(lambda: [l for l in sp.output().splitlines() if "milter=spam" in l][-3:]
                     if len([l for l in sp.output().splitlines() if "milter=spam" in l]) >= 3 else None,
                     20, "three decision lines")
    for l in lines:
        assert re.search(r": \w{8,}: milter=spam action=", l), l     # Sendmail's queue id
    assert [re.search(r"action=(\S+)", l).group(1) for l in lines] == ["add_header", "no_action", "reject"]
