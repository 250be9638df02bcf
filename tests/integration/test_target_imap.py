"""test_target_imap.py -- `mailhaul sync` into a real Dovecot over IMAP
APPEND (type = imap): the tricky corpus byte-exact from Dovecot POP3 and
IMAP, keep and delete modes, nothing twice, TRYCREATE, flags, the date,
and a crash at every step of a pass with no duplicate and nothing lost.

    MAILHAUL=build/mailhaul python3 tests/integration/test_target_imap.py [CASE...]

What Dovecot does to an APPENDed message (so what we compare against):
it stores LF line ends, and its IMAP serves every line end as CRLF and a
NUL byte as 0x80.  What mailhaul
sent is checked byte for byte by tests/unit/test-imap-append.c.
"""
import email.utils
import imaplib
import re
import sys
import time

import corpus
import mh
from test_sync_pop3 import sync, tricky_corpus

EX_TEMPFAIL = 75


# ---- helpers ---------------------------------------------------------------
def target_text(h, folder=None, flags=None, extra=""):
    """[target:home] keys: bob's mailbox over IMAPS."""
    t = ("type = imap\nhost = localhost\nport = %d\ntls = implicit\n"
         "ca_file = %s\nuser = bob\npassword = %s\n"
         % (h.imaps_port, h.ca, h.password))
    if folder is not None:
        t += "folder = %s\n" % folder
    if flags is not None:
        t += "flags = %s\n" % flags
    return t + extra


def config(h, protocol="pop3", extra="", **tkw):
    """alice's mailbox (POP3S or IMAPS) -> bob's over IMAP APPEND."""
    port = h.pop3s_port if protocol == "pop3" else h.imaps_port
    text = """[general]
state = %s

[target:home]
%s
[account:old]
protocol = %s
host = localhost
port = %d
tls = implicit
ca_file = %s
user = alice
password = %s
target = home
%s
""" % (h.path("state", "state.db"), target_text(h, **tkw), protocol, port,
       h.ca, h.password, extra)
    return mh.write_config(h.path("mailhaul.ini"), text)


def fetch_all(h, user, folder="INBOX"):
    """Every message of user's folder as Dovecot's IMAP serves it:
    [(uid, flags, internaldate (epoch), bytes)] in UID order."""
    m = imaplib.IMAP4("127.0.0.1", h.imap_port)
    try:
        m.login(user, h.password)
        typ, _ = m.select('"%s"' % folder, readonly=True)
        if typ != "OK":
            return []
        typ, data = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        out = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            uid = int(re.search(rb"UID (\d+)", head).group(1))
            flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode()
            t = imaplib.Internaldate2tuple(head)
            out.append((uid, flags.split(), time.mktime(t), body))
        return sorted(out)
    finally:
        try:
            m.logout()
        except Exception:
            pass


def as_appended(served):
    """What Dovecot's IMAP serves of a message APPENDed with these bytes
    (all line ends CRLF, as mailhaul sends them): a NUL as 0x80."""
    return served.replace(b"\x00", b"\x80")


def served(original, protocol):
    """What Dovecot's POP3 or IMAP serves of original: mh.crlf(), except
    that IMAP adds no final line end where the message has none."""
    s = mh.crlf(original)
    if protocol == "imap" and not original.endswith(b"\n"):
        s = s[:-2]
    return s


def check_exact(originals, copies, protocol="pop3"):
    """Every original arrived once, as Dovecot serves it after APPEND of
    one Received: line + what the source served."""
    by_id = {}
    for c in copies:
        cid = mh.header(c, "X-Corpus-Id")
        assert cid is not None, "copy without X-Corpus-Id: %r" % c[:200]
        assert cid not in by_id, "delivered twice: %s" % cid
        by_id[cid] = c
    want = {mh.header(m, "X-Corpus-Id"): m for m in originals}
    assert set(want) == set(by_id), ("missing %s, extra %s" % (
        sorted(set(want) - set(by_id))[:5], sorted(set(by_id) - set(want))[:5]))
    for cid, m in want.items():
        got = mh.strip_received(by_id[cid])
        exp = as_appended(served(m, protocol))
        if got != exp:
            k = next((i for i in range(min(len(got), len(exp)))
                      if got[i] != exp[i]), min(len(got), len(exp)))
            raise AssertionError("message %s differs at byte %d (want %d "
                                 "bytes, got %d): want %r, got %r" % (
                                     cid, k, len(exp), len(got),
                                     exp[max(0, k - 20):k + 20],
                                     got[max(0, k - 20):k + 20]))


def count_ids(h, folder="INBOX"):
    seen = {}
    for _, _, _, b in fetch_all(h, "bob", folder):
        cid = mh.header(b, "X-Corpus-Id")
        seen[cid] = seen.get(cid, 0) + 1
    return seen


