"""SMTP AUTH through Dovecot's auth service (smtpd_sasl_type = dovecot): a
real dovecot (Debian's dovecot-core) in a temp dir with only the auth
service and a passwd-file passdb; stopped by PID."""

import grp
import os
import pwd
import shutil
import signal
import smtplib
import subprocess

import pytest

from conftest import free_port, wait_for
from test_auth import make_cert, tls_ctx

pytestmark = pytest.mark.skipif(not shutil.which("dovecot"), reason="dovecot-core not installed")


@pytest.fixture
def dovecot(tmp_path):
    d = tmp_path / "dovecot"
    d.mkdir()
    (d / "passwd").write_text("alice:{PLAIN}wonderland\nbob:{PLAIN}builder\n")
    me = pwd.getpwuid(os.getuid()).pw_name
    sock = d / "auth-client"
    conf = d / "dovecot.conf"
    conf.write_text(f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols =
ssl = no
default_internal_user = {me}
default_login_user = {me}
default_internal_group = {grp.getgrgid(os.getgid()).gr_name}
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid={os.getuid()} gid={os.getgid()} home={d}/home/%u
}}
service auth {{
  unix_listener auth-client {{
    path = {sock}
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
""")
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, what="dovecot auth socket")
        if proc.poll() is not None:
            log = (d / "dovecot.log").read_text() if (d / "dovecot.log").exists() else ""
            pytest.fail("dovecot exited: %s %s" % (proc.stdout.read().decode(errors="replace"), log))
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dovecot_sasl(sluiced_factory, tmp_path, dovecot):
    key, cert = make_cert(tmp_path)
    logins = tmp_path / "logins"
    logins.write_text("alice@example.com alice\n")
    sub = free_port()
    s = sluiced_factory(f"""
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
submission_listen = 127.0.0.1:{sub}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {dovecot}
smtpd_sender_login_maps = texthash:{logins}
smtpd_sender_restrictions = reject_authenticated_sender_login_mismatch
""").start()

    def client():
        c = smtplib.SMTP("127.0.0.1", sub, timeout=20)
        c.ehlo("client.test")
        c.starttls(context=tls_ctx())
        c.ehlo("client.test")
        return c

    c = client()
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.login("alice", "wrong")
    assert e.value.smtp_code == 535
    c = client()
    assert c.mail("alice@example.com")[0] == 530
    assert c.login("alice", "wonderland")[0] == 235
    assert c.mail("alice@example.com")[0] == 250
    assert c.rcpt("x@outside.test")[0] == 250
    c.rset()
    c.mail("bob@example.com")
    code, text = c.rcpt("carol@example.com")
    assert code == 553 and b"not owned by user alice" in text
    c.quit()
    c = client()
    c.user, c.password = "bob", "builder"
    assert c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0] == 235
    c.quit()
    assert "wonderland" not in s.log_text()
