#!/usr/bin/python3
"""A scripted fake IMAP server for tests/unit/test-imap.c (stdlib only).

Serves <maildir>/<folder>/<uid> files (the exact message bytes) on
127.0.0.1, a free port printed on stdout.  Every command line received is
appended to --log.  --quirk selects misbehaviour seen in the wild:
  unsolicited    `* 1 FETCH (FLAGS ...)`, EXISTS, EXPUNGE, RECENT amid FETCH
                 results
  dup            a UID's FETCH response twice (plus one without a body)
  no_after=N     a tagged NO after N body FETCH results
  fewer=UID      silently leave UID out of a body FETCH, tagged OK
  login_no=TEXT  LOGIN and AUTHENTICATE answer "tag NO TEXT" (a refusal
                 with a response code: "[LIMIT] Too many connections")
  pipelined_select  not misbehaviour, a probe: SELECT/EXAMINE is answered
                 once the next command is in, or after 2 s without one:
                 then the log gets "# not pipelined after <the command>"
  select_bad=NAME  SELECT/EXAMINE of NAME answered "tag BAD ..." (as
                 Exchange answers a name it dislikes)
  list_bad=N     the first N listings (UID FETCH without BODY) answered
                 "tag BAD ..."
As a real server does, a SELECT/EXAMINE that fails leaves no folder
selected, and a UID FETCH then is answered BAD.
Files in a folder: .uidvalidity (default 1), .noselect (LIST \\Noselect).
Exits after --idle seconds without a connection.
"""
import argparse
import base64
import os
import re
import socket
import sys
import time

# the fault server's IMAP tokenizer (tests/faults/faultd.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "faults"))
from faultd import imap_tokens  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--user", default="joe")
    ap.add_argument("--pass-file", required=True)
    ap.add_argument("--caps", default="IMAP4rev1 UIDPLUS MOVE")
    ap.add_argument("--quirk", action="append", default=[])
    ap.add_argument("--idle", type=float, default=30)
    return ap.parse_args()


