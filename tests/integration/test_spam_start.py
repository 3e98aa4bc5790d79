"""sluice-spam in the integrated server: `sluice start` with spam_enable = yes
wires it into smtpd_milters; with no spam_* settings but the Bayes file it
scores with the project's default rules, adds the headers and rejects GTUBE."""

import os
import subprocess

import pytest

from conftest import BIN, SmtpRaw, Sluiced, wait_for
from postfix_dkim_harness import headers

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "sluice-spam")),
                                reason="sluice-spam not built")

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def send(s, user, body):
    c = SmtpRaw("127.0.0.1", s.port, source="127.0.0.2")
    try:
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<olga@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<%s@example.com>" % user)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"From: Olga <olga@example.org>\r\nTo: %s@example.com\r\nSubject: via sluice start\r\n"
               b"Date: Sat, 21 Nov 2026 12:00:00 +0000\r\nMessage-ID: <st@example.org>\r\n\r\n%s\r\n.\r\n"
               % (user.encode(), body))
        return c.reply()
    finally:
        c.cmd("QUIT")
        c.close()


def test_start_with_spam_enabled(tmp_path):
    conf = (f"run_directory = {tmp_path}/run\nspam_enable = yes\nmynetworks = 127.0.0.1/32\n"
            f"spam_bayes_db = {tmp_path}/bayes.lmdb\n"
            "smtpd_recipient_restrictions = reject_unauth_destination\n")
    s = Sluiced(tmp_path, conf)
    sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", s.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    s.proc = sup
    try:
        wait_for(s._greets, timeout=60, what="sluiced behind sluice start (log: %s)" % s.log_text())
        gen = open(tmp_path / "run" / "sluice.conf").read()
        assert "smtpd_milters = unix:%s/run/spam.sock" % tmp_path in gen, gen
        code, text = send(s, "bob", b"Hello Bob, lunch at noon?")
        assert code == 250, text
        (p,) = s.wait_delivered("bob", 1)
        status = headers(open(p, "rb").read(), "X-Spam-Status")
        assert len(status) == 1 and status[0].startswith("No, score="), status
        code, text = send(s, "carol", GTUBE)
        assert code == 550 and "5.7.1" in text, (code, text)
        assert "milter=spam action=reject" in s.log_text()
    finally:
        subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path], capture_output=True, timeout=90)
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
