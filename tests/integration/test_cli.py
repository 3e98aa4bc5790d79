"""The command-line tools as a user meets them: file errors name the path
and the reason (strerror), and `sluice keygen -D DIR` creates DIR."""

import os
import stat
import subprocess

from conftest import BIN


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
