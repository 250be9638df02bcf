#!/usr/bin/python3
"""A fake IMAP server for APPEND (tests/unit/test-imap-append.c).

fake_imapd.py's server (login, SELECT/EXAMINE, the command log) plus
APPEND, CREATE, SUBSCRIBE and UID SEARCH HEADER.  An appended message is
stored as <maildir>/<folder>/<uid> with exactly the literal's bytes; a
folder that does not exist answers APPEND with NO [TRYCREATE].  The log
gets the APPEND line (not the literal).  A non-synchronizing literal the
caps do not allow (neither LITERAL+ nor LITERAL- for its size) is read
and answered BAD (RFC 7888).  More --quirk words:
  append_no=TEXT      every APPEND answers "NO TEXT" (e.g. "[TOOBIG] big")
  append_no_once=TEXT the first APPEND only
  refuse_over=N       a synchronizing literal over N bytes gets
                      "NO [TOOBIG]" instead of "+"
  drop_append         close the connection after an APPEND's literal
  no_appenduid        no [APPENDUID] in the OK
  create_no           CREATE answers NO [NOPERM]
  search_no           UID SEARCH answers NO [UNAVAILABLE]
  untagged            "* 1 EXISTS" and a FETCH with two literals amid
                      replies, each holding a line tagged as the APPEND
  hold=N              APPEND replies are held back until N wait (any
                      other command first gets those held): a client
                      that waits for each reply before it sends the
                      next APPEND waits in vain
  reverse             held replies go out newest first (RFC 3501 5.5
                      lets a server answer out of order)
  append_no_nth=K:TEXT  the K-th APPEND answers "NO TEXT"
  drop_after=K        close the connection after the K-th APPEND's
                      literal, its reply and any held unsent
  gone_after=K        the folder is removed after the K-th APPEND (the
                      next ones get NO [TRYCREATE] until a CREATE)
"""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_imapd  # noqa: E402


