"""The command-line tools as a user meets them: every binary answers --help
(usage on stdout, exit 0) and --version ("<prog> (sluice) X.Y.Z" from
lib/version.h, exit 0); file errors name the path and the reason
(strerror); `sluice keygen -D DIR` creates DIR."""

import os
import re
import stat
import subprocess

import pytest

from conftest import BIN, REPO


def run(prog, *args, **kw):
    return subprocess.run([os.path.join(BIN, prog)] + list(args), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


def test_keygen_creates_a_missing_directory(tmp_path):
    d = tmp_path / "var" / "dkim"
    r = run("sluice", "keygen", "-d", "example.com", "-s", "sel", "-D", str(d))
    assert r.returncode == 0, r.stderr
    for p in (tmp_path / "var", d):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700, p
    assert stat.S_IMODE(os.stat(d / "sel.private").st_mode) == 0o600
    assert (d / "sel.txt").read_text().startswith("sel._domainkey\tIN\tTXT\t(")


def test_keygen_file_errors_say_why(tmp_path):
    (tmp_path / "file").write_text("")
    r = run("sluice", "keygen", "-d", "example.com", "-s", "sel", "-D", str(tmp_path / "file" / "keys"))
    assert r.returncode == 1
    assert "%s/file" % tmp_path in r.stderr and "Not a directory" in r.stderr, r.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.geteuid() != 0:      # root writes anyway
        r = run("sluice", "keygen", "-d", "example.com", "-s", "sel", "-D", str(ro))
        assert r.returncode == 1 and "%s/sel.private: cannot write: Permission denied" % ro in r.stderr
    r = run("sluice", "keygen", "--check", "-d", "example.com", "-s", "sel", "-k", str(tmp_path / "nokey"))
    assert r.returncode == 2
    assert "%s/nokey: cannot read: No such file or directory" % tmp_path in r.stderr, r.stderr


def write_conf(tmp_path, text):
    p = tmp_path / "sluice.conf"
    p.write_text(text)
    return str(p)


def test_tool_file_errors_name_path_and_reason(tmp_path):
    missing = str(tmp_path / "missing.conf")
    for args in (("check", "-c", missing), ("queue", "-c", missing), ("status", "-c", missing),
                 ("start", "-c", missing), ("params", "-c", missing)):
        r = run("sluice", *args)
        assert r.returncode != 0
        assert missing + ": cannot open: No such file or directory" in r.stderr, (args, r.stderr)
    r = run("sluice-sendmail", "-C", missing, "bob@example.com")
    assert r.returncode != 0
    assert missing + ": cannot open: No such file or directory" in r.stderr, r.stderr

    conf = write_conf(tmp_path, "queue_directory = nowhere/spool\nrun_directory = nowhere/run\n"
                      "maillog_file = %s/log\n" % tmp_path)
    r = run("sluice", "queue", "-c", conf)
    assert r.returncode == 1
    assert "queue_directory %s/nowhere/spool: No such file or directory" % tmp_path in r.stderr, r.stderr
    r = run("sluice", "status", "-c", conf)
    assert r.returncode == 1
    assert "%s/nowhere/run/sluice.pid: No such file or directory" % tmp_path in r.stdout, r.stdout
    r = run("sluice", "stop", "-c", conf)
    assert r.returncode == 1
    assert "%s/nowhere/run/sluice.pid: No such file or directory" % tmp_path in r.stderr, r.stderr
    r = run("sluice-sendmail", "-C", conf, "bob@example.com")
    assert r.returncode == 75
    assert ("cannot connect to %s/nowhere/spool/public/sendmail: No such file or directory" % tmp_path
            in r.stderr), r.stderr
    (tmp_path / "afile").write_text("")
    conf = write_conf(tmp_path, "run_directory = afile/run\nmaillog_file = %s/log\n" % tmp_path)
    r = run("sluice", "start", "-c", conf)
    assert r.returncode == 1
    assert "sluice.conf:1: run_directory %s/afile/run: Not a directory" % tmp_path in r.stderr, r.stderr


def version():
    text = open(os.path.join(REPO, "lib", "version.h")).read()
    return re.search(r'#define SLUICE_VERSION "([^"]+)"', text).group(1)


def binaries():
    """Every program in SLUICE_BIN (not the test helpers under tests/)."""
    try:
        names = sorted(os.listdir(BIN))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(BIN, n)) and os.access(os.path.join(BIN, n), os.X_OK)]


def test_the_usual_binaries_are_there():
    got = set(binaries())
    assert {"sluiced", "sluice", "sluice-sendmail"} <= got, got


@pytest.mark.parametrize("prog", binaries())
def test_version(prog):
    r = subprocess.run([os.path.join(BIN, prog), "--version"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "%s (sluice) %s\n" % (prog, version()), r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("prog", binaries())
def test_help(prog):
    r = subprocess.run([os.path.join(BIN, prog), "--help"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("usage: " + prog), r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("prog", [p for p in binaries() if p != "sluice-sendmail"])
def test_bad_option_is_usage_on_stderr(prog):
    r = subprocess.run([os.path.join(BIN, prog), "-Z"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "usage:" in r.stderr and r.stdout == ""
