"""sluiced receives real mail into the queue and delivers it to Maildir."""

import email
import glob
import os
import smtplib
import subprocess

import pytest

from conftest import DATA, SmtpRaw, wait_for

CORPUS = os.path.join(DATA, "spam", "spamassassin-sample")
USERS = ["alice", "bob", "carol"]


def corpus_files():
    files = sorted(glob.glob(os.path.join(CORPUS, "*", "*")))
    assert len(files) == 80, "expected the 80-message sample in " + CORPUS
    return files


def strip_mbox_from(raw):
    # the corpus files start with an mbox "From " separator, not a header
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1]
    return raw


def test_corpus_arrives_byte_identical(sluiced):
    files = corpus_files()
    expect = {}
    with smtplib.SMTP("127.0.0.1", sluiced.port, timeout=30) as c:
        c.ehlo("client.test")
        for i, path in enumerate(files):
            raw = strip_mbox_from(open(path, "rb").read())
            user = USERS[i % len(USERS)]
            # SMTP wants CRLF; the Maildir copy has LF line ends again (as Postfix writes it)
            c.sendmail("sender@example.net", ["%s@example.com" % user], raw.replace(b"\n", b"\r\n"))
            expect.setdefault(user, []).append(raw)
    for user, msgs in expect.items():
        got = sluiced.wait_delivered(user, len(msgs))
        assert len(got) == len(msgs)
        bodies = [open(p, "rb").read() for p in got]
        for raw in msgs:
            # the delivered file is our trace headers followed by the exact bytes sent
            matches = [b for b in bodies if b.endswith(raw)]
            assert len(matches) == 1, "message not delivered byte-identical to " + user
            m = matches[0]
            prefix = m[: len(m) - len(raw)]
            assert prefix.startswith(b"Return-Path: <sender@example.net>\nDelivered-To: %s@example.com\n"
                                     % user.encode())
            assert b"Received: from client.test" in prefix
            assert b"by mx.test (sluice) with ESMTP id " in prefix
    sluiced.wait_queue_empty()
    # the qmgr logs "removed" just after it unlinks the queue file: wait for the line
    wait_for(lambda: sluiced.log_text().count(": removed") >= 80, what="80 removed lines")
    log = sluiced.log_text()
    assert log.count("status=sent") == 80
    assert log.count(": removed") == 80


