#!/usr/bin/python3
"""spam_fit: suggest scores for sluice-spam's default rules and Bayes bands
from the training part of bench_spam.py's corpus split (never its test
part). Prints suggestions; edits nothing.

The training part is cut in two halves by a second fixed hash; Bayes learns
one half and `sluice-spam check --json` scores the other, then the other
way round, so every training message is scored by a Bayes store that has
not seen it. On those symbol sets the scores are fitted as a logistic model
around the threshold (6): minimise sum of w * log(1 + exp(-y (score - 6)))
(y = +1 spam, -1 ham; w = --ham-weight for ham, 1 for spam) plus
--prior * (score - current score)^2, by projected gradient descent with each
rule's score kept in [0, --max-rule] (or its cap below), the Bayes bands
BAYES_50..BAYES_999 in fixed ranges and non-decreasing, BAYES_00..40 and
SL_GTUBE as they are. The caps keep rules that are weak signals outside
this 2002 corpus (missing rDNS, freemail senders, ...) from taking over.

Usage: spam_fit.py [--bin DIR] [--cache DIR] [--ham-weight 3] [--prior 0.5]
"""

import argparse
import glob
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_spam  # noqa: E402

BANDS = {"BAYES_50": (0.0, 1.5), "BAYES_60": (0.5, 2.5), "BAYES_80": (1.0, 3.5),
         "BAYES_95": (2.0, 4.5), "BAYES_99": (3.0, 5.0), "BAYES_999": (3.5, 5.0)}
ORDER = ["BAYES_50", "BAYES_60", "BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999"]
FIXED = {"SL_GTUBE", "BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40"}
CAPS = {"SL_RELAY_NO_RDNS": 1.2, "SL_FROM_FREEMAIL": 0.5, "SL_HTML_ONLY": 1.2, "SL_DATE_PAST_WEEK": 0.8,
        "SL_XMAILER_FORGED_OE": 0.01, "BAYES_50": 1.0, "SL_DATE_NO_ZONE": 0.8, "SL_CAPS_SHOUT": 1.0,
        "SL_HTML_FONT_HUGE": 0.8, "SL_SUBJ_MONEY": 0.8, "SL_PRIORITY_HIGH": 0.5, "SL_DEAR_SOMEONE": 1.0,
        "SL_DATE_FUTURE": 2.0, "SL_SUBJ_ENDS_EXCLAIM": 0.6}
THRESHOLD = 6.0


def rule_scores():
    cur = {}
    for f in sorted(glob.glob(os.path.join(bench_spam.REPO, "milters", "spam", "rules", "*.cf"))):
        for line in open(f):
            m = re.match(r"score\s+(\S+)\s+(-?[\d.]+)\s*$", line)
            if m:
                cur[m.group(1)] = float(m.group(2))
    return cur


def score_fold(binary, d, learn, score):
    """Bayes learned on learn {kind: dir}, score [(path, is_spam)] -> [(is_spam, symbols)]"""
    os.makedirs(d)
    conf = bench_spam.ours_conf(d)
    bench_spam.ours_learn(binary, conf, learn)
    r = subprocess.run([binary, "check", "--json", "-c", conf] + [p for p, _ in score], check=True,
                       capture_output=True, text=True)
    label = dict(score)
    return [(label[j["file"]], j["symbols"]) for j in map(json.loads, r.stdout.splitlines())]


def evaluate(data, scores):
    tp = fp = fn = tn = 0
    for spam, syms in data:
        s = sum(scores.get(k, v) for k, v in syms.items())
        if s >= THRESHOLD:
            tp, fp = tp + spam, fp + (not spam)
        else:
            fn, tn = fn + spam, tn + (not spam)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "fpr": round(fp / (fp + tn), 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def fit(data, cur, ham_weight, prior, max_rule, iters=400, rate=0.02):
    syms = sorted({k for _, s in data for k in s} - FIXED)
    lo = {k: BANDS.get(k, (0.0, max_rule))[0] for k in syms}
    hi = {k: min(BANDS.get(k, (0.0, max_rule))[1], CAPS.get(k, 99.0)) for k in syms}
    th = {k: min(hi[k], max(lo[k], cur.get(k, 0.5))) for k in syms}
    th0 = dict(th)
    rows = [(1 if spam else -1, [k for k in s if k in th], sum(v for k, v in s.items() if k not in th))
            for spam, s in data]
    for _ in range(iters):
        g = {k: 2 * prior * (th[k] - th0[k]) for k in syms}
        for y, ks, base in rows:
            z = -y * (base + sum(th[k] for k in ks) - THRESHOLD)
            d = (ham_weight if y < 0 else 1.0) * (1 / (1 + math.exp(-z)) if z > -30 else 0.0) * -y
            for k in ks:
                g[k] += d
        for k in syms:
            th[k] = min(hi[k], max(lo[k], th[k] - rate * g[k] / 50))
        for a, b in zip(ORDER, ORDER[1:]):
            if a in th and b in th and th[b] < th[a]:
                th[b] = th[a]
    return {k: round(v, 1) for k, v in th.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SLUICE_BIN", os.path.join(bench_spam.REPO, "bin")))
    ap.add_argument("--cache", default=os.environ.get("SLUICE_BENCH_CACHE",
                                                      os.path.expanduser("~/.cache/sluice-bench")))
    ap.add_argument("--ham-weight", type=float, default=3.0)
    ap.add_argument("--prior", type=float, default=0.5)
    ap.add_argument("--max-rule", type=float, default=3.0)
    args = ap.parse_args()
    binary = os.path.join(os.path.abspath(args.bin), "sluice-spam")
    corpus = bench_spam.fetch_corpus(args.cache)
    tmp = tempfile.mkdtemp(prefix="sluice-spam-fit-")
    halves = [{"spam": os.path.join(tmp, "h%d" % i, "spam"), "ham": os.path.join(tmp, "h%d" % i, "ham")}
              for i in (0, 1)]
    lists = [[], []]
    for h in halves:
        for d in h.values():
            os.makedirs(d)
    for name, path, spam in corpus:
        if bench_spam.is_test(name):
            continue
        i = hashlib.sha256(b"sluice-spam-fit" + name.encode()).digest()[0] & 1
        os.symlink(path, os.path.join(halves[i]["spam" if spam else "ham"], name))
        lists[i].append((path, spam))
    data = score_fold(binary, os.path.join(tmp, "f0"), halves[0], lists[1]) + \
        score_fold(binary, os.path.join(tmp, "f1"), halves[1], lists[0])
    cur = rule_scores()
    cur.update({"BAYES_50": 1.0, "BAYES_60": 2.2, "BAYES_80": 3.0, "BAYES_95": 3.6, "BAYES_99": 3.8,
                "BAYES_999": 5.0})   # spam_bayes.c's defaults (docs/SPAM-BAYES.md)
    print("current scores: %s" % evaluate(data, {}))
    new = fit(data, cur, args.ham_weight, args.prior, args.max_rule)
    print("fitted scores:  %s" % evaluate(data, new))
    for k in sorted(new):
        if abs(new[k] - cur.get(k, 0.0)) >= 0.1:
            print("score %-26s %5.1f  (now %.1f)" % (k, new[k], cur.get(k, 0.0)))
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
