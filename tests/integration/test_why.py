"""sluice why on real traffic: sluiced with a milter (sluice-spam, logging into
sluiced's maillog_file) and a policy service (sluice-ratelimit, its own log
file), one module-scoped run:

  ok     delivered to alice (spam: no_action; ratelimit counted it)
  spam   refused at end of DATA by sluice-spam (550)
  rcpt   three recipients, the third refused at RCPT by the ratelimit rule
         RCPT, the other two delivered
  (none) the sender over the MSGS rule at its first RCPT: no queue id

`sluice why QID LOGS...` names the deciding filter and decision for each,
joins the policy server's NOQUEUE line through sluiced's "policy instance="
line, --json parses, a selector finds the NOQUEUE reject, -c finds the log."""

import gzip
import json
import os
import re
import subprocess

import pytest

from conftest import BIN, Sluiced, SmtpRaw, wait_for
from filterd import FilterDaemon, socket_spec
from test_ratelimit_driver import RlDaemon

SLUICE = os.path.join(BIN, "sluice")

SPAM_RULES = """
body     T_REJECT_ME   /reject-me-please/
score    T_REJECT_ME   20
describe T_REJECT_ME   Test: enough for a reject
"""

RL_RULES = """\
id=RCPT; protocol_state==RCPT; sender=~^many@; action=rcpt(sender/3/3600/REJECT 5.7.1 too many recipients)
id=MSGS; protocol_state==RCPT; sender=~^msgs@; action=rate(sender/1/3600/DEFER_IF_PERMIT 4.7.1 too many messages)
"""


class Spam(FilterDaemon):
    def __init__(self, tmp, spec, conf_path):
        rules = os.path.join(str(tmp), "why_rules.cf")
        with open(rules, "w") as f:
            f.write(SPAM_RULES)
        super().__init__("spam", tmp, "mynetworks = 127.0.0.1/32\n", spec, conf_path=conf_path,
                         extra=["spam_rules_files = " + rules,
                                "spam_bayes_db = %s/bayes.lmdb" % str(tmp)])


def send(s, sender, rcpts, body=b"Subject: hi\r\n\r\nhello\r\n"):
    """One message from 127.0.0.2; -> (accepted rcpts, end-of-data reply or None)."""
    c = SmtpRaw("127.0.0.1", s.port, source="127.0.0.2")
    try:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.test")[0] == 250
        assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        ok = [r for r in rcpts if c.cmd("RCPT TO:<%s>" % r)[0] == 250]
        if not ok:
            return ok, None
        assert c.cmd("DATA")[0] == 354
        c.send(body + b".\r\n")
        reply = c.reply()
        c.cmd("QUIT")
        return ok, reply
    finally:
        c.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("why")
    rl = RlDaemon(tmp, RL_RULES).start()
    s = Sluiced(tmp, "smtpd_recipient_restrictions = reject_unauth_destination, "
                     "check_policy_service inet:127.0.0.1:%d\n" % rl.port)
    spec = socket_spec(tmp, "unix", "spam")
    with open(s.conf_path, "a") as f:
        f.write("smtpd_milters = %s\nmilter_default_action = tempfail\n" % spec)
    sp = Spam(tmp, spec, s.conf_path).start()
    try:
        s.start()
        out = {}
        ok, reply = send(s, "msgs@example.org", ["alice@example.com"])
        assert reply[0] == 250, reply
        out["ok"] = reply[1]
        ok, reply = send(s, "olga@example.org", ["bob@example.com"],
                         b"Subject: buy\r\n\r\nreject-me-please\r\n")
        assert reply[0] == 550, reply
        # nobody: unknown here (sluiced's own NOQUEUE reject, before the queue id);
        # carol: the fourth recipient over the RCPT rule (after it)
        ok, reply = send(s, "many@example.org", ["nobody@example.com", "alice@example.com",
                                                 "bob@example.com", "carol@example.com"])
        assert ok == ["alice@example.com", "bob@example.com"] and reply[0] == 250, (ok, reply)
        out["rcpt"] = reply[1]
        ok, reply = send(s, "msgs@example.org", ["carol@example.com"])
        assert ok == [] and reply is None
        s.wait_delivered("alice", 2)
        s.wait_delivered("bob", 1)
        wait_for(lambda: len(re.findall(r": removed$", s.log_text(), re.M)) >= 2, 30, "removed lines")
        wait_for(lambda: len(re.findall(r"milter=spam", s.log_text())) >= 3, 30, "spam lines")
    finally:
        # sluice-spam (libmilter) takes its listener's 5 s poll to stop: most of this module's time
        s.stop()
        sp.stop()
        rl.stop()
    log = s.log_text()

    def qid(reply_text):
        m = re.search(r"queued as (\S+)", reply_text)
        assert m, reply_text
        return m.group(1)
    spam_qid = re.search(r"(\S+): milter=spam action=reject", log)
    assert spam_qid, log
    return {"logs": [s.log, rl.log], "conf": s.conf_path, "ok": qid(out["ok"]),
            "rcpt": qid(out["rcpt"]), "spam": spam_qid.group(1)}


