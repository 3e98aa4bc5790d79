"""sluice-spam behind sluiced (smtpd_milters), over unix and inet sockets.

Proves: a message over spam_add_header_score is delivered with X-Spam-Flag,
X-Spam-Level, X-Spam-Status (SpamAssassin's form) and X-Spam-Symbols; a
clean one gets "X-Spam-Status: No"; X-Spam-* headers from outside are
removed; a message at spam_reject_score is refused at end of DATA with
550 5.7.1; mail from $mynetworks is not scanned; every log line carries
the queue id, with one line per decision (score and symbols); SIGHUP
reloads the rules while an SMTP session (and its milter connection) stays
open; `-n` and `check --json` work on the same configuration."""

import json
import os
import re
import subprocess

import pytest

from conftest import wait_for
from filterd import FilterDaemon, SmtpSession, socket_spec
from postfix_dkim_harness import BIN, headers

RULES = """
body     T_FLAG_ME     /flag-me-please/
describe T_FLAG_ME     Test: enough for a header
score    T_FLAG_ME     7
body     T_REJECT_ME   /reject-me-please/
score    T_REJECT_ME   20
describe T_REJECT_ME   Test: enough for a reject
header   T_SUBJ_HELLO  Subject =~ /^hello/i
score    T_SUBJ_HELLO  0.5
describe T_SUBJ_HELLO  Test: subject says hello
"""

MSG = (b"From: Olga <olga@example.org>\nTo: bob@example.com\nSubject: hello %s\n"
       b"Date: Sat, 21 Nov 2026 12:00:00 +0000\nMessage-ID: <%s@example.org>\n"
       b"X-Spam-Flag: YES\nX-Spam-Status: Yes, score=99 forged\n\n"
       b"Body text: %s.\n")


class SluiceSpam(FilterDaemon):
    """bin/sluice-spam -c CONF -f with RULES in TMP/test_rules.cf (.rules) and
    a Bayes store in TMP. conf_path: a sluice.conf to append to (shared with
    the MTA under test), or None for a fresh one in tmp."""

    start_timeout = 30

    def __init__(self, tmp, spam_conf, spec, conf_path=None, umask=None):
        self.rules = os.path.join(str(tmp), "test_rules.cf")
        with open(self.rules, "w") as f:
            f.write(RULES)
        super().__init__("spam", tmp, spam_conf, spec, conf_path=conf_path, umask=umask,
                         extra=["spam_rules_files = " + self.rules,
                                "spam_bayes_db = %s/bayes.lmdb" % str(tmp)])


def spam_spec(tmp, kind):
    return socket_spec(tmp, kind, "spam")


@pytest.fixture
def stack(sluiced_factory):
    made = []

    def make(kind="unix", spam_conf=""):
        s = sluiced_factory()
        spec = spam_spec(s.tmp, kind)
        with open(s.conf_path, "a") as f:
            f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
        # only 127.0.0.1 is "ours": tests send from 127.0.0.2 as an outside client
        sp = SluiceSpam(s.tmp, "mynetworks = 127.0.0.1/32\n" + spam_conf, spec,
                        conf_path=s.conf_path).start()
        made.append(sp)
        s.start()
        return s, sp

    yield make
    for sp in made:
        sp.stop()


class Session(SmtpSession):
    """From 127.0.0.2 (outside mynetworks), MAIL FROM olga@example.org."""
    source, sender = "127.0.0.2", "olga@example.org"


send = Session.once   # send(s, body, source="127.0.0.2", rcpt=, sender=)


def read(p):
    return open(p, "rb").read()


def spam_lines(log):
    return [l for l in log.splitlines() if "milter=spam" in l]


