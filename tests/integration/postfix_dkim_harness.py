"""postfix_dkim_harness: shared pieces of the sluice-dkim integration tests
(test_dkim_sluiced.py, test_dkim_postfix.py).

Owns: key pairs made by `sluice keygen` and their zone lines, one
sluice-dkim process per SluiceDkim (tests/fixtures/filterd.py's FilterDaemon),
dkimpy helpers (sign, verify with the zone's records), OpenDKIM as a
reference signer (driven by miltertest), and opendkim-testmsg run inside a
private network namespace whose system resolver is our test DNS server.
The private Postfix itself is tests/fixtures/postfix.py (not ours).

Run as a script (inside `unshare --net --mount`, see opendkim_testmsg_netns):
    postfix_dkim_harness.py testmsg ZONEFILE MSG...
prints one JSON line {msg: [rc, output]}.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
import filterd  # noqa: E402  (tests/fixtures)

BIN = filterd.BIN
PY = "/usr/bin/python3"


free_port = filterd.free_port
milter_socket_up = filterd.socket_up   # unix:/path, local:/path, inet:host:port, inet:port@host


# ---------------------------------------------------------------- keys

class Key:
    """One key pair from `sluice keygen`: .domain .selector .private (path)
    .record (TXT value, bytes) .zone (absolute zone line) .alg."""

    def __init__(self, domain, selector, private, txt_path, alg):
        self.domain, self.selector, self.private, self.alg = domain, selector, private, alg
        text = open(txt_path).read()
        strings = re.findall(r'"([^"]*)"', text)
        assert strings and all(len(s) <= 255 for s in strings), text
        self.record = "".join(strings).encode()
        self.zone = "%s._domainkey.%s. 300 IN TXT %s\n" % (
            selector, domain, " ".join('"%s"' % s for s in strings))
        self.dnsname = ("%s._domainkey.%s." % (selector, domain)).encode()

    def pem(self):
        return open(self.private, "rb").read()

    def dkimpy_private(self):
        """The key as dkimpy's sign() wants it (PEM for RSA, base64 seed for Ed25519)."""
        if self.alg == "rsa":
            return self.pem()
        der = base64.b64decode(b"".join(l for l in self.pem().splitlines() if not l.startswith(b"-----")))
        return base64.b64encode(der[-32:])   # PKCS#8 Ed25519: the seed is the last 32 bytes