def why(*args, check=True):
    p = subprocess.run([SLUICE, "why", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


def decisions(text):
    return text.split("\ndecisions:\n", 1)[1].splitlines()


def test_delivered_message(run):
    out = why(run["ok"], *run["logs"]).stdout
    assert decisions(out) == ["  delivered <alice@example.com> by virtual (relay=virtual, dsn=2.0.0, "
                              "delay=%s s)" % re.search(r"to=<alice@example.com>, relay=virtual, delay=([^,]+),",
                                                        out).group(1)], out
    lines = out.splitlines()
    # sluice-spam's verdict (macro i) and sluice-ratelimit's NOQUEUE answer (joined by the
    # instance sluiced logged), the latter placed before the queue id was made
    spam = [i for i, l in enumerate(lines) if "sluice-spam[" in l and "milter=spam action=no_action" in l]
    rl = [i for i, l in enumerate(lines) if "sluice-ratelimit[" in l and "[joined by policy instance]" in l]
    client = [i for i, l in enumerate(lines) if ": client=unknown[127.0.0.2]" in l]
    assert len(spam) == 1 and len(rl) == 1 and len(client) == 1, out
    assert rl[0] < client[0] < spam[0], out


def test_spam_reject_from_the_configured_log(run):
    # no LOGFILE: maillog_file of -c FILE (sluice-spam logs into sluiced's log)
    out = why("-c", run["conf"], run["spam"]).stdout
    assert decisions(out) == ["  rejected at END-OF-MESSAGE by sluice-spam: score 20.00, required 6.00, "
                              "symbols T_REJECT_ME(20.00) (550 5.7.1 Message rejected as spam)"], out


def test_ratelimit_reject_json(run):
    doc = json.loads(why("--json", run["rcpt"], *run["logs"]).stdout)
    assert doc["queue_id"] == run["rcpt"]
    decs = {(d["decision"], d["recipient"]): d for d in doc["decisions"]}
    assert set(decs) == {("rejected", "nobody@example.com"), ("rejected", "carol@example.com"),
                         ("delivered", "alice@example.com"), ("delivered", "bob@example.com")}, decs
    rl = decs[("rejected", "carol@example.com")]
    assert (rl["stage"], rl["by"], rl["filter"], rl["rule"], rl["detail"]) == \
        ("RCPT", "sluice-ratelimit rule RCPT", "ratelimit", "RCPT", "4 recipients in 3600 s, limit 3"), rl
    assert rl["reply"].startswith("554 5.7.1 <carol@example.com>: Recipient address rejected"), rl
    own = decs[("rejected", "nobody@example.com")]
    assert own["by"] == "sluice/smtpd (its own restrictions)" and own["filter"] is None, own
    how = {e["matched_by"] for e in doc["events"]}
    assert how == {"queue_id", "instance", "session"}, doc["events"]
    times = [e["epoch"] for e in doc["events"]]
    assert all(isinstance(t, float) for t in times)
    assert [e for e in doc["events"] if e.get("filter") == "ratelimit" and e.get("action") == "reject"]


def test_noqueue_by_selector(run, tmp_path):
    out = why("--sender", "MSGS@example.org", *run["logs"]).stdout
    assert decisions(out)[0] == (
        "  temporarily rejected <carol@example.com> at RCPT by sluice-ratelimit rule MSGS: "
        "2 messages in 3600 s, limit 1 (450 4.7.1 <carol@example.com>: Recipient address rejected: "
        "4.7.1 too many messages (limit MSGS: 1 messages per 3600 s for sender=msgs@example.org, "
        "retry in 3600 s))"), out
    assert "messages with a queue id" in out and "  %s" % run["ok"] in out.splitlines(), out
    doc = json.loads(why("--json", "--client", "127.0.0.2", "--recipient", "carol@example.com",
                         *run["logs"]).stdout)
    assert doc["selector"] == {"client": "127.0.0.2", "recipient": "carol@example.com"}
    assert [d["rule"] for d in doc["decisions"]] == ["MSGS"], doc
    assert doc["messages"] == [run["rcpt"]], doc
    # NOQUEUE is not a queue id: the selectors are named; an unknown id finds nothing
    p = why("NOQUEUE", *run["logs"], check=False)
    assert p.returncode == 2 and "--client" in p.stderr
    p = why("ZZZZZZZZZZZZ", *run["logs"], check=False)
    assert p.returncode == 1 and "nothing found" in p.stderr
    # gzip'd and plain logs read the same
    gz = str(tmp_path / "maillog.gz")
    with open(run["logs"][0], "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    assert why(run["spam"], gz).stdout == why(run["spam"], run["logs"][0]).stdout
