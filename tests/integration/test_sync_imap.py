"""test_sync_imap.py -- `mailhaul sync` from a real Dovecot over IMAP:
the same invariants as POP3, plus folders, UIDVALIDITY, move and \\Seen.

    MAILHAUL=build/mailhaul python3 tests/integration/test_sync_imap.py [CASE...]
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import corpus
import mh
from test_sync_pop3 import check_exact, count_ids, sync, tricky_corpus

EX_TEMPFAIL = 75
EX_DATAERR = 65
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness")


def config(h, account="imapacct", extra="", tls="implicit", target_text=None):
    port = h.imaps_port if tls == "implicit" else h.imap_port
    if target_text is None:
        target_text = ("type = lmtp\nsocket = %s\nrecipient = bob@localhost\n"
                       % h.lmtp_socket)
    text = """[general]
state = %s

[target:home]
%s
[account:%s]
protocol = imap
host = localhost
port = %d
tls = %s
ca_file = %s
user = alice
password = %s
target = home
%s
""" % (h.path("state", "state.db"), target_text, account, port, tls, h.ca,
       h.password, extra)
    return mh.write_config(h.path("mailhaul.ini"), text)


def save(h, folder, msgs):
    """Stores msgs in alice's folder (created if needed) with doveadm."""
    save_as(h, "alice", folder, msgs)


def save_as(h, user, folder, msgs):
    """Stores msgs in user's folder (created if needed) with doveadm."""
    subprocess.run([os.path.join(HARNESS, "doveadm"), h.dir, "mailbox", "create",
                    "-u", user, folder], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    for m in msgs:
        subprocess.run([os.path.join(HARNESS, "doveadm"), h.dir, "save", "-u",
                        user, "-m", folder], input=m, check=True, timeout=60)


def logins(h, user, want=None):
    """IMAP logins of user in Dovecot's log.  With want, waits (bounded)
    for the log to catch up to that many, and a moment for more."""
    path = h.path("log", "dovecot.log")
    rx = re.compile(r"imap-login: (?:Info: )?Login: user=<%s>" % user)

    def count():
        with open(path, "rb") as f:
            return len(rx.findall(f.read().decode("utf-8", "replace")))
    n = count()
    if want is not None:
        end = time.monotonic() + 5
        while n < want and time.monotonic() < end:
            time.sleep(0.1)
            n = count()
        time.sleep(0.3)
        n = count()
    return n


def flags(h, folder):
    out = h.doveadm("fetch", "-u", "alice", "flags", "mailbox", folder)
    return [l for l in out.split("\n") if l.startswith("flags:")]


def case_imaps_lmtp_keep():
    """IMAPS -> LMTP: byte-exact, \\Seen untouched, nothing twice, and a
    re-poll with nothing new delivers nothing.  A pass over an empty
    mailbox makes no spool file (not even its directory)."""
    with mh.Harness() as h:
        cfg = config(h)
        rc, out, err = sync(cfg)
        assert "0 delivered" in out, out
        spool = h.path("state", "spool")
        assert not os.path.exists(spool), os.listdir(h.path("state"))
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        rc, out, err = sync(cfg)
        check_exact(msgs, h.messages("bob"), imap=True)
        assert all("\\Seen" not in f for f in flags(h, "INBOX")), flags(h, "INBOX")
        sync(cfg)
        assert h.count("bob") == len(msgs)
        more = [m["raw"] for m in corpus.generate(25, seed=31)][20:]
        h.inject("alice", more)
        rc, out, err = sync(cfg)
        assert "5 delivered" in out, out
        check_exact(msgs + more, h.messages("bob"), imap=True)


def verbose_sync(cfg):
    """sync -v: (stdout, stderr with the IMAP transcript)."""
    rc, out, err = mh.run_mailhaul(["-v", "sync"], cfg, timeout=600)
    assert rc == 0, (rc, out, err[-3000:])
    return out, err


def searches(err):
    """The sequence sets of the UID SEARCH commands in a -v transcript."""
    return re.findall(r">> \S+ UID SEARCH (\S+)", err)


def case_keep_prunes_gone():
    """keep, no delete_after: a pass lists only the UIDs above the known
    ones, yet once a day it asks for the folder's UIDs (UID SEARCH)
    and prunes: a message gone from the server is noted, its record
    dropped after 30 days; a listed message keeps its record however old
    its note, and nothing is delivered twice."""
    day = 24 * 3600
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(4, seed=41, tricks=False)]
        h.inject("alice", msgs[:3])
        cfg = config(h)
        sync(cfg)
        assert h.count("bob") == 3
        db = h.path("state", "state.db")

        def state(sql=None):
            c = sqlite3.connect(db)
            try:
                if sql:
                    c.execute(sql)
                    c.commit()
                return dict(c.execute("SELECT uid, gone_at FROM messages"))
            finally:
                c.close()

        assert sorted(state()) == ["1", "2", "3"], state()
        h.doveadm("expunge", "-u", "alice", "mailbox", "INBOX", "uid", "2")
        sync(cfg)   # not due: a new source's first prune is a day away
        assert all(g is None for g in state().values()), state()
        now = int(time.time())
        state("UPDATE sources SET pruned = %d" % (now - 2 * day))
        out, err = verbose_sync(cfg)
        assert searches(err) == ["1:*"], searches(err)
        s = state()
        assert sorted(s) == ["1", "2", "3"], s
        assert s["2"] is not None and s["2"] >= now, s
        assert s["1"] is None and s["3"] is None, s
        # a day later, uid 2 gone for 40 days; uid 1 marked so by mistake
        state("UPDATE messages SET gone_at = %d WHERE uid IN ('1', '2')"
              % (now - 40 * day))
        state("UPDATE sources SET pruned = %d" % (now - 2 * day))
        sync(cfg)
        s = state()
        assert s == {"1": None, "3": None}, s
        # pruned today: the next pass asks for nothing more
        h.inject("alice", msgs[3:])
        out, err = verbose_sync(cfg)
        assert "1 delivered" in out, out
        assert searches(err) == [], searches(err)
        assert state() == {"1": None, "3": None, "4": None}, state()
        assert h.count("bob") == 4


