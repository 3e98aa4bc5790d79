"""`sluice report` on a terminal: a progress line on stderr for long inputs
when stderr is a terminal (a pty here), none when it is not; the report on
stdout is the same either way."""

import os
import pty
import subprocess

import pytest

from test_report import report  # noqa: F401  (fixture)

LINE = ("Dec  2 08:44:02 mx postfix/smtpd[1043]: connect from mail.example.org[192.0.2.9]\n")


def run(argv, stderr_tty):
    """(exit code, stdout, stderr) with stderr on a pty or a pipe."""
    if not stderr_tty:
        p = subprocess.run(argv, capture_output=True, timeout=120, env=dict(os.environ, TZ="UTC"))
        return p.returncode, p.stdout, p.stderr
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, TZ="UTC"))
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the child closed the pty
            break
        if not chunk:
            break
        err += chunk
    out = p.stdout.read()
    p.wait(120)
    os.close(master)
    return p.returncode, out, err


@pytest.mark.parametrize("jobs,gz", [("1", False), ("2", False), ("3", True)],
                         ids=["one-pass", "parts", "gzip-reader-and-workers"])
def test_progress_line_only_on_a_terminal(report, tmp_path, jobs, gz):  # noqa: F811
    """Each way sluice report reads (one pass; a plain file in parts; a
    gzip'd one by a reader and parsing workers) prints the progress line on
    a terminal only, and the same report either way."""
    log = tmp_path / "maillog"
    with open(log, "w") as f:
        f.write(LINE * 200000)   # 16 MB: past the 65536-line step, and parts of 1 MiB or more
    if gz:
        subprocess.run(["gzip", str(log)], check=True)
        log = tmp_path / "maillog.gz"
    argv = [*report, "--jobs", jobs, "--format", "json", str(log)]
    rc, out_tty, err_tty = run(argv, True)
    assert rc == 0, err_tty
    assert b"\rsluice report: " in err_tty and b"200000 lines" in err_tty, err_tty[-500:]
    assert err_tty.rstrip().endswith(b"MB"), err_tty[-200:]
    rc, out, err = run(argv, False)
    assert rc == 0 and err == b"", err
    assert out == out_tty and b'"connections": 200000' in out


def test_stdin_from_a_file_in_parts(report, tmp_path):  # noqa: F811
    """`sluice report - < maillog`: stdin is then a regular file, read in
    parts by several threads through descriptors that share one offset; each
    part must read its own bytes (pread), and the report be the one pass's."""
    log = tmp_path / "maillog"
    with open(log, "w") as f:
        for i in range(60000):   # ~5 MB: parts of 1 MiB or more for 3 threads
            f.write("Dec  2 08:44:%02d mx postfix/smtpd[1043]: connect from c%d.example.org[192.0.2.%d]\n"
                    % (i % 60, i % 500, i % 250))
            f.write("Dec  2 08:44:%02d mx postfix/smtpd[1043]: %010X: client=c%d.example.org[192.0.2.%d]\n"
                    % (i % 60, i, i % 500, i % 250))
    outs = []
    for jobs in ("1", "3"):
        with open(log, "rb") as stdin:
            p = subprocess.run([*report, "--jobs", jobs, "--format", "json", "-"], stdin=stdin,
                               capture_output=True, timeout=120, env=dict(os.environ, TZ="UTC"))
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout)
    assert outs[0] == outs[1]
    assert b'"connections": 60000' in outs[0] and b'"received": 60000' in outs[0]
