"""sluice-sendmail: local submission over sendmail_socket into sluiced's queue."""

import os
import subprocess

from conftest import BIN, wait_for
from test_milter_client import MilterProc

SENDMAIL = os.path.join(BIN, "sluice-sendmail")


def run(s, args, data):
    return subprocess.run([SENDMAIL, "-C", s.conf_path] + args, input=data, capture_output=True, timeout=60)


def test_sendmail_delivers_to_a_local_maildir(sluiced):
    r = run(sluiced, ["-f", "root@example.com", "-F", "Root User", "alice@example.com"],
            b"Subject: from the shell\n\nline one\n.leading dot\n")
    assert r.returncode == 0, r.stderr
    (p,) = sluiced.wait_delivered("alice", 1)
    data = open(p, "rb").read()
    head, _, body = data.partition(b"\n\n")
    assert head.startswith(b"Return-Path: <root@example.com>\nDelivered-To: alice@example.com\n")
    assert b"Received: by mx.test (sluice, from userid %d)" % os.getuid() in head
    assert b"From: Root User <root@example.com>" in head     # added: the message had none
    assert b"\nDate: " in head and b"\nMessage-ID: <" in head
    assert body == b"line one\n.leading dot\n"
    assert "uid=%d from=<root@example.com>" % os.getuid() in sluiced.log_text()


def test_sendmail_t_reads_recipients_and_drops_bcc(sluiced):
    msg = (b"From: me@example.com\nTo: Alice <alice@example.com>\nCc: bob@example.com\n"
           b"Bcc: carol@example.com\nSubject: -t\n\nhello\n.\nnot part of the message\n")
    r = run(sluiced, ["-t"], msg)
    assert r.returncode == 0, r.stderr
    for u in ("alice", "bob", "carol"):
        (p,) = sluiced.wait_delivered(u, 1)
        data = open(p, "rb").read()
        assert b"Bcc:" not in data
        assert data.endswith(b"\n\nhello\n")     # a "." line ends the message without -i


def test_sendmail_i_keeps_dot_lines_and_unknown_user_fails(sluiced):
    r = run(sluiced, ["-i", "bob@example.com"], b"Subject: i\n\nfirst\n.\nafter the dot\n")
    assert r.returncode == 0, r.stderr
    (p,) = sluiced.wait_delivered("bob", 1)
    assert open(p, "rb").read().endswith(b"first\n.\nafter the dot\n")
    r = run(sluiced, ["nobody@example.com"], b"Subject: x\n\nx\n")
    assert r.returncode == 67 and b"User unknown" in r.stderr


def test_sendmail_bs_speaks_smtp_on_stdio(sluiced):
    script = (b"EHLO localhost\r\nMAIL FROM:<me@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n"
              b"Subject: -bs\r\n\r\nvia stdio\r\n.\r\nQUIT\r\n")
    r = run(sluiced, ["-bs"], script)
    assert r.returncode == 0
    assert b"220 " in r.stdout and b"250 2.0.0 Ok: queued as" in r.stdout and b"221 " in r.stdout
    sluiced.wait_delivered("carol", 1)


def test_non_smtpd_milters_apply_to_local_mail(sluiced_factory, tmp_path):
    local_m = MilterProc("local", "unix:%s/local.sock" % tmp_path)
    try:
        s = sluiced_factory("non_smtpd_milters = " + local_m.spec).start()
        r = run(s, ["alice@example.com"], b"Subject: milter\n\nx\n")
        assert r.returncode == 0, r.stderr
        (p,) = s.wait_delivered("alice", 1)
        assert b"X-Milter-local: seen-added=no" in open(p, "rb").read()
    finally:
        local_m.stop()


def test_sendmail_without_sluiced_is_a_temporary_failure(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("queue_directory = %s/nothing-here\n" % tmp_path)
    r = subprocess.run([SENDMAIL, "-C", str(conf), "a@example.com"], input=b"x\n", capture_output=True)
    assert r.returncode == 75 and b"cannot connect" in r.stderr
