"""sluiced's processes free what they allocate: a whole life (start, a
message received and delivered, a reload, a stop) under LeakSanitizer
reports nothing, from the master, the receivers or the queue manager.

The suite runs the ASan build with detect_leaks=0 (most tests kill
processes mid-way); this test turns it on for one sluiced. It needs that
build (SLUICE_BIN=bin-asan, as `make integration` sets it).
"""
import os
import signal
import smtplib
import subprocess

import pytest

from conftest import BIN, wait_for


def asan_build():
    try:
        out = subprocess.run(["nm", "-D", os.path.join(BIN, "sluiced")], capture_output=True,
                             text=True).stdout
    except OSError:
        return False
    return "__asan_init" in out or "__lsan" in out


@pytest.mark.skipif(not asan_build(), reason="needs the ASan build (SLUICE_BIN=bin-asan)")
def test_sluiced_life_leaks_nothing(sluiced_factory, monkeypatch):
    # leaks fail the process with exit code 23 and a report on stderr
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
    s = sluiced_factory()
    s.start()
    with smtplib.SMTP("127.0.0.1", s.port, timeout=30) as c:
        c.sendmail("carol@example.org", ["alice@example.com"],
                   b"From: carol@example.org\r\nTo: alice@example.com\r\nSubject: leak\r\n\r\nbody\r\n")
    s.wait_delivered("alice", 1)
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload" in s.log_text(), what="the reload in the log")
    s.proc.send_signal(signal.SIGTERM)
    out, _ = s.proc.communicate(timeout=30)
    text = out.decode(errors="replace")
    assert "LeakSanitizer" not in text, text
    assert s.proc.returncode == 0, text
    assert "daemon stopped" in s.log_text()
