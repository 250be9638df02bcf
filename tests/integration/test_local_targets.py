"""test_local_targets.py -- `mailhaul sync` from a real Dovecot (POP3 and
IMAP) into the local targets: a Maildir written by mailhaul, and an MDA
(the real dovecot-lda, and scripts that exit 75 and 67).

    MAILHAUL=build/mailhaul python3 tests/integration/test_local_targets.py [CASE...]

The line-end rule of both: what Dovecot serves (CRLF) arrives with LF line
ends, a bare CR stays (mh.expected(..., "lf")).  A crash at every step of
a pass into a Maildir leaves 0 duplicates and loses nothing (the
in-flight intent and the Maildir lookup, invariant I2).
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

import corpus
import mh
from test_sync_pop3 import config as pop3_config, sync, tricky_corpus
import test_sync_imap
from mh import Skip
from test_local_faults import mount_tmpfs, umount

EX_TEMPFAIL = 75
EX_DATAERR = 65
LDA = "/usr/lib/dovecot/deliver"
NAME_RE = re.compile(r"^(\d+)\.M(\d{6})P(\d+)Q(\d+)K([0-9a-f]{16})\.([^,/]+),S=(\d+)(:2,.*)?$")


# ---- helpers ---------------------------------------------------------------
def maildir_target(path, extra=""):
    return "type = maildir\npath = %s\n%s" % (path, extra)


def lda_target(h, user="bob", extra=""):
    if not os.access(LDA, os.X_OK):
        raise Skip("no %s (dovecot-core)" % LDA)
    return ("type = mda\ncommand = %s -c %s -d %s -f %%F\n%s"
            % (LDA, h.conf, user, extra))


def config(h, target_text, protocol="pop3", extra=""):
    if protocol == "imap":
        return test_sync_imap.config(h, target_text=target_text, extra=extra)
    return pop3_config(h, target_text=target_text, extra=extra)


def check_maildir(md, n):
    """md holds n messages in new/ + cur/, tmp/ is empty, every name is a
    maildir name with mailhaul's key digest and a true ,S=size."""
    files = mh.maildir_files(md)
    assert len(files) == n, "%d messages in %s, want %d" % (len(files), md, n)
    assert os.listdir(os.path.join(md, "tmp")) == [], os.listdir(os.path.join(md, "tmp"))
    tags = set()
    for p in files:
        m = NAME_RE.match(os.path.basename(p))
        assert m, "not a maildir name: %s" % p
        assert int(m.group(7)) == os.path.getsize(p), "wrong ,S= in %s" % p
        tags.add(m.group(5))
    assert len(tags) == n, "two messages with one key digest"


def check_lf(originals, delivered, imap=False, received=True):
    """check_exact for the local targets (LF line ends).  Over IMAP,
    Dovecot serves a message without a final line end as it is (POP3 adds
    one), and a NUL byte as 0x80."""
    by_id = {}
    for d in delivered:
        cid = mh.header(d, "X-Corpus-Id")
        assert cid is not None, "delivered message without X-Corpus-Id: %r" % d[:200]
        assert cid not in by_id, "delivered twice: %s" % cid
        by_id[cid] = d
    want = {mh.header(m, "X-Corpus-Id"): m for m in originals}
    assert set(want) == set(by_id), "missing %s, extra %s" % (
        sorted(set(want) - set(by_id))[:10], sorted(set(by_id) - set(want))[:10])
    for cid, m in want.items():
        exp = mh.crlf(m)
        if imap and not m.endswith(b"\n"):
            exp = exp[:-2]
        if imap:
            exp = exp.replace(b"\x00", b"\x80")
        exp = exp.replace(b"\r\n", b"\n")
        got = by_id[cid]
        if received:
            got = mh.strip_received(got)
        if got != exp:
            k = 0
            while k < min(len(got), len(exp)) and got[k] == exp[k]:
                k += 1
            raise AssertionError("message %s differs at byte %d (want %d bytes, got "
                                 "%d): want %r, got %r" % (cid, k, len(exp), len(got),
                                                          exp[k - 20:k + 20],
                                                          got[k - 20:k + 20]))