def keygen(directory, domain, selector, alg="both"):
    """`sluice keygen`; returns [Key] (RSA first; with both, Ed25519 uses SELECTOR-ed25519)."""
    os.makedirs(directory, exist_ok=True)
    r = subprocess.run([os.path.join(BIN, "sluice"), "keygen", "-d", domain, "-s", selector, "-a", alg,
                        "-D", str(directory)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = []
    if alg in ("rsa", "both"):
        keys.append(Key(domain, selector, os.path.join(directory, selector + ".private"),
                        os.path.join(directory, selector + ".txt"), "rsa"))
    if alg in ("ed25519", "both"):
        s = selector + "-ed25519" if alg == "both" else selector
        keys.append(Key(domain, s, os.path.join(directory, s + ".private"),
                        os.path.join(directory, s + ".txt"), "ed25519"))
    for k in keys:
        assert os.stat(k.private).st_mode & 0o777 == 0o600
    return keys


def dnsfunc_for(keys):
    recs = {k.dnsname: k.record for k in keys}
    return lambda name, timeout=5: recs.get(name, b"")


def dkimpy_verify_all(msg, keys):
    """[bool per DKIM-Signature] by dkimpy with the keys' records as DNS."""
    import dkim
    msg = crlf(msg)
    n = len(re.findall(rb"(?mi)^DKIM-Signature:", header_block(msg)))
    out = []
    for i in range(n):
        try:
            out.append(dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc_for(keys)))
        except dkim.DKIMException:
            out.append(False)
    return out


def dkimpy_sign(msg, key, headers=(b"From", b"To", b"Subject", b"Date", b"Message-ID")):
    import dkim
    alg = b"rsa-sha256" if key.alg == "rsa" else b"ed25519-sha256"
    return dkim.sign(crlf(msg), key.selector.encode(), key.domain.encode(), key.dkimpy_private(),
                     signature_algorithm=alg, include_headers=list(headers),
                     canonicalize=(b"relaxed", b"relaxed")) + crlf(msg)


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def header_block(msg):
    msg = msg.replace(b"\r\n", b"\n")
    return msg.split(b"\n\n", 1)[0] + b"\n"


def headers(msg, name):
    """Unfolded values of every header `name` in msg (bytes -> [str])."""
    out = []
    for h in re.split(r"\n(?![ \t])", header_block(msg).decode(errors="replace")):
        n, _, v = h.partition(":")
        if n.strip().lower() == name.lower():
            out.append(re.sub(r"\s+", " ", v).strip())
    return out


def sig_tags(value):
    return {k.strip(): v.strip() for k, _, v in (t.partition("=") for t in value.split(";")) if k.strip()}


# ---------------------------------------------------------------- sluice-dkim

def socket_spec(tmp, kind):
    """A dkim_socket value: "unix" -> unix:TMP/dkim.sock, "inet" -> a free loopback port."""
    return filterd.socket_spec(tmp, kind, "dkim")


class SluiceDkim(filterd.FilterDaemon):
    """sluice-dkim -c CONF -f. conf_path: an existing sluice.conf (e.g. the
    one sluiced reads: they share it) to which dkim lines are appended, or
    None to write a fresh one in tmp. socket: "unix" or "inet"."""

    def __init__(self, tmp, dkim_conf, socket_kind="unix", conf_path=None, dns=None, umask=None):
        super().__init__("dkim", tmp, dkim_conf, socket_kind, conf_path=conf_path, dns=dns, umask=umask)


# ---------------------------------------------------------------- OpenDKIM as a signer

def opendkim_sign(tmp, key, msg):
    """DKIM-Signature made by Debian's OpenDKIM (Mode s, driven by miltertest)
    for msg (bytes); returns the signed message (CRLF)."""
    tmp = str(tmp)
    sock = os.path.join(tmp, "od.sock")
    conf = os.path.join(tmp, "od.conf")
    with open(conf, "w") as f:
        f.write("\n".join(["Syslog no", "Background no", "Mode s", "Domain " + key.domain,
                           "Selector " + key.selector, "KeyFile " + key.private,
                           "Canonicalization relaxed/relaxed", "SignatureAlgorithm rsa-sha256",
                           "Socket unix:" + sock, "PidFile %s/od.pid" % tmp, "UserID root",
                           "RequireSafeKeys no", "InternalHosts 127.0.0.1"]) + "\n")
    msg = crlf(msg)
    head, body = msg.split(b"\r\n\r\n", 1)
    hdrs = [h.split(b":", 1) for h in re.split(rb"\r\n(?![ \t])", head)]
    lua = ['conn = mt.connect("unix:%s", 100, 0.05)' % sock,
           'if conn == nil then error("no milter") end',
           'mt.conninfo(conn, "localhost", "127.0.0.1")',
           'mt.macro(conn, SMFIC_MAIL, "i", "ODQID")',
           'mt.mailfrom(conn, "<sender@%s>")' % key.domain]
    q = lambda b: '"' + "".join("\\%03d" % c for c in b) + '"'   # Lua decimal escapes: exact bytes
    for n, v in hdrs:
        lua.append("mt.header(conn, %s, %s)" % (q(n), q(v.lstrip(b" "))))
    lua += ["mt.eoh(conn)", "mt.bodystring(conn, %s)" % q(body), "mt.eom(conn)",
            'print("DKIM-Signature:" .. mt.getheader(conn, "DKIM-Signature", 0))',
            "mt.disconnect(conn)"]
    script = os.path.join(tmp, "sign.lua")
    with open(script, "w") as f:
        f.write("\n".join(lua) + "\n")
    od = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", conf], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    try:
        r = subprocess.run(["miltertest", "-s", script], capture_output=True, timeout=30)
    finally:
        od.terminate()
        try:
            od.wait(timeout=10)
        except subprocess.TimeoutExpired:
            od.kill()
            od.wait()
    out = r.stdout.decode(errors="replace")
    m = re.search(r"DKIM-Signature:.*", out, re.S)
    assert r.returncode == 0 and m, out + r.stderr.decode(errors="replace")
    sig = m.group(0).strip().replace("\r\n", "\n").replace("\n", "\r\n")
    return sig.encode() + b"\r\n" + msg


# ---------------------------------------------------------------- opendkim-testmsg in a namespace

def opendkim_testmsg_netns(zone_text, messages, tmp):
    """opendkim-testmsg on each message (bytes), with the system resolver =
    our DNS server serving zone_text: run in a private network + mount
    namespace (loopback only). Returns [(rc, output)]."""
    tmp = str(tmp)
    zf = os.path.join(tmp, "testmsg.zone")
    with open(zf, "w") as f:
        f.write(zone_text)
    paths = []
    for i, m in enumerate(messages):
        p = os.path.join(tmp, "testmsg.%d.eml" % i)
        with open(p, "wb") as f:
            f.write(m.replace(b"\r\n", b"\n"))
        paths.append(p)
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", PY,
                        os.path.abspath(__file__), "testmsg", zf] + paths,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return [tuple(res[p]) for p in paths]


def _testmsg_main(zf, paths):
    from dnsserver import DnsServer
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fd, rc_path = tempfile.mkstemp(prefix="resolv.")
    with os.fdopen(fd, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", rc_path, "/etc/resolv.conf"], check=True)
    out = {}
    try:
        with DnsServer(open(zf).read(), port=53):
            for p in paths:
                with open(p, "rb") as f:
                    r = subprocess.run(["opendkim-testmsg"], stdin=f, capture_output=True, timeout=60)
                out[p] = [r.returncode, (r.stdout + r.stderr).decode(errors="replace")]
    finally:
        subprocess.run(["umount", "/etc/resolv.conf"])
        os.unlink(rc_path)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "testmsg":
        _testmsg_main(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: postfix_dkim_harness.py testmsg ZONEFILE MSG...")
