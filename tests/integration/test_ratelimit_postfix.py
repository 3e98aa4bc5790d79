"""sluice-ratelimit behind a REAL Postfix (Debian's 3.7, private instance,
tests/fixtures/postfix.py) through check_policy_service in
smtpd_recipient_restrictions and smtpd_end_of_data_restrictions. SASL
users come from XCLIENT LOGIN= (Postfix passes them to the policy server
as sasl_username, like a real AUTH). A SASL user limited to N messages
gets exactly N accepted and the next deferred with the rule's text;
recipient vs message counting on multi-recipient messages; a client /24;
global; bytes at end of data; the state outlives SMTP sessions, the
daemon and the Postfix instance (a second run in a row continues the
counts). Spawn mode with greylisting: several spawned processes on one
LMDB file."""
import os
import shutil
import smtplib
import stat
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
from postfix import Postfix  # noqa: E402
from test_ratelimit_driver import RL, RlDaemon, write_conf  # noqa: E402

if not os.path.exists("/usr/sbin/postfix") or os.geteuid() != 0:
    pytest.skip("needs Debian's postfix and root", allow_module_level=True)

RULES = """\
# outbound per SASL user, counted once per message at its first RCPT
id=OUT; protocol_state==RCPT; sasl_username=~.; action=rate(sasl_username/3/3600/DEFER_IF_PERMIT 4.7.1 sending limit reached)
# recipients of one sender, per RCPT
id=RCPT; protocol_state==RCPT; sender=~^many@; action=rcpt(sender/3/3600/DEFER_IF_PERMIT 4.7.1 too many recipients)
# messages (not recipients) of one sender
id=MSGS; protocol_state==RCPT; sender=~^msgs@; action=rate(sender/2/3600/DEFER_IF_PERMIT 4.7.1 too many messages)
# a client /24
id=NET; protocol_state==RCPT; sender=~^net@; action=rate(client_net/2/3600/DEFER_IF_PERMIT 4.7.1 network limit)
# everyone together
id=ALL; protocol_state==RCPT; sender=~^glob; action=rate(global/2/3600/DEFER_IF_PERMIT 4.7.1 global limit)
# bytes at end of data
id=BYTES; protocol_state==END-OF-MESSAGE; sender=~^big@; action=size(sender/1500/3600/DEFER 4.7.1 too much data)
"""


def body(n=0):
    return ("From: x@example.com\r\nTo: sue@example.net\r\nSubject: rl %d\r\n\r\n" % n
            + "hello\r\n" + "x" * n + "\r\n")


class Sess:
    """One SMTP session from a loopback source address, optionally with XCLIENT LOGIN=."""

    def __init__(self, pf, source="127.0.0.1", login=None):
        self.c = smtplib.SMTP("127.0.0.1", pf.port, source_address=(source, 0), timeout=30)
        self.c.ehlo("client.example.org")
        if login:
            code, text = self.c.docmd("XCLIENT", "LOGIN=" + login)
            assert code == 220, (code, text)
            self.c.ehlo("client.example.org")

    def send(self, sender, rcpts=("sue@example.net",), size=0):
        """One message; returns (accepted recipients, {refused rcpt: (code, text)}, data result)."""
        c = self.c
        code, text = c.mail(sender)
        assert code == 250, (code, text)
        ok, refused = [], {}
        for r in rcpts:
            code, text = c.rcpt(r)
            if code == 250:
                ok.append(r)
            else:
                refused[r] = (code, text.decode())
        if not ok:
            c.rset()
            return ok, refused, None
        code, text = c.data(body(size).encode())
        return ok, refused, (code, text.decode())

    def close(self):
        try:
            self.c.quit()
        except smtplib.SMTPException:
            pass


def start_postfix(tmp_path, port):
    svc = "check_policy_service inet:127.0.0.1:%d" % port
    return Postfix(tmp_path, users=("sue", "bob", "ann", "tom"), main_cf={
        "smtpd_recipient_restrictions": "reject_unauth_destination, " + svc,
        "smtpd_end_of_data_restrictions": svc,
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
        "smtpd_policy_service_max_idle": "10s",
    }).start()