def case_keep_prunes_many():
    """The daily prune of a kept folder asks for its UIDs 5000 messages
    at a time: a SEARCH reply is one line, and 8010 UIDs of 10 digits
    (88 KB) would not fit in the 64 KiB a line may take.  Of 8010 messages
    (adopted by mark-seen) the ones expunged in the first and in the last
    range are noted gone, and only those."""
    n = 8010
    base = 4000000000
    with mh.Harness() as h:
        h.doveadm("mailbox", "update", "-u", "alice", "--min-next-uid",
                  str(base), "INBOX")
        msgs = [b"From: a@example.org\r\nMessage-ID: <%d.many@test>\r\n"
                b"Subject: %d\r\n\r\nbody\r\n" % (i, i) for i in range(n)]
        h.inject_many("alice", msgs)
        cfg = config(h)
        rc, out, err = mh.run_mailhaul(["mark-seen", "imapacct"], cfg,
                                       timeout=300)
        assert rc == 0, (rc, out, err)
        db = h.path("state", "state.db")
        c = sqlite3.connect(db)
        low, high, count = c.execute(
            "SELECT min(0 + uid), max(0 + uid), count(*) FROM messages").fetchone()
        assert (low, high, count) == (base, base + n - 1, n), (low, high, count)
        c.execute("UPDATE sources SET pruned = %d"
                  % (int(time.time()) - 2 * 24 * 3600))
        c.commit()
        c.close()
        h.doveadm("expunge", "-u", "alice", "mailbox", "INBOX", "uid",
                  "%d,%d" % (base + 4, base + 8002))
        out, err = verbose_sync(cfg)
        assert "0 delivered" in out, out
        assert searches(err) == ["1:5000", "5001:*"], searches(err)
        c = sqlite3.connect(db)
        gone = [r[0] for r in c.execute(
            "SELECT uid FROM messages WHERE gone_at IS NOT NULL ORDER BY 0 + uid")]
        total = c.execute("SELECT count(*) FROM messages").fetchone()[0]
        c.close()
        assert gone == [str(base + 4), str(base + 8002)], gone[:10]
        assert total == n, total
        assert h.count("bob") == 0


