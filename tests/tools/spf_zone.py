#!/usr/bin/python3
"""spf_zone: an openspf-style YAML scenario as a zone for a real DNS server.

Used by tests/integration/test_spf_suites.py (and test_spf_diff.py). The
data model follows tests/tools/spf_suite.py (pyspf's test driver): SPF-type
records are served as TXT unless the owner lists TXT itself, "NONE" is an
entry without a record, names are case-insensitive.

scenario_zone(doc) -> Zone with
  .text        RFC 1035 master-file text for the root zone (absolute names,
               \\DDD escapes for every byte outside [A-Za-z0-9-_.], TXT bytes
               outside printable ASCII and " \\ escaped)
  .timeouts    owners marked TIMEOUT: served by unbound as local-data under
               a "deny" local-zone, so types that have a record answer and
               every other type is dropped (the client times out)
  .local_data  {owner: [rr text]} for those owners
  .transparent names below a TIMEOUT owner that have data of their own
  .skipped     [(owner, why)] records a zone file cannot express
"""
import ipaddress


def _esc_name(name):
    name = str(name)
    if name.endswith(".") and name != ".":
        name = name[:-1]
    out = []
    for b in name.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_."):
            out.append(c)
        else:
            out.append("\\%03d" % b)
    return "".join(out) + "."


def _esc_txt(s):
    out = ['"']
    for b in str(s).encode("utf-8"):
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\%03d" % b)
    out.append('"')
    return "".join(out)


class Zone:
    def __init__(self):
        self.lines = []
        self.timeouts = []
        self.local_data = {}
        self.transparent = []
        self.skipped = []

    @property
    def text(self):
        return "\n".join(self.lines) + "\n"


def _rr_texts(owner, records, skipped):
    has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
    name = _esc_name(owner)
    out = []
    for rec in records:
        if rec == "TIMEOUT" or not isinstance(rec, dict):
            continue
        for rtype, value in rec.items():
            if value == "NONE":
                continue
            if rtype == "SPF" and has_txt:
                continue
            if rtype in ("SPF", "TXT"):
                strings = value if isinstance(value, (list, tuple)) else [value]
                if not strings:
                    skipped.append((owner, "TXT RR with zero strings"))
                    continue
                out.append("%s 300 IN TXT %s" % (name, " ".join(_esc_txt(s) for s in strings)))
            elif rtype == "A":
                ipaddress.IPv4Address(str(value))
                out.append("%s 300 IN A %s" % (name, value))
            elif rtype == "AAAA":
                out.append("%s 300 IN AAAA %s" % (name, ipaddress.IPv6Address(str(value))))
            elif rtype == "MX":
                pref, host = value
                host = str(host)
                out.append("%s 300 IN MX %d %s" % (name, int(pref), _esc_name(host) if host not in ("", ".") else "."))
            elif rtype in ("PTR", "CNAME"):
                target = str(value)
                out.append("%s 300 IN %s %s" % (name, rtype, _esc_name(target) if target not in ("", ".") else "."))
            else:
                raise ValueError("unknown RR type %r at %s" % (rtype, owner))
    return out


def scenario_zone(doc):
    z = Zone()
    data = doc.get("zonedata") or {}
    owners = {str(o).rstrip(".").lower(): (str(o), recs or []) for o, recs in data.items()}
    for key, (owner, recs) in owners.items():
        rrs = _rr_texts(owner, recs, z.skipped)
        if "TIMEOUT" in recs:
            z.timeouts.append(owner)
            z.local_data[owner] = rrs
        else:
            z.lines.extend(rrs)
            if not rrs:
                # the name exists (NODATA, not NXDOMAIN): a harmless RR type
                z.lines.append("%s 300 IN HINFO \"sluice\" \"test\"" % _esc_name(owner))
    for key in owners:
        for t in z.timeouts:
            tk = t.rstrip(".").lower()
            if key != tk and key.endswith("." + tk):
                z.transparent.append(owners[key][0])
    return z


def unbound_extra(z):
    """unbound.conf server: lines for TIMEOUT owners (deny + local-data)."""
    lines = []
    for t in z.timeouts:
        lines.append('  local-zone: "%s" deny' % _esc_name(t))
        for rr in z.local_data.get(t, []):
            lines.append("  local-data: '%s'" % rr)
    for n in z.transparent:
        lines.append('  local-zone: "%s" transparent' % _esc_name(n))
    return lines


def dns_server(z, **kw):
    """A started tests/fixtures/dnsserver.DnsServer serving z (Zone)."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "fixtures"))
    from dnsserver import DnsServer

    extra = unbound_extra(z)

    class SpfDnsServer(DnsServer):
        def _conf_file(self, zone_path):
            path = super()._conf_file(zone_path)
            with open(path) as f:
                text = f.read()
            text = text.replace("auth-zone:\n", "\n".join(extra) + "\nauth-zone:\n", 1)
            with open(path, "w") as f:
                f.write(text)
            return path

    return SpfDnsServer(z.text, **kw)