def first_run(pf, d):
    # SASL user joe: 3 messages (with 2 recipients each) accepted, the 4th deferred with the rule's text
    s = Sess(pf, login="joe")
    for i in range(3):
        ok, refused, data = s.send("joe@example.com", ("sue@example.net", "bob@example.net"))
        assert ok == ["sue@example.net", "bob@example.net"] and data[0] == 250, (refused, data)
    ok, refused, data = s.send("joe@example.com")
    assert not ok
    code, text = refused["sue@example.net"]
    assert code == 450
    assert text.startswith("4.7.1 <sue@example.net>: Recipient address rejected: sending limit reached "
                           "(limit OUT: 3 messages per 3600 s for sasl_username=joe, retry in "), text
    s.close()
    # another user is not affected
    s = Sess(pf, login="ann")
    assert s.send("ann@example.com")[2][0] == 250
    s.close()
    # recipients: 3 per sender; a 2-recipient message then a 2-recipient message -> 3 accepted
    s = Sess(pf)
    ok, refused, data = s.send("many@example.com", ("sue@example.net", "bob@example.net"))
    assert len(ok) == 2 and data[0] == 250
    ok, refused, data = s.send("many@example.com", ("ann@example.net", "tom@example.net"))
    assert ok == ["ann@example.net"] and data[0] == 250
    assert refused["tom@example.net"][0] == 450 and "too many recipients (limit RCPT: 3 recipients" in \
        refused["tom@example.net"][1]
    # messages: 2 per sender however many recipients each has
    for i in range(2):
        ok, refused, data = s.send("msgs@example.com", ("sue@example.net", "bob@example.net",
                                                        "ann@example.net", "tom@example.net"))
        assert len(ok) == 4 and data[0] == 250, refused
    ok, refused, data = s.send("msgs@example.com", ("sue@example.net",))
    assert not ok and "too many messages (limit MSGS: 2 messages" in refused["sue@example.net"][1]
    s.close()
    # the client /24: 127.0.0.2 and 127.0.0.3 share 127.0.0.0/24; the third is deferred
    for src in ("127.0.0.2", "127.0.0.3"):
        s = Sess(pf, source=src)
        assert s.send("net@example.com")[2][0] == 250
        s.close()
    s = Sess(pf, source="127.0.0.4")
    ok, refused, _ = s.send("net@example.com")
    assert "network limit (limit NET: 2 messages per 3600 s for client_net=127.0.0.0/24" in \
        refused["sue@example.net"][1]
    s.close()
    # global: two senders share one counter
    s = Sess(pf)
    assert s.send("glob1@example.com")[2][0] == 250
    assert s.send("glob2@example.com")[2][0] == 250
    assert "global limit (limit ALL: 2 messages per 3600 s for global" in \
        s.send("glob3@example.com")[1]["sue@example.net"][1]
    # bytes at end of data: 1500 per sender
    assert s.send("big@example.com", size=1000)[2][0] == 250
    ok, refused, data = s.send("big@example.com", size=1000)
    assert data[0] == 450 and "too much data (limit BYTES: 1500 bytes per 3600 s for sender=big@example.com" \
        in data[1], data
    s.close()
    # delivered: joe 3 x 2, ann 1, many 2 + 1, msgs 2 x 4, net 2, glob 2, big 1
    pf.wait_delivered("sue@example.net", 3 + 1 + 1 + 2 + 2 + 2 + 1)
    log = d.log_text()
    assert "rule=OUT, limit=rate, key=rate:3/3600s:sasl_username=joe" in log
    assert "state=END-OF-MESSAGE" in log and "result=over" in log


