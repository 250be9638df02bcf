#!/usr/bin/python3
"""faultd.py -- a scripted fault server for mailhaul's fault tests (stdlib).

    faultd.py SPEC.json STATE.json [--certs DIR] [--lifetime SECS]

Binds 127.0.0.1 on a free port, prints "PORT <n>" on stdout, and serves
connections one after the other (several passes of mailhaul) until
--lifetime seconds have passed (default 120) or SIGTERM.  After every
command it rewrites STATE.json (atomically): the transcript of every
connection, what is left in the mailbox, what was deleted and whether the
deletions were committed, what a target received and what it answered.

SPEC (a JSON object; every key optional except proto):
  proto       "pop3" | "imap" | "smtp" | "lmtp"
  tls         "none" | "implicit" | "starttls"   (default "none")
  offer_tls   STARTTLS/STLS offered in CAPA/EHLO (default: tls == starttls)
  cert        good | self | wronghost | expired | untrusted  (DIR/<cert>.pem
              and .key; default good)
  greeting    the first line (default a normal greeting)
  capa        POP3 CAPA lines; null answers CAPA with -ERR.  A command
              that arrives with the next one already behind it is an
              event: "pipelined after VERB without PIPELINING" when the
              last CAPA did not offer it (RFC 2449), "pipelined after
              STAT" or "pipelined after USER" when it did
  user, password   what the login must be (default joe / faultpw)
  messages    POP3: number of generated messages (default 3); message i
              (1-based) has X-Fault-Id: i and UID "uid-i"
  uidl_lines, list_lines   POP3: raw lines of the UIDL / LIST listing
              instead of the computed ones
  no_uidl     POP3: UIDL answers -ERR, and UIDL is not in CAPA
  copies      {"<i>": j}: message i is a byte-exact copy of message j
  long_line   {"<i>": [n, k]}: message i's body gains a line of n bytes,
              then k bytes of ordinary lines after it
  add_on_conn {"<n>": k}: k new messages join the mailbox when
              connection n opens (ids and UIDs continue)
  gmail_pop   POP3: as Gmail's POP: a message retrieved (RETR) in a
              session that ends with QUIT is "downloaded" and never listed
              again (it stays in the mailbox: `left`); the record's
              "hidden" lists the ids so hidden
  uid_of      POP3 {"<i>": "uid"}: message i's UIDL instead of "uid-i"
              (a server that gives a deleted message's UIDL to a new one)
  huge        POP3/IMAP {"<i>": n}: LIST (RFC822.SIZE) gives message i's
              true size, but RETR (the UID FETCH of bodies) sends its
              header and then n bytes (a multiple of 64000) of body lines
              (a hostile
              or broken server); the bytes sent are counted in the
              connection's record as "huge_sent"
  append_hold IMAP target: the answer to each APPEND (the message is
              stored at once) is held back until the client has sent
              nothing for 0.3 s or sends another command; the transcript
              says "held" and "released N": an APPEND read while answers
              are held was sent ahead of them (pipelined)
  caps        IMAP: the capabilities (default "IMAP4rev1 UIDPLUS MOVE
              AUTH=PLAIN", plus STARTTLS when offered); a listing that
              asks for X-GM-MSGID gets 10000 + the message's id (a copy:
              its original's id), as Gmail (X-GM-EXT-1) answers
  login_caps  IMAP: LOGIN's OK states the capabilities ("[CAPABILITY
              ...]"), as Dovecot's does
  utf8_accept IMAP: ENABLE UTF8=ACCEPT is answered ENABLED (put ENABLE
              and UTF8=ACCEPT in caps); from then on mailbox names are
              UTF-8 both ways (RFC 6855), and a modified UTF-7 name is
              taken literally (so it is not found); folders stay keyed
              by their modified UTF-7 names
  watch_pipelining  IMAP: before answering a UID FETCH of bodies, wait
              up to this many seconds for the client's next command and
              log whether it came before the reply ("next command before
              the reply" / "no command before the reply"): a client that
              requests the next batch ahead sends it unasked
  watch_ahead IMAP, with watch_pipelining: wait for this many commands
              (default 1) and also log "N commands before the reply"
              when it is more than one: how many batches a client keeps
              requested ahead
  uidvalidity IMAP: the folder's UIDVALIDITY (default 1); message i has
              UID i unless `uids` (a list) says otherwise
  folders     IMAP {"<name>": k}: folders besides INBOX (listed by LIST,
              selectable), each with k generated messages; ids continue
              after INBOX's, UIDs count from 1 in each folder; messages
              added later (add_on_conn) go to INBOX, or to the folder
              named by add_to (a Gmail label given to a message later:
              with copies, a byte-exact copy of an earlier one)
  renumber_on_conn  IMAP {"<n>": {"uidvalidity": v, "uid_base": b}}:
              when connection n opens, the folder gets UIDVALIDITY v and
              its messages UIDs b+1, b+2, ... (a server rebuilt its index)
  auth        SMTP: offer AUTH PLAIN LOGIN
              (SMTP also answers ETRN, RFC 1985: "250 Queuing for node
              <arg> started" unless a rule says otherwise; the etrn
              scenarios use an SMTP server as their source)
  chunking    SMTP/LMTP: offer CHUNKING (RFC 3030): BDAT n [LAST] reads
              exactly n bytes, answered 250 (a rule matching "BDAT ..."
              refuses the chunk: its bytes are read all the same, and
              every later BDAT of the transaction gets 503); after BDAT
              LAST the replies are those after DATA's dot ("<EOM>"
              rules, LMTP one per recipient); "received" notes the chunk
              sizes ("chunks"; [] after DATA)
  no_pipelining  SMTP/LMTP: PIPELINING is not offered
  keep_bodies SMTP/LMTP: "received" keeps each body ("body", latin-1)
  extra       POP3 {"<i>": text}: latin-1 text appended to message i
              (bare LF, bare CR, lines starting with a dot...)
  data_max_line  SMTP/LMTP: a DATA line longer than this many bytes is
              answered at once with data_max_line_reply (default "500
              5.0.0 Line too long") and the connection closed, the rest of
              the data unread (OpenSMTPD does this)
  rules       a list of fault rules, tried in order for every command:
      match   regex on the command line (POP3/SMTP verbs as sent; the
              end of a DATA body is the pseudo command "<EOM>")
      conn    apply only on this connection (1-based)
      id      SMTP/LMTP <EOM>: apply only to the message with this
              X-Fault-Id (one message the target does not like)
      times   apply at most this many times
      skip    let this many matching commands pass first (the second
              folder's FETCH on one connection)
      reply   send this (lines joined by CRLF) instead of the normal
              reply; for LMTP <EOM> a list: one reply per recipient
      inject  bytes (latin-1 string) sent right after the reply, in the
              same write (STARTTLS injection)
      starttls  IMAP STARTTLS with a "reply": the TLS handshake follows
              it all the same (a reply with lines slipped in before its
              OK)
      delay   SMTP/LMTP <EOM>: seconds to wait before the replies (the
              client's next message is fetched meanwhile)
      action  "drop": close without (further) reply; "partial": send
              the first half of the normal reply, then close; "stall":
              send nothing for `secs` (default 30), then close
              IMAP, on a UID FETCH of bodies (the fault hits the `at`-th
              message of the response, default 2):
              "no_after": that message and the rest are not sent, a
              tagged NO is; "unsolicited": FLAGS/EXISTS/RECENT/ALERT
              responses before every message; "fewer": that message is
              left out, tagged OK; "expunged": another client expunged
              that message (* n EXPUNGE instead of it, later sequence
              numbers shift, state "vanished"), tagged OK;
              "long_literal": its literal is announced `extra` (default
              100) bytes longer than sent, then nothing for `secs`
              (default 30); "drop_in_literal": half its literal, then
              close; "endless_quoted": BODY[] as a quoted string that
              never ends (`mb` MB, default 64, without a CRLF), then
              close
              IMAP APPEND (a target): "stored_drop": the message is
              stored, then the connection closes without a reply
      IMAP replies may hold {tag}, replaced by the command's tag.
A non-synchronizing literal ({N+}) where the caps offer neither LITERAL+
nor LITERAL- for its size is read and the command answered BAD (RFC 7888).
IMAP as a target (type = imap): APPEND stores the message in the folder
(NO [TRYCREATE] when it does not exist; CREATE makes it) and records it
in "received" like a DATA body ("rcpts": [folder], "replies": [the
tagged reply without its tag], "flags", "date"); rules match the line
"APPEND <folder> <flags/date...> {N}" after the literal was read, so
that a "reply" or "drop" hits the message.  UID SEARCH HEADER <field>
<text> searches the selected folder; so do ALL, SEEN and sequence sets
(all must hold), and any other key, or a message number that does not
exist, is answered BAD.  Give a target "messages": 0.
Unknown commands get an error reply.  Everything is bounded: reads time
out after 60 s, the whole server after --lifetime.
"""
import argparse
import base64
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time

