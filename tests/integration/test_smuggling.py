"""SMTP smuggling: no fake end-of-DATA sequence may ever yield two messages."""

import json
import os

import pytest

from conftest import DATA, SmtpRaw, wait_for

SEQ_FILE = os.path.join(DATA, "smtp", "smuggling-eod-sequences.json")


def sequences():
    with open(SEQ_FILE) as f:
        seqs = json.load(f)["sequences"]
    assert len(seqs) >= 12
    return [(s["name"], bytes.fromhex(s["hex"])) for s in seqs]


@pytest.mark.parametrize("policy", ["reject", "normalize"])
def test_no_sequence_yields_two_messages(sluiced_factory, policy):
    s = sluiced_factory("smtpd_forbid_bare_newline = " + policy).start()
    results = {}
    for name, seq in sequences():
        c = SmtpRaw("127.0.0.1", s.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.net>")
        c.cmd("RCPT TO:<alice@example.com>")
        assert c.cmd("DATA")[0] == 354
        # a vulnerable server sees two transactions: the outer one ended by the fake
        # sequence and the smuggled one ended by the real <CRLF>.<CRLF>
        smuggled = (b"MAIL FROM:<admin@example.net>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                    b"Subject: smuggled " + name.encode() + b"\r\n\r\nevil\r\n.\r\n")
        c.send(b"Subject: outer " + name.encode() + b"\r\n\r\nbody" + seq + smuggled)
        replies = []
        while True:
            code, text = c.reply()
            if code is None:
                break
            replies.append(code)
            if code != 250 or len(replies) >= 1:
                break
        # one reply for the whole thing: 250 (everything was content) or a 5xx reject
        assert len(replies) == 1, (name, replies)
        results[name] = replies[0]
        if replies[0] == 250:
            # nothing more may come: the smuggled commands were content
            c.send(b"NOOP\r\n")
            assert c.reply()[0] == 250, name
        c.close()
    accepted = [n for n, code in results.items() if code == 250]
    for name, seq in sequences():
        bare = any((b == 0x0a and (i == 0 or seq[i - 1] != 0x0d)) or
                   (b == 0x0d and (i + 1 == len(seq) or seq[i + 1] != 0x0a)) for i, b in enumerate(seq))
        if policy == "reject" and bare:
            assert results[name] == 521, (name, results[name])   # Postfix: bare <LF> received
        else:
            assert results[name] == 250, (name, results[name])   # all of it was content
    wait_for(lambda: len(s.delivered("alice")) == len(accepted), what="outer messages")
    # bob never gets the smuggled message
    assert s.delivered("bob") == []
    for p in s.delivered("alice"):
        assert b"Subject: smuggled" in open(p, "rb").read()   # it stayed inside the outer body
    s.wait_queue_empty()
