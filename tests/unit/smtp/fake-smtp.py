#!/usr/bin/python3
"""A scripted SMTP/LMTP server for tests/unit/test-smtp.c.

    fake-smtp.py SCENARIO_JSON RECORD_FILE

Listens on 127.0.0.1 (a free port; printed on stdout, then a newline) and
serves connections one after the other.  The n-th connection follows
scenario["conns"][n] (the last one repeats).  A connection's keys, all
optional:

    greeting   "220 fake ESMTP"        the first reply
    lmtp       false                   expect LHLO instead of EHLO
    caps       ["8BITMIME", "SIZE 100000", "PIPELINING"]
    auth       {"user": u, "pass": p}  235 when they match, else 535
               (PLAIN, LOGIN; XOAUTH2 and OAUTHBEARER with p as the
               token, a mismatch getting the JSON error challenge)
    mail       "250 2.1.0 ok"
    rcpt       {"addr": "550 ..."}     per recipient, default 250
    data       "354 go ahead"
    final      ["250 2.0.0 ok"]        replies after the data (LMTP: one
                                       per accepted recipient; the last
                                       one repeats)
    drop_after_data  false             close after the data, no reply

What it received goes to RECORD_FILE, one line per event, flushed:
    C<n> <command line>          every command line of connection n
    D<n> <hex>                   the raw bytes after 354, up to and
                                 including the final ".\\r\\n"
    O<n>                         connection n opened
    Q<n> <k>                     MAIL FROM was read with k more complete
                                 command lines already received behind it
                                 (PIPELINING: they came in the same write)

As RFC 2920 wants of a server that offers PIPELINING, RCPT TO after a
refused MAIL FROM gets 503, and DATA with no accepted recipient 554.
"""
import base64
import json
import socket
import sys


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def data(self):
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 3
                break
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                end = i + 5
                break
            start = max(0, len(self.buf) - 4)
            self.fill()
        raw, self.buf = self.buf[:end], self.buf[end:]
        return raw

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")


def serve(c, n, sc, rec):
    def log(kind, text):
        rec.write("%s%d %s\n" % (kind, n, text))
        rec.flush()

    c.send(sc.get("greeting", "220 fake ESMTP"))
    if not sc.get("greeting", "220").startswith("220"):
        return
    caps = sc.get("caps", ["8BITMIME", "SIZE 100000", "PIPELINING"])
    rcpts = []
    mail_ok = False
    finals = sc.get("final", ["250 2.0.0 ok"])
    while True:
        line = c.line()
        log("C", line.decode("latin-1"))
        verb = line.split(b" ", 1)[0].upper().decode("latin-1")
        if verb in ("EHLO", "LHLO", "HELO"):
            if (verb == "LHLO") != bool(sc.get("lmtp")):
                c.send("500 5.5.1 wrong greeting command")
                continue
            lines = ["fake.example"] + caps
            for cap in lines[:-1]:
                c.send("250-" + cap)
            c.send("250 " + lines[-1])
        elif verb == "AUTH":
            want = sc.get("auth", {})
            parts = line.decode("latin-1").split(" ")
            mech = parts[1].upper() if len(parts) > 1 else ""
            if mech == "PLAIN" and len(parts) > 2:
                raw = base64.b64decode(parts[2])
                ok = raw == b"\0" + want.get("user", "").encode() + \
                    b"\0" + want.get("pass", "").encode()
            elif mech in ("XOAUTH2", "OAUTHBEARER"):
                if len(parts) > 2:
                    resp = parts[2].encode()
                else:
                    c.send("334 ")
                    resp = c.line()
                    log("C", resp.decode("latin-1"))
                raw = base64.b64decode(resp)
                user = want.get("user", "").encode()
                tail = b"auth=Bearer " + want.get("pass", "").encode() + \
                    b"\1\1"
                if mech == "XOAUTH2":
                    ok = raw == b"user=" + user + b"\1" + tail
                else:
                    ok = raw.startswith(b"n,a=" + user + b",\1") and \
                        raw.endswith(b"\1" + tail)
                if not ok:
                    err = b'{"status":"401","error":"invalid_token"}'
                    c.send("334 " + base64.b64encode(err).decode())
                    log("C", c.line().decode("latin-1"))
            elif mech == "LOGIN":
                c.send("334 VXNlcm5hbWU6")
                u = c.line()
                log("C", u.decode("latin-1"))
                c.send("334 UGFzc3dvcmQ6")
                p = c.line()
                log("C", p.decode("latin-1"))
                ok = base64.b64decode(u) == want.get("user", "").encode() \
                    and base64.b64decode(p) == want.get("pass", "").encode()
            else:
                ok = False
            c.send("235 2.7.0 ok" if ok else "535 5.7.8 bad credentials")
        elif verb == "MAIL":
            rcpts = []
            log("Q", str(c.buf.count(b"\r\n")))
            reply = sc.get("mail", "250 2.1.0 ok")
            mail_ok = reply.startswith("2")
            c.send(reply)
        elif verb == "RCPT":
            addr = line.decode("latin-1").split("<", 1)[-1].split(">")[0]
            reply = sc.get("rcpt", {}).get(addr, "250 2.1.5 ok")
            if not mail_ok:
                reply = "503 5.5.1 MAIL first"
            if reply.startswith("2"):
                rcpts.append(addr)
            c.send(reply)
        elif verb == "DATA":
            reply = sc.get("data", "354 go ahead")
            if not rcpts:
                reply = "554 5.5.1 no valid recipients"
            c.send(reply)
            if not reply.startswith("354"):
                continue
            raw = c.data()
            log("D", raw.hex())
            if sc.get("drop_after_data"):
                return
            count = len(rcpts) if sc.get("lmtp") else 1
            for i in range(count):
                c.send(finals[min(i, len(finals) - 1)])
        elif verb == "RSET":
            rcpts = []
            c.send("250 2.0.0 ok")
        elif verb == "QUIT":
            c.send("221 2.0.0 bye")
            return
        else:
            c.send("502 5.5.2 unknown command")


def main():
    scenario = json.loads(sys.argv[1])
    rec = open(sys.argv[2], "a")
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(60)
    sys.stdout.write("%d\n" % ls.getsockname()[1])
    sys.stdout.flush()
    conns = scenario.get("conns", [{}])
    n = 0
    while True:
        try:
            s, _ = ls.accept()
        except socket.timeout:
            return
        s.settimeout(30)
        rec.write("O%d\n" % n)
        rec.flush()
        try:
            serve(Conn(s), n, conns[min(n, len(conns) - 1)], rec)
        except (EOFError, OSError):
            pass
        finally:
            s.close()
        n += 1


if __name__ == "__main__":
    main()