def count_ids_in(msgs):
    seen = {}
    for d in msgs:
        cid = mh.header(d, "X-Corpus-Id")
        seen[cid] = seen.get(cid, 0) + 1
    return seen


def script(h, name, body):
    p = h.path(name)
    with open(p, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(p, 0o755)
    return p


# ---- Maildir -----------------------------------------------------------------
def case_maildir_pop3_keep():
    """POP3 -> a Maildir that does not exist yet: created 0700 with tmp/
    new/ cur/, the tricky corpus byte-exact with LF line ends, maildir
    names with ,S=; keep mode leaves the server alone; a second pass
    delivers nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus(big=3 * 1024 * 1024)
        h.inject("alice", msgs)
        md = h.path("home", "Mail", "INBOX")
        cfg = config(h, maildir_target(md))
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == 0 and "target: ok (writable)" in out, (rc, out, err)
        rc, out, err = sync(cfg)
        assert "%d delivered" % len(msgs) in out, out
        for d in (md, h.path("home", "Mail")):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, oct(os.stat(d).st_mode)
        check_maildir(md, len(msgs))
        check_lf(msgs, mh.read_maildir(md))
        assert h.server_count("alice") == len(msgs), "keep mode deleted mail"
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out
        check_maildir(md, len(msgs))
        # a mail reader moves one to cur/: still not delivered again
        name = sorted(os.listdir(os.path.join(md, "new")))[0]
        os.rename(os.path.join(md, "new", name), os.path.join(md, "cur", name + ":2,S"))
        sync(cfg)
        check_maildir(md, len(msgs))


def case_maildir_imap_delete():
    """IMAP, keep = no -> Maildir: byte-exact (NUL served as 0x80), the
    folder ends empty, a second pass delivers nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        md = h.path("md")
        cfg = config(h, maildir_target(md), protocol="imap", extra="keep = no\n")
        sync(cfg)
        check_maildir(md, len(msgs))
        check_lf(msgs, mh.read_maildir(md), imap=True)
        assert h.server_count("alice") == 0
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out
        check_maildir(md, len(msgs))


def case_maildir_received_no():
    """received = no: the file holds the served message alone (LF)."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(3, seed=41)]
        h.inject("alice", msgs)
        md = h.path("md")
        cfg = config(h, maildir_target(md, "received = no\n"))
        sync(cfg)
        check_lf(msgs, mh.read_maildir(md), received=False)


def case_maildir_disk_full():
    """The Maildir on a small tmpfs that fills in the middle of a delete-
    mode pass: a temporary failure, every file in new/ complete, tmp/
    empty, what was not delivered stays on the server; with room again the
    next pass delivers the rest, each message exactly once."""
    mnt = tempfile.mkdtemp(prefix="mh-mdfull-", dir="/tmp")
    try:
        mount_tmpfs(mnt, "size=256k,mode=0700")
        with mh.Harness() as h:
            msgs = [corpus.big_message(60 * 1024, seed=50 + i) for i in range(8)]
            h.inject("alice", msgs)
            md = os.path.join(mnt, "Maildir")
            cfg = config(h, maildir_target(md), extra="keep = no\n")
            rc, out, err = sync(cfg, ok=(EX_TEMPFAIL,))
            low = (out + err).lower()
            assert "no space" in low, err
            assert md in err, "the error does not name the Maildir:\n" + err
            got = mh.read_maildir(md)
            assert 0 < len(got) < len(msgs), "%d of %d delivered" % (len(got), len(msgs))
            check_maildir(md, len(got))
            # POP3 ends a pass whose prefetched messages were not
            # delivered without QUIT: the deletions wait for the next pass
            left = h.server_count("alice")
            assert left in (len(msgs), len(msgs) - len(got)), (left, len(got), err)
            subprocess.run(["mount", "-o", "remount,size=8m", mnt], check=True, timeout=30)
            sync(cfg)
            check_maildir(md, len(msgs))
            check_lf(msgs, mh.read_maildir(md))
            assert h.server_count("alice") == 0
    finally:
        umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


def case_maildir_readonly():
    """A read-only Maildir: temporary failure, nothing deleted, nothing
    left behind; writable again, everything delivered once."""
    mnt = tempfile.mkdtemp(prefix="mh-mdro-", dir="/tmp")
    try:
        mount_tmpfs(mnt, "size=4m,mode=0700")
        with mh.Harness() as h:
            msgs = [m["raw"] for m in corpus.generate(3, seed=43)]
            h.inject("alice", msgs)
            md = os.path.join(mnt, "Maildir")
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(md, sub), mode=0o700)
            subprocess.run(["mount", "-o", "remount,ro", mnt], check=True, timeout=30)
            cfg = config(h, maildir_target(md), extra="keep = no\n")
            rc, out, err = sync(cfg, ok=(EX_TEMPFAIL,))
            assert "read-only" in err.lower(), err
            assert h.server_count("alice") == 3
            subprocess.run(["mount", "-o", "remount,rw", mnt], check=True, timeout=30)
            check_maildir(md, 0)
            sync(cfg)
            check_maildir(md, 3)
            check_lf(msgs, mh.read_maildir(md))
            assert h.server_count("alice") == 0
    finally:
        umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


def crash_every_step_maildir(protocol, keep):
    """The hidden crash switch: for every step N of a 4-message pass into
    a Maildir, stop dead at N, then run to completion: nothing lost and,
    unlike SMTP/LMTP, no duplicate at any step -- a message in doubt is
    found by its key digest in the Maildir and recorded, not written
    again.  In delete mode the mailbox ends empty."""
    msgs = [m["raw"] for m in corpus.generate(4, seed=13, tricks=False)]
    want = {mh.header(m, "X-Corpus-Id") for m in msgs}
    n = 1
    found_window = False
    while True:
        with mh.Harness() as h:
            h.inject("alice", msgs)
            md = h.path("md")
            cfg = config(h, maildir_target(md), protocol=protocol,
                         extra="" if keep else "keep = no\n")
            rc, out, err = mh.run_mailhaul(["sync"], cfg,
                                           env={"MAILHAUL_CRASH_AT_STEP": str(n)})
            crashed = rc == 99
            assert rc in (0, 99), (n, rc, err)
            in_doubt = False
            if crashed:
                rc2, st, _ = mh.run_mailhaul(["status"], cfg)
                in_doubt = "in doubt" in st
                # the window: the file is in the Maildir, the DB says nothing
                if in_doubt and len(mh.maildir_files(md)) > 0:
                    found_window = True
            sync(cfg)
            seen = count_ids_in(mh.read_maildir(md))
            assert set(seen) == want, "step %d: lost %s" % (n, want - set(seen))
            dups = sum(v - 1 for v in seen.values())
            assert dups == 0, "step %d (%s): %d duplicates" % (n, err.strip(), dups)
            check_maildir(md, len(msgs))
            left = h.server_count("alice")
            assert left == (4 if keep else 0), "step %d: %d left" % (n, left)
            rc, st, _ = mh.run_mailhaul(["status"], cfg)
            assert "in doubt" not in st, "step %d: still in doubt\n%s" % (n, st)
        if not crashed:
            assert n > 8, "the pass had only %d steps" % n
            break
        n += 1
    assert found_window, "no step fell between the Maildir and the commit"


def case_crash_every_step_maildir():
    crash_every_step_maildir("pop3", keep=False)


def case_crash_every_step_maildir_keep():
    crash_every_step_maildir("pop3", keep=True)


def case_crash_every_step_maildir_imap():
    crash_every_step_maildir("imap", keep=False)


def case_crash_in_batch():
    """Group commit: the pass dies (the crash switch: _exit, as kill -9)
    after a batch's messages are in new/, fsync'ed, and before the one
    commit of their records -- at each batch's record of a 40-message
    pass, in turn.  The whole batch is then in doubt, and so is the
    next one if it was written by then (to tmp/, or by the flusher into
    new/ already); the next pass looks each one up in the Maildir,
    records what it finds there and writes only the others: every
    message exactly once, none left in doubt, and nothing deleted from
    the server before its record was committed."""
    msgs = [m["raw"] for m in corpus.generate(40, seed=21, tricks=False)]
    want = {mh.header(m, "X-Corpus-Id") for m in msgs}
    most = 0
    for k in range(1, 7):
        with mh.Harness() as h:
            h.inject("alice", msgs)
            md = h.path("md")
            cfg = config(h, maildir_target(md), extra="keep = no\n")
            # new/'s fsync, once per group, takes 0.4 s more: the fetch
            # side gets ahead however busy the machine, so the batches
            # after the first hold more than one message
            rc, out, err = mh.run_mailhaul(
                ["sync"], cfg, env={"MAILHAUL_CRASH_AT_STEP": "record:%d" % k,
                                    "LD_PRELOAD": os.environ["SYNCCOUNT"],
                                    "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "")
                                    + ":verify_asan_link_order=0",
                                    "SYNCCOUNT_SLOW": "400 %s/new"
                                    % os.path.realpath(md)})
            if rc == 0:
                # the pass had fewer than k record steps
                assert k > 1, "no batch was recorded: %s" % err
                break
            assert rc == 99, (k, rc, err)
            rc, st, _ = mh.run_mailhaul(["status"], cfg)
            m = re.search(r"in doubt \(.*\): (\d+)", st)
            assert m, "batch %d: nothing in doubt after the crash\n%s" % (k, st)
            doubt = int(m.group(1))
            recorded = int(re.search(r"delivered in all: (\d+)", st).group(1))
            on_disk = len(mh.maildir_files(md))
            # every recorded message is in new/, and so may be some in doubt
            assert recorded <= on_disk <= recorded + doubt, \
                (k, recorded, on_disk, doubt)
            # nothing of the batch left the server (I1)
            assert h.server_count("alice") == len(msgs), (k, h.server_count("alice"))
            most = max(most, doubt)
            print("batch %d: %d recorded, %d in doubt, %d in new/"
                  % (k, recorded, doubt, on_disk))
            rc, out, err = sync(cfg)
            # what was not recorded is: found (recorded, not written
            # again) or delivered
            assert re.search(r"\b%d delivered" % (len(msgs) - recorded), out), \
                (k, recorded, out)
            assert len(mh.maildir_files(md)) == len(msgs)
            seen = count_ids_in(mh.read_maildir(md))
            assert set(seen) == want, "batch %d: lost %s" % (k, want - set(seen))
            dups = sum(v - 1 for v in seen.values())
            assert dups == 0, "batch %d: %d duplicates" % (k, dups)
            check_maildir(md, len(msgs))
            assert h.server_count("alice") == 0
            rc, st, _ = mh.run_mailhaul(["status"], cfg)
            assert "in doubt" not in st, "batch %d: still in doubt\n%s" % (k, st)
    assert most > 1, "no batch of more than one message was interrupted"


# ---- MDA ----------------------------------------------------------------------
def case_mda_lda_pop3_keep():
    """POP3 -> dovecot-lda (no shell: %F is one argument): the tricky
    corpus byte-exact in bob's Maildir, keep mode, a second pass delivers
    nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        cfg = config(h, lda_target(h))
        rc, out, err = sync(cfg)
        assert "%d delivered" % len(msgs) in out, out
        check_lf(msgs, h.messages("bob"))
        assert h.server_count("alice") == len(msgs)
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out
        assert h.count("bob") == len(msgs)


def case_mda_lda_imap_delete():
    """IMAP, keep = no -> dovecot-lda: byte-exact, the folder ends empty."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        cfg = config(h, lda_target(h), protocol="imap", extra="keep = no\n")
        sync(cfg)
        check_lf(msgs, h.messages("bob"), imap=True)
        assert h.server_count("alice") == 0
        rc, out, err = sync(cfg)
        assert " 0 delivered" in out, out


def case_mda_exit_status():
    """Exit 75: temporary (exit 75, nothing deleted, retried); exit 67:
    permanent, kept on the server, the command's last stderr line in
    status, not retried; dovecot-lda for an unknown user (67) likewise."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(3, seed=44)]
        h.inject("alice", msgs)
        tmp = script(h, "busy.sh", "cat >/dev/null\necho 'mailbox locked' >&2\nexit 75\n")
        perm = script(h, "nouser.sh", "cat >/dev/null\necho 'first line' >&2\n"
                      "echo \"no such user: $1\" >&2\nexit 67\n")
        cfg = config(h, "type = mda\ncommand = no-such-mda -f %F\n")
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == EX_TEMPFAIL and "not found in PATH" in out, (rc, out, err)
        cfg = config(h, lda_target(h))
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == 0 and "target: ok (the command can be run)" in out, (rc, out, err)
        cfg = config(h, "type = mda\ncommand = %s\n" % tmp, extra="keep = no\n")
        rc, out, err = sync(cfg, ok=(EX_TEMPFAIL,))
        assert "mailbox locked" in err and "75" in err, err
        assert h.server_count("alice") == 3
        cfg = config(h, "type = mda\ncommand = %s %%T\nrecipient = joe@example.org\n"
                     % perm, extra="keep = no\n")
        rc, out, err = sync(cfg, ok=(EX_DATAERR,))
        assert h.server_count("alice") == 3, "a refused message left the server"
        rc, out, err = mh.run_mailhaul(["status"], cfg)
        assert "no such user: joe@example.org" in out and "67" in out, out
        assert "first line" not in out, out
        # refused for good: the next pass does not run the command again
        marker = h.path("ran")
        script(h, "nouser.sh", "touch %s\nexit 67\n" % marker)
        sync(cfg)
        assert not os.path.exists(marker), "a permanent refusal was retried"
        # dovecot-lda refusing an unknown user is permanent too
        msgs2 = [m["raw"] for m in corpus.generate(4, seed=45)][3:]
        h.inject("alice", msgs2)
        cfg = config(h, lda_target(h, user="nosuchuser"), extra="keep = no\n")
        sync(cfg, ok=(EX_DATAERR,))
        assert h.server_count("alice") == 4
        # retry with a working command: everything arrives once
        cfg = config(h, lda_target(h), extra="keep = no\n")
        rc, out, err = mh.run_mailhaul(["retry", "old"], cfg)
        assert rc == 0, err
        sync(cfg)
        check_lf(msgs + msgs2, h.messages("bob"))
        assert h.server_count("alice") == 0


def case_mda_shell_command():
    """A command that needs a shell (a redirection): run with /bin/sh -c,
    %F and %T arrive as data even when they hold shell syntax."""
    with mh.Harness() as h:
        evil = b"From: x\r\nReturn-Path: <a$(touch${IFS}pwned)'b@example.org>\r\n" \
               b"X-Corpus-Id: evil\r\nSubject: s\r\n\r\nbody\r\n"
        msgs = [evil] + [m["raw"] for m in corpus.generate(2, seed=46, tricks=False)]
        h.inject("alice", msgs)
        out_file = h.path("out.mbox")
        cmd = "printf 'From %%s %%s\\n' %%F '%%T' >> %s && cat >> %s" % (out_file, out_file)
        cfg = config(h, "type = mda\ncommand = %s\nrecipient = me@x;y\n" % cmd)
        sync(cfg)
        with open(out_file, "rb") as f:
            data = f.read()
        assert data.count(b"\nFrom ") + data.startswith(b"From ") >= 3, data[:300]
        assert b"From a$(touch${IFS}pwned)'b@example.org me@x;y\n" in data, data[:400]
        assert not os.path.exists(h.path("pwned")) and not os.path.exists("pwned")
        assert b"\r\n" not in data, "CRLF reached the MDA"


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
