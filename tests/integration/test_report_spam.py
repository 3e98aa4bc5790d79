"""sluice report on real sluice-spam verdicts: sluice-spam behind sluiced with
the rules of test_spam_sluiced.py (a header at 7.5, clean at 0.5, a reject at
27.5, required 6.0). The report's spam score histogram, actions and spam/ham
results, and the reject, must equal the verdict lines and the traffic sent."""

import collections
import json
import math
import os
import re

import pytest

from conftest import BIN, wait_for
from test_report import report, run_report  # noqa: F401  (fixture)
from test_spam_sluiced import MSG, send, spam_lines, stack  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "sluice-spam")),
                                reason="sluice-spam not built")


def test_spam_histogram_and_actions(report, stack):
    s, sp = stack("unix")
    assert send(s, MSG % (b"one", b"m1", b"flag-me-please"), rcpt="bob@example.com")[0] == 250
    assert send(s, MSG % (b"two", b"m2", b"nothing to see"), rcpt="carol@example.com")[0] == 250
    assert send(s, MSG % (b"three", b"m3", b"reject-me-please flag-me-please"),
                rcpt="user@example.com")[0] == 550
    s.wait_delivered("bob", 1)
    s.wait_delivered("carol", 1)
    lines = wait_for(lambda: len(spam_lines(s.log_text())) >= 3 and spam_lines(s.log_text()),
                     20, "3 decision lines")
    wait_for(lambda: len(re.findall(r": removed\b", s.log_text())) >= 2, 30, "removed lines")
    s.stop()
    sp.stop()
    doc = json.loads(run_report(report, "--format", "json", s.log))
    flt = doc["filters"]["spam"]
    # from the log lines themselves
    scores = [(re.search(r" action=(\S+) score=(\S+) required=(\S+)", l).groups()) for l in lines]
    actions = collections.Counter(a for a, _, _ in scores)
    hist = collections.Counter(int(math.floor(float(x))) for _, x, _ in scores)
    results = collections.Counter("spam" if float(x) >= float(r) else "ham" for _, x, r in scores)
    assert flt["actions"] == dict(actions), flt
    assert {h["score"]: h["count"] for h in flt["score_histogram"]} == dict(hist), flt
    assert flt["results"] == dict(results), flt
    # and the traffic: scores 7.5, 0.5, 27.5 with required 6.0
    assert dict(hist) == {7: 1, 0: 1, 27: 1} and dict(results) == {"spam": 2, "ham": 1}
    assert doc["rejects"]["by_code"] == {"spam": 1}, doc["rejects"]
    assert doc["totals"]["delivered"] == 2
