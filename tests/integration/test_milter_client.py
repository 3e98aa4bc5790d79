"""sluiced as a milter client: real libmilter filters, every action, faults."""

import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import BIN, SmtpRaw, free_port, wait_for

USERS = ("alice", "bob", "carol", "reject-rcpt", "user")


class MilterProc:
    def __init__(self, name, spec):
        self.spec = spec
        self.proc = subprocess.Popen([os.path.join(BIN, "tests", "test-milter"), name, spec],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def milters(tmp_path):
    started = []

    def make(name, inet=False):
        spec = ("inet:%d@127.0.0.1" % free_port()) if inet else "unix:%s/%s.sock" % (tmp_path, name)
        m = MilterProc(name, spec)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


def send(s, sender, rcpts, body, expect_data=250):
    c = SmtpRaw("127.0.0.1", s.port)
    assert c.reply()[0] == 220
    c.cmd("EHLO client.test")
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    if code != 250:
        return ("MAIL", code, text)
    ok = 0
    for r in rcpts:
        code, text = c.cmd("RCPT TO:<%s>" % r)
        if code == 250:
            ok += 1
        last = (code, text)
    if not ok:
        return ("RCPT",) + last
    assert c.cmd("DATA")[0] == 354
    c.send(body.replace(b"\n", b"\r\n") + b".\r\n")
    code, text = c.reply()
    c.cmd("QUIT")
    return ("DATA", code, text)


def head_and_body(path):
    data = open(path, "rb").read()
    head, _, body = data.partition(b"\n\n")
    return head.decode(), body.decode()


def test_every_modification_in_list_order(sluiced_factory, milters):
    m1 = milters("first")
    m2 = milters("second", inet=True)
    s = sluiced_factory("smtpd_milters = %s, { %s, command_timeout=10s, default_action=accept }"
                        % (m1.spec, m2.spec), users=USERS).start()
    body = (b"Subject: original\nX-Delete-Me: bye\nX-Test-Target: first\nX-Test-Actions: addheader,insheader,chgheader,"
            b"delheader,addrcpt,addrcptpar,delrcpt,chgfrom,replbody\n\noriginal body\n")
    where, code, text = send(s, "sender@example.net", ["alice@example.com"], body)
    assert (where, code) == ("DATA", 250), text
    # alice was deleted; bob and carol were added
    for u in ("bob", "carol"):
        (p,) = s.wait_delivered(u, 1)
        head, b = head_and_body(p)
        assert head.startswith("Return-Path: <changed@example.net>\nDelivered-To: %s@example.com\n"
                               "X-Inserted-Top: top\n" % u), head
        assert "Subject: changed subject" in head and "X-Delete-Me" not in head
        assert "X-Added: added by test-milter" in head
        # the second milter saw the first one's header (each sees the edits before it)
        assert "X-Milter-first: seen-added=no" in head
        assert "X-Milter-second: seen-added=yes" in head
        assert b == "replaced body line 1\nline 2\n"
    s.wait_queue_empty()
    assert s.delivered("alice") == []
    log = s.log_text()
    assert "milter deleted recipient <alice@example.com>" in log
    assert "milter changed sender from <sender@example.net> to <changed@example.net>" in log


def test_stage_replies(sluiced_factory, milters):
    m = milters("only")
    s = sluiced_factory("smtpd_milters = " + m.spec, users=USERS).start()
    where, code, text = send(s, "reject-mail@example.net", ["alice@example.com"], b"x\n")
    assert (where, code) == ("MAIL", 550) and "5.7.1" in text
    where, code, text = send(s, "tempfail-mail@example.net", ["alice@example.com"], b"x\n")
    assert (where, code) == ("MAIL", 451)
    where, code, text = send(s, "s@example.net", ["reject-rcpt@example.com"], b"x\n")
    assert (where, code) == ("RCPT", 550) and "5.7.9" in text and "custom rcpt reject" in text
    where, code, text = send(s, "s@example.net", ["alice@example.com"],
                             b"X-Test-Actions: reject\nSubject: r\n\nx\n")
    assert (where, code) == ("DATA", 554) and "5.7.0" in text and "says no at end of data" in text
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"X-Test-Actions: tempfail\n\nx\n")
    assert (where, code) == ("DATA", 451)
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"X-Test-Actions: discard\n\nx\n")
    assert (where, code) == ("DATA", 250)
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"X-Test-Actions: quarantine\n\nx\n")
    assert (where, code) == ("DATA", 250)
    wait_for(lambda: len(s.queue_files("hold")) == 1, what="quarantined message in hold/")
    s.wait_queue_empty()
    assert s.delivered("alice") == []   # rejected, discarded or held: nothing delivered
    log = s.log_text()
    assert "milter-reject: RCPT from" in log and "only.sock stage=rcpt action=reject" in log, log
    # a milter's DISCARD is logged in Postfix's words, not as an access table's
    assert re.search(r"milter-discard: END-OF-MESSAGE from \S+\[127\.0\.0\.1\]: milter triggers "
                     r"DISCARD action; from=<s@example\.net> to=<alice@example\.com> proto=ESMTP", log), log
    assert "discarded by an access table" not in log, log
    assert "milter quarantine: quarantined by test-milter" in log


