"""sluice-ratelimit behind sluiced (check_policy_service in
smtpd_recipient_restrictions and smtpd_end_of_data_restrictions): a SASL
user (real AUTH PLAIN after STARTTLS) limited to N messages gets exactly N
accepted and the next deferred with the rule's text; recipient vs message
counting; bytes at end of data; two runs in a row (sluiced and
sluice-ratelimit restarted, same state file) continue the counts."""
import os
import smtplib
import ssl
import subprocess

from conftest import free_port
from test_ratelimit_driver import RlDaemon

RULES = """\
id=OUT; protocol_state==RCPT; sasl_username=~.; action=rate(sasl_username/2/3600/DEFER_IF_PERMIT 4.7.1 sending limit reached)
id=RCPT; protocol_state==RCPT; sender=~^many@; action=rcpt(sender/3/3600/DEFER_IF_PERMIT 4.7.1 too many recipients)
id=MSGS; protocol_state==RCPT; sender=~^msgs@; action=rate(sender/1/3600/DEFER_IF_PERMIT 4.7.1 too many messages)
id=BYTES; protocol_state==END-OF-MESSAGE; sender=~^big@; action=size(sender/1500/3600/DEFER 4.7.1 too much data)
"""


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_sluiced(factory, tmp_path, rl_port):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    passwd = tmp_path / "passwd"
    passwd.write_text("dave:{PLAIN}secret-dave\nerin:{PLAIN}secret-erin\n")
    svc = "check_policy_service inet:127.0.0.1:%d" % rl_port
    return factory(f"""
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_sasl_auth_enable = yes
smtpd_sasl_path = {passwd}
smtpd_recipient_restrictions = reject_unauth_destination, {svc}
smtpd_end_of_data_restrictions = {svc}
""").start()


class Sess:
    def __init__(self, s, login=None):
        self.c = smtplib.SMTP("127.0.0.1", s.port, timeout=30)
        self.c.ehlo("client.example.org")
        if login:
            self.c.starttls(context=tls_ctx())
            self.c.ehlo("client.example.org")
            self.c.login(login, "secret-" + login)

    def send(self, sender, rcpts=("alice@example.com",), size=0):
        c = self.c
        assert c.mail(sender)[0] == 250
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
        code, text = c.data(("Subject: rl\r\n\r\nhello\r\n" + "x" * size + "\r\n").encode())
        return ok, refused, (code, text.decode())

    def close(self):
        try:
            self.c.quit()
        except smtplib.SMTPException:
            pass


def test_sluiced_limits_two_runs_in_a_row(sluiced_factory, tmp_path):
    state = os.path.join(str(tmp_path), "state.lmdb")
    rl_port = free_port()
    d = RlDaemon(tmp_path, RULES, state=state, port=rl_port).start()
    try:
        s = make_sluiced(sluiced_factory, tmp_path, rl_port)
        c = Sess(s, login="dave")
        for i in range(2):
            ok, refused, data = c.send("dave@example.com", ("alice@example.com", "bob@example.com"))
            assert len(ok) == 2 and data[0] == 250, (refused, data)
        ok, refused, _ = c.send("dave@example.com")
        code, text = refused["alice@example.com"]
        assert code == 450 and "sending limit reached (limit OUT: 2 messages per 3600 s for " \
            "sasl_username=dave, retry in " in text, text
        c.close()
        # a new SMTP session of the same user: still over
        c = Sess(s, login="dave")
        assert not c.send("dave@example.com")[0]
        c.close()
        c = Sess(s)
        ok, refused, data = c.send("many@example.com", ("alice@example.com", "bob@example.com"))
        assert len(ok) == 2
        ok, refused, data = c.send("many@example.com", ("carol@example.com", "user@example.com"))
        assert ok == ["carol@example.com"] and data[0] == 250
        assert "too many recipients (limit RCPT: 3 recipients" in refused["user@example.com"][1]
        ok, refused, data = c.send("msgs@example.com", ("alice@example.com", "bob@example.com", "carol@example.com"))
        assert len(ok) == 3 and data[0] == 250
        assert "too many messages (limit MSGS: 1 messages" in c.send("msgs@example.com")[1]["alice@example.com"][1]
        assert c.send("big@example.com", size=1000)[2][0] == 250
        data = c.send("big@example.com", size=1000)[2]
        assert data[0] == 450 and "too much data (limit BYTES: 1500 bytes" in data[1], data
        c.close()
        s.wait_delivered("alice", 2 + 1 + 1 + 1)
        s.stop()
    finally:
        assert d.stop() == 0, d.log_text()[-3000:]
    # second run: both daemons restarted, the state file keeps dave's and erin's counts
    d2 = RlDaemon(tmp_path, RULES, state=state, name="second.conf").start()
    try:
        s2 = make_sluiced(sluiced_factory, tmp_path, d2.port)
        c = Sess(s2, login="dave")
        assert "limit OUT" in c.send("dave@example.com")[1]["alice@example.com"][1]
        c.close()
        c = Sess(s2, login="erin")
        assert c.send("erin@example.com")[2][0] == 250
        assert c.send("erin@example.com")[2][0] == 250
        assert "limit OUT" in c.send("erin@example.com")[1]["alice@example.com"][1]
        c.close()
        assert "sasl_username=erin" in d2.log_text()
    finally:
        assert d2.stop() == 0, d2.log_text()[-3000:]