def test_postfix_limits_two_runs_in_a_row(tmp_path):
    state = os.path.join(str(tmp_path), "state.lmdb")
    d = RlDaemon(tmp_path, RULES, state=state).start()
    try:
        pf = start_postfix(tmp_path, d.port)
        try:
            first_run(pf, d)
        finally:
            pf.stop()
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    # Second run: a new daemon process and a new Postfix instance, same state file.
    d2 = RlDaemon(tmp_path, RULES, state=state, name="second.conf").start()
    try:
        pf = start_postfix(tmp_path, d2.port)
        try:
            s = Sess(pf, login="joe")
            ok, refused, _ = s.send("joe@example.com")
            assert not ok and "sending limit reached (limit OUT: 3 messages" in refused["sue@example.net"][1]
            s.close()
            s = Sess(pf, login="ann")  # ann had 1 of 3: two more
            assert s.send("ann@example.com")[2][0] == 250
            assert s.send("ann@example.com")[2][0] == 250
            assert "limit OUT" in s.send("ann@example.com")[1]["sue@example.net"][1]
            s.close()
        finally:
            pf.stop()
    finally:
        assert d2.stop() == 0, d2.log_text()[-3000:]


def test_postfix_greylisting_and_spawn_mode(tmp_path):
    """Spawn mode (several sluice-ratelimit processes on one LMDB file, as
    Postfix's spawn(8) runs them) with greylisting of clients without a
    name (smtpd_peername_lookup = no gives client_name=unknown)."""
    sdir = tempfile.mkdtemp(prefix="sluice-rl-spawn.")  # spawn runs as nobody: outside 0700 dirs
    try:
        os.chmod(sdir, 0o777)
        log = os.path.join(sdir, "rl.log")
        open(log, "w").close()
        os.chmod(log, 0o666)
        conf = write_conf(sdir, "id=G; client_name==unknown; action=greylist\n"
                          "id=OUT; protocol_state==RCPT; sasl_username=~.; "
                          "action=rate(sasl_username/2/3600/DEFER_IF_PERMIT 4.7.1 sending limit reached)\n",
                          "mail_owner = nobody\ngreylist_delay = 3s\ngreylist_auto_allow_clients = 2\n",
                          state=os.path.join(sdir, "state.lmdb"), log=log)
        for p in (conf, conf + ".rules"):
            os.chmod(p, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        pf = Postfix(tmp_path, users=("sue", "bob"), main_cf={
            "smtpd_recipient_restrictions":
                "reject_unauth_destination, check_policy_service unix:private/ratelimit",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "ratelimit_time_limit": "3600s",
        }, master_cf=["ratelimit unix - n n - 0 spawn user=nobody argv=%s -s -c %s" % (RL, conf)])
        with pf:
            s = Sess(pf)
            ok, refused, _ = s.send("x@sender.example")
            code, text = refused["sue@example.net"]
            assert code == 450 and "Greylisted, see https://postgrey.schweikert.ch/help/example.net.html" \
                in text, text
            ok, refused, _ = s.send("x@sender.example")   # retried too early
            assert refused["sue@example.net"][0] == 450
            s.close()
            time.sleep(3.2)
            s = Sess(pf)
            assert s.send("x@sender.example")[2][0] == 250
            # the same triplet passes at once from now on; a new one is greylisted
            assert s.send("x@sender.example")[2][0] == 250
            assert s.send("y@sender.example")[1]["sue@example.net"][0] == 450
            s.close()
            time.sleep(3.2)
            s = Sess(pf)
            assert s.send("y@sender.example")[2][0] == 250   # second passed triplet
            assert s.send("z@sender.example")[2][0] == 250   # client auto-allowed now
            s.close()
            # limits counted by several spawned processes on one LMDB file stay exact
            sessions = [Sess(pf, login="joe") for _ in range(3)]
            results = [sessions[i].send("joe@example.com") for i in range(3)]
            assert [r[2] is not None for r in results] == [True, True, False]
            assert "sending limit reached (limit OUT: 2 messages" in results[2][1]["sue@example.net"][1]
            for x in sessions:
                x.close()
            pf.wait_delivered("sue@example.net", 5)
        with open(log) as f:
            text = f.read()
        assert "result=greylisted," in text and "result=greylisted_early" in text
        assert "greylist=passed" in text and "greylist=auto_allowed" in text
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
