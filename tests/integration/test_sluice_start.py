"""`sluice start`: the integrated server with filters enabled in sluice.conf."""

import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile

import dkim
import pytest

from conftest import BIN, REPO, SmtpRaw, Sluiced, free_port, wait_for


def status(s):
    r = subprocess.run([os.path.join(BIN, "sluice"), "status", "-c", s.conf_path], capture_output=True,
                       text=True)
    rows = {}
    for line in r.stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 5:
            rows[parts[0]] = {"pid": int(parts[1]), "restarts": int(parts[4]), "down": "(down)" in line}
    return r.returncode, rows


def send_signed_check(s, user):
    c = SmtpRaw("127.0.0.1", s.port)
    assert c.reply()[0] == 220
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<alice@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<%s@example.com>" % user)[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"From: alice@example.com\r\nTo: %s@example.com\r\nSubject: via sluice start\r\n\r\nhi\r\n.\r\n"
           % user.encode())
    code, text = c.reply()
    c.cmd("QUIT")
    return code, text


@pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "sluice-dkim")), reason="sluice-dkim not built")
def test_start_wires_filters_and_restarts_a_crashed_one(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([os.path.join(BIN, "sluice"), "keygen", "-d", "example.com", "-s", "sel", "-D", str(keys)],
                   check=True, capture_output=True)
    filters = ["dkim"] + (["spf"] if os.path.exists(os.path.join(BIN, "sluice-spf")) else [])
    conf = (f"run_directory = {tmp_path}/run\n"
            "dkim_enable = yes\ndkim_domain = example.com\ndkim_selector = sel\n"
            f"dkim_key_file = {keys}/sel.private\n"
            "smtpd_recipient_restrictions = reject_unauth_destination\n"
            + ("spf_enable = yes\n" if "spf" in filters else ""))
    s = Sluiced(tmp_path, conf)
    sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", s.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        s.proc = sup
        wait_for(s._greets, timeout=60, what="sluiced behind sluice start (log: %s)" % s.log_text)
        gen = open(tmp_path / "run" / "sluice.conf").read()
        assert "smtpd_milters = unix:%s/run/dkim.sock" % tmp_path in gen
        if "spf" in filters:
            assert ("smtpd_recipient_restrictions = reject_unauth_destination check_policy_service unix:%s/run/spf.sock"
                    % tmp_path) in gen
        code, rows = status(s)
        assert code == 0 and set(filters) | {"sluiced"} <= set(rows), rows
        assert send_signed_check(s, "bob")[0] == 250
        (p,) = s.wait_delivered("bob", 1)
        data = open(p, "rb").read()
        assert b"DKIM-Signature:" in data
        rec = open(keys / "sel.txt").read()
        txt = "".join(re.findall(r'"([^"]*)"', rec)).encode()
        assert dkim.verify(data.replace(b"\n", b"\r\n"),
                           dnsfunc=lambda n, timeout=5: txt if n == b"sel._domainkey.example.com." else b"")
        # kill the DKIM filter: it is restarted and mail is signed again
        old = rows["dkim"]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: status(s)[1].get("dkim", {}).get("restarts", 0) >= 1
                 and not status(s)[1]["dkim"]["down"] and status(s)[1]["dkim"]["pid"] != old,
                 timeout=30, what="dkim restarted")
        assert send_signed_check(s, "carol")[0] == 250
        (p,) = s.wait_delivered("carol", 1)
        assert b"DKIM-Signature:" in open(p, "rb").read()
        assert "restarting in" in s.log_text()
    finally:
        subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path], capture_output=True, timeout=90)
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()


