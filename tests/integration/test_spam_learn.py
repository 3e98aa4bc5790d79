"""Bayes through sluice-spam's own commands: `sluice-spam learn` on the
in-tree SpamAssassin sample (a fixed split by file name: the first 30 spam
and 30 ham learn, the last 10 of each are held back), then the held-back
messages scored with `check` and by the daemon behind sluiced: every
message gets a BAYES_xx symbol once the gate is passed, held-back spam
lands in higher bands than held-back ham, learning twice counts once, and
autolearn shows in X-Spam-Status."""

import json
import os
import re
import subprocess

import pytest

from conftest import BIN, REPO, wait_for
from postfix_dkim_harness import headers
from test_spam_sluiced import RULES, Session, SluiceSpam, spam_spec

SAMPLE = os.path.join(REPO, "tests", "data", "spam", "spamassassin-sample")


def split(kind):
    files = sorted(os.path.join(SAMPLE, kind, f) for f in os.listdir(os.path.join(SAMPLE, kind)))
    return files[:30], files[30:]


def band(sym):
    return int(sym.split("_")[1][:2])


@pytest.fixture
def learned(tmp_path):
    conf = tmp_path / "sluice.conf"
    rules = tmp_path / "r.cf"
    rules.write_text(RULES)
    conf.write_text("spam_rules_files = %s\nspam_bayes_db = %s/bayes.lmdb\n"
                    "spam_bayes_min_spam = 20\nspam_bayes_min_ham = 20\n" % (rules, tmp_path))
    spam_train, spam_test = split("spam")
    ham_train, ham_test = split("ham")
    for flag, files in (("--spam", spam_train), ("--ham", ham_train)):
        out = subprocess.run([os.path.join(BIN, "sluice-spam"), "learn", flag, "-c", str(conf)] + files,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("30 messages: 30 learned, 0 already learned"), out.stdout
    return conf, spam_test, ham_test


def test_learn_then_check_held_back(learned):
    conf, spam_test, ham_test = learned
    # learning again counts once
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "learn", "--spam", "-c", str(conf),
                          split("spam")[0][0]], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("1 messages: 0 learned, 1 already learned"), out.stdout
    out = subprocess.run([os.path.join(BIN, "sluice-spam"), "check", "--json", "-c", str(conf)]
                         + spam_test + ham_test, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    objs = [json.loads(l) for l in out.stdout.splitlines()]
    bands = []
    for o in objs:
        syms = [k for k in o["symbols"] if k.startswith("BAYES_")]
        assert len(syms) == 1, o
        bands.append(band(syms[0]))
    spam_bands, ham_bands = bands[:10], bands[10:]
    assert sum(spam_bands) / 10 > sum(ham_bands) / 10 + 20, (spam_bands, ham_bands)
    assert sum(b >= 95 for b in spam_bands) >= 8, spam_bands


def test_daemon_scores_with_bayes_and_autolearns(learned, sluiced_factory):
    conf, spam_test, ham_test = learned
    s = sluiced_factory()
    spec = spam_spec(s.tmp, "unix")
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
    db = re.search(r"spam_bayes_db = (\S+)", conf.read_text()).group(1)
    sp = SluiceSpam(s.tmp, "mynetworks = 127.0.0.1/32\nspam_bayes_min_spam = 20\nspam_bayes_min_ham = 20\n"
                    "spam_bayes_autolearn_spam = 7\nspam_bayes_db = %s\n" % db, spec,
                    conf_path=s.conf_path).start()
    try:
        s.start()
        sess = Session(s)
        try:
            code, text = sess.send(open(spam_test[0], "rb").read().replace(b"\r\n", b"\n"))
            assert code in (250, 550), text
            first_delivered = code == 250
            code, text = sess.send(b"From: o@example.org\nTo: bob@example.com\nSubject: hello\n\n"
                                   b"flag-me-please and some words\n")
            assert code == 250, text
        finally:
            sess.close()
        files = s.wait_delivered("bob", 2 if first_delivered else 1)
        stats = [headers(open(p, "rb").read(), "X-Spam-Status")[0] for p in files]
        assert any(re.search(r"tests=\S*BAYES_\d+", st) for st in stats), stats
        # score without Bayes >= 7 (T_FLAG_ME 7 + T_SUBJ_HELLO 0.5): learned as spam
        assert any("autolearn=spam" in st for st in stats), stats
        log = wait_for(lambda: "bayes=" in s.log_text() and s.log_text(), 20, "bayes in the log")
        assert re.search(r"milter=spam action=\S+ .*bayes=0\.\d+", log), log
    finally:
        sp.stop()