class AppendConn(fake_imapd.Conn):
    appends = 0
    held = None

    def reply(self, line):
        """An APPEND's tagged reply: sent, or held (quirk hold)."""
        n = int(self.quirks.get("hold", "0") or 0)
        if not n:
            self.send(line)
            return
        self.held = (self.held or []) + [line]
        if len(self.held) >= n:
            self.release()

    def release(self):
        held, self.held = self.held or [], []
        if "reverse" in self.quirks:
            held.reverse()
        if held:
            self.send("".join(held))

    def read_command(self):
        """As fake_imapd's, but APPEND's literal is stored apart and a
        synchronizing one may be refused before the data."""
        line = self.rf.readline()
        if not line:
            return None
        m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
        if not m or b" APPEND " not in line.upper():
            return self._rest(line)
        n = int(m.group(1))
        over = int(self.quirks.get("refuse_over", "0") or 0)
        tag = line.split(b" ", 1)[0].decode()
        caps = self.args.caps.split()
        if m.group(2) and "LITERAL+" not in caps and not (
                "LITERAL-" in caps and n <= 4096):
            # RFC 7888: {N+} only where offered; the bytes are read
            self.log.write(line)
            self.rf.read(n)
            self.rf.readline()
            self.send("%s BAD non-synchronizing literal not offered\r\n"
                      % tag)
            return [b"%s NOOP\r\n" % tag.encode(), "refused"]
        if not m.group(2):
            if over and n > over:
                self.log.write(line)
                self.send("%s NO [TOOBIG] Too big for us\r\n" % tag)
                return [b"%s NOOP\r\n" % tag.encode(), "refused"]
            self.send("+ go ahead\r\n")
        self.literal = self.rf.read(n)
        rest = self.rf.readline()
        return [line, rest]

    def _rest(self, line):
        parts = [line]
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                break
            if not m.group(2):
                self.send("+ go ahead\r\n")
            parts.append(self.rf.read(int(m.group(1))))
            line = self.rf.readline()
            parts.append(line)
        return parts

    def handle(self, parts):
        if len(parts) == 2 and parts[1] == "refused":
            return None
        if len(parts) == 2 and b" APPEND " in parts[0].upper():
            self.log.write(parts[0])
            return self.append(parts[0].split(b" ", 1)[0].decode(), parts[0])
        self.release()
        return super().handle(parts)

    def append(self, tag, line):
        AppendConn.appends += 1
        t = self.tokens([re.sub(rb"\{\d+\+?\}\r\n$", b"\r\n", line)])
        folder = t[2]
        nth = AppendConn.appends
        if "drop_append" in self.quirks or \
                self.quirks.get("drop_after") == str(nth):
            return "bye"
        no = self.quirks.get("append_no")
        if no is None and nth == 1:
            no = self.quirks.get("append_no_once")
        k, _, text = self.quirks.get("append_no_nth", "").partition(":")
        if no is None and k == str(nth):
            no = text
        if no is not None:
            self.reply("%s NO %s\r\n" % (tag, no))
            return
        d = self.folder_dir(folder)
        if not os.path.isdir(d):
            self.reply("%s NO [TRYCREATE] Mailbox doesn't exist: %s\r\n"
                       % (tag, folder.decode()))
            return
        u = self.uids(folder)
        uid = (u[-1] if u else 0) + 1
        with open(os.path.join(d, str(uid)), "wb") as f:
            f.write(self.literal)
        if "untagged" in self.quirks:
            lit = "%s OK not this\r\n" % tag
            lit2 = "%s NO not this either\r\n" % tag
            self.send("* 1 EXISTS\r\n* 1 FETCH (UID 1 BODY[HEADER] {%d}\r\n"
                      "%s BODY[TEXT] {%d}\r\n%s)\r\n"
                      % (len(lit), lit, len(lit2), lit2))
        if self.quirks.get("gone_after") == str(nth):
            shutil.rmtree(d)
        if "no_appenduid" in self.quirks:
            self.reply("%s OK Append completed\r\n" % tag)
        else:
            self.reply("%s OK [APPENDUID 77 %d] Append completed\r\n"
                       % (tag, uid))

    def c_create(self, tag, args):
        if "create_no" in self.quirks:
            self.send("%s NO [NOPERM] Permission denied\r\n" % tag)
            return
        d = self.folder_dir(args[0])
        if os.path.isdir(d):
            self.send("%s NO [ALREADYEXISTS] Mailbox exists\r\n" % tag)
            return
        os.makedirs(d)
        self.send("%s OK Create completed\r\n" % tag)

    def c_subscribe(self, tag, args):
        self.send("%s OK Subscribe completed\r\n" % tag)

    def c_uid_search(self, tag, args):
        if "search_no" in self.quirks:
            self.send("%s NO [UNAVAILABLE] Try later\r\n" % tag)
            return
        a = [x.upper() for x in args]
        field, value = args[1].decode(), args[2].lower()
        lo = hi = None
        if b"LARGER" in a:
            lo = int(args[a.index(b"LARGER") + 1])
        if b"SMALLER" in a:
            hi = int(args[a.index(b"SMALLER") + 1])
        found = []
        for u in self.uids(self.selected):
            b = self.body(u)
            if lo is not None and not len(b) > lo:
                continue
            if hi is not None and not len(b) < hi:
                continue
            head = b.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ") \
                .replace(b"\r\n ", b"  ")
            for h in head.split(b"\r\n"):
                k, _, v = h.partition(b":")
                if k.strip().lower() == field.lower().encode() and \
                        value in v.lower():
                    found.append(u)
                    break
        self.send("* SEARCH%s\r\n%s OK Search completed\r\n"
                  % ("".join(" %d" % u for u in found), tag))


def main():
    fake_imapd.Conn = AppendConn
    fake_imapd.main()


if __name__ == "__main__":
    main()
