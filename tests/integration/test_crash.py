"""250 means on disk: kill -9 in the middle of a load, restart, nothing lost or doubled."""

import os
import re
import smtplib
import subprocess
import threading
import time

from conftest import SmtpRaw, wait_for

SMTP_SOURCE = "/usr/sbin/smtp-source"


def tagged_sender(port, stop, acked, attempted):
    """Send uniquely tagged messages one by one; record which got a 250."""
    i = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                while not stop.is_set():
                    tag = "tag-%06d" % i
                    i += 1
                    attempted.add(tag)
                    c.sendmail("t@example.net", ["bob@example.com"],
                               ("Subject: %s\r\nX-Tag: %s\r\n\r\n%s\r\n" % (tag, tag, "x" * 2000)).encode())
                    acked.add(tag)
        except (OSError, smtplib.SMTPException):
            return


def received_ids(paths):
    ids = []
    for p in paths:
        head = open(p, "rb").read(4096)
        m = re.search(rb"with E?SMTPS? id ([0-9A-Za-z]+)", head)
        assert m, p
        ids.append(m.group(1))
    return ids


def test_kill9_during_load_loses_nothing(sluiced_factory):
    s = sluiced_factory("smtpd_workers = 2").start()
    stop = threading.Event()
    acked, attempted = set(), set()
    t = threading.Thread(target=tagged_sender, args=(s.port, stop, acked, attempted))
    t.start()
    src = subprocess.Popen([SMTP_SOURCE, "-s", "20", "-m", "1000", "-l", "10240", "-f", "load@example.net",
                            "-t", "alice@example.com", "127.0.0.1:%d" % s.port],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill in the middle: once some messages are delivered and more are arriving
    wait_for(lambda: len(s.delivered("alice")) >= 30, timeout=120, what="load under way")
    s.kill9()
    stop.set()
    src.wait(timeout=60)
    t.join(timeout=30)
    before = len(s.delivered("alice"))
    assert before < 1000, "the kill came too late to test anything"
    s.start()
    s.wait_queue_empty(timeout=120)
    alice = s.delivered("alice")
    bob = s.delivered("bob")
    # exactly once: every queue id appears once across all delivered files
    ids = received_ids(alice + bob)
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    # every tagged message that got a 250 is delivered, exactly once
    tags = {}
    for p in bob:
        m = re.search(rb"X-Tag: (tag-\d+)", open(p, "rb").read(4096))
        tags[m.group(1).decode()] = tags.get(m.group(1).decode(), 0) + 1
    missing = acked - set(tags)
    assert not missing, "acknowledged but lost: %s" % sorted(missing)[:10]
    assert all(n == 1 for n in tags.values())
    assert set(tags) <= attempted
    # nothing left behind in the queue
    assert not s.queue_files("incoming") and not s.queue_files("active")
    assert len(alice) <= 1000