def test_progress_keeps_waiting(sluiced_factory, milters):
    m = milters("slowpoke")
    # the milter works 3.6 s, longer than content_timeout, but reports progress every 1.2 s
    s = sluiced_factory("smtpd_milters = { %s, content_timeout=2s }" % m.spec, users=USERS).start()
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"X-Test-Actions: progress\n\nx\n")
    assert code == 250, text
    s.wait_delivered("alice", 1)


@pytest.mark.parametrize("action,expect", [("tempfail", 451), ("accept", 250), ("reject", 550)])
def test_milter_crash_mid_message_gives_default_action(sluiced_factory, milters, action, expect):
    m = milters("crashy")
    s = sluiced_factory("smtpd_milters = { %s, default_action=%s }" % (m.spec, action), users=USERS).start()
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"X-Test-Actions: crash\n\nx\n")
    assert (where, code) == ("DATA", expect), text
    if expect == 250:
        s.wait_delivered("alice", 1)
    assert "milter %s: connection closed by the milter" % m.spec.replace("inet:", "") in s.log_text() \
        or "connection closed by the milter" in s.log_text()


def test_hung_milter_times_out_and_other_sessions_go_on(sluiced_factory, milters):
    m = milters("hangs")
    s = sluiced_factory("smtpd_milters = { %s, content_timeout=2s, default_action=tempfail }" % m.spec,
                        users=USERS).start()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=send(s, "s@example.net", ["alice@example.com"],
                                                            b"X-Test-Actions: sleep\n\nx\n")))
    t.start()
    # another session is served meanwhile, milter and all
    where, code, text = send(s, "s@example.net", ["bob@example.com"], b"Subject: fine\n\nfine\n")
    assert code == 250
    t.join(timeout=30)
    assert result["r"][1] == 451
    s.wait_delivered("bob", 1)


def test_unreachable_milter_default_actions(sluiced_factory):
    dead = "inet:127.0.0.1:%d" % free_port()
    s = sluiced_factory("smtpd_milters = %s\nmilter_default_action = tempfail" % dead, users=USERS).start()
    where, code, text = send(s, "s@example.net", ["alice@example.com"], b"x\n")
    assert code == 451 and where in ("MAIL", "RCPT", "DATA")
    s2 = sluiced_factory("smtpd_milters = %s\nmilter_default_action = accept" % dead, users=USERS).start()
    where, code, text = send(s2, "s@example.net", ["alice@example.com"], b"Subject: a\n\nx\n")
    assert (where, code) == ("DATA", 250)
    s2.wait_delivered("alice", 1)


def test_garbage_speaking_milter(sluiced_factory):
    """A 'milter' that answers option negotiation with junk: default action, no crash."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(100)
            c.sendall(b"\x00\x00\x00\x05Zjunk garbage \xff\xff")
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        s = sluiced_factory("smtpd_milters = { inet:127.0.0.1:%d, default_action=accept }" % port,
                            users=USERS).start()
        where, code, text = send(s, "s@example.net", ["alice@example.com"], b"Subject: g\n\nx\n")
        assert (where, code) == ("DATA", 250)
        s.wait_delivered("alice", 1)
        assert "milter inet:127.0.0.1:%d" % port in s.log_text()
    finally:
        srv.close()


def test_bad_milter_spec_is_a_config_error(sluiced_factory):
    s = sluiced_factory("smtpd_milters = tcp:somewhere")
    code, out = s.start(expect_fail=True)
    assert code != 0 and "smtpd_milters" in out and "bad milter address" in out