def case_keep_siblings_kept():
    """A kept folder whose account has other folders is not pruned: a
    message gone from it may come to another folder later (a label, a
    move), and its record is what says it was delivered."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(4, seed=43, tricks=False)]
        h.inject("alice", msgs[:2])
        save(h, "Other", msgs[2:])
        cfg = config(h, extra="folders = INBOX, Other\n")
        sync(cfg)
        assert h.count("bob") == 4
        h.doveadm("expunge", "-u", "alice", "mailbox", "INBOX", "uid", "1")
        db = h.path("state", "state.db")
        c = sqlite3.connect(db)
        c.execute("UPDATE sources SET pruned = %d"
                  % (int(time.time()) - 2 * 24 * 3600))
        c.commit()
        c.close()
        out, err = verbose_sync(cfg)
        assert searches(err) == [], searches(err)
        c = sqlite3.connect(db)
        rows = c.execute("SELECT count(*), count(gone_at) FROM messages").fetchone()
        # judged once a day: both folders are stamped until tomorrow
        late = c.execute("SELECT count(*) FROM sources WHERE pruned < %d"
                         % (int(time.time()) - 3600)).fetchone()[0]
        c.close()
        assert rows == (4, 0), rows
        assert late == 0, late
        # the message comes back under another label: not delivered again
        save(h, "Other", msgs[:1])
        rc, out, err = sync(cfg)
        assert h.count("bob") == 4, out


def case_imap_starttls_smtp_delete():
    """IMAP + STARTTLS -> SMTP, keep = no: UID STORE + UID EXPUNGE empty
    the folder, everything arrived once."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, tls="starttls", target_text=target, extra="keep = no\n")
        sync(cfg)
        check_exact(msgs, h.smtp_messages("carol"), target="smtp", imap=True)
        assert h.server_count("alice") == 0
        sync(cfg)
        assert h.smtp_count("carol") == len(msgs)


def case_folders_patterns():
    """folders = INBOX, Lists/*: each folder fetched, with its own state,
    all over one login per pass; a folder that matches nothing is
    reported, not fatal."""
    with mh.Harness() as h:
        a = [m["raw"] for m in corpus.generate(9, seed=32, tricks=False)]
        h.inject("alice", a[:3])
        # the test bed's Maildir++ hierarchy separator is "."
        save(h, "Lists.one", a[3:6])
        save(h, "Lists.two", a[6:9])
        save(h, "Other", [corpus.big_message(1000, seed=33)])
        cfg = config(h, extra="folders = INBOX, Lists.*, Missing\n")
        before = logins(h, "alice")
        # the missing folder is reported (exit 65), the others synced
        rc, out, err = sync(cfg, ok=(EX_DATAERR,))
        assert "Missing" in out + err, out + err
        check_exact(a, h.messages("bob"))
        # one session per pass: LIST, then every folder on it
        n = logins(h, "alice", before + 1)
        assert n == before + 1, "%d logins for one pass" % (n - before)
        sync(cfg, ok=(EX_DATAERR,))
        assert h.count("bob") == 9
        n = logins(h, "alice", before + 2)
        assert n == before + 2, "%d logins for two passes" % (n - before)
        rc, out, err = mh.run_mailhaul(["status"], cfg)
        assert "Lists.one" in out and "Lists.two" in out, out


def case_uidvalidity_change():
    """The folder's UIDVALIDITY changes (mailbox rebuilt): only the really
    new messages are delivered."""
    with mh.Harness() as h:
        old = [m["raw"] for m in corpus.generate(6, seed=34, tricks=False)]
        h.inject("alice", old)
        cfg = config(h)
        sync(cfg)
        assert h.count("bob") == 6
        new = [m["raw"] for m in corpus.generate(9, seed=34, tricks=False)][6:]
        h.inject("alice", new)
        h.doveadm("mailbox", "update", "-u", "alice", "--uid-validity", "12345", "INBOX")
        rc, out, err = sync(cfg)
        assert "UIDVALIDITY" in err, err
        check_exact(old + new, h.messages("bob"))
        # the six delivered before were told by their headers: only the
        # three new bodies were fetched
        db = sqlite3.connect(h.path("state", "state.db"))
        fetched = db.execute("SELECT fetched FROM runs ORDER BY id DESC"
                             " LIMIT 1").fetchone()[0]
        db.close()
        assert fetched == 3, fetched


