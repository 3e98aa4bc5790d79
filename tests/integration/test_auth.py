"""SMTP AUTH (RFC 4954) and the submission ports: passwd-file back end with
each hash scheme, STARTTLS before AUTH, relaying only after AUTH, sender
login mismatch, implicit TLS on the smtps port (RFC 8314)."""

import base64
import ctypes
import ctypes.util
import smtplib
import ssl
import subprocess
import warnings

import pytest

from conftest import SmtpRaw, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402  (deprecated, still in Debian's python3.11)

PASSWORDS = {"alice": "alice-secret", "bob": "b0b pass", "carol": "c@rol!", "dave": "dave-plain"}


def yescrypt(password):
    lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    salt = lib.crypt_gensalt(b"$y$", 0, None, 0)
    h = crypt.crypt(password, salt.decode())
    assert h.startswith("$y$"), h
    return h


def make_cert(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def make_passwd(tmp_path):
    p = tmp_path / "passwd"
    sha = crypt.crypt(PASSWORDS["alice"], crypt.mksalt(crypt.METHOD_SHA512))
    blf = crypt.crypt(PASSWORDS["bob"], crypt.mksalt(crypt.METHOD_BLOWFISH))
    yes = yescrypt(PASSWORDS["carol"])
    p.write_text("# Dovecot passwd-file\n"
                 f"alice:{{SHA512-CRYPT}}{sha}:1000:1000::/home/alice::\n"
                 f"bob:{{BLF-CRYPT}}{blf}\n"
                 f"carol:{{CRYPT}}{yes}:::\n"
                 f"dave:{{PLAIN}}{PASSWORDS['dave']}\n")
    return p


@pytest.fixture
def sub(sluiced_factory, tmp_path):
    """sluiced with port 25, submission and smtps listeners and a passwd-file."""
    key, cert = make_cert(tmp_path)
    passwd = make_passwd(tmp_path)
    logins = tmp_path / "logins"
    logins.write_text("alice@example.com alice\nshared@example.com alice, bob\nbob@example.com bob\ncarol@example.com carol\n")
    ports = {"sub": free_port(), "smtps": free_port()}
    s = sluiced_factory(f"""
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
submission_listen = 127.0.0.1:{ports['sub']}
smtps_listen = 127.0.0.1:{ports['smtps']}
smtpd_sasl_path = {passwd}
smtpd_sender_login_maps = texthash:{logins}
smtpd_sender_restrictions = reject_sender_login_mismatch
mynetworks = 192.0.2.0/24
""").start()
    s.sub_port, s.smtps_port = ports["sub"], ports["smtps"]
    return s


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submission_client(s):
    c = smtplib.SMTP("127.0.0.1", s.sub_port, timeout=20)
    c.ehlo("client.test")
    c.starttls(context=tls_ctx())
    c.ehlo("client.test")
    return c


@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave"],
                         ids=["sha512-crypt", "blf-crypt", "yescrypt", "plain"])
def test_passwdfile_schemes(sub, user):
    c = submission_client(sub)
    assert "auth" in c.esmtp_features and "PLAIN" in c.esmtp_features["auth"].upper()
    code, _ = c.login(user, PASSWORDS[user])
    assert code == 235
    c.quit()
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c = submission_client(sub)
        c.login(user, PASSWORDS[user] + "x")
    assert e.value.smtp_code == 535
    log = sub.log_text()
    assert "SASL PLAIN authentication failed" in log
    assert PASSWORDS[user] not in log


def test_auth_login_mechanism_and_cancel(sub):
    c = submission_client(sub)
    c.user, c.password = "alice", PASSWORDS["alice"]
    code, text = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
    assert code == 235, text
    c.quit()
    c = submission_client(sub)
    code, text = c.docmd("AUTH", "PLAIN")
    assert code == 334
    code, text = c.docmd("*")
    assert code == 501
    code, _ = c.docmd("AUTH", "CRAM-MD5")
    assert code == 504
    c.quit()


def test_auth_requires_starttls(sub):
    c = SmtpRaw("127.0.0.1", sub.sub_port)
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "AUTH" not in text and "STARTTLS" in text
    plain = base64.b64encode(b"\0alice\0" + PASSWORDS["alice"].encode()).decode()
    code, _ = c.cmd("AUTH PLAIN " + plain)
    assert code == 503
    code, text = c.cmd("MAIL FROM:<alice@example.com>")
    assert code == 530
    # port 25: smtpd_sasl_auth_enable = no by default
    c = SmtpRaw("127.0.0.1", sub.port)
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "AUTH" not in text


def test_submission_requires_auth_and_relays_after(sub):
    c = submission_client(sub)
    code, _ = c.mail("alice@example.com")
    assert code == 530
    c.rset()
    c.login("alice", PASSWORDS["alice"])
    assert c.mail("alice@example.com")[0] == 250
    assert c.rcpt("someone@outside.test")[0] == 250
    c.rset()
    # sender login mismatch: 553 (at RCPT, smtpd_delay_reject = yes)
    assert c.mail("bob@example.com")[0] == 250
    code, text = c.rcpt("carol@example.com")
    assert code == 553 and b"not owned by user alice" in text, text
    c.rset()
    assert c.mail("shared@example.com")[0] == 250
    assert c.rcpt("carol@example.com")[0] == 250
    c.quit()


def test_port25_relay_only_after_auth(sluiced_factory, tmp_path):
    key, cert = make_cert(tmp_path)
    passwd = make_passwd(tmp_path)
    s = sluiced_factory(f"""
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_sasl_auth_enable = yes
smtpd_sasl_path = {passwd}
mynetworks = 192.0.2.0/24
""").start()
    c = smtplib.SMTP("127.0.0.1", s.port, timeout=20)
    c.ehlo("client.test")
    assert not c.has_extn("auth")
    c.starttls(context=tls_ctx())
    c.ehlo("client.test")
    assert c.has_extn("auth")
    c.mail("alice@example.com")
    code, _ = c.rcpt("x@outside.test")
    assert code == 554
    c.rset()
    c.login("bob", PASSWORDS["bob"])
    c.mail("bob@example.com")
    assert c.rcpt("x@outside.test")[0] == 250
    c.rset()
    c.mail("bob@example.com")
    assert c.rcpt("carol@example.com")[0] == 250
    code, _ = c.data(b"Subject: authed\r\n\r\nhello\r\n")
    assert code == 250
    c.quit()
    (p,) = s.wait_delivered("carol", 1)
    assert b"with ESMTPSA id" in open(p, "rb").read()
    assert "sasl_method=PLAIN, sasl_username=bob" in s.log_text()


def test_smtps_implicit_tls(sub):
    c = smtplib.SMTP_SSL("127.0.0.1", sub.smtps_port, timeout=20, context=tls_ctx())
    c.ehlo("client.test")
    assert c.has_extn("auth") and not c.has_extn("starttls")
    c.login("carol", PASSWORDS["carol"])
    c.sendmail("carol@example.com", ["alice@example.com"], b"Subject: 465\r\n\r\nimplicit tls\r\n")
    c.quit()
    (p,) = sub.wait_delivered("alice", 1)
    body = open(p, "rb").read()
    assert b"with ESMTPSA id" in body and b"(using TLSv1." in body
    # a raw TLS socket sees the greeting only after the handshake
    import socket
    raw = socket.create_connection(("127.0.0.1", sub.smtps_port), timeout=10)
    t = tls_ctx().wrap_socket(raw, server_hostname="mx.test")
    assert t.recv(512).startswith(b"220 ")
    t.close()
