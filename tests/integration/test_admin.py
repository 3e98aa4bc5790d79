"""sluice check, start-up errors, SIGHUP reload, SIGTERM, privilege drop."""

import os
import pwd
import signal
import subprocess
import time

import pytest

from conftest import BIN, SmtpRaw, wait_for, REPO


def check(path):
    r = subprocess.run([os.path.join(BIN, "sluice"), "check", "-c", str(path)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_check_shipped_config():
    code, out = check(os.path.join(REPO, "conf", "sluice.conf"))
    # the shipped config names var/tls files that make run creates; from a clean tree
    # only that may be missing
    assert code == 0 or "var/tls" in out, out


def test_check_good_and_bad(tmp_path):
    good = tmp_path / "good.conf"
    vm = tmp_path / "vmailbox"
    vm.write_text("a@example.com example.com/a/\n")
    good.write_text(f"myhostname = mx.test\nqueue_directory = {tmp_path}/q\n"
                    f"virtual_mailbox_maps = texthash:{vm}\nsome_unknown_thing = 1\n")
    code, out = check(good)
    assert code == 0, out
    assert f"{good}:4" in out and "some_unknown_thing" in out       # unknown: a warning with file:line

    bad = tmp_path / "bad.conf"
    bad.write_text("myhostname = mx.test\n\nmessage_size_limit = lots\n")
    code, out = check(bad)
    assert code == 1 and f"{bad}:3" in out and "message_size_limit" in out

    badtime = tmp_path / "badtime.conf"
    badtime.write_text("smtpd_timeout = 5 fortnights\n")
    code, out = check(badtime)
    assert code == 1 and f"{badtime}:1" in out

    cidr = tmp_path / "nets.cidr"
    cidr.write_text("192.0.2.0/24 OK\n300.1.2.3/8 REJECT\n")
    badtable = tmp_path / "badtable.conf"
    badtable.write_text(f"smtpd_client_restrictions = check_client_access cidr:{cidr}\n")
    code, out = check(badtable)
    assert code == 1 and f"{cidr}:2" in out

    badrestr = tmp_path / "badrestr.conf"
    badrestr.write_text("smtpd_recipient_restrictions = permit_mynetworks,\n    reject_everything\n")
    code, out = check(badrestr)
    assert code == 1 and "reject_everything" in out and f"{badrestr}:1" in out


def test_bad_config_stops_startup(sluiced_factory):
    s = sluiced_factory("smtpd_recipient_limit = -5")
    code, out = s.start(expect_fail=True)
    assert code != 0
    assert "smtpd_recipient_limit" in out and "sluice.conf:" in out


def test_sighup_reloads_tables(sluiced_factory):
    s = sluiced_factory()
    s.start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("HELO client.test")
    c.cmd("MAIL FROM:<s@example.net>")
    assert c.cmd("RCPT TO:<newbie@example.com>")[0] == 550
    c.close()
    with open(os.path.join(s.tmp, "vmailbox"), "a") as f:
        f.write("newbie@example.com example.com/newbie/\n")
    s.proc.send_signal(signal.SIGHUP)

    def accepted():
        c = SmtpRaw("127.0.0.1", s.port)
        c.reply()
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<s@example.net>")
        code = c.cmd("RCPT TO:<newbie@example.com>")[0]
        c.close()
        return code == 250
    wait_for(accepted, what="reloaded table")


def test_sigterm_finishes_transaction_in_flight(sluiced_factory):
    s = sluiced_factory("graceful_stop_timeout = 20s").start()
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<s@example.net>")
    c.cmd("RCPT TO:<alice@example.com>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: in flight\r\n\r\npart one\r\n")
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "terminating on signal" in s.log_text(), what="SIGTERM handled")
    c.send(b"part two\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.cmd("QUIT")
    s.proc.wait(timeout=30)
    # a new connection is refused now, and the message is safely queued or delivered
    qid = text.split()[-1]
    files = s.queue_files("active") + [os.path.basename(p) for p in s.delivered("alice")]
    assert any(qid in f for f in files) or s.delivered("alice")


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_privilege_drop():
    import shutil
    import tempfile
    from conftest import Sluiced
    d = tempfile.mkdtemp(prefix="sluice-privdrop-")
    os.chmod(d, 0o755)   # nobody must reach the queue and Maildirs below it
    s = Sluiced(d, "mail_owner = nobody")
    try:
        _privilege_drop(s)
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def _privilege_drop(s):
    s.start()
    nobody = pwd.getpwnam("nobody").pw_uid

    def uids():
        """each child's Uid: line (real, effective, saved, filesystem)"""
        kids = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
        out = {}
        for k in kids:
            try:
                with open("/proc/%s/status" % k) as f:
                    out[k] = [int(u) for u in [l for l in f if l.startswith("Uid:")][0].split()[1:]]
            except OSError:
                pass   # gone meanwhile
        return out

    def all_dropped():
        u = uids()
        return len(u) >= 2 and all(v == [nobody] * 4 for v in u.values())
    # a child runs as root between its fork and its drop (the queue manager
    # reads its config first): every child must be nobody once started
    try:
        wait_for(all_dropped, timeout=20, what="every child running as nobody")
    except AssertionError as e:
        raise AssertionError("%s: %s (uid %d)" % (e, uids(), nobody))
    # and mail still flows
    c = SmtpRaw("127.0.0.1", s.port)
    c.reply()
    c.cmd("HELO client.test")
    c.cmd("MAIL FROM:<s@example.net>")
    c.cmd("RCPT TO:<alice@example.com>")
    c.cmd("DATA")
    c.send(b"Subject: dropped\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    s.wait_delivered("alice", 1)


def test_queue_hold_release_delete(sluiced_factory, tmp_path):
    access = tmp_path / "hold_access"
    access.write_text("held@example.net HOLD\n")
    s = sluiced_factory(f"smtpd_sender_restrictions = check_sender_access texthash:{access}\n"
                        "queue_run_delay = 3600s").start()
    import smtplib
    for i in range(2):
        with smtplib.SMTP("127.0.0.1", s.port) as c:
            c.sendmail("held@example.net", ["alice@example.com"], b"Subject: held %d\r\n\r\nx\r\n" % i)
    wait_for(lambda: len(s.queue_files("hold")) == 2, what="two messages on hold")
    sluice = os.path.join(BIN, "sluice")
    out = subprocess.run([sluice, "queue", "-c", s.conf_path], capture_output=True, text=True).stdout
    ids = s.queue_files("hold")
    assert all(i + "!" in out for i in ids) and "held@example.net" in out and "-- 2 Requests." in out
    r = subprocess.run([sluice, "queue", "-c", s.conf_path, "release", ids[0]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # released: delivered at once (sluiced is told to run its queue), not after queue_run_delay
    s.wait_delivered("alice", 1, timeout=20)
    r = subprocess.run([sluice, "queue", "-c", s.conf_path, "delete", ids[1]], capture_output=True, text=True)
    assert r.returncode == 0 and not s.queue_files("hold")
    r = subprocess.run([sluice, "queue", "-c", s.conf_path, "release", "NOSUCHID"], capture_output=True, text=True)
    assert r.returncode == 1 and "no such message" in r.stderr
    assert s.proc.poll() is None   # the signal did not hurt sluiced


@pytest.mark.skipif(os.geteuid() != 0, reason="a root-only key and a privilege drop need root")
def test_reload_with_a_root_only_tls_key():
    # receivers run as mail_owner and cannot read a 0600 root key: a reload
    # they did themselves failed ("keeping the running configuration"), so
    # `sluice reload` changed nothing. The master (root) now starts fresh
    # receivers that read the key before they drop privileges, as Postfix's
    # master does.
    import shutil
    import smtplib
    import ssl
    import tempfile
    from conftest import Sluiced
    d = tempfile.mkdtemp(prefix="sluice-tlsreload-")
    os.chmod(d, 0o755)   # nobody must reach the queue and Maildirs below it
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mx.test",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chown(key, 0, 0)
    os.chmod(key, 0o600)
    s = Sluiced(d, f"mail_owner = nobody\nsmtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                   "smtpd_tls_security_level = may\nsmtpd_banner = $myhostname ESMTP first\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def banner():
        c = SmtpRaw("127.0.0.1", s.port)
        text = c.reply()[1]
        c.cmd("QUIT")
        return text

    def send_over_tls(user):
        with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
            c.starttls(context=ctx)
            c.ehlo("client.test")
            c.sendmail("s@example.net", ["%s@example.com" % user], b"Subject: tls after reload\r\n\r\nx\r\n")

    try:
        s.start()
        assert "ESMTP first" in banner()
        send_over_tls("alice")
        with open(s.conf_path, "a") as f:
            f.write("smtpd_banner = $myhostname ESMTP second\n")
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "ESMTP second" in banner(), timeout=30,
                 what="the reloaded banner (log: %s)" % s.log_text()[-2000:])
        send_over_tls("bob")
        s.wait_delivered("alice", 1)
        s.wait_delivered("bob", 1)
        assert "reload failed" not in s.log_text()
        # the new receivers dropped privileges too
        kids = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
        nobody = pwd.getpwnam("nobody").pw_uid
        for k in kids:
            with open("/proc/%s/status" % k) as f:
                uid_line = [line for line in f if line.startswith("Uid:")][0].split()
            assert all(int(u) == nobody for u in uid_line[1:]), uid_line
        # a bad config at reload: the running receivers stay, with their configuration
        with open(s.conf_path, "a") as f:
            f.write("smtpd_recipient_limit = -5\n")
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "smtpd_recipient_limit" in s.log_text(), what="the reload error in the log")
        assert "ESMTP second" in banner()
        send_over_tls("carol")
        s.wait_delivered("carol", 1)
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_relative_paths_follow_the_config_not_the_working_directory(tmp_path):
    # relative paths are relative to the config file's directory, or to
    # config_directory (itself relative to it); never to where sluiced runs
    from conftest import free_port
    etc, base = tmp_path / "etc", tmp_path / "base"
    etc.mkdir()
    base.mkdir()
    (base / "vmailbox").write_text("alice@example.com example.com/alice/\n")
    port = free_port()
    me = pwd.getpwuid(os.getuid()).pw_name
    conf = etc / "sluice.conf"
    conf.write_text(f"""myhostname = mx.test
config_directory = ../base
smtpd_listen = 127.0.0.1:{port}
queue_directory = spool
pid_file = sluiced.pid
virtual_mailbox_domains = example.com
virtual_mailbox_base = mail
virtual_mailbox_maps = texthash:vmailbox
maillog_file = maillog
mail_owner = {me}
smtpd_workers = 1
smtpd_peername_lookup = no
graceful_stop_timeout = 3s
""")
    r = subprocess.run([os.path.join(BIN, "sluice"), "check", "-c", str(conf)], cwd="/", capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    p = subprocess.Popen([os.path.join(BIN, "sluiced"), "-c", "sluice.conf", "-f"], cwd=str(etc),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def greets():
            if p.poll() is not None:
                raise AssertionError("sluiced exited: %s" % p.stdout.read().decode(errors="replace"))
            try:
                c = SmtpRaw("127.0.0.1", port)
                return c.reply()[0] == 220
            except OSError:
                return False
        wait_for(greets, what="sluiced")
        assert (base / "sluiced.pid").exists() and (base / "spool" / "active").is_dir()
        c = SmtpRaw("127.0.0.1", port)
        c.reply()
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<s@example.net>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
        c.cmd("DATA")
        c.send(b"Subject: relative\r\n\r\nx\r\n.\r\n")
        assert c.reply()[0] == 250
        new = base / "mail" / "example.com" / "alice" / "new"
        wait_for(lambda: new.is_dir() and os.listdir(new), what="delivery under base/mail")
        assert "client=" in (base / "maillog").read_text()
        # `sluice queue` from elsewhere finds the same queue
        r = subprocess.run([os.path.join(BIN, "sluice"), "queue", "-c", str(conf)], cwd="/", capture_output=True,
                           text=True)
        assert r.returncode == 0 and "Mail queue is empty" in r.stdout, r.stdout + r.stderr
        # a reload (the config was named relatively) keeps working
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload -- configuration %s" % conf in (base / "maillog").read_text(), what="reload")
        assert "reload failed" not in (base / "maillog").read_text()
    finally:
        p.terminate()
        p.wait(timeout=30)
    bad = etc / "bad.conf"
    bad.write_text("config_directory = ../nowhere\n")
    r = subprocess.run([os.path.join(BIN, "sluice"), "check", "-c", str(bad)], cwd="/", capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "%s:1: config_directory %s/../nowhere: No such file or directory" % (bad, etc) in r.stderr, r.stderr
