#!/usr/bin/python3
"""spf_suite: turn an openspf-style YAML test suite into lines for C tests.

Usage: /usr/bin/python3 tests/tools/spf_suite.py SUITE.yml

Needs python3-yaml (Debian). Every free-form field is written as "x" + hex
of its UTF-8 bytes ("x" alone = empty), so names with spaces, NUL or
non-ASCII survive. One scenario (its own zone) at a time:

  scenario x<description>
  name x<owner>                           the owner exists (NODATA, not NXDOMAIN)
  rr x<owner> A <ipv4>
  rr x<owner> AAAA <ipv6>
  rr x<owner> MX <pref> x<host>
  rr x<owner> PTR x<target>
  rr x<owner> CNAME x<target>
  rr x<owner> TXT <nstrings> x<s1> x<s2> ...
  rr x<owner> TIMEOUT                     queries for types it has no RR of time out
  test x<name> x<host> x<mailfrom> x<helo> <result[,result...]> <x<explanation>|-> <x<header>|->
  end

Data model (as pyspf's test driver): type SPF records are not served (RFC
7208 uses TXT only) but are copied to TXT for an owner without any TXT
entry; "TXT: NONE" is an entry without a record. Owners and targets lose a
trailing dot. Tests are sorted by name for a stable order. The header (pyspf's
Received-SPF text, whitespace folded to single spaces) is only in the
pyspf-extra suite.
"""
import sys

import yaml


def hx(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return "x" + value.hex()


def strip_dot(name):
    name = str(name)
    return name[:-1] if name.endswith(".") and name != "." else name


def txt_strings(value):
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def owner_lines(owner, records):
    out = ["name %s" % hx(owner)]
    has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
    spf_copies = []
    for rec in records:
        if rec == "TIMEOUT":
            out.append("rr %s TIMEOUT" % hx(owner))
            continue
        for rtype, value in rec.items():
            if value == "NONE":
                continue
            if rtype == "SPF":
                if not has_txt:
                    spf_copies.append(value)
            elif rtype == "TXT":
                out.append(txt_line(owner, value))
            elif rtype in ("A", "AAAA"):
                out.append("rr %s %s %s" % (hx(owner), rtype, value))
            elif rtype == "MX":
                pref, host = value
                out.append("rr %s MX %d %s" % (hx(owner), int(pref), hx(strip_dot(host))))
            elif rtype in ("PTR", "CNAME"):
                out.append("rr %s %s %s" % (hx(owner), rtype, hx(strip_dot(value))))
            else:
                raise SystemExit("unknown RR type %r at %s" % (rtype, owner))
    out.extend(txt_line(owner, v) for v in spf_copies)
    return out


def txt_line(owner, value):
    strings = txt_strings(value)
    line = "rr %s TXT %d %s" % (hx(owner), len(strings), " ".join(hx(s) for s in strings))
    return line.rstrip()


def results(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def scenario_lines(doc):
    out = ["scenario %s" % hx(str(doc.get("description", "")))]
    for owner, records in (doc.get("zonedata") or {}).items():
        out.extend(owner_lines(strip_dot(owner), records or []))
    for name, t in sorted((doc.get("tests") or {}).items()):
        exp, header = t.get("explanation"), t.get("header")
        out.append("test %s %s %s %s %s %s %s" % (
            hx(name), hx(str(t["host"])), hx(str(t.get("mailfrom", ""))),
            hx(str(t.get("helo", ""))), results(t["result"]),
            "-" if exp is None else hx(str(exp)),
            "-" if header is None else hx(" ".join(str(header).split()))))
    out.append("end")
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: spf_suite.py SUITE.yml")
    with open(sys.argv[1], "rb") as fp:
        docs = list(yaml.safe_load_all(fp))
    for doc in docs:
        if doc:
            print("\n".join(scenario_lines(doc)))


if __name__ == "__main__":
    main()
