"""sluice-dkim behind a REAL Sendmail (Debian's sendmail-bin 8.17, unpacked by
`make deps`, private instance from tests/fixtures/sendmail.py), with
INPUT_MAIL_FILTER over Sendmail's S=inet:PORT@HOST and S=unix:PATH forms:
mail from an internal host is signed (rsa-sha256 + ed25519-sha256, both
verify with dkimpy), mail from outside is verified (pass, tampered body
fails), a forged Authentication-Results with our authserv-id is removed,
and two messages on one SMTP session each get their own result."""

import os
import re
import shutil
import tempfile

import pytest

import sendmail as sendmail_fixture
from conftest import SmtpRaw
from postfix_dkim_harness import SluiceDkim, dkimpy_sign, dkimpy_verify_all, headers, sig_tags
from test_dkim_sluiced import IN_MSG, OUT_MSG, dns, keys, simple_signing, zone  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not sendmail_fixture.available(),
                                reason="Sendmail not unpacked (make deps) or not root")


@pytest.fixture(scope="module", params=["inet", "unix"])
def smstack(request, keys, dns):
    tmp = tempfile.mkdtemp(prefix="sluice-dkim-sm-")
    os.chmod(tmp, 0o755)
    if request.param == "inet":
        port = sendmail_fixture._free_port()
        ours = "inet:127.0.0.1:%d" % port
        theirs = "inet:%d@127.0.0.1" % port      # Sendmail's S= form
    else:
        ours = "unix:" + os.path.join(tmp, "dkim.sock")
        theirs = ours
    dk = SluiceDkim(tmp, simple_signing(keys), ours, dns=dns, umask=0).start()
    sm = sendmail_fixture.Sendmail(tmp, milters=[("sluice-dkim", theirs)],
                                   mc_extra=["RELAY_DOMAIN(`example.com')dnl"])
    try:
        sm.start()
        yield sm, dk
    finally:
        sm.stop()
        dk.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def session(sm, source):
    c = SmtpRaw("127.0.0.1", sm.port, source=source)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def send_on(c, body, rcpt="bob@example.com", sender="alice@example.com"):
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    assert code == 250, text
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    assert code == 250, text
    assert c.cmd("DATA")[0] == 354
    c.send(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n")
    return c.reply()


def body_of(raw):
    """smtp-sink's dump: the message as received (CRLF line ends)."""
    return raw.replace(b"\r\n", b"\n")


def test_sendmail_internal_mail_is_signed(smstack, keys):
    sm, dk = smstack
    sm.clear()
    c = session(sm, "127.0.0.1")
    try:
        code, text = send_on(c, OUT_MSG % (1, 1))
        assert code == 250, text
    finally:
        c.close()
    (raw,) = sm.wait_messages(1)
    data = body_of(raw)
    sigs = [sig_tags(v) for v in headers(data, "DKIM-Signature")]
    assert sorted(t["a"] for t in sigs) == ["ed25519-sha256", "rsa-sha256"], data
    assert all(t["d"] == "example.com" for t in sigs)
    # what Sendmail relayed verifies: signed exactly as it left
    assert dkimpy_verify_all(data, [keys["out_rsa"], keys["out_ed"]]) == [True, True], data


def test_sendmail_external_mail_is_verified_two_per_session(smstack, keys):
    sm, dk = smstack
    sm.clear()
    good = dkimpy_sign(IN_MSG, keys["in_rsa"])
    forged = b"Authentication-Results: mx.test; dkim=pass header.d=paypal.com\r\n" + \
        good.replace(b"Hello from", b"Bye from")
    c = session(sm, "127.0.0.2")
    try:
        # two transactions on one SMTP session (one milter connection): no state leaks
        code, text = send_on(c, good, rcpt="carol@example.com")
        assert code == 250, text
        code, text = send_on(c, forged, rcpt="carol@example.com")
        assert code == 250, text
    finally:
        c.close()
    msgs = [body_of(m) for m in sm.wait_messages(2)]
    results = []
    for data in msgs:
        ours = [v for v in headers(data, "Authentication-Results") if v.startswith("mx.test;")]
        assert len(ours) == 1, data
        assert b"paypal.com" not in data, data
        results.append(ours[0])
    passed = [r for r in results if re.search(r"dkim=pass .*header\.d=example\.org", r)]
    failed = [r for r in results if re.search(r'dkim=fail reason="body hash did not verify"', r)]
    assert len(passed) == 1 and len(failed) == 1, results


def test_sendmail_milter_down_tempfails(smstack, keys, tmp_path):
    """F=T: with sluice-dkim stopped, Sendmail answers 4xx; started again, mail flows."""
    sm, dk = smstack
    dk.stop()
    try:
        c = session(sm, "127.0.0.2")
        try:
            code, text = c.cmd("MAIL FROM:<alice@example.org>")
            if code == 250:
                code, text = c.cmd("RCPT TO:<carol@example.com>")
                if code == 250:
                    assert c.cmd("DATA")[0] in (354, 451)
                    c.send(IN_MSG.replace(b"\n", b"\r\n") + b".\r\n")
                    code, text = c.reply()
            assert 400 <= code < 500, (code, text)
        finally:
            c.close()
    finally:
        dk.start()
    sm.clear()
    c = session(sm, "127.0.0.2")
    try:
        code, text = send_on(c, dkimpy_sign(IN_MSG, keys["in_rsa"]), rcpt="carol@example.com")
        assert code == 250, text
    finally:
        c.close()
    (raw,) = sm.wait_messages(1)
    assert re.search(rb"dkim=pass", raw), raw