CRLF = b"\r\n"


def gen_message(i):
    return ("Return-Path: <sender%d@example.org>\r\n"
            "Message-ID: <fault-%d@faultd.test>\r\n"
            "X-Fault-Id: %d\r\n"
            "From: sender%d@example.org\r\n"
            "Subject: fault test %d\r\n"
            "\r\n"
            "body of message %d\r\n"
            ".a line starting with a dot\r\n"
            "end\r\n" % (i, i, i, i, i, i)).encode()


def fault_id(raw):
    m = re.search(rb"^X-Fault-Id: *(\d+)", raw, re.M | re.I)
    return int(m.group(1)) if m else None


class Dropped(Exception):
    pass


class Server:
    def __init__(self, spec, state_path, certs):
        self.spec = spec
        self.state_path = state_path
        self.certs = certs
        self.rules = [dict(r, used=0) for r in spec.get("rules", [])]
        self.conns = []            # per connection: dict with transcript
        self.mailbox = []          # dicts id, uid, raw, present, flags
        self.uidvalidity = int(spec.get("uidvalidity", 1))
        self.add_messages(int(spec.get("messages", 3)))
        for name, k in spec.get("folders", {}).items():
            self.add_messages(int(k), name)
        self.committed = []        # ids whose deletion a QUIT committed
        self.vanished = []         # IMAP: ids another client expunged
        self.received = []         # target: every DATA body seen
        self.lock = threading.Lock()
        self.save()

    def add_messages(self, k, folder="INBOX"):
        uids = self.spec.get("uids") if folder == "INBOX" else None
        for _ in range(k):
            i = len(self.mailbox) + 1
            if self.spec["proto"] == "imap":
                top = max([m["uid"] for m in self.mailbox
                           if m["folder"] == folder] or [0])
                uid = uids[i - 1] if uids and i <= len(uids) else top + 1
            else:
                uid = self.spec.get("uid_of", {}).get(str(i),
                                                      "uid-%d" % i)
            src = self.spec.get("copies", {}).get(str(i))
            raw = gen_message(int(src) if src else i)
            raw += self.spec.get("extra", {}).get(str(i), "").encode("latin-1")
            ll = self.spec.get("long_line", {}).get(str(i))
            if ll:
                n, k = int(ll[0]), int(ll[1])
                filler = b"an ordinary line of text after the long one\r\n"
                raw += b"x" * n + b"\r\n" + filler * (k // len(filler) + 1)
            self.mailbox.append({"id": i, "uid": uid, "raw": raw,
                                 "present": True, "flags": [],
                                 "folder": folder})

    def conn_opened(self, n):
        """What a scenario says happens to the mailbox between passes."""
        k = self.spec.get("add_on_conn", {}).get(str(n))
        if k:
            self.add_messages(int(k), self.spec.get("add_to", "INBOX"))
        rn = self.spec.get("renumber_on_conn", {}).get(str(n))
        if rn:
            self.uidvalidity = int(rn["uidvalidity"])
            base = int(rn.get("uid_base", 0))
            for f in {m["folder"] for m in self.mailbox}:
                live = [m for m in self.mailbox
                        if m["present"] and m["folder"] == f]
                for k2, m in enumerate(live, 1):
                    m["uid"] = base + k2

    # ---- state file ----------------------------------------------------
    def save(self):
        st = {
            "connections": [{k: v for k, v in c.items() if k != "sock"}
                            for c in self.conns],
            "left": [m["id"] for m in self.mailbox if m["present"]],
            "hidden": [m["id"] for m in self.mailbox if m.get("hidden")],
            "uids": {str(m["id"]): m["uid"] for m in self.mailbox
                     if m["present"]},
            "flags": {str(m["id"]): m["flags"] for m in self.mailbox
                      if m["present"] and m.get("flags")},
            "moved": getattr(self, "moved", []),
            "committed": self.committed,
            "vanished": self.vanished,
            "received": self.received,
        }
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.replace(tmp, self.state_path)

    # ---- TLS -----------------------------------------------------------
    def tls_context(self):
        name = self.spec.get("cert", "good")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.certs, name + ".pem"),
                            os.path.join(self.certs, name + ".key"))
        return ctx

    # ---- rules ---------------------------------------------------------
    def rule_for(self, conn, line, msg_id=None):
        for r in self.rules:
            if "conn" in r and r["conn"] != conn["n"]:
                continue
            if "id" in r and r["id"] != msg_id:
                continue
            if "times" in r and r["used"] >= r["times"]:
                continue
            if re.search(r["match"], line, re.I) and \
                    r.get("skipped", 0) < r.get("skip", 0):
                r["skipped"] = r.get("skipped", 0) + 1
                continue
            if re.search(r["match"], line, re.I):
                r["used"] += 1
                conn["events"].append("rule %s" % r["match"])
                return r
        return None


