"""`sluice start`: the integrated server with filters enabled in sluice.conf."""

import os
import signal
import subprocess

import dkim
import pytest

from conftest import BIN, SmtpRaw, Sluiced, wait_for


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
        txt = "".join(__import__("re").findall(r'"([^"]*)"', rec)).encode()
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
