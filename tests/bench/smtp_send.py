#!/usr/bin/python3
"""smtp_send: smtp-source's job with a given message file (smtp-source only
sends generated text, so it cannot carry a DKIM-Signature).

SESSIONS threads, each opening one SMTP session per message (like
smtp-source without -d) from SOURCE, sending FILE (LF or CRLF lines, dot-
stuffed here) until COUNT messages are accepted in all. Exit 0 when every
message got 250 after DATA, 1 otherwise (the first bad reply on stderr).

Usage: smtp_send.py -s SESSIONS -m COUNT -f FROM -t TO -b SOURCE -F FILE HOST:PORT
"""

import argparse
import socket
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-s", type=int, default=1)
    ap.add_argument("-m", type=int, default=100)
    ap.add_argument("-f", required=True)
    ap.add_argument("-t", required=True)
    ap.add_argument("-b", default="127.0.0.1", help="source address")
    ap.add_argument("-F", required=True, help="message file")
    ap.add_argument("target")
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    raw = open(a.F, "rb").read().replace(b"\r\n", b"\n")
    lines = [b"." + ln if ln.startswith(b".") else ln for ln in raw.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"\r\n".join(lines) + b"\r\n.\r\n"
    envelope = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (a.f.encode(), a.t.encode())
    left = [a.m]
    lock = threading.Lock()
    failed = []

    def take():
        with lock:
            if left[0] <= 0 or failed:
                return False
            left[0] -= 1
            return True

    def one():
        s = socket.create_connection((host, int(port)), 60, source_address=(a.b, 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line:
                    raise OSError("connection closed")
                if line[3:4] != b"-":
                    return int(line[:3]), line
        try:
            for expect, send in ((220, b"EHLO bench.test\r\n"), (250, envelope)):
                code, line = reply()
                if code != expect:
                    raise OSError("got %r" % line)
                s.sendall(send)
            for expect in (250, 250, 354):
                code, line = reply()
                if code != expect:
                    raise OSError("got %r" % line)
            s.sendall(body)
            code, line = reply()
            if code != 250:
                raise OSError("end of data: %r" % line)
            s.sendall(b"QUIT\r\n")
        finally:
            s.close()

    def worker():
        while take():
            try:
                one()
            except OSError as e:
                with lock:
                    failed.append(str(e))

    ts = [threading.Thread(target=worker) for _ in range(a.s)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failed:
        print("smtp_send: %d failures, first: %s" % (len(failed), failed[0]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