@pytest.mark.parametrize("kind", ["unix", "inet"])
def test_headers_reject_and_log(stack, kind):
    s, sp = stack(kind)
    code, text = send(s, MSG % (b"one", b"m1", b"flag-me-please"), rcpt="bob@example.com")
    assert code == 250, text
    code, text = send(s, MSG % (b"two", b"m2", b"nothing to see"), rcpt="carol@example.com")
    assert code == 250, text
    code, text = send(s, MSG % (b"three", b"m3", b"reject-me-please flag-me-please"),
                      rcpt="user@example.com")
    assert code == 550 and "5.7.1 Message rejected as spam" in text, (code, text)

    (flagged,) = s.wait_delivered("bob", 1)
    data = read(flagged)
    assert headers(data, "X-Spam-Flag") == ["YES"], data
    assert headers(data, "X-Spam-Level") == ["*******"]
    (status,) = headers(data, "X-Spam-Status")
    assert re.fullmatch(r"Yes, score=7\.5 required=6\.0 tests=T_FLAG_ME,T_SUBJ_HELLO autolearn=no "
                        r"version=sluice-\d+\.\d+\.\d+", status), status
    assert headers(data, "X-Spam-Symbols") == ["T_FLAG_ME(7.00), T_SUBJ_HELLO(0.50)"]
    assert b"forged" not in data                      # the outside X-Spam-Status is gone

    (clean,) = s.wait_delivered("carol", 1)
    data = read(clean)
    assert headers(data, "X-Spam-Flag") == []
    (status,) = headers(data, "X-Spam-Status")
    assert status.startswith("No, score=0.5 required=6.0 tests=T_SUBJ_HELLO "), status
    assert s.delivered("user") == []

    # one decision line per message, each with the queue id, score and symbols
    log = s.log_text()
    lines = wait_for(lambda: len(spam_lines(s.log_text())) >= 3 and spam_lines(s.log_text()),
                     20, "3 decision lines")
    for l in lines:
        qid = re.search(r"sluice-spam\[\d+\]: ([0-9A-Za-z]{6,}): milter=spam action=", l)
        assert qid, l
        assert re.search(r"(?:sluiced|sluice/\w+)\[\d+\]: %s: " % qid.group(1), log), (qid.group(1), log)
    acts = sorted(re.search(r"action=(\S+) score=(\S+)", l).groups() for l in lines)
    assert acts == [("add_header", "7.50"), ("no_action", "0.50"), ("reject", "27.50")], (acts, log)
    assert any("symbols=T_FLAG_ME(7.00),T_SUBJ_HELLO(0.50)" in l for l in lines)
    # issue 13's common keys at the end (docs/EVENTS.md)
    for l in lines:
        assert re.search(r" filter=spam client_ip=127\.0\.0\.\d+ sender=\S* result=(spam|ham) "
                         r"reason=spam_score ms=\d+$", l), l
    assert sorted(re.search(r" result=(\w+) ", l).group(1) for l in lines) == ["ham", "spam", "spam"], lines
    # every sluice-spam line after start-up names a queue id or is a daemon event
    for l in log.splitlines():
        if "sluice-spam[" in l and "milter=spam" in l:
            assert not re.search(r"sluice-spam\[\d+\]: milter=", l), l


def test_mynetworks_not_scanned(stack):
    s, sp = stack("unix")
    code, text = send(s, MSG % (b"four", b"m4", b"reject-me-please"), source="127.0.0.1")
    assert code == 250, text
    (p,) = s.wait_delivered("bob", 1)
    data = read(p)
    assert headers(data, "X-Spam-Status") == ["Yes, score=99 forged"]   # untouched: not scanned
    lines = wait_for(lambda: spam_lines(s.log_text()), 20, "decision line")
    assert "skipped=mynetworks" in lines[0], lines