class Conn:
    def __init__(self, sock, args):
        self.sock = sock
        self.rf = sock.makefile("rb")
        self.args = args
        self.log = open(args.log, "ab", buffering=0)
        self.quirks = {}
        for q in args.quirk:
            k, _, v = q.partition("=")
            self.quirks[k] = v
        with open(args.pass_file, "rb") as f:
            self.password = f.read()
        self.selected = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_command(self):
        """A command line with its literals inlined: (bytes, [literals])."""
        line = self.rf.readline()
        if not line:
            return None
        parts = [line]
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                break
            if not m.group(2):
                self.send("+ go ahead\r\n")
            lit = self.rf.read(int(m.group(1)))
            parts.append(lit)
            line = self.rf.readline()
            parts.append(line)
        return parts

    def tokens(self, parts):
        """Splits a command into tokens; literals become one token each."""
        out = []
        for i, seg in enumerate(parts):
            if i % 2 == 1:
                out.append(seg)
                continue
            seg = re.sub(rb"\{\d+\+?\}\r\n$", b"", seg)
            out += [t.encode("latin-1") for t in
                    imap_tokens(seg.decode("latin-1").strip("\r\n"))]
        return out

    def folder_dir(self, name):
        return os.path.join(self.args.maildir, name.decode())

    def uids(self, folder):
        d = self.folder_dir(folder)
        return sorted(int(f) for f in os.listdir(d) if f.isdigit())

    def body(self, uid):
        with open(os.path.join(self.folder_dir(self.selected),
                               str(uid)), "rb") as f:
            return f.read()

    def parse_set(self, s, all_uids):
        want = []
        top = all_uids[-1] if all_uids else 0
        for part in s.split(b","):
            if b":" in part:
                a, b = part.split(b":")
                a = int(a)
                b = top if b == b"*" else int(b)
                lo, hi = min(a, b), max(a, b)
                want += [u for u in all_uids if lo <= u <= hi]
            else:
                want += [u for u in all_uids if u == int(part)]
        return sorted(set(want))

    def run(self):
        caps = self.args.caps
        self.send("* OK [CAPABILITY %s] fake imapd ready\r\n" % caps)
        while True:
            parts = self.read_command()
            if parts is None or self.handle(parts) == "bye":
                return

    def handle(self, parts):
        """Logs and answers one command; "bye" ends the connection."""
        raw = b"".join(parts)
        self.log.write(raw if raw.endswith(b"\n") else raw + b"\n")
        t = self.tokens(parts)
        if len(t) < 2:
            self.send("* BAD no command\r\n")
            return None
        tag, cmd, args = t[0].decode(), t[1].upper(), t[2:]
        if cmd == b"UID" and args:
            cmd, args = b"UID " + args[0].upper(), args[1:]
        h = getattr(self, "c_" + cmd.decode().replace(" ", "_").lower(),
                    None)
        if h is None:
            self.send("%s BAD unknown command\r\n" % tag)
            return None
        return h(tag, args)

    def c_capability(self, tag, args):
        self.send("* CAPABILITY %s\r\n%s OK done\r\n" % (self.args.caps, tag))

    def c_noop(self, tag, args):
        self.send("%s OK noop\r\n" % tag)

    def c_logout(self, tag, args):
        self.send("* BYE bye\r\n%s OK logout\r\n" % tag)
        return "bye"

    def c_login(self, tag, args):
        if "login_no" in self.quirks:
            self.send("%s NO %s\r\n" % (tag, self.quirks["login_no"]))
            return
        if (len(args) == 2 and args[0] == self.args.user.encode()
                and args[1] == self.password):
            self.send("%s OK [CAPABILITY %s] logged in\r\n"
                      % (tag, self.args.caps))
        else:
            self.log.write(b"# login mismatch: %r\n" % (args,))
            self.send("%s NO [AUTHENTICATIONFAILED] Authentication "
                      "failed.\r\n" % tag)

    def c_authenticate(self, tag, args):
        """PLAIN, XOAUTH2 and OAUTHBEARER (--password the token), with an
        initial response (SASL-IR) or after an empty "+"; a wrong token
        gets the JSON error challenge before the NO."""
        mech = args[0].upper() if args else b""
        if len(args) > 1:
            line = args[1]
        else:
            self.send("+ \r\n")
            line = self.rf.readline().strip()
        self.log.write(b"# sasl " + line + b"\n")
        try:
            dec = base64.b64decode(line)
        except Exception:
            dec = b""
        user = self.args.user.encode()
        tail = b"auth=Bearer " + self.password + b"\1\1"
        if mech == b"PLAIN":
            ok = dec == b"\0" + user + b"\0" + self.password
        elif mech == b"XOAUTH2":
            ok = dec == b"user=" + user + b"\1" + tail
        elif mech == b"OAUTHBEARER":
            ok = dec.startswith(b"n,a=" + user + b",\1") and \
                dec.endswith(b"\1" + tail)
        else:
            ok = False
        if "login_no" in self.quirks:
            self.send("%s NO %s\r\n" % (tag, self.quirks["login_no"]))
            return
        if ok:
            self.send("%s OK authenticated\r\n" % tag)
            return
        if mech in (b"XOAUTH2", b"OAUTHBEARER"):
            err = b'{"status":"400","schemes":"Bearer"}'
            self.send("+ " + base64.b64encode(err).decode() + "\r\n")
            ans = self.rf.readline().strip()
            self.log.write(b"# sasl-error-answer " + ans + b"\n")
        self.send("%s NO [AUTHENTICATIONFAILED] bad\r\n" % tag)

    def more_pending(self, seconds):
        """Whether input follows what was read, waiting up to seconds
        (a non-blocking peek: nothing is consumed)."""
        for _ in range(int(seconds / 0.02)):
            self.sock.setblocking(False)
            try:
                more = self.rf.peek(1)
            finally:
                self.sock.setblocking(True)
            if more:
                return True
            time.sleep(0.02)
        return False

    def c_select(self, tag, args, verb="READ-WRITE"):
        if "pipelined_select" in self.quirks and not self.more_pending(2):
            self.log.write(b"# not pipelined after %s %s\n"
                           % (b"EXAMINE" if verb == "READ-ONLY"
                              else b"SELECT", args[0]))
        if self.quirks.get("select_bad") == args[0].decode():
            self.selected = None
            self.send("%s BAD [CLIENTBUG] Invalid mailbox name\r\n" % tag)
            return
        d = self.folder_dir(args[0])
        if not os.path.isdir(d) or os.path.exists(d + "/.noselect"):
            self.selected = None
            self.send("%s NO [NONEXISTENT] Mailbox doesn't exist: %s\r\n"
                      % (tag, args[0].decode()))
            return
        uv = 1
        if os.path.exists(d + "/.uidvalidity"):
            uv = int(open(d + "/.uidvalidity").read())
        self.selected = args[0]
        u = self.uids(args[0])
        self.send("* FLAGS (\\Seen \\Deleted)\r\n* %d EXISTS\r\n* 0 RECENT\r\n"
                  "* OK [UIDVALIDITY %d] UIDs valid\r\n"
                  "* OK [UIDNEXT %d] next\r\n%s OK [%s] selected\r\n"
                  % (len(u), uv, (u[-1] if u else 0) + 1, tag, verb))

    def c_examine(self, tag, args):
        self.c_select(tag, args, "READ-ONLY")

    def c_list(self, tag, args):
        pat = args[1].decode()
        rx = "^" + "".join(".*" if c == "*" else "[^/]*" if c == "%"
                           else re.escape(c) for c in pat) + "$"
        names = []
        for root, dirs, _ in os.walk(self.args.maildir):
            for d in dirs:
                names.append(os.path.relpath(os.path.join(root, d),
                                             self.args.maildir))
        for name in sorted(names):
            if re.match(rx, name):
                fl = "\\Noselect" if os.path.exists(
                    os.path.join(self.args.maildir, name, ".noselect")) \
                    else "\\HasNoChildren"
                self.send('* LIST (%s) "/" "%s"\r\n' % (fl, name))
        self.send("%s OK list done\r\n" % tag)

    def c_uid_fetch(self, tag, args):
        if self.selected is None:
            self.send("%s BAD No mailbox selected\r\n" % tag)
            return
        all_uids = self.uids(self.selected)
        items = b" ".join(args[1:]).upper()
        want = self.parse_set(args[0], all_uids)
        if not want and b":*" in args[0] and all_uids:
            want = [all_uids[-1]]          # the n:* quirk
        if b"HEADER.FIELDS" in items:       # the Message-ID field only
            for u in want:
                if u == int(self.quirks.get("fewer", "0") or 0):
                    continue
                head = self.body(u).split(b"\r\n\r\n", 1)[0] + b"\r\n"
                f = re.search(rb"(?im)^message-id:[^\n]*\n", head)
                h = (f.group(0) if f else b"") + b"\r\n"
                self.send(b"* %d FETCH (UID %d BODY[HEADER.FIELDS "
                          b"(MESSAGE-ID)] {%d}\r\n%s)\r\n"
                          % (all_uids.index(u) + 1, u, len(h), h))
            self.send("%s OK fetch done\r\n" % tag)
            return
        if b"BODY" not in items and int(self.quirks.get("list_bad", 0)) > 0:
            self.quirks["list_bad"] = int(self.quirks["list_bad"]) - 1
            self.send("%s BAD listing refused\r\n" % tag)
            return
        if b"BODY" not in items:
            for u in want:
                seq = all_uids.index(u) + 1
                if "unsolicited" in self.quirks:
                    self.send("* %d FETCH (UID %d FLAGS (\\Seen))\r\n"
                              "* %d EXISTS\r\n" % (seq, u, len(all_uids)))
                line = "* %d FETCH (UID %d RFC822.SIZE %d%s)\r\n" % (
                    seq, u, len(self.body(u)),
                    ' INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
                    if b"INTERNALDATE" in items else "")
                self.send(line * (2 if "dup" in self.quirks else 1))
            self.send("%s OK fetch done\r\n" % tag)
            return
        n = 0
        no_after = int(self.quirks.get("no_after", "0") or 0)
        fewer = int(self.quirks.get("fewer", "0") or 0)
        for u in want:
            if no_after and n >= no_after:
                self.send("%s NO [UNAVAILABLE] Backend error\r\n" % tag)
                return
            if u == fewer:
                continue
            seq = all_uids.index(u) + 1
            b = self.body(u)
            if "unsolicited" in self.quirks:
                self.send("* 1 FETCH (FLAGS (\\Seen))\r\n* %d EXISTS\r\n"
                          "* %d EXPUNGE\r\n* 2 RECENT\r\n"
                          % (len(all_uids) + 2, len(all_uids) + 2))
            if "dup" in self.quirks:
                self.send("* %d FETCH (UID %d FLAGS ())\r\n" % (seq, u))
            self.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (seq, u, len(b))
                      + b + b")\r\n")
            if "dup" in self.quirks:
                self.send(b"* %d FETCH (BODY[] {%d}\r\n" % (seq, len(b))
                          + b + b" UID %d)\r\n" % u)
            n += 1
        self.send("%s OK fetch done\r\n" % tag)

    def c_uid_store(self, tag, args):
        self.send("%s OK store done\r\n" % tag)

    def c_uid_expunge(self, tag, args):
        self.send("%s OK expunge done\r\n" % tag)

    def c_expunge(self, tag, args):
        self.send("%s OK expunge done\r\n" % tag)

    def c_uid_move(self, tag, args):
        self.send("%s OK move done\r\n" % tag)

    def c_uid_copy(self, tag, args):
        self.send("%s OK copy done\r\n" % tag)


def main():
    args = parse_args()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(args.idle)
    sys.stdout.write("%d\n" % ls.getsockname()[1])
    sys.stdout.flush()
    while True:
        try:
            s, _ = ls.accept()
        except socket.timeout:
            return
        s.settimeout(args.idle)
        try:
            Conn(s, args).run()
        except (OSError, ValueError) as e:
            sys.stderr.write("fake_imapd: %s\n" % e)
        finally:
            s.close()


if __name__ == "__main__":
    main()