def test_alias_and_unknown_user(sluiced):
    c = SmtpRaw("127.0.0.1", sluiced.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<s@example.net>")[0] == 250
    code, text = c.cmd("RCPT TO:<nobody@example.com>")
    assert code == 550 and "5.1.1" in text and "User unknown" in text
    assert c.cmd("RCPT TO:<team@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: team\r\n\r\nhello team\r\n.\r\n")
    code, text = c.reply()
    assert code == 250 and "queued as" in text
    assert c.cmd("QUIT")[0] == 221
    for u in ("alice", "bob"):
        (p,) = sluiced.wait_delivered(u, 1)
        body = open(p, "rb").read()
        assert b"Delivered-To: %s@example.com\n" % u.encode() in body
        assert body.endswith(b"hello team\n")
    assert "NOQUEUE: reject: RCPT from" in sluiced.log_text()


def test_pipelined_transactions(sluiced):
    c = SmtpRaw("127.0.0.1", sluiced.port)
    assert c.reply()[0] == 220
    code, text = c.cmd("EHLO client.test")
    assert "PIPELINING" in text and "CHUNKING" in text and "8BITMIME" in text
    batch = b""
    for i in range(5):
        batch += (b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.com>\r\n"
                  b"RCPT TO:<ghost@example.com>\r\nDATA\r\n")
        batch += b"Subject: p%d\r\n\r\nbody %d\r\n.\r\n" % (i, i)
    c.send(batch)
    # each transaction: 250 MAIL, 250 RCPT, 550 RCPT, 354, 250 queued
    for i in range(5):
        codes = [c.reply()[0] for _ in range(5)]
        assert codes == [250, 250, 550, 354, 250], codes
    c.cmd("QUIT")
    sluiced.wait_delivered("alice", 5)


def test_bdat_chunking(sluiced):
    c = SmtpRaw("127.0.0.1", sluiced.port)
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<s@example.net> BODY=8BITMIME")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
    part1 = b"Subject: chunks\r\n\r\nfirst part, "
    part2 = b"second part\r\n.leading dot kept\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply()[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, text = c.reply()
    assert code == 250 and "queued as" in text
    (p,) = sluiced.wait_delivered("bob", 1)
    assert open(p, "rb").read().endswith(b"first part, second part\n.leading dot kept\n")


def test_message_size_limit(sluiced_factory):
    s = sluiced_factory("message_size_limit = 2000").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "SIZE 2000" in text
    code, text = c.cmd("MAIL FROM:<s@example.net> SIZE=5000")
    assert code == 552 and "5.3.4" in text
    assert c.cmd("MAIL FROM:<s@example.net>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + b"x" * 80 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 40 + b".\r\n")
    code, text = c.reply()
    assert code == 552 and "5.3.4" in text
    # the connection stays usable and nothing was queued
    assert c.cmd("NOOP")[0] == 250
    assert not s.delivered("alice")
    assert not s.queue_files("active") and not s.queue_files("incoming")


def test_relay_denied_outside_mynetworks(sluiced_factory):
    s = sluiced_factory("mynetworks = 127.0.0.1/32", listen_host="127.0.0.1").start()
    outside = SmtpRaw("127.0.0.1", s.port, source="127.0.0.2")
    outside.reply()
    outside.cmd("EHLO client.test")
    assert outside.cmd("MAIL FROM:<s@example.net>")[0] == 250
    code, text = outside.cmd("RCPT TO:<victim@outside.test>")
    assert code == 554 and "5.7.1" in text and "Relay access denied" in text
    # our own domain is fine from outside
    assert outside.cmd("RCPT TO:<alice@example.com>")[0] == 250
    inside = SmtpRaw("127.0.0.1", s.port, source="127.0.0.1")
    inside.reply()
    inside.cmd("EHLO client.test")
    inside.cmd("MAIL FROM:<s@example.net>")
    assert inside.cmd("RCPT TO:<friend@outside.test>")[0] == 250
    log = s.log_text()
    assert ("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <victim@outside.test>: "
            "Relay access denied; from=<s@example.net> to=<victim@outside.test> proto=ESMTP "
            "helo=<client.test>") in log


def test_default_config_is_not_open_relay(sluiced_factory):
    # no mynetworks match at all: nothing may relay
    s = sluiced_factory("mynetworks = 192.0.2.0/24").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("HELO client.test")
    c.cmd("MAIL FROM:<s@example.net>")
    assert c.cmd("RCPT TO:<x@outside.test>")[0] == 554


def test_swaks_starttls(sluiced_factory, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s = sluiced_factory(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                        "smtpd_tls_security_level = may").start()
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % s.port, "--tls", "--from", "s@example.net",
                        "--to", "carol@example.com", "--helo", "client.test", "--body", "over tls"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    (p,) = s.wait_delivered("carol", 1)
    body = open(p, "rb").read()
    assert b"with ESMTPS id" in body
    assert b"(using TLSv1." in body


def test_encrypt_requires_starttls(sluiced_factory, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s = sluiced_factory(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                        "smtpd_tls_security_level = encrypt").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, text = c.cmd("MAIL FROM:<s@example.net>")
    assert code == 530 and "STARTTLS" in text


def test_starttls_discards_pipelined_plaintext(sluiced_factory, tmp_path):
    """CVE-2011-0411: commands sent in plaintext after STARTTLS must not run."""
    import ssl
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s = sluiced_factory(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.send(b"STARTTLS\r\nRSET\r\n")
    assert c.reply()[0] == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock, server_hostname="mx.test")
    tls.sendall(b"NOOP\r\n")
    data = b""
    while not data.endswith(b"\r\n"):
        data += tls.recv(4096)
    tls.sendall(b"QUIT\r\n")
    while b"221" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    data = data.split(b"221")[0]
    # the first reply over TLS answers NOOP; the plaintext RSET got no reply
    assert data.startswith(b"250 2.0.0 Ok\r\n") and data.count(b"\r\n") == 1, data
    tls.close()


def test_bare_lf_command_rejected(sluiced):
    c = SmtpRaw("127.0.0.1", sluiced.port)
    c.reply()
    c.send(b"EHLO client.test\n")
    code, text = c.reply()
    assert code == 521 and "5.5.2" in text and "bare <LF>" in text
    assert c.closed()


def test_unknown_command_and_error_limit(sluiced_factory):
    s = sluiced_factory("smtpd_hard_error_limit = 3").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    assert c.cmd("FOO")[0] == 502
    assert c.cmd("RCPT TO:<a@example.com>")[0] == 503
    assert c.cmd("BAR")[0] == 502
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text and "too many errors" in text
    assert c.closed()


def test_disconnect_log_line(sluiced):
    with smtplib.SMTP("127.0.0.1", sluiced.port) as c:
        c.ehlo("client.test")
        c.sendmail("s@example.net", ["alice@example.com"], b"Subject: x\r\nMessage-ID: <m1@test>\r\n\r\nx\r\n")
    sluiced.wait_delivered("alice", 1)
    want = ["connect from unknown[127.0.0.1]",
            "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
            "message-id=<m1@test>", "from=<s@example.net>, size=", "nrcpt=1 (queue active)",
            "to=<alice@example.com>, relay=virtual, delay=", "dsn=2.0.0, status=sent", ": removed"]
    wait_for(lambda: all(w in sluiced.log_text() for w in want),
             what="log lines %s in %s" % (want, sluiced.log_text()))