def case_move_and_mark_seen():
    """move_to moves delivered messages; mark_seen sets \\Seen."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(4, seed=35, tricks=False)]
        h.inject("alice", msgs)
        save(h, "Archive", [])
        cfg = config(h, extra="move_to = Archive\nmark_seen = yes\n")
        sync(cfg)
        check_exact(msgs, h.messages("bob"), imap=True)
        assert h.server_count("alice") == 0
        assert h.server_count("alice", "Archive") == 4
        fl = flags(h, "Archive")
        assert len(fl) == 4 and all("\\Seen" in f for f in fl), fl
        sync(cfg)
        assert h.count("bob") == 4


def case_permfail_tempfail():
    """5xx: kept, shown, not resent; 4xx: kept and retried."""
    with mh.Harness(smtp_args=["--reject-header", "X-Test-Reject"]) as h:
        msgs = [m["raw"] for m in corpus.generate(4, seed=36, tricks=False)]
        msgs[1] = msgs[1].replace(b"\n\n", b"\nX-Test-Reject: 550 5.7.1 go away\n\n", 1)
        msgs[2] = msgs[2].replace(b"\n\n", b"\nX-Test-Reject: 451 4.7.1 later\n\n", 1)
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target, extra="keep = no\n")
        rc, out, err = sync(cfg, ok=(EX_DATAERR, EX_TEMPFAIL))
        assert h.smtp_count("carol") == 2
        assert h.server_count("alice") == 2
        rc, out, err = mh.run_mailhaul(["status"], cfg)
        assert "go away" in out, out
        n = len(h.smtp_envelopes())
        sync(cfg, ok=(EX_DATAERR, EX_TEMPFAIL))
        # the 4xx one is tried again, the 5xx one is not
        assert len(h.smtp_envelopes()) == n + 1, h.smtp_envelopes()[n:]


def case_kill9_midpass():
    """SIGKILL three times during a 300-message delete pass: nothing lost,
    at most one duplicate per kill, the folder ends empty."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(300, seed=37, tricks=False)]
        h.inject("alice", msgs)
        cfg = config(h, extra="keep = no\n")
        kills = 0
        for at in (30, 120, 220):
            p = subprocess.Popen([mh.mailhaul_path(), "-c", cfg, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert mh.wait_for(lambda: h.count("bob") >= at or p.poll() is not None,
                               timeout=120, step=0.005)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=30)
        sync(cfg)
        seen = count_ids(h)
        assert len(seen) == 300, "lost %d" % (300 - len(seen))
        assert sum(v - 1 for v in seen.values()) <= kills
        assert h.server_count("alice") == 0


def case_memory_50mb():
    """A 50 MB message over IMAP within the 16 MB RSS bound."""
    with mh.Harness() as h:
        big = corpus.big_message(50 * 1024 * 1024, seed=38)
        h.inject("alice", [big])
        cfg = config(h)
        rc, _, err, kb = mh.run_maxrss(["-c", cfg, "sync"])
        assert rc == 0, err
        check_exact([big], h.messages("bob"))
        mh.check_rss(kb, cfg)


def case_retry_keep():
    """keep = yes: a refused message is retried by `mailhaul retry` even
    though later messages moved the folder's last UID on."""
    with mh.Harness(smtp_args=["--reject-header", "X-Test-Reject"]) as h:
        msgs = [m["raw"] for m in corpus.generate(3, seed=39, tricks=False)]
        msgs[1] = msgs[1].replace(b"\n\n", b"\nX-Test-Reject: 550 5.7.1 no\n\n", 1)
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target)
        sync(cfg, ok=(EX_DATAERR,))
        h.inject("alice", [m["raw"] for m in corpus.generate(5, seed=39, tricks=False)][3:])
        sync(cfg)
        n = len(h.smtp_envelopes())
        assert n == 5, h.smtp_envelopes()
        rc, out, err = mh.run_mailhaul(["retry", "imapacct"], cfg)
        assert rc == 0 and "1 refused" in out, (out, err)
        sync(cfg, ok=(EX_DATAERR,))
        assert len(h.smtp_envelopes()) == n + 1, "retry did not resend"


def case_mark_seen_then_uidvalidity():
    """An adopted mailbox (mark-seen) is not redelivered when the folder's
    UIDVALIDITY changes."""
    with mh.Harness() as h:
        old = [m["raw"] for m in corpus.generate(5, seed=40, tricks=False)]
        h.inject("alice", old)
        cfg = config(h)
        rc, out, err = mh.run_mailhaul(["mark-seen", "imapacct"], cfg)
        assert rc == 0 and "5 messages recorded" in out, (out, err)
        new = [m["raw"] for m in corpus.generate(7, seed=40, tricks=False)][5:]
        h.inject("alice", new)
        h.doveadm("mailbox", "update", "-u", "alice", "--uid-validity", "777", "INBOX")
        sync(cfg)
        check_exact(new, h.messages("bob"), imap=True)


