#!/usr/bin/python3
"""A scripted fake POP3 server for tests/unit/test-pop3.c (stdlib only).

USER/PASS, or AUTH PLAIN with an initial response, or AUTH XOAUTH2 and
AUTH OAUTHBEARER in the two-step form only (as Microsoft: the one-line
form is refused), --password being the token; a wrong token gets the
JSON error challenge, then -ERR.  Serves <dir>/<N> files (the exact message bytes, N = 1, 2, ...; UID
"uid-N") on 127.0.0.1, plain, a free port printed on stdout.  One
connection at a time.  Every line received is appended to --log (PASS
too: the tests check what was sent), plus event lines starting with '*':
  * QUEUED k      k more complete commands were already waiting when the
                  first RETR was answered (pipelining proof)
  * COMMIT 1,3    QUIT received: these messages were deleted
  * NOQUIT        the client closed the connection without QUIT
--quirk selects misbehaviour:
  uidl-zero uidl-gap uidl-range uidl-dup uidl-nonprint uidl-long
                 a bad UIDL listing (number 0, a number left out, a number
                 past the count, a repeated UID, a control byte, 71 chars)
  list-zero      LIST answers "0 100" first
  no-uidl        UIDL answers -ERR
  drop-retr=N    RETR N sends half the message, then closes
  err-retr=N     RETR N answers -ERR
  quit-err       QUIT answers -ERR (nothing deleted)
  in-use         PASS answers -ERR [IN-USE]
  pipeline-wait  before the first RETR reply, wait 0.3 s for more commands
Exits after --idle seconds without a connection.
"""
import argparse
import base64
import os
import socket
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--user", default="joe")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--caps", default="USER,UIDL,TOP")  # comma separated
    ap.add_argument("--quirk", action="append", default=[])
    ap.add_argument("--idle", type=float, default=30)
    return ap.parse_args()


def stuff(data):
    """Dot-stuffs data (lines end at LF) and adds the terminator."""
    lines = data.split(b"\n")  # bytes.splitlines() would split at CR
    out = b"\n".join(b"." + l if l.startswith(b".") else l for l in lines)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out + b".\r\n"