class Conn:
    def __init__(self, srv, sock, n):
        self.srv = srv
        self.sock = sock
        self.buf = b""
        self.tls = False
        self.rec = {"n": n, "transcript": [], "events": [], "tls": False,
                    "login": None, "plaintext_login": False, "dele": [],
                    "quit": None, "hidden": []}
        self.retrieved = set()      # ids RETR'd in this session (POP3)
        srv.conns.append(self.rec)
        sock.settimeout(60)

    # ---- I/O -----------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def line(self):
        while CRLF not in self.buf and b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise Dropped("client closed")
            self.buf += d
            if len(self.buf) > 1 << 20:
                raise Dropped("line too long")
        i = self.buf.find(b"\n")
        l, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        return l.rstrip(b"\r\n").decode("latin-1")

    def read_exact(self, n, what):
        """n bytes (an IMAP literal, a BDAT chunk)."""
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise Dropped("client closed in a %s" % what)
            self.buf += d
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def log(self, kind, text):
        self.rec["transcript"].append("%s %s" % (kind, text))
        with self.srv.lock:
            self.srv.save()

    def starttls(self):
        if self.buf:
            self.rec["events"].append("client pipelined past STARTTLS")
            self.buf = b""
        self.sock = self.srv.tls_context().wrap_socket(self.sock,
                                                       server_side=True)
        self.sock.settimeout(60)
        self.tls = self.rec["tls"] = True

    # ---- replies with faults --------------------------------------------
    def reply(self, cmd, normal, rule=False):
        """Sends the normal reply (bytes or str, CRLF included) for cmd,
        or what a matching rule says (rule: one matched already, or None
        for none).  Returns True when the normal reply was sent (the
        command takes effect)."""
        r = self.srv.rule_for(self.rec, cmd) if rule is False else rule
        if isinstance(normal, str):
            normal = normal.encode("latin-1")
        if r is None:
            self.send(normal)
            return True
        act = r.get("action")
        if act == "stall":
            self.log("*", "stall %ss" % r.get("secs", 30))
            time.sleep(float(r.get("secs", 30)))
            raise Dropped("stalled")
        if act == "partial":
            self.send(normal[:max(1, len(normal) // 2)])
            self.log("*", "partial reply, dropped")
            raise Dropped("partial")
        out = b""
        if "reply" in r:
            rep = r["reply"]
            if isinstance(rep, list):
                rep = "\r\n".join(rep)
            rep = rep.replace("{tag}", getattr(self, "tag", ""))
            out += rep.encode("latin-1") + CRLF
        elif act != "drop":
            out += normal
        if "inject" in r:
            out += r["inject"].encode("latin-1")
        if out:
            self.send(out)
        if act == "drop":
            self.log("*", "dropped")
            raise Dropped("drop")
        return "reply" not in r

    # ---- auth helpers ----------------------------------------------------
    def check_login(self, user, password):
        ok = (user == self.srv.spec.get("user", "joe") and
              password == self.srv.spec.get("password", "faultpw"))
        self.rec["login"] = "ok" if ok else "refused"
        if not self.tls:
            self.rec["plaintext_login"] = True
        return ok


# ---- POP3 -------------------------------------------------------------------
def stuff(raw):
    out = []
    for l in raw.split(b"\r\n")[:-1] if raw.endswith(b"\r\n") else raw.split(b"\r\n"):
        out.append(b"." + l if l.startswith(b".") else l)
    return b"\r\n".join(out) + b"\r\n.\r\n"


def pop3_huge(c, m, n):
    """RETR of a message that goes on for n bytes."""
    head = m["raw"].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    c.send(b"+OK %d octets\r\n" % len(m["raw"]))
    stream_huge(c, head, n)
    c.send(b".\r\n")


def stream_huge(c, head, n):
    """head, then n bytes of body lines (n a multiple of 64000), until
    done or until the client goes away (then Dropped)."""
    chunk = (b"x" * 78 + b"\r\n") * 800
    c.rec["huge_sent"] = 0
    c.send(head)
    try:
        while c.rec["huge_sent"] < n:
            c.send(chunk)
            c.rec["huge_sent"] += len(chunk)
    except OSError as e:
        c.log("*", "huge body: client went away after %d bytes: %s"
              % (c.rec["huge_sent"], e))
        raise Dropped("client closed")
    c.log("*", "huge body: all %d bytes sent" % c.rec["huge_sent"])


def pop3(c):
    spec = c.srv.spec
    box = c.srv.mailbox
    c.reply("<GREETING>", spec.get("greeting", "+OK faultd POP3 ready") + "\r\n")
    user = None
    authed = False
    deleted = set()
    pipelining = False                  # offered in the last CAPA
    while True:
        l = c.line()
        verb = l.split(" ", 1)[0].upper()
        arg = l[len(verb) + 1:]
        c.log("C", "PASS <password>" if verb == "PASS" else
              ("AUTH PLAIN <b64>" if verb == "AUTH" and " " in arg else l))
        # the next command came before this one's answer: RFC 2449
        # allows that only to a server that offers PIPELINING
        if b"\n" in c.buf and not pipelining:
            c.rec["events"].append("pipelined after %s without PIPELINING"
                                   % verb)
        elif b"\n" in c.buf and verb in ("STAT", "USER"):
            c.rec["events"].append("pipelined after %s" % verb)
        live = [m for m in box if m["present"] and not m.get("hidden")]

        def msg(a):
            try:
                k = int(a)
            except ValueError:
                return None
            if 1 <= k <= len(live) and k not in deleted:
                return live[k - 1]
            return None

        if verb == "CAPA":
            caps = spec.get("capa", ["USER", "UIDL", "TOP", "PIPELINING",
                                     "RESP-CODES"])
            if caps is None:
                c.reply(l, "-ERR no CAPA\r\n")
                continue
            caps = [x for x in caps if not (spec.get("no_uidl") and x == "UIDL")]
            if spec.get("offer_tls", spec.get("tls") == "starttls") and not c.tls:
                caps = caps + ["STLS"]
            pipelining = "PIPELINING" in caps
            c.reply(l, "+OK\r\n" + "".join(x + "\r\n" for x in caps) + ".\r\n")
        elif verb == "STLS":
            if c.reply(l, "+OK begin TLS\r\n"):
                c.starttls()
        elif verb == "USER":
            # a refused USER names nobody: PASS is then refused too
            user = arg if c.reply(l, "+OK\r\n") else None
        elif verb == "PASS":
            ok = c.check_login(user, arg)
            if c.reply(l, "+OK logged in\r\n" if ok else
                       "-ERR [AUTH] invalid user or password\r\n") and ok:
                authed = True
        elif verb == "AUTH" and arg.upper().startswith("PLAIN"):
            b64 = arg[5:].strip()
            if not b64:
                c.send("+ \r\n")
                b64 = c.line()
            try:
                _, u, p = base64.b64decode(b64).decode("latin-1").split("\0")
            except Exception:
                u = p = None
            ok = c.check_login(u, p)
            if c.reply(l, "+OK logged in\r\n" if ok else
                       "-ERR [AUTH] invalid user or password\r\n") and ok:
                authed = True
        elif verb == "QUIT":
            c.rec["quit"] = "sent"
            if c.reply(l, "+OK bye\r\n") and authed:
                for m in live:
                    if live.index(m) + 1 in deleted:
                        m["present"] = False
                        c.srv.committed.append(m["id"])
                    elif spec.get("gmail_pop") and m["id"] in c.retrieved:
                        m["hidden"] = True
                        c.rec["hidden"].append(m["id"])
                c.rec["quit"] = "committed"
            c.log("*", "quit %s" % c.rec["quit"])
            return
        elif not authed:
            c.reply(l, "-ERR not logged in\r\n")
        elif verb == "STAT":
            c.reply(l, "+OK %d %d\r\n" % (len(live), sum(len(m["raw"]) for m in live)))
        elif verb in ("LIST", "UIDL") and not arg:
            if verb == "UIDL" and spec.get("no_uidl"):
                c.reply(l, "-ERR UIDL not supported\r\n")
                continue
            key = "uidl_lines" if verb == "UIDL" else "list_lines"
            if key in spec:
                lines = spec[key]
            else:
                lines = ["%d %s" % (k + 1, m["uid"] if verb == "UIDL" else len(m["raw"]))
                         for k, m in enumerate(live) if k + 1 not in deleted]
            c.reply(l, "+OK\r\n" + "".join(x + "\r\n" for x in lines) + ".\r\n")
        elif verb in ("LIST", "UIDL"):
            m = msg(arg)
            if m is None:
                c.reply(l, "-ERR no such message\r\n")
            else:
                c.reply(l, "+OK %s %s\r\n" % (arg, m["uid"] if verb == "UIDL"
                                              else len(m["raw"])))
        elif verb in ("RETR", "TOP"):
            m = msg(arg.split(" ")[0])
            if m is None:
                c.reply(l, "-ERR no such message\r\n")
                continue
            raw = m["raw"]
            if verb == "TOP":
                raw = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            elif str(m["id"]) in spec.get("huge", {}):
                pop3_huge(c, m, int(spec["huge"][str(m["id"])]))
                continue
            if verb == "RETR":
                c.retrieved.add(m["id"])
            c.reply(l, b"+OK %d octets\r\n" % len(m["raw"]) + stuff(raw))
        elif verb == "DELE":
            m = msg(arg)
            if m is None:
                c.reply(l, "-ERR no such message\r\n")
            elif c.reply(l, "+OK deleted\r\n"):
                deleted.add(int(arg))
                c.rec["dele"].append(m["id"])
        elif verb == "RSET":
            deleted.clear()
            c.reply(l, "+OK\r\n")
        elif verb == "NOOP":
            c.reply(l, "+OK\r\n")
        else:
            c.reply(l, "-ERR unknown command\r\n")



# ---- IMAP -------------------------------------------------------------------
def imap_tokens(text):
    """Splits a command's arguments: atoms, "quoted" strings, and
    parenthesised or bracketed groups kept whole."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch == '"':
            j, buf = i + 1, ""
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    j += 1
                buf += text[j:j + 1]
                j += 1
            out.append(buf)
            i = j + 1
        else:
            j, depth = i, 0
            while j < len(text):
                if text[j] in "([":
                    depth += 1
                elif text[j] in ")]":
                    depth -= 1
                elif text[j] == " " and depth <= 0:
                    break
                j += 1
            out.append(text[i:j])
            i = j
    return out


def imap_command(c):
    """One command line with its literals inlined as quoted text; the
    literals also in c.literals as (position in the line, bytes)."""
    line = c.line()
    c.literals = []
    c.bad_literal = False
    caps = c.srv.spec.get("caps", "IMAP4rev1 UIDPLUS MOVE AUTH=PLAIN").split()
    while True:
        m = re.search(r"\{(\d+)(\+?)\}$", line)
        if not m:
            return line
        if not m.group(2):
            c.send("+ go ahead\r\n")
        elif "LITERAL+" not in caps and not (
                "LITERAL-" in caps and int(m.group(1)) <= 4096):
            # RFC 7888: {N+} only where offered (the bytes are read all
            # the same; the command gets BAD)
            c.bad_literal = True
        lit = c.read_exact(int(m.group(1)), "literal")
        c.literals.append((m.start(), lit))
        line = line[:m.start()] + '"' + lit.decode("latin-1") + '"' + c.line()


def uid_set(spec_text, uids):
    """The UIDs of `uids` (sorted) in an IMAP sequence set; n:* includes
    the highest UID even when it is below n, as servers do."""
    top = uids[-1] if uids else 0
    want = set()
    for part in spec_text.split(","):
        if ":" in part:
            a, b = part.split(":")
            a = top if a == "*" else int(a)
            b = top if b == "*" else int(b)
            lo, hi = min(a, b), max(a, b)
            want |= {u for u in uids if lo <= u <= hi}
        elif part == "*":
            want |= {top} if uids else set()
        else:
            want |= {u for u in uids if u == int(part)}
    return sorted(want)


def imap_search(box, tokens):
    """UID SEARCH over box by the keys ALL, SEEN and sequence sets (all
    of them must hold; one parenthesized list is allowed): the UIDs, or
    None for anything else, or a message number that does not exist
    (RFC 9051 6.4.4: "1:*" in an empty mailbox too) -- a BAD, as a
    strict server answers."""
    keys = " ".join(tokens)
    if keys.startswith("(") and keys.endswith(")"):
        keys = keys[1:-1]
    hit = list(box)
    for k in keys.split():
        if k.upper() == "ALL":
            continue
        if k.upper() == "SEEN":
            hit = [m for m in hit if "\\Seen" in m["flags"]]
            continue
        if not re.fullmatch(r"[0-9*]+(:[0-9*]+)?(,[0-9*]+(:[0-9*]+)?)*", k):
            return None
        nums = [int(x) for x in re.split("[:,]", k) if x != "*"]
        if not box or any(n < 1 or n > len(box) for n in nums):
            return None
        seqs = set(uid_set(k, list(range(1, len(box) + 1))))
        chosen = {id(m) for n, m in enumerate(box, 1) if n in seqs}
        hit = [m for m in hit if id(m) in chosen]
    return [m["uid"] for m in hit]


def mutf7_decode(name):
    """Modified UTF-7 (RFC 3501 5.1.3) -> str."""
    out, i = "", 0
    while i < len(name):
        j = name.find("&", i)
        if j < 0:
            return out + name[i:]
        k = name.index("-", j)
        out += name[i:j]
        b = name[j + 1:k].replace(",", "/")
        out += base64.b64decode(b + "=" * (-len(b) % 4)).decode(
            "utf-16-be") if b else "&"
        i = k + 1
    return out


def mutf7_encode(text):
    """str -> modified UTF-7."""
    out, run = "", ""
    for ch in text + "\0":
        if " " <= ch <= "~" or ch == "\0":
            if run:
                b = base64.b64encode(run.encode("utf-16-be")).decode()
                out += "&" + b.rstrip("=").replace("/", ",") + "-"
                run = ""
            out += "&-" if ch == "&" else ch if ch != "\0" else ""
        else:
            run += ch
    return out


def imap(c):
    srv, spec = c.srv, c.srv.spec
    state = {"authed": False, "selected": False, "folder": "INBOX"}
    if not hasattr(srv, "names"):      # CREATE adds to it for good
        srv.names = ["INBOX"] + list(spec.get("folders", {}))
    names = srv.names
    c.tag = "*"

    def caps():
        cl = spec.get("caps", "IMAP4rev1 UIDPLUS MOVE AUTH=PLAIN").split()
        if spec.get("offer_tls", spec.get("tls") == "starttls") and not c.tls:
            cl.append("STARTTLS")
        return " ".join(cl)

    def live():
        return [m for m in srv.mailbox
                if m["present"] and m["folder"] == state["folder"]]

    def canon(name):
        """A name as the client sent it -> as `names` keeps it (modified
        UTF-7): after ENABLE UTF8=ACCEPT the client sends UTF-8 (RFC 6855),
        which arrives here as latin-1 text."""
        if not state.get("utf8"):
            return name
        return mutf7_encode(name.encode("latin-1").decode("utf-8", "replace"))

    def wire(name):
        """The reverse, for LIST."""
        if not state.get("utf8"):
            return name
        return mutf7_decode(name).encode("utf-8").decode("latin-1")

    def folder(name):
        """The folder a mailbox name denotes (INBOX in any case), or None."""
        name = canon(name)
        if name.upper() == "INBOX":
            return "INBOX"
        return name if name in names else None

    c.reply("<GREETING>", spec.get("greeting", "* OK [CAPABILITY %s] faultd "
                                   "IMAP ready" % caps()) + "\r\n")
    c.held = []
    while True:
        if c.held and b"\n" not in c.buf and not (
                isinstance(c.sock, ssl.SSLSocket) and c.sock.pending()) \
                and not select.select([c.sock], [], [], 0.3)[0]:
            release_held(c)
        line = imap_command(c)
        if c.held and not re.match(r"\S+ APPEND ", line, re.I):
            release_held(c)
        if c.bad_literal:
            c.tag = line.partition(" ")[0]
            c.log("*", "non-synchronizing literal not offered")
            c.reply("<BAD LITERAL>", "%s BAD non-synchronizing literal "
                    "not offered\r\n" % c.tag)
            continue
        tag, _, rest = line.partition(" ")
        c.tag = tag
        words = rest.split(" ", 1)
        verb = words[0].upper()
        args = words[1] if len(words) > 1 else ""
        if verb == "UID":
            sub = args.split(" ", 1)
            verb = "UID " + sub[0].upper()
            args = sub[1] if len(sub) > 1 else ""
        cmd = rest
        if verb == "LOGIN":
            cmd = "LOGIN <hidden>"
        if verb == "APPEND" and c.literals:
            pos, lit = c.literals[-1]
            cmd = "%s{%d}" % (line[len(tag) + 1:pos], len(lit))
        c.log("C", "%s %s" % (tag, cmd))
        ok = "%s OK %s completed\r\n" % (tag, verb)
        if verb == "CAPABILITY":
            c.reply(cmd, "* CAPABILITY %s\r\n" % caps() + ok)
        elif verb == "NOOP":
            c.reply(cmd, ok)
        elif verb == "LOGOUT":
            c.reply(cmd, "* BYE logging out\r\n" + ok)
            return
        elif verb == "STARTTLS":
            r = srv.rule_for(c.rec, cmd)
            if c.reply(cmd, ok, rule=r) or (r is not None and
                                            r.get("starttls")):
                c.starttls()
        elif verb == "LOGIN":
            t = imap_tokens(args)
            good = len(t) == 2 and c.check_login(t[0], t[1])
            if spec.get("login_caps"):
                ok = "%s OK [CAPABILITY %s] Logged in\r\n" % (tag, caps())
            if c.reply(cmd, ok if good else "%s NO [AUTHENTICATIONFAILED] "
                       "Authentication failed.\r\n" % tag) and good:
                state["authed"] = True
        elif verb == "AUTHENTICATE" and args.upper().startswith("PLAIN"):
            b64 = args[5:].strip()
            if not b64:
                c.send("+ \r\n")
                b64 = c.line()
                c.log("C", "<AUTHENTICATE response hidden>")
            try:
                _, u, pw = base64.b64decode(b64).decode("latin-1").split("\0")
            except Exception:
                u = pw = None
            good = c.check_login(u, pw)
            if c.reply(cmd, ok if good else "%s NO [AUTHENTICATIONFAILED] "
                       "Authentication failed.\r\n" % tag) and good:
                state["authed"] = True
        elif not state["authed"]:
            c.reply(cmd, "%s BAD not logged in\r\n" % tag)
        elif verb == "ENABLE":
            on = spec.get("utf8_accept") and "UTF8=ACCEPT" in args.upper()
            if c.reply(cmd, "* ENABLED%s\r\n" % (" UTF8=ACCEPT" if on
                                                  else "") + ok) and on:
                state["utf8"] = True
        elif verb == "APPEND" and c.literals:
            imap_append(c, cmd, names, folder)
        elif verb == "CREATE":
            t = imap_tokens(args)
            if t and folder(t[0]) is None:
                if c.reply(cmd, ok):
                    names.append(canon(t[0]))
            else:
                c.reply(cmd, "%s NO [ALREADYEXISTS] exists\r\n" % tag)
        elif verb in ("SUBSCRIBE", "UNSELECT"):
            c.reply(cmd, ok)
        elif verb == "LIST":
            t = imap_tokens(args)
            pat = canon(t[1]) if len(t) > 1 else ""
            rx = "^" + "".join(".*" if ch == "*" else "[^/]*" if ch == "%"
                               else re.escape(ch) for ch in pat) + "$"
            out = ""
            for nm in names:
                if re.match(rx, nm, re.I if nm == "INBOX" else 0):
                    out += '* LIST (\\HasNoChildren) "/" "%s"\r\n' % wire(nm)
            c.reply(cmd, out + ok)
        elif verb in ("SELECT", "EXAMINE"):
            t = imap_tokens(args)
            if not t or folder(t[0]) is None:
                state["selected"] = False
                c.reply(cmd, "%s NO [NONEXISTENT] no such mailbox\r\n" % tag)
                continue
            state["folder"] = folder(t[0])
            box = live()
            top = max([m["uid"] for m in box] or [0])
            if c.reply(cmd, "* FLAGS (\\Seen \\Deleted)\r\n* %d EXISTS\r\n"
                       "* 0 RECENT\r\n* OK [UIDVALIDITY %d] UIDs valid\r\n"
                       "* OK [UIDNEXT %d] next\r\n%s OK [%s] %s completed\r\n"
                       % (len(box), srv.uidvalidity, top + 1, tag,
                          "READ-ONLY" if verb == "EXAMINE" else "READ-WRITE",
                          verb)):
                state["selected"] = True
        elif not state["selected"]:
            c.reply(cmd, "%s BAD no mailbox selected\r\n" % tag)
        elif verb == "UID FETCH":
            imap_fetch(c, cmd, args, live(), ok)
        elif verb == "UID SEARCH":
            t = imap_tokens(args)
            hit = []
            if len(t) >= 3 and t[0].upper() == "HEADER":
                key = (t[1] + ":").lower().encode()
                for m in live():
                    head = m["raw"].split(b"\r\n\r\n", 1)[0]
                    head = re.sub(rb"\r\n[ \t]+", b" ", head)
                    if any(h.lower().startswith(key) and
                           t[2].lower().encode() in h.lower()
                           for h in head.split(b"\r\n")):
                        hit.append(m["uid"])
            else:
                hit = imap_search(live(), t)
                if hit is None:
                    c.reply(cmd, "%s BAD unsupported or invalid search "
                            "key\r\n" % tag)
                    continue
            c.reply(cmd, "* SEARCH%s\r\n" % "".join(" %d" % u for u in hit)
                    + ok)
        elif verb == "UID STORE":
            t = imap_tokens(args)
            box = live()
            want = uid_set(t[0], sorted(m["uid"] for m in box))
            flags = t[-1].strip("()").split()
            if c.reply(cmd, ok):
                for m in box:
                    if m["uid"] in want:
                        for f in flags:
                            if f not in m["flags"]:
                                m["flags"].append(f)
        elif verb in ("UID EXPUNGE", "EXPUNGE", "CLOSE"):
            box = live()
            want = (uid_set(args.strip(), sorted(m["uid"] for m in box))
                    if verb == "UID EXPUNGE" else [m["uid"] for m in box])
            gone = [m for m in box if m["uid"] in want
                    and "\\Deleted" in m["flags"]]
            out = "".join("* %d EXPUNGE\r\n" % (box.index(m) + 1)
                          for m in reversed(gone)) if verb != "CLOSE" else ""
            if c.reply(cmd, out + ok):
                for m in gone:
                    m["present"] = False
                    srv.committed.append(m["id"])
        elif verb in ("UID MOVE", "UID COPY"):
            t = imap_tokens(args)
            box = live()
            want = uid_set(t[0], sorted(m["uid"] for m in box))
            if c.reply(cmd, ok):
                srv.moved = getattr(srv, "moved", [])
                for m in box:
                    if m["uid"] in want:
                        srv.moved.append(m["id"])
                        if verb == "UID MOVE":
                            m["present"] = False
                            srv.committed.append(m["id"])
        else:
            c.reply(cmd, "%s BAD unknown command\r\n" % tag)


def release_held(c):
    """Sends the APPEND answers held back (spec append_hold)."""
    held, c.held = c.held, []
    c.send(b"".join(held))
    c.log("*", "released %d" % len(held))


def imap_append(c, cmd, names, folder):
    """APPEND as a target: the message is c.literals[-1]."""
    srv, tag = c.srv, c.tag
    raw = c.literals[-1][1]
    t = imap_tokens(cmd[len("APPEND "):])
    name = folder(t[0]) if t else None
    entry = {"id": fault_id(raw), "rcpts": [t[0] if t else ""],
             "size": len(raw), "replies": None, "tls": c.tls,
             "conn": c.rec["n"],
             "flags": next((x for x in t[1:] if x.startswith("(")), ""),
             "date": next((x for x in t[1:-1] if not x.startswith("(")), "")}
    srv.received.append(entry)
    if name is None:
        normal = "%s NO [TRYCREATE] no such mailbox\r\n" % tag
    else:
        uid = max([m["uid"] for m in srv.mailbox if m["folder"] == name]
                  or [0]) + 1
        normal = "%s OK [APPENDUID %d %d] APPEND completed\r\n" % (
            tag, srv.uidvalidity, uid)
    r = srv.rule_for(c.rec, cmd)
    if r is not None and r.get("action") == "drop":
        entry["replies"] = "dropped"
    if r is not None and r.get("action") == "stored_drop" and name:
        # the server has the message, the client never hears so
        srv.mailbox.append({"id": entry["id"], "uid": uid, "raw": raw,
                            "present": True, "flags": [], "folder": name})
        entry["replies"] = ["OK stored, then the connection dropped"]
        c.log("*", "append %d bytes, id %s: stored, dropped" % (
            len(raw), entry["id"]))
        raise Dropped("drop after storing")
    try:
        if r is None and c.srv.spec.get("append_hold"):
            c.held.append(normal.encode("latin-1"))
            entry["held"] = sent = True
        else:
            sent = c.reply(cmd, normal, r)
    finally:
        if entry["replies"] is None:
            entry["replies"] = [(r["reply"].replace("{tag} ", "") if r and
                                 "reply" in r else normal[len(tag) + 1:]
                                 .rstrip("\r\n"))]
    if sent and name is not None:
        srv.mailbox.append({"id": entry["id"], "uid": uid, "raw": raw,
                            "present": True, "flags": [], "folder": name})
    c.log("*", "append %d bytes, id %s: %s%s" % (
        len(raw), entry["id"], entry["replies"],
        ", held" if entry.get("held") else ""))


def drain_unread(c):
    """Reads what the client sent ahead (a pipelined command), so that the
    close is a FIN: Linux answers a close with unread data by a reset,
    and a reset throws away what the client had received but not read
    yet -- the whole bodies this fault wants delivered."""
    c.sock.settimeout(0.2)
    try:
        while c.sock.recv(65536):
            pass
    except OSError:
        pass


def watch_ahead(c):
    """watch_pipelining: whether the next command comes unasked"""
    secs = float(c.srv.spec.get("watch_pipelining", 0))
    if secs <= 0:
        return
    want = int(c.srv.spec.get("watch_ahead", 1))
    end = time.monotonic() + secs
    c.sock.settimeout(0.05)
    try:
        while c.buf.count(b"\n") < want and time.monotonic() < end:
            try:
                d = c.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                continue
            if not d:
                break
            c.buf += d
    finally:
        c.sock.settimeout(60)
    c.log("*", "next command before the reply" if b"\n" in c.buf
          else "no command before the reply")
    if want > 1:
        c.log("*", "%d commands before the reply" % c.buf.count(b"\n"))


def imap_fetch(c, cmd, args, box, ok):
    t = imap_tokens(args)
    uids = sorted(m["uid"] for m in box)
    want = uid_set(t[0], uids) if t else []
    items = " ".join(t[1:]).upper()
    seq = {m["uid"]: k for k, m in enumerate(box, 1)}
    byuid = {m["uid"]: m for m in box}
    r = c.srv.rule_for(c.rec, cmd)
    imap_acts = ("no_after", "unsolicited", "fewer", "long_literal",
                 "drop_in_literal", "expunged", "endless_quoted")
    if "HEADER.FIELDS" in items:        # Message-ID fields only
        out = b""
        for u in want:
            f = re.search(rb"(?im)^message-id:[^\n]*\n", byuid[u]["raw"]
                          .split(b"\r\n\r\n", 1)[0] + b"\r\n")
            h = (f.group(0) if f else b"") + b"\r\n"
            out += b"* %d FETCH (UID %d BODY[HEADER.FIELDS (MESSAGE-ID)] "\
                   b"{%d}\r\n%s)\r\n" % (seq[u], u, len(h), h)
        c.log("*", "header fields of %d message(s)" % len(want))
        c.reply(cmd, out + ok.encode(), rule=r)
        return
    if "BODY" not in items:             # the listing
        def gm(u):
            # Gmail's id: a copy (another label) has its original's
            if "X-GM-MSGID" not in items:
                return ""
            i = byuid[u]["id"]
            return " X-GM-MSGID %d" % (
                10000 + int(c.srv.spec.get("copies", {}).get(str(i), i)))
        out = "".join("* %d FETCH (UID %d RFC822.SIZE %d%s)\r\n"
                      % (seq[u], u, len(byuid[u]["raw"]), gm(u))
                      for u in want)
        c.reply(cmd, out + ok, rule=r)
        return
    watch_ahead(c)
    huge = c.srv.spec.get("huge", {})
    if (r is None and any(str(byuid[u]["id"]) in huge for u in want)):
        for u in want:
            m = byuid[u]
            if str(m["id"]) not in huge:
                c.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n"
                       % (seq[u], u, len(m["raw"]), m["raw"]))
                continue
            head = m["raw"].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            n = int(huge[str(m["id"])])
            c.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n"
                   % (seq[u], u, len(head) + n))
            stream_huge(c, head, n)
            c.send(b")\r\n")
        c.send(ok)
        return
    if r is None or r.get("action") not in imap_acts:
        out = b"".join(b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n"
                       % (seq[u], u, len(byuid[u]["raw"]), byuid[u]["raw"])
                       for u in want)
        c.reply(cmd, out + ok.encode(), rule=r)
        return
    act, at = r["action"], int(r.get("at", 2))
    for k, u in enumerate(want, 1):
        raw = byuid[u]["raw"]
        head = b"* %d FETCH (UID %d BODY[] " % (seq[u], u)
        if k == at and act == "no_after":
            c.send("%s NO [UNAVAILABLE] backend error after %d messages\r\n"
                   % (c.tag, k - 1))
            c.log("*", "tagged NO after %d FETCH results" % (k - 1))
            return
        if k == at and act == "fewer":
            c.log("*", "left UID %d out of the FETCH" % u)
            continue
        if k == at and act == "expunged":
            # another client expunged it just now: later messages move up
            c.send("* %d EXPUNGE\r\n" % seq[u])
            byuid[u]["present"] = False
            c.srv.vanished.append(byuid[u]["id"])
            for u2 in want[k:]:
                seq[u2] -= 1
            c.log("*", "UID %d expunged by another client" % u)
            continue
        if k == at and act == "long_literal":
            extra = int(r.get("extra", 100))
            c.send(head + b"{%d}\r\n" % (len(raw) + extra) + raw + b")\r\n"
                   + ok.encode())
            c.log("*", "literal announced %d bytes longer than sent" % extra)
            time.sleep(float(r.get("secs", 30)))
            raise Dropped("long literal")
        if k == at and act == "endless_quoted":
            # a quoted string that never ends: no CRLF, `mb` MB of it
            c.send(head + b'"')
            chunk, sent = b"x" * 65536, 0
            try:
                for _ in range(int(r.get("mb", 64)) * 16):
                    c.send(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            c.rec["endless_sent"] = sent
            c.log("*", "an endless quoted string: %d bytes sent" % sent)
            raise Dropped("endless quoted")
        if k == at and act == "drop_in_literal":
            c.send(head + b"{%d}\r\n" % len(raw) + raw[:len(raw) // 2])
            c.log("*", "dropped in the literal of UID %d" % u)
            drain_unread(c)
            raise Dropped("drop in literal")
        if act == "unsolicited":
            n = len(box)
            c.send("* %d FETCH (FLAGS (\\Seen))\r\n* %d EXISTS\r\n* 1 RECENT\r\n"
                   "* OK [ALERT] unsolicited, as servers do\r\n"
                   "* %d FETCH (UID %d FLAGS ())\r\n"
                   % (seq[want[0]], n, seq[u], u))
        c.send(head + b"{%d}\r\n" % len(raw) + raw + b")\r\n")
    if act == "unsolicited":
        c.log("*", "unsolicited responses amid the FETCH")
    c.send(ok)


# ---- SMTP / LMTP ----------------------------------------------------------------
def smtp(c, lmtp):
    spec = c.srv.spec
    c.reply("<GREETING>", spec.get("greeting", "220 faultd ESMTP ready") + "\r\n")
    rcpts = []
    mail_from = None
    chunks = []         # BDAT chunks so far; None: the transaction failed
    while True:
        l = c.line()
        verb = l.split(" ", 1)[0].upper()
        c.log("C", "AUTH <hidden>" if verb == "AUTH" else l)
        if verb in ("EHLO", "LHLO", "HELO"):
            if verb == "HELO" and lmtp or verb == "LHLO" and not lmtp:
                c.reply(l, "500 5.5.1 wrong hello for this protocol\r\n")
                continue
            ext = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                   "SIZE %d" % int(spec.get("size", 10485760))]
            if spec.get("no_pipelining"):
                ext.remove("PIPELINING")
            if not lmtp:
                ext.append("ETRN")
            if spec.get("chunking"):
                ext.append("CHUNKING")
            if spec.get("offer_tls", spec.get("tls") == "starttls") and not c.tls:
                ext.append("STARTTLS")
            if spec.get("auth"):
                ext.append("AUTH PLAIN LOGIN")
            lines = ["faultd"] + ext
            c.reply(l, "".join("250%s%s\r\n" % ("-" if k < len(lines) - 1 else " ", x)
                               for k, x in enumerate(lines)))
        elif verb == "STARTTLS":
            if c.reply(l, "220 2.0.0 go ahead\r\n"):
                c.starttls()
        elif verb == "AUTH":
            parts = l.split(" ")
            mech = parts[1].upper() if len(parts) > 1 else ""
            if mech == "PLAIN":
                b64 = parts[2] if len(parts) > 2 else None
                if b64 is None:
                    c.send("334 \r\n")
                    b64 = c.line()
                try:
                    _, u, p = base64.b64decode(b64).decode("latin-1").split("\0")
                except Exception:
                    u = p = None
            elif mech == "LOGIN":
                c.send("334 VXNlcm5hbWU6\r\n")
                u = base64.b64decode(c.line()).decode("latin-1")
                c.send("334 UGFzc3dvcmQ6\r\n")
                p = base64.b64decode(c.line()).decode("latin-1")
            else:
                c.reply(l, "504 5.5.4 mechanism\r\n")
                continue
            ok = c.check_login(u, p)
            c.reply(l, "235 2.7.0 ok\r\n" if ok else "535 5.7.8 bad credentials\r\n")
        # as RFC 2920 wants of a server that offers PIPELINING: no RCPT
        # after a refused MAIL, no DATA without an accepted recipient
        elif verb == "MAIL":
            mail_from = None
            rcpts = []
            chunks = []
            if c.reply(l, "250 2.1.0 ok\r\n"):
                mail_from = l[5:]
        elif verb == "RCPT":
            if mail_from is None:
                c.send("503 5.5.1 MAIL first\r\n")
            elif c.reply(l, "250 2.1.5 ok\r\n"):
                rcpts.append(l[3:].split(":", 1)[-1].strip())
            if c.buf[:5].upper() == b"BDAT ":
                c.log("*", "BDAT pipelined behind RCPT")
        elif verb == "DATA":
            if not rcpts:
                c.send("554 5.5.1 no valid recipients\r\n")
                continue
            if not c.reply(l, "354 go ahead\r\n"):
                continue
            body = []
            maxl = spec.get("data_max_line")
            while True:
                d = c.line()
                if d == ".":
                    break
                if maxl and len(d) > int(maxl):
                    rep = spec.get("data_max_line_reply",
                                   "500 5.0.0 Line too long")
                    c.send(rep + "\r\n")
                    c.log("*", "line of %d bytes: replied %s, closed"
                          % (len(d), rep))
                    raise Dropped("line too long in DATA")
                body.append(d[1:] if d.startswith(".") else d)
            raw = ("\r\n".join(body) + "\r\n").encode("latin-1")
            end_of_data(c, lmtp, raw, mail_from, rcpts, [])
            rcpts = []
            mail_from = None
        elif verb == "BDAT" and spec.get("chunking"):
            m = re.match(r"BDAT (\d+)( LAST)?$", l, re.I)
            if not m:
                c.reply(l, "501 5.5.4 syntax: BDAT n [LAST]\r\n")
                continue
            data = c.read_exact(int(m.group(1)), "chunk")
            if chunks is None or not rcpts:
                c.send("503 5.5.1 no valid recipients or a failed "
                       "transaction\r\n")
                chunks = None
                continue
            if not m.group(2):
                if c.reply(l, "250 2.0.0 %d octets received\r\n" % len(data)):
                    chunks.append(data)
                else:
                    chunks = None
                continue
            r = c.srv.rule_for(c.rec, l)
            if r is not None:
                c.reply(l, "", r)
                chunks = None
                continue
            chunks.append(data)
            end_of_data(c, lmtp, b"".join(chunks), mail_from, rcpts,
                        [len(x) for x in chunks])
            chunks = []
            rcpts = []
            mail_from = None
        elif verb == "RSET":
            chunks = []
            rcpts = []
            mail_from = None
            c.reply(l, "250 2.0.0 ok\r\n")
        elif verb == "NOOP":
            c.reply(l, "250 2.0.0 ok\r\n")
        elif verb == "ETRN" and not lmtp:
            # RFC 1985: 250 by default; rules give 251-253, 458, 459, 5xx
            c.reply(l, "250 Queuing for node %s started\r\n" % l[5:])
        elif verb == "QUIT":
            c.reply(l, "221 2.0.0 bye\r\n")
            return
        else:
            c.reply(l, "500 5.5.2 unknown command\r\n")


def end_of_data(c, lmtp, raw, mail_from, rcpts, chunks):
    """After DATA's dot or BDAT LAST: records the message, replies."""
    entry = {"id": fault_id(raw), "from": mail_from, "rcpts": list(rcpts),
             "size": len(raw), "replies": None, "tls": c.tls,
             "conn": c.rec["n"], "chunks": chunks}
    if c.srv.spec.get("keep_bodies"):
        entry["body"] = raw.decode("latin-1")
    c.srv.received.append(entry)
    m = re.match(rb"Received:[^\r]*(?:\r\n[ \t][^\r]*)*", raw)
    f = re.search(rb"\bfor <([^>]*)>", m.group(0)) if m else None
    c.log("*", "data %s bytes, id %s, Received %s" % (
        len(raw), entry["id"], "for <%s>" % f.group(1).decode("latin-1")
        if f else "without for" if m else "none"))
    if lmtp:
        normal = ["250 2.0.0 <%s> delivered" % r for r in rcpts]
    else:
        normal = ["250 2.0.0 queued as %d" % len(c.srv.received)]
    r = c.srv.rule_for(c.rec, "<EOM>", entry["id"])
    replies = normal
    if r is not None:
        if r.get("action") == "drop":
            entry["replies"] = "dropped"
            c.log("*", "dropped after data")
            raise Dropped("drop after data")
        if r.get("action") == "stall":
            entry["replies"] = "stalled"
            c.log("*", "stall after data")
            time.sleep(float(r.get("secs", 30)))
            raise Dropped("stall")
        if "delay" in r:
            time.sleep(float(r["delay"]))
            c.log("*", "replies held %ss" % r["delay"])
        rep = r.get("reply", normal)
        replies = rep if isinstance(rep, list) else [rep]
    entry["replies"] = replies
    c.send("".join(x + "\r\n" for x in replies))
    c.log("*", "replied %s" % replies)


def handle(srv, sock, n):
    with srv.lock:
        srv.conn_opened(n)
    c = Conn(srv, sock, n)
    try:
        if srv.spec.get("tls") == "implicit":
            try:
                c.starttls()
            except (ssl.SSLError, OSError) as e:
                c.log("*", "TLS handshake failed: %s" % e)
                return
        proto = srv.spec["proto"]
        if proto == "pop3":
            pop3(c)
        elif proto == "imap":
            imap(c)
        else:
            smtp(c, proto == "lmtp")
    except Dropped as e:
        c.log("*", "closed: %s" % e)
    except (ssl.SSLError, OSError, UnicodeError) as e:
        c.log("*", "error: %s" % e)
    finally:
        try:
            c.sock.close()
        except OSError:
            pass
        with srv.lock:
            c.rec["ended"] = True
            srv.save()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("state")
    ap.add_argument("--certs", default=".")
    ap.add_argument("--lifetime", type=float, default=120)
    a = ap.parse_args()
    with open(a.spec) as f:
        spec = json.load(f)
    srv = Server(spec, a.state, a.certs)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if spec.get("refuse"):
        # a port that refuses: bind, note it, close (nothing listens)
        ls.bind(("127.0.0.1", 0))
        print("PORT %d" % ls.getsockname()[1], flush=True)
        ls.close()
        time.sleep(a.lifetime)
        return 0
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    print("PORT %d" % ls.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    end = time.monotonic() + a.lifetime
    n = 0
    while time.monotonic() < end:
        ls.settimeout(max(0.1, end - time.monotonic()))
        try:
            s, _ = ls.accept()
        except socket.timeout:
            break
        n += 1
        # one at a time, but a stalled connection must not block the next
        t = threading.Thread(target=handle, args=(srv, s, n), daemon=True)
        t.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