def case_folders_star_move_to():
    """folders = * with move_to = Archive: Archive is no source, so 5
    messages stay 5 deliveries over 4 passes (they were 20)."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(5, seed=41, tricks=False)]
        h.inject("alice", msgs)
        save(h, "Archive", [])
        cfg = config(h, extra="folders = *\nmove_to = Archive\n")
        for _ in range(4):
            rc, out, err = sync(cfg)
        check_exact(msgs, h.messages("bob"), imap=True)
        assert h.server_count("alice") == 0
        assert h.server_count("alice", "Archive") == 5
        assert "not syncing folder Archive" in err, err


def case_cross_folder_once():
    """A server-side move between two listed folders, and the same
    message in two folders (Gmail labels): each delivered once."""
    with mh.Harness() as h:
        a = [m["raw"] for m in corpus.generate(5, seed=42, tricks=False)]
        h.inject("alice", a[:3])
        save(h, "Other", [])
        cfg = config(h, extra="folders = INBOX, Other\n")
        sync(cfg)
        assert h.count("bob") == 3
        h.doveadm("move", "-u", "alice", "Other", "mailbox", "INBOX", "all")
        assert h.server_count("alice", "Other") == 3
        rc, out, err = sync(cfg)
        assert h.count("bob") == 3, "the move delivered them again"
        assert "delivered from folder INBOX already" in err, err
        # one message with two "labels", one in Other only
        h.inject("alice", [a[3]])
        save(h, "Other", [a[3], a[4]])
        sync(cfg)
        sync(cfg)
        check_exact(a, h.messages("bob"), imap=True)


def case_endpoint_renamed():
    """localhost -> 127.0.0.1 -> LOCALHOST (one server, three names): the
    state carries over, nothing is delivered again, new mail is."""
    with mh.Harness() as h:
        a = [m["raw"] for m in corpus.generate(8, seed=43, tricks=False)]
        h.inject("alice", a[:6])
        cfg = config(h)
        sync(cfg)
        assert h.count("bob") == 6
        with open(cfg) as f:
            text = f.read()
        mh.write_config(cfg, text.replace("host = localhost",
                                          "host = 127.0.0.1"))
        h.inject("alice", a[6:7])
        rc, out, err = sync(cfg)
        assert h.count("bob") == 7, "delivered again: %d" % h.count("bob")
        assert "state carries over" in err, err
        mh.write_config(cfg, text.replace("host = localhost",
                                          "host = LOCALHOST"))
        h.inject("alice", a[7:])
        sync(cfg)
        check_exact(a, h.messages("bob"), imap=True)


def case_two_accounts_same_login():
    """review: two [account:] sections of one login, different folders
    and targets; a message in both folders must reach both targets."""
    with mh.Harness() as h:
        a = [m["raw"] for m in corpus.generate(1, seed=77, tricks=False)]
        h.inject("alice", a)
        save(h, "Work", a)
        md = h.path("workmd")
        cfg = config(h, account="personal", extra="folders = INBOX\n")
        text = open(cfg).read() + """
[target:work]
type = maildir
path = %s

[account:work]
user = alice
password = %s
protocol = imap
folders = Work
target = work
host = localhost
port = %d
tls = implicit
ca_file = %s
""" % (md, h.password, h.imaps_port, h.ca)
        mh.write_config(cfg, text)
        sync(cfg, "personal")
        rc, out, err = sync(cfg, "work")
        print(rc, err[-800:])
        n = sum(len(os.listdir(os.path.join(md, d))) for d in ("new", "cur") if os.path.isdir(os.path.join(md, d)))
        print("bob:", h.count("bob"), "work maildir:", n)
        assert n == 1, "work target got %d" % n


def case_renamed_new_row_locked():
    """The server behind the account changed and lists nothing it knew:
    the pass moves to a new state row and must take that row's lock (a
    process holding it means busy, nothing delivered); once free, the
    messages are delivered once."""
    import fcntl
    import imaplib
    with mh.Harness() as h:
        cfg = config(h)
        a = [m["raw"] for m in corpus.generate(4, seed=91, tricks=False)]
        h.inject("alice", a[:2])
        sync(cfg)
        assert h.count("bob") == 2
        # another server's mailbox: nothing the account knew is listed
        c = imaplib.IMAP4("127.0.0.1", h.imap_port)
        c.login("alice", h.password)
        c.select("INBOX")
        c.store("1:*", "+FLAGS", "\\Deleted")
        c.expunge()
        c.logout()
        h.inject("alice", a[2:])
        with open(cfg) as f:
            text = f.read()
        mh.write_config(cfg, text.replace("host = localhost",
                                          "host = 127.0.0.1"))
        held = []
        locks = h.path("state", "locks")
        for i in range(2, 6):
            fd = os.open(os.path.join(locks, "%d.lock" % i),
                         os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(fd)
        rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=60)
        print("locked:", rc, err[-600:])
        assert h.count("bob") == 2, "delivered under another's lock: %d" \
            % h.count("bob")
        assert "busy" in err, err
        for fd in held:
            os.close(fd)
        sync(cfg)
        assert h.count("bob") == 4, h.count("bob")
        check_exact(a, h.messages("bob"), imap=True)


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
