"""sluice-dmarc behind a REAL Sendmail (Debian's sendmail-bin 8.17, unpacked
by `make deps`, private instance from tests/fixtures/sendmail.py) with
INPUT_MAIL_FILTER over Sendmail's S=inet:PORT@HOST and S=unix:PATH forms,
after sluice-dkim: p=reject with failing alignment -> 550 5.7.1; SPF pass and
aligned DKIM pass -> relayed with dmarc=pass; a forged A-R is not trusted;
OpenDMARC's historic bypass inputs are refused; several messages per SMTP
session; the daemon keeps running."""

import os
import re
import shutil
import tempfile

import pytest

import sendmail as sendmail_fixture
from postfix_dkim_harness import SluiceDkim, dkimpy_sign
from test_dmarc_sluiced import (BAD_IP, BYPASSES, FORGED_AR, GOOD_IP, Session, SluiceDmarc,  # noqa: F401
                                dkey, dmarc_dns, message, our_ar)

pytestmark = pytest.mark.skipif(not sendmail_fixture.available(),
                                reason="Sendmail not unpacked (make deps) or not root")


@pytest.fixture(scope="module", params=["inet", "unix"])
def smstack(request, dmarc_dns):
    tmp = tempfile.mkdtemp(prefix="sluice-dmarc-sm-")
    os.chmod(tmp, 0o755)
    if request.param == "inet":
        dk_port, dm_port = sendmail_fixture._free_port(), sendmail_fixture._free_port()
        dk_spec, dk_theirs = "inet:127.0.0.1:%d" % dk_port, "inet:%d@127.0.0.1" % dk_port
        dm_theirs = "inet:%d@127.0.0.1" % dm_port
        dm_conf = "dmarc_socket = " + dm_theirs      # Sendmail's form for us too
    else:
        dk_spec = dk_theirs = "unix:" + os.path.join(tmp, "dkim.sock")
        dm_theirs, dm_conf = None, ""
    dk = SluiceDkim(tmp, "", dk_spec, dns=dmarc_dns, umask=0).start()
    dm = SluiceDmarc(tmp, dm_conf, "unix", dns=dmarc_dns)
    if dm_theirs:
        dm.spec, dm.port = "inet:127.0.0.1:%d" % dm_port, dm_port
    dm.start()
    sm = sendmail_fixture.Sendmail(tmp, milters=[("sluice-dkim", dk_theirs),
                                                 ("sluice-dmarc", dm_theirs or dm.spec)],
                                   mc_extra=["RELAY_DOMAIN(`example.com')dnl"])
    try:
        sm.start()
        yield sm, dm
    finally:
        sm.stop()
        dk.stop()
        dm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_sendmail_reject_and_pass(smstack, dkey):
    sm, dm = smstack
    sm.clear()
    bad = Session(sm.port, BAD_IP)
    try:
        code, text = bad.send(message(), "a@reject.example")
        assert code == 550 and "5.7.1" in text and "reject.example" in text, text
        code, text = bad.send(message(extra=FORGED_AR), "a@reject.example")
        assert code == 550 and "5.7.1" in text, text
        code, text = bad.send(dkimpy_sign(message(subject=b"signed"), dkey), "x@elsewhere.example")
        assert code == 250, text
    finally:
        bad.close()
    good = Session(sm.port, GOOD_IP)
    try:
        code, text = good.send(message(), "a@reject.example")
        assert code == 250, text
    finally:
        good.close()
    msgs = [m.replace(b"\r\n", b"\n") for m in sm.wait_messages(2)]
    for data in msgs:
        ar = our_ar(data)
        assert len(ar) == 1 and re.search(r"dmarc=pass \(p=reject dis=none\) header\.from=reject\.example",
                                          ar[0]), data
    assert dm.alive()


def test_sendmail_historic_bypasses(smstack):
    sm, dm = smstack
    pid = dm.proc.pid
    sess = Session(sm.port, BAD_IP, helo="helo.reject.example")
    try:
        for name, body, sender in BYPASSES:
            code, text = sess.send(body, sender)
            assert code == 550 and "5.7.1" in text, (name, code, text)
    finally:
        sess.close()
    assert dm.alive() and dm.proc.pid == pid
    log = dm.output()
    lines = [l for l in log.splitlines() if "milter=dmarc" in l]
    assert lines and not any(l.startswith("NOQUEUE") or ": NOQUEUE:" in l for l in lines), lines