def start_and_wait(s):
    """sluice start -f for s (a Sluiced); returns the supervisor once sluiced greets."""
    sup = subprocess.Popen([os.path.join(BIN, "sluice"), "start", "-f", "-c", s.conf_path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    s.proc = sup
    wait_for(s._greets, timeout=60, what="sluiced behind sluice start (log: %s)" % s.log_text())
    return sup


def stop(s, sup):
    subprocess.run([os.path.join(BIN, "sluice"), "stop", "-c", s.conf_path], capture_output=True, timeout=90)
    try:
        sup.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sup.kill()
        sup.wait()


def param(conf_path, name):
    r = subprocess.run([os.path.join(BIN, "sluice"), "params", "-c", conf_path, name], capture_output=True,
                       text=True, check=True)
    return r.stdout.strip().split(" = ", 1)[1]


@pytest.mark.skipif(not all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice-dkim", "sluice-spf")),
                    reason="sluice-dkim and sluice-spf not built")
def test_generated_config_survives_an_empty_recipient_restrictions_line(tmp_path):
    # the admin's own empty "smtpd_recipient_restrictions =" came before the
    # wiring: the wiring was cut short there (sockets and smtpd_milters lost)
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run([os.path.join(BIN, "sluice"), "keygen", "-d", "example.com", "-s", "sel", "-D", str(keys)],
                   check=True, capture_output=True)
    conf = (f"run_directory = {tmp_path}/run\n"
            "smtpd_recipient_restrictions =\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            "dkim_enable = yes\ndkim_domain = example.com\ndkim_selector = sel\n"
            f"dkim_key_file = {keys}/sel.private\nspf_enable = yes\n")
    s = Sluiced(tmp_path, conf)
    sup = start_and_wait(s)
    try:
        gen_path = str(tmp_path / "run" / "sluice.conf")
        gen = open(gen_path).read()
        run = "%s/run" % tmp_path
        assert "\nsmtpd_recipient_restrictions =\nsmtpd_relay_restrictions" in gen   # the admin's part, whole
        for line in ("dkim_socket = unix:%s/dkim.sock" % run, "spf_socket = unix:%s/spf.sock" % run,
                     "smtpd_milters = unix:%s/dkim.sock" % run,
                     "smtpd_recipient_restrictions = check_policy_service unix:%s/spf.sock" % run):
            assert "\n" + line + "\n" in gen, (line, gen)
        assert param(gen_path, "smtpd_milters") == "unix:%s/dkim.sock" % run
        assert param(gen_path, "smtpd_recipient_restrictions") == "check_policy_service unix:%s/spf.sock" % run
        # both filters are in the path of a message: signed, and the SPF check ran
        assert send_signed_check(s, "bob")[0] == 250
        (p,) = s.wait_delivered("bob", 1)
        data = open(p, "rb").read()
        # (sluice-spf skips loopback clients: its comment header shows it ran)
        assert b"DKIM-Signature:" in data and b"X-Comment: SPF check N/A" in data, data[:2000]
    finally:
        stop(s, sup)


def free_udp_port():
    """A loopback UDP port where nothing listens (a DNS server that is not there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return u.getsockname()[1]


HAVE_FILTERS = all(os.path.exists(os.path.join(BIN, b)) for b in ("sluice-dkim", "sluice-spf"))


class EmbeddedTree:
    """A temp copy of the source tree's layout for `make run`: conf/ as
    shipped (conf/sluice.conf with its relative paths, vmailbox, virtual)
    with `extra` settings appended (the last definition wins), bin/ ->
    SLUICE_BIN, and what tools/run.sh prepares (var/ and a self-signed
    certificate). World-traversable, so mail_owner can reach it."""

    def __init__(self, extra):
        self.top = tempfile.mkdtemp(prefix="sluice-embedded.")
        os.chmod(self.top, 0o755)
        # conf/ as in the tree, without the C sources of the conf module
        shutil.copytree(os.path.join(REPO, "conf"), os.path.join(self.top, "conf"),
                        ignore=shutil.ignore_patterns("*.c", "*.h"))
        os.chmod(os.path.join(self.top, "conf"), 0o755)
        os.symlink(BIN, os.path.join(self.top, "bin"))
        for d in ("var/tls", "var/mail", "var/spool", "var/run", "var/lib"):
            os.makedirs(os.path.join(self.top, d))
        if os.geteuid() == 0:      # as run.sh does: the filters' state, written as mail_owner
            os.chown(self.path("var/lib"), pwd.getpwnam("nobody").pw_uid, -1)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=mail.example.com", "-keyout", self.path("var/tls/key.pem"),
                        "-out", self.path("var/tls/cert.pem")], check=True, capture_output=True)
        os.chmod(self.path("var/tls/key.pem"), 0o600)
        self.port = free_port()
        self.conf = self.path("conf/sluice.conf")
        with open(self.conf, "a") as f:
            # (and DNS to a loopback port where no server listens: offline,
            # never the machine's resolver)
            f.write("\n# test: a free port, a log file, no DNS; relative paths as shipped\n"
                    "smtpd_listen = 127.0.0.1:%d\nmaillog_file = ../var/maillog\n"
                    "dns_servers = 127.0.0.1:%d\n" % (self.port, free_udp_port()))
            if os.geteuid() == 0:
                f.write("mail_owner = nobody\n")
            f.write(extra)

    def path(self, rel):
        return os.path.join(self.top, rel)

    def sluice(self, *args, cwd="/", **kw):
        """bin/sluice ARGS from cwd (by default /: nothing may depend on it)."""
        return subprocess.run([self.path("bin/sluice")] + list(args), cwd=cwd, capture_output=True,
                              text=True, **kw)

    def log(self):
        try:
            return open(self.path("var/maillog"), errors="replace").read()
        except OSError:
            return ""

    def greets(self):
        try:
            c = SmtpRaw("127.0.0.1", self.port, timeout=5)
            ok = c.reply()[0] == 220
            c.cmd("QUIT")
            return ok
        except OSError:
            return False

    def cleanup(self):
        self.sluice("stop", "-c", self.conf, timeout=90)
        shutil.rmtree(self.top, ignore_errors=True)


DKIM_SPF = ("dkim_enable = yes\ndkim_domain = example.com\ndkim_selector = sel\n"
            "dkim_key_file = ../var/dkim/sel.private\nspf_enable = yes\n")


@pytest.mark.skipif(not HAVE_FILTERS, reason="sluice-dkim and sluice-spf not built")
def test_make_run_layout_with_dkim_and_spf():
    # conf/sluice.conf as shipped, run the way `make run` runs it (from the
    # top of the tree, paths relative to conf/), with dkim and spf enabled:
    # the generated socket paths were relative and both daemons refused them
    t = EmbeddedTree(DKIM_SPF)
    sup = None
    try:
        # the key where the shipped comment says, made as it says (-D var/dkim does not exist yet)
        r = subprocess.run(["bin/sluice", "keygen", "-d", "example.com", "-s", "sel", "-D", "var/dkim"],
                           cwd=t.top, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["bin/sluice", "check", "-c", "conf/sluice.conf"], cwd=t.top, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        sup = subprocess.Popen(["bin/sluice", "start", "-f", "-c", "conf/sluice.conf"], cwd=t.top,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: "started:" in t.log() or sup.poll() is not None, timeout=60,
                 what="sluice start (log: %s)" % t.log())
        log = t.log()
        # (the count grows when the shipped config switches on more filters)
        assert re.search(r"started: [2-9] filter\(s\) and sluiced, all answering", log), log
        assert "restarting" not in log and "fatal" not in log, log
        gen = open(t.path("var/run/sluice.conf")).read()
        run = os.path.realpath(t.path("var/run"))
        assert "\nconfig_directory = %s\n" % os.path.realpath(t.path("conf")) in gen
        assert "\ndkim_socket = unix:%s/dkim.sock\n" % run in gen
        # (the shipped config also switches on sluice-ratelimit, after spf)
        assert "\nsmtpd_recipient_restrictions = check_policy_service unix:%s/spf.sock" % run in gen
        # from anywhere: status finds the run directory through the config
        st = t.sluice("status", "-c", t.conf)
        assert st.returncode == 0 and "(down)" not in st.stdout, st.stdout + st.stderr
        for name in ("dkim", "spf", "sluiced"):
            assert "\n" + name + " " in st.stdout, st.stdout
        # a message through the chain lands in var/mail as the shipped comment says
        c = SmtpRaw("127.0.0.1", t.port)
        assert c.reply()[0] == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<alice@example.com>")[0] == 250
        assert c.cmd("RCPT TO:<user@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"From: alice@example.com\r\nTo: user@example.com\r\nSubject: make run\r\n\r\nhi\r\n.\r\n")
        assert c.reply()[0] == 250
        c.cmd("QUIT")
        new = t.path("var/mail/example.com/user/new")
        files = wait_for(lambda: os.path.isdir(new) and os.listdir(new), timeout=30,
                         what="delivery to var/mail (log: %s)" % t.log())
        data = open(os.path.join(new, files[0]), "rb").read()
        assert b"DKIM-Signature:" in data and b"X-Comment: SPF check N/A" in data, data[:1500]
        # sluice reload: sluiced takes the new config (as root its receivers
        # run as nobody, and var/tls/key.pem is 0600 root), STARTTLS still works
        with open(t.conf, "a") as f:
            f.write("smtpd_banner = $myhostname ESMTP reloaded\n")
        r = t.sluice("reload", "-c", t.conf)
        assert r.returncode == 0, r.stderr

        def banner():
            c = SmtpRaw("127.0.0.1", t.port)
            text = c.reply()[1]
            c.cmd("QUIT")
            return text
        wait_for(lambda: "ESMTP reloaded" in banner(), timeout=30, what="reloaded banner (log: %s)" % t.log())
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", t.port, timeout=30) as c:
            c.starttls(context=ctx)
            c.ehlo("client.test")
            c.sendmail("alice@example.com", ["user@example.com"],
                       b"From: alice@example.com\r\nSubject: after reload\r\n\r\nhi\r\n")
        wait_for(lambda: len(os.listdir(new)) == 2, timeout=30, what="second delivery (log: %s)" % t.log())
        assert not [line for line in t.log().splitlines() if " sluice/" in line and "reload failed" in line]
        r = t.sluice("stop", "-c", t.conf, timeout=90)
        assert r.returncode == 0, r.stderr
        sup.wait(timeout=30)
    finally:
        if sup and sup.poll() is None:
            sup.kill()
            sup.wait()
        t.cleanup()


@pytest.mark.skipif(not HAVE_FILTERS, reason="sluice-dkim and sluice-spf not built")
def test_start_in_background_waits_until_every_daemon_answers():
    t = EmbeddedTree(DKIM_SPF)
    try:
        assert t.sluice("keygen", "-d", "example.com", "-s", "sel", "-D", t.path("var/dkim")).returncode == 0
        r = t.sluice("start", "-c", t.conf, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + t.log()
        assert "started" in r.stdout
        assert t.greets()     # no waiting: "started" means it answers now
        for sock in ("dkim.sock", "spf.sock"):
            assert os.path.exists(t.path("var/run/" + sock))
        # a second one refuses (it would take the first one's sockets)
        r = t.sluice("start", "-c", t.conf, timeout=120)
        assert r.returncode == 1 and "already running" in r.stderr, r.stdout + r.stderr
        assert t.greets() and os.path.exists(t.path("var/run/dkim.sock"))
        st = t.sluice("status", "-c", t.conf)
        assert st.returncode == 0 and "(down)" not in st.stdout, st.stdout
        assert t.sluice("stop", "-c", t.conf, timeout=90).returncode == 0
    finally:
        t.cleanup()


@pytest.mark.skipif(not HAVE_FILTERS, reason="sluice-dkim and sluice-spf not built")
def test_start_fails_when_a_daemon_does_not_come_up():
    # no key file: sluice-dkim exits at start; `sluice start` must not say
    # "started", and must leave nothing running
    t = EmbeddedTree(DKIM_SPF)
    try:
        r = t.sluice("start", "-c", t.conf, timeout=120)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "not started: dkim exited with status" in r.stderr, r.stderr
        assert "started:" not in t.log()
        assert not t.greets()
        st = t.sluice("status", "-c", t.conf)
        assert st.returncode == 1 and "not running" in st.stdout
        # the same in the foreground
        r = t.sluice("start", "-f", "-c", t.conf, timeout=120)
        assert r.returncode == 1
        assert "fatal: dkim exited with status" in t.log()
    finally:
        t.cleanup()


@pytest.mark.skipif(not HAVE_FILTERS or os.geteuid() != 0, reason="needs the filters, root and a privilege drop")
def test_reload_filters_with_root_only_files():
    # every filter the shipped config switches on reloads as mail_owner
    t = EmbeddedTree(DKIM_SPF)
    try:
        assert t.sluice("keygen", "-d", "example.com", "-s", "sel", "-D", t.path("var/dkim")).returncode == 0
        r = t.sluice("start", "-c", t.conf, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + t.log()
        assert t.sluice("reload", "-c", t.conf).returncode == 0
        wait_for(lambda: sum(("%s: configuration reloaded" % n) in t.log()
                               for n in ("dkim", "spf", "dmarc", "spam", "ratelimit")) == 5, timeout=30, what="reloads in the log: %s" % t.log())
        import time
        time.sleep(1)
        bad = [line for line in t.log().splitlines() if "reload failed" in line or "Permission denied" in line]
        assert not bad, bad
        # what made it hard: a 0600 root key and a root-made log, read and
        # reopened by daemons that run as nobody
        key = os.stat(t.path("var/dkim/sel.private"))
        assert key.st_uid == 0 and key.st_mode & 0o077 == 0, oct(key.st_mode)
        assert "dkim: configuration reloaded (1 signing keys)" in t.log(), t.log()
        assert "spf: configuration reloaded" in t.log(), t.log()
        for n in ("dmarc", "spam", "ratelimit"):
            assert ("%s: configuration reloaded" % n) in t.log(), t.log()
        rows = [line.split() for line in t.sluice("status", "-c", t.conf).stdout.splitlines()[2:]]
        nobody = pwd.getpwnam("nobody").pw_uid
        for name in ("dkim", "spf", "dmarc", "spam", "ratelimit"):
            (pid,) = [int(r[1]) for r in rows if r and r[0] == name]
            with open("/proc/%d/status" % pid) as f:
                uids = [line for line in f if line.startswith("Uid:")][0].split()[1:]
            assert all(int(u) == nobody for u in uids), (name, uids)
    finally:
        t.cleanup()


@pytest.mark.skipif(not HAVE_FILTERS, reason="sluice-dkim and sluice-spf not built")
def test_systemd_notify_ready_when_every_daemon_answers():
    # Type=notify (conf/systemd/sluice.service): READY=1 only once all answer
    t = EmbeddedTree(DKIM_SPF)
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns_path = t.path("notify.sock")
    ns.bind(ns_path)
    ns.settimeout(60)
    sup = None
    try:
        assert t.sluice("keygen", "-d", "example.com", "-s", "sel", "-D", t.path("var/dkim")).returncode == 0
        env = dict(os.environ, NOTIFY_SOCKET=ns_path)
        sup = subprocess.Popen([t.path("bin/sluice"), "start", "-f", "-c", t.conf], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        msg = ns.recv(4096).decode()
        assert re.match(r"READY=1\nSTATUS=[2-9] filter\(s\) and sluiced answering", msg), msg
        assert t.greets() and os.path.exists(t.path("var/run/dkim.sock"))
        assert t.sluice("reload", "-c", t.conf).returncode == 0
        assert ns.recv(4096).decode() == "RELOADING=1"
        assert ns.recv(4096).decode() == "READY=1"
        assert t.sluice("stop", "-c", t.conf, timeout=90).returncode == 0
        assert ns.recv(4096).decode() == "STOPPING=1"
        sup.wait(timeout=30)
        # the children were not handed the socket: nothing else arrived
        ns.settimeout(0.2)
        with pytest.raises(socket.timeout):
            ns.recv(4096)
    finally:
        if sup and sup.poll() is None:
            sup.kill()
            sup.wait()
        ns.close()
        t.cleanup()


@pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "sluice-ratelimit")) or os.geteuid() != 0,
                    reason="needs sluice-ratelimit, root and a privilege drop")
def test_reload_ratelimit_with_a_root_made_log():
    # the shipped config switches sluice-ratelimit on: after dropping to
    # mail_owner it must reopen the root-made 0640 maillog_file on reload,
    # as the other filters do
    t = EmbeddedTree(DKIM_SPF)
    try:
        assert t.sluice("keygen", "-d", "example.com", "-s", "sel", "-D", t.path("var/dkim")).returncode == 0
        r = t.sluice("start", "-c", t.conf, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + t.log()
        assert t.sluice("reload", "-c", t.conf).returncode == 0
        wait_for(lambda: "ratelimit: configuration reloaded" in t.log(), timeout=30,
                 what="ratelimit reloaded: %s" % t.log())
        bad = [line for line in t.log().splitlines()
               if "sluice-ratelimit[" in line and ("Permission denied" in line or "reload failed" in line)]
        assert not bad, bad
    finally:
        t.cleanup()