# ---- cases -------------------------------------------------------------------
def case_pop3_keep():
    """POP3S -> IMAP APPEND into bob's INBOX, keep: the tricky corpus
    byte-exact, no flags, each message's Date: as its INTERNALDATE; a
    second pass delivers nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        cfg = config(h)
        rc, out, err = sync(cfg)
        assert "%d delivered" % len(msgs) in out, out
        got = fetch_all(h, "bob")
        check_exact(msgs, [b for _, _, _, b in got])
        for _, flags, idate, body in got:
            assert "\\Seen" not in flags, flags
            d = mh.header(body, "Date")
            if d:
                want = email.utils.mktime_tz(email.utils.parsedate_tz(d))
                assert abs(idate - want) < 1, (d, idate, want)
        assert h.server_count("alice") == len(msgs)
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out
        # check: the target's login and capabilities, nothing delivered
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == 0, (out, err)
        assert "target home: imap localhost:%d (tls implicit)" % h.imaps_port \
            in out, out
        assert "IMAP4rev1" in out.split("target capabilities:")[1], out
        assert h.password not in out + err
        assert len(fetch_all(h, "bob")) == len(msgs), "second pass delivered"


def case_pop3_many_pipelined():
    """POP3S -> IMAP APPEND, keep = no, more than one batch: 90
    realistic messages, the tricky ones and one of 10 MB (past the 8 MB
    that may go unanswered), their APPENDs sent ahead of the answers
    (Dovecot offers LITERAL+): each arrives once, byte-exact, and leaves
    the source; a second pass delivers nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        msgs += [m["raw"] for m in corpus.generate(90, seed=8,
                                                   profile="realistic")]
        msgs.append(corpus.big_message(10 * 1024 * 1024, seed=9))
        h.inject("alice", msgs)
        cfg = config(h, extra="keep = no\n")
        rc, out, err = sync(cfg)
        assert "%d delivered, %d deleted" % (len(msgs), len(msgs)) in out, \
            out
        check_exact(msgs, [b for _, _, _, b in fetch_all(h, "bob")])
        assert h.server_count("alice") == 0
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out
        assert len(fetch_all(h, "bob")) == len(msgs), "second pass delivered"


def case_imap_delete_trycreate_flags():
    """IMAPS -> IMAP APPEND, keep = no, into a folder that does not exist
    (created after TRYCREATE) with flags = \\Seen $Fetched: byte-exact,
    flags set, the source's INTERNALDATE kept, alice emptied, nothing
    twice."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        src_dates = {mh.header(b, "X-Corpus-Id"): d
                     for _, _, d, b in fetch_all(h, "alice")}
        cfg = config(h, protocol="imap", extra="keep = no\n",
                     folder="Fetched", flags="\\Seen, $Fetched")
        rc, out, err = sync(cfg)
        got = fetch_all(h, "bob", "Fetched")
        check_exact(msgs, [b for _, _, _, b in got], "imap")
        for _, flags, idate, body in got:
            assert "\\Seen" in flags and "$Fetched" in flags, flags
            cid = mh.header(body, "X-Corpus-Id")
            assert abs(idate - src_dates[cid]) < 1, (cid, idate, src_dates[cid])
        assert h.server_count("alice") == 0
        assert fetch_all(h, "bob") == [], "INBOX got mail"
        sync(cfg)
        assert len(fetch_all(h, "bob", "Fetched")) == len(msgs)


def crash_every_step(protocol, keep):
    """For every step N of a 3-message pass, stop dead at N, then run to
    completion: nothing lost and -- because the in-doubt message is looked
    up in the folder before it is sent again -- nothing twice.  (3, not
    4: a harness per step must fit meson's 600 s on a loaded machine.)"""
    msgs = [m["raw"] for m in corpus.generate(3, seed=41, tricks=False)]
    n = 1
    while True:
        with mh.Harness() as h:
            h.inject("alice", msgs)
            cfg = config(h, protocol=protocol,
                         extra="" if keep else "keep = no\n")
            rc, out, err = mh.run_mailhaul(
                ["sync"], cfg, env={"MAILHAUL_CRASH_AT_STEP": str(n)})
            crashed = rc == 99
            assert rc in (0, 99), (n, rc, err)
            sync(cfg)
            seen = count_ids(h)
            want = {mh.header(m, "X-Corpus-Id") for m in msgs}
            assert set(seen) == want, "step %d: lost %s" % (n, want - set(seen))
            dups = sum(v - 1 for v in seen.values())
            assert dups == 0, "step %d (%s): %d duplicates" % (n, err.strip(), dups)
            left = h.server_count("alice")
            assert left == (3 if keep else 0), "step %d: %d left" % (n, left)
        if not crashed:
            assert n > 8, "the pass had only %d steps" % n
            break
        n += 1


def case_crash_every_step_pop3():
    """POP3, delete mode, into IMAP APPEND: 0 duplicates, 0 lost."""
    crash_every_step("pop3", keep=False)


def case_crash_every_step_imap_keep():
    """IMAP, keep mode, into IMAP APPEND: 0 duplicates, 0 lost."""
    crash_every_step("imap", keep=True)


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