def test_sighup_reloads_rules_on_open_session(stack):
    s, sp = stack("unix")
    sess = Session(s)
    try:
        code, text = sess.send(MSG % (b"five", b"m5", b"newword"))
        assert code == 250, text
        with open(sp.rules, "a") as f:
            f.write("body T_NEW /newword/\nscore T_NEW 8\ndescribe T_NEW Test: added by reload\n")
        sp.hup()
        wait_for(lambda: "configuration reloaded" in s.log_text(), 30, "reload logged")
        code, text = sess.send(MSG % (b"six", b"m6", b"newword"))
        assert code == 250, text
    finally:
        sess.close()
    files = s.wait_delivered("bob", 2)
    stats = sorted(headers(read(p), "X-Spam-Status")[0] for p in files)
    assert stats[0].startswith("No, score=0.5 "), stats
    assert stats[1].startswith("Yes, score=8.5 required=6.0 tests=T_NEW,T_SUBJ_HELLO "), stats
    # a broken rule file on reload keeps the old rules and says why (file:line)
    with open(sp.rules, "a") as f:
        f.write("body T_BROKEN /unterminated\n")
    sp.hup()
    wait_for(lambda: "reload failed" in s.log_text(), 30, "reload failure logged")
    assert re.search(r"reload failed.*test_rules\.cf:\d+: body T_BROKEN: unterminated", s.log_text())
    code, text = send(s, MSG % (b"seven", b"m7", b"newword"))
    assert code == 250, text


def test_check_mode_and_validation(tmp_path):
    rules = tmp_path / "r.cf"
    rules.write_text(RULES)
    conf = tmp_path / "sluice.conf"
    conf.write_text("spam_rules_files = %s\nspam_socket = unix:%s/s.sock\n" % (rules, tmp_path))
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "-n", "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "spam configuration ok" in out.stdout and "loaded=3" in out.stdout, out.stdout
    m1, m2 = tmp_path / "a.eml", tmp_path / "b.eml"
    m1.write_bytes(MSG % (b"x", b"x", b"flag-me-please"))
    m2.write_bytes(MSG % (b"y", b"y", b"reject-me-please"))
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "-c", str(conf), "--json",
                          str(m1), str(m2)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    objs = [json.loads(l) for l in out.stdout.splitlines()]
    assert objs == [
        {"file": str(m1), "score": 7.5, "required": 6.0, "action": "add header",
         "symbols": {"T_FLAG_ME": 7.0, "T_SUBJ_HELLO": 0.5}},
        {"file": str(m2), "score": 20.5, "required": 6.0, "action": "reject",
         "symbols": {"T_REJECT_ME": 20.0, "T_SUBJ_HELLO": 0.5}},
    ], objs
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "-c", str(conf), str(m1)],
                         capture_output=True, text=True, timeout=60)
    assert "action=add header" in out.stdout and "Test: enough for a header" in out.stdout, out.stdout
    # a rule error stops start-up with file:line
    rules.write_text(RULES + "meta T_BAD (T_FLAG_ME\n")
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "-n", "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "r.cf:%d: meta T_BAD: missing )" % (RULES.count("\n") + 1) in out.stderr, out.stderr
    # relative paths in the config are relative to its directory; FILE arguments to ours
    rel = tmp_path / "rel"
    rel.mkdir()
    (rel / "mine.cf").write_text(RULES)
    (rel / "sluice.conf").write_text("spam_rules_files = mine.cf\n")
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "-c", "rel/sluice.conf", "--json", "a.eml"],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["symbols"] == {"T_FLAG_ME": 7.0, "T_SUBJ_HELLO": 0.5}, out.stdout
    # without spam_rules_files: the project's default rules (found beside the binary)
    (rel / "sluice.conf").write_text("spam_add_header_score = 6\n")
    gtube = tmp_path / "gtube.eml"
    gtube.write_bytes(b"Subject: test\n\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n")
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "-c", str(rel / "sluice.conf"), "--json",
                          str(gtube)], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["action"] == "reject" and "SL_GTUBE" in json.loads(out.stdout)["symbols"]
    for flag in ("--help", "--version"):
        out = subprocess.run([os.path.join(BIN, "sluice-spam"), flag], capture_output=True, text=True)
        assert out.returncode == 0
    assert re.fullmatch(r"sluice-spam \(sluice\) \d+\.\d+\.\d+\n", out.stdout), out.stdout