class Conn:
    def __init__(self, sock, args):
        self.sock = sock
        self.args = args
        self.buf = b""
        self.log = open(args.log, "ab", buffering=0)
        self.quirks = {}
        for q in args.quirk:
            k, _, v = q.partition("=")
            self.quirks[k] = v
        self.msgs = []
        n = 1
        while os.path.exists(os.path.join(args.dir, str(n))):
            self.msgs.append(os.path.join(args.dir, str(n)))
            n += 1
        self.deleted = set()
        self.retr_seen = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def readline(self):
        while b"\n" not in self.buf:
            try:
                d = self.sock.recv(65536)
            except OSError:
                d = b""
            if not d:
                return None
            self.buf += d
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def pending_lines(self, wait):
        """Reads what arrives within wait seconds; counts whole lines."""
        end = time.monotonic() + wait
        self.sock.setblocking(False)
        try:
            while time.monotonic() < end:
                try:
                    d = self.sock.recv(65536)
                    if not d:
                        break
                    self.buf += d
                except BlockingIOError:
                    time.sleep(0.01)
        finally:
            self.sock.setblocking(True)
        return self.buf.count(b"\n")

    def size(self, n):
        return os.path.getsize(self.msgs[n - 1])

    def body(self, n):
        with open(self.msgs[n - 1], "rb") as f:
            return f.read()

    def live(self):
        return [n for n in range(1, len(self.msgs) + 1)
                if n not in self.deleted]

    def uidl_lines(self):
        lines = ["%d uid-%d" % (n, n) for n in self.live()]
        q = self.quirks
        if "uidl-zero" in q:
            lines.insert(0, "0 uid-0")
        if "uidl-gap" in q and len(lines) > 1:
            del lines[1]
        if "uidl-range" in q:
            lines.append("%d uid-x" % (len(self.msgs) + 1))
        if "uidl-dup" in q and len(lines) > 1:
            lines[1] = "2 uid-1"
        if "uidl-nonprint" in q:
            lines[0] = "1 uid\x01one"
        if "uidl-long" in q:
            lines[0] = "1 " + "u" * 71
        return lines

    def msgnum(self, arg):
        try:
            n = int(arg)
        except ValueError:
            return None
        if n < 1 or n > len(self.msgs) or n in self.deleted:
            return None
        return n

    def auth_token(self, mech):
        """The two-step XOAUTH2/OAUTHBEARER exchange; True when accepted."""
        self.send("+ \r\n")
        line = self.readline()
        if line is None:
            return False
        self.log.write(b"# sasl " + line + b"\n")
        try:
            got = base64.b64decode(line, validate=True)
        except ValueError:
            got = b""
        user = self.args.user.encode()
        tail = b"auth=Bearer " + self.args.password.encode() + b"\1\1"
        if mech == "XOAUTH2":
            ok = got == b"user=" + user + b"\1" + tail
        else:
            ok = got.startswith(b"n,a=" + user + b",\1") and \
                got.endswith(b"\1" + tail)
        if ok:
            self.send("+OK logged in\r\n")
            return True
        err = b'{"status":"401","error":"invalid_token"}'
        self.send("+ " + base64.b64encode(err).decode() + "\r\n")
        line = self.readline()
        self.log.write(b"# sasl-error-answer " + (line or b"") + b"\n")
        self.send("-ERR [AUTH] Authentication failed.\r\n")
        return False

    def run(self):
        self.send("+OK fake POP3 ready <1.2@fake>\r\n")
        authed = False
        user = None
        while True:
            line = self.readline()
            if line is None:
                self.log.write(b"* NOQUIT\n")
                return
            self.log.write(line + b"\n")
            cmd, _, arg = line.decode("latin-1").partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPA":
                caps = self.args.caps.split(",")
                self.send("+OK\r\n" + "".join(c + "\r\n" for c in caps)
                          + ".\r\n")
            elif cmd == "USER" and not authed:
                user = arg
                self.send("+OK\r\n")
            elif cmd == "PASS" and not authed:
                if "in-use" in self.quirks:
                    self.send("-ERR [IN-USE] Mailbox is locked\r\n")
                elif user == self.args.user and arg == self.args.password:
                    authed = True
                    self.send("+OK logged in\r\n")
                else:
                    self.send("-ERR [AUTH] Authentication failed.\r\n")
            elif cmd == "AUTH" and not authed and \
                    arg.upper() in ("XOAUTH2", "OAUTHBEARER"):
                authed = self.auth_token(arg.upper())
            elif cmd == "AUTH" and not authed:
                mech, _, resp = arg.partition(" ")
                want = b"\0" + self.args.user.encode() + b"\0" + \
                    self.args.password.encode()
                try:
                    ok = mech.upper() == "PLAIN" and \
                        base64.b64decode(resp, validate=True) == want
                except ValueError:
                    ok = False
                if ok:
                    authed = True
                    self.send("+OK logged in\r\n")
                else:
                    self.send("-ERR [AUTH] Authentication failed.\r\n")
            elif cmd == "QUIT":
                if "quit-err" in self.quirks:
                    self.send("-ERR cannot commit\r\n")
                else:
                    self.log.write(b"* COMMIT " + ",".join(
                        str(n) for n in sorted(self.deleted)).encode()
                        + b"\n")
                    self.send("+OK bye\r\n")
                return
            elif not authed:
                self.send("-ERR not logged in\r\n")
            elif cmd == "STAT":
                live = self.live()
                self.send("+OK %d %d\r\n" % (
                    len(live), sum(self.size(n) for n in live)))
            elif cmd == "LIST" and not arg:
                lines = ["%d %d" % (n, self.size(n)) for n in self.live()]
                if "list-zero" in self.quirks:
                    lines.insert(0, "0 100")
                self.send("+OK\r\n" + "".join(l + "\r\n" for l in lines)
                          + ".\r\n")
            elif cmd == "LIST":
                n = self.msgnum(arg)
                if n is None:
                    self.send("-ERR no such message\r\n")
                else:
                    self.send("+OK %d %d\r\n" % (n, self.size(n)))
            elif cmd == "UIDL" and not arg:
                if "no-uidl" in self.quirks:
                    self.send("-ERR no UIDL here\r\n")
                    continue
                lines = self.uidl_lines()
                self.send(("+OK\r\n" + "".join(l + "\r\n" for l in lines)
                           + ".\r\n").encode("latin-1"))
            elif cmd == "RETR":
                n = self.msgnum(arg)
                if not self.retr_seen:
                    self.retr_seen = True
                    if "pipeline-wait" in self.quirks:
                        k = self.pending_lines(0.3)
                        self.log.write(b"* QUEUED %d\n" % k)
                if n is None or self.quirks.get("err-retr") == arg:
                    self.send("-ERR no such message\r\n")
                    continue
                data = stuff(self.body(n))
                if self.quirks.get("drop-retr") == arg:
                    self.send(b"+OK\r\n" + data[:len(data) // 2])
                    time.sleep(0.1)
                    self.log.write(b"* DROPPED\n")
                    return
                self.send(b"+OK %d octets\r\n" % self.size(n))
                self.send(data)
            elif cmd == "TOP":
                parts = arg.split()
                n = self.msgnum(parts[0]) if parts else None
                if n is None:
                    self.send("-ERR no such message\r\n")
                    continue
                head = self.body(n).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                self.send(b"+OK\r\n" + stuff(head))
            elif cmd == "DELE":
                n = self.msgnum(arg)
                if n is None:
                    self.send("-ERR no such message\r\n")
                else:
                    self.deleted.add(n)
                    self.send("+OK deleted\r\n")
            elif cmd == "NOOP":
                self.send("+OK\r\n")
            else:
                self.send("-ERR unknown command\r\n")


def main():
    args = parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(args.idle)
    print(srv.getsockname()[1], flush=True)
    sys.stdout.close()
    while True:
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            return
        sock.settimeout(args.idle)
        try:
            Conn(sock, args).run()
        except (OSError, BrokenPipeError):
            pass
        finally:
            sock.close()


if __name__ == "__main__":
    main()
