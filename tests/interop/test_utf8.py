"""test_utf8.py -- IMAP with UTF8=ACCEPT (RFC 6855) against Courier IMAP.

    MAILHAUL=build/mailhaul python3 tests/interop/test_utf8.py

Courier IMAP 5 offers ENABLE and UTF8=ACCEPT.  Its user has INBOX and a
folder "Entwürfe" (on disk .Entw&APw-rfe), each with a message whose
header holds raw UTF-8 (Subject, From's display name), stored with LF.
The account syncs INBOX and the pattern "INBOX.Entw*" into the
harness's Dovecot LMTP at debug level; then:

  - mailhaul said ENABLE UTF8=ACCEPT and Courier answered ENABLED;
  - after it, mailhaul asked for the folder by its UTF-8 name first;
    Courier (5.x, Debian 12) still LISTs modified UTF-7 and answers NO
    to the UTF-8 name -- its bug, RFC 6855 sec 3 -- so mailhaul says so
    and opens it by its modified UTF-7 name;
  - both messages arrived byte for byte as stored (LF line ends at
    Dovecot), the raw UTF-8 header intact;
  - a second sync delivers nothing (the folder's state is kept under
    its modified UTF-7 name whatever the session speaks).
Exit 0 pass, 1 fail, 77 when Courier is not unpacked or not root.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mh       # noqa: E402
import servers  # noqa: E402

FOLDER = "INBOX.Entwürfe"    # Courier: folders below INBOX.
FOLDER_DISK = ".Entw&APw-rfe"


def message(n):
    return ("From: Jürgen Müller <juergen@example.org>\n"
            "To: bob@example.org\n"
            "Subject: Grüße aus Köln, Nummer %d ✓\n"
            "Message-ID: <utf8-%d@example.org>\n"
            "X-Corpus-Id: utf8-%d\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n"
            "\n"
            "Schöne Grüße, %d.\n" % (n, n, n, n)).encode()


def seed(cour, sub, raw, n):
    md = cour.path("home", cour.user, "Maildir", *sub)
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    if sub:
        open(os.path.join(md, "maildirfolder"), "w").close()
    name = "%d.M%dP%d.utf8" % (1700000100 + n, n, os.getpid())
    with open(os.path.join(md, "new", name), "wb") as f:
        f.write(raw)
    servers.chown_tree(cour.path("home"))


def run():
    with mh.Harness() as h, servers.Courier(h) as cour:
        msgs = [message(1), message(2)]
        seed(cour, [], msgs[0], 1)
        seed(cour, [FOLDER_DISK], msgs[1], 2)
        tgt = servers.DovecotLmtp(h)
        cfg = mh.write_config(h.path("utf8.ini"), (
            "[general]\nstate = %s\nlog_level = debug\n\n[target:t]\n%s\n"
            "[account:a]\n%sfolders = INBOX, INBOX.Entw*\ntarget = t\n"
            % (h.path("state", "state.db"), tgt.target(),
               cour.account("imap"))))
        rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=120)
        log = out + err
        if rc != 0:
            raise AssertionError("sync rc %d:\n%s" % (rc, log[-4000:]))
        for want in ("ENABLE UTF8=ACCEPT", "ENABLED UTF8=ACCEPT",
                     'EXAMINE "%s"' % FOLDER, "(a server bug); trying its "
                     "modified UTF-7 name", 'EXAMINE "INBOX.Entw&APw-rfe"'):
            if want not in log:
                raise AssertionError("no %r in the transcript:\n%s"
                                     % (want, log[-4000:]))
        if log.index('EXAMINE "%s"' % FOLDER) > log.index(
                'EXAMINE "INBOX.Entw&APw-rfe"'):
            raise AssertionError("modified UTF-7 first:\n%s" % log[-4000:])
        got = {mh.header(m, "X-Corpus-Id"): tgt.unwrap(m)
               for m in tgt.delivered()}
        for n, raw in enumerate(msgs, 1):
            cid = "utf8-%d" % n
            if got.get(cid) != tgt.expect(raw):
                raise AssertionError("%s: got %r, want %r"
                                     % (cid, got.get(cid), raw))
        if len(got) != 2:
            raise AssertionError("%d delivered, want 2" % len(got))
        rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=120)
        if rc != 0 or len(tgt.delivered()) != 2:
            raise AssertionError("second sync: rc %d, %d delivered:\n%s"
                                 % (rc, len(tgt.delivered()),
                                    (out + err)[-3000:]))


if __name__ == "__main__":
    sys.exit(servers.run_test(run))
