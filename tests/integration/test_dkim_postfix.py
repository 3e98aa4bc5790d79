"""sluice-dkim behind a REAL Postfix (Debian's 3.7, private instance from
tests/fixtures/postfix.py), smtpd_milters over unix and inet sockets, keys
from `sluice keygen` on a real DNS server on loopback.

Proves the core checks of issue 4 with Postfix's milter client (not ours):
outgoing dual signatures verify (dkimpy, opendkim-testmsg), incoming dkimpy
and OpenDKIM signatures pass, tampering fails with the reason, forged
Authentication-Results with our authserv-id are removed, and a DNS timeout
becomes Postfix's 451 4.7.5 at end of data."""

import os
import re

import pytest

from filterd import postfix_stack, smtp_send
from postfix_dkim_harness import (SluiceDkim, dkimpy_sign, dkimpy_verify_all, headers, opendkim_sign,
                                  opendkim_testmsg_netns, sig_tags, socket_spec)
from test_dkim_sluiced import IN_MSG, OUT_MSG, dns, keys, simple_signing, zone  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix needs root")


@pytest.fixture(scope="module", params=["unix", "inet"])
def pfstack(request, keys, dns):
    yield from postfix_stack("sluice-dkim-pf-", lambda tmp: SluiceDkim(
        tmp, simple_signing(keys), socket_spec(tmp, request.param), dns=dns, umask=0))


def send(pf, body, source, rcpt="bob@example.com", sender="alice@example.com"):
    return smtp_send(pf.port, body, source, rcpt, sender)


def read(p):
    return open(p, "rb").read()


def test_postfix_outgoing_dual_signed(pfstack, keys, zone, tmp_path):
    pf, dk = pfstack
    code, text = send(pf, OUT_MSG % (7, 7), "127.0.0.1", rcpt="sue@example.com")
    assert code == 250, text
    (p,) = pf.wait_delivered("sue@example.com", 1)
    data = read(p)
    sigs = [sig_tags(v) for v in headers(data, "DKIM-Signature")]
    assert sorted(t["a"] for t in sigs) == ["ed25519-sha256", "rsa-sha256"], sigs
    assert dkimpy_verify_all(data, [keys["out_rsa"], keys["out_ed"]]) == [True, True], data
    ((rc, out),) = opendkim_testmsg_netns(zone, [data], tmp_path)
    assert rc == 0, out
    os.unlink(p)


def test_postfix_incoming_pass_fail_forged_and_dns_timeout(pfstack, keys, tmp_path):
    pf, dk = pfstack
    rsa = dkimpy_sign(IN_MSG, keys["in_rsa"])
    cases = [
        ("ed", dkimpy_sign(IN_MSG, keys["in_ed"]), r"dkim=pass .*header\.d=example\.org .*header\.a=ed25519-sha256"),
        ("od", opendkim_sign(tmp_path, keys["od"], IN_MSG.replace(b"example.org", b"example.net")),
         r"dkim=pass .*header\.d=example\.net .*header\.a=rsa-sha256 header\.s=od"),
        ("body", rsa.replace(b"Hello from", b"Bye from"), r'dkim=fail reason="body hash did not verify"'),
        ("hdr", rsa.replace(b"Subject: incoming", b"Subject: edited"),
         r'dkim=fail reason="signature verification failed"'),
        ("forged", b"Authentication-Results: mx.test; dkim=pass header.d=paypal.com\r\n" + rsa,
         r"dkim=pass \(2048-bit key.*header\.d=example\.org .*header\.a=rsa-sha256"),
    ]
    for name, body, rx in cases:
        code, text = send(pf, body, "127.0.0.2", rcpt="carol@example.com")
        assert code == 250, (name, text)
        files = pf.wait_delivered("carol@example.com", 1)
        assert len(files) == 1, files
        data = read(files[0])
        ours = [v for v in headers(data, "Authentication-Results") if v.startswith("mx.test;")]
        assert len(ours) == 1 and re.search(rx, ours[0]), (name, ours)
        assert b"paypal.com" not in data
        for p in files:
            os.unlink(p)
    slow = dkimpy_sign(IN_MSG.replace(b"example.org", b"slow.example.org"), keys["slow"])
    code, text = send(pf, slow, "127.0.0.2", rcpt="carol@example.com")
    assert code == 451 and "4.7.5" in text, text
