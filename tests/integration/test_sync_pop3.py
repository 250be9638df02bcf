"""test_sync_pop3.py -- `mailhaul sync` from a real Dovecot over POP3 into a
real Dovecot LMTP and a real SMTP receiver: invariants I1-I5.

    MAILHAUL=build/mailhaul python3 tests/integration/test_sync_pop3.py [CASE...]

Each CASE starts its own harness (free ports), so meson runs them in
parallel as separate tests.
"""
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import corpus
import mh

EX_TEMPFAIL = 75
EX_DATAERR = 65


# ---- helpers ---------------------------------------------------------------
def config(h, account="old", target_text=None, extra="", protocol="pop3",
           port=None, tls="implicit", user="alice", name_target="home"):
    """A config with one POP3 account of alice and one target (LMTP over
    the unix socket to bob unless target_text is given)."""
    if port is None:
        port = h.pop3s_port if tls == "implicit" else h.pop3_port
    if target_text is None:
        target_text = ("type = lmtp\nsocket = %s\nrecipient = bob@localhost\n"
                       % h.lmtp_socket)
    text = """[general]
state = %(state)s

[target:%(tname)s]
%(target)s
[account:%(account)s]
protocol = %(protocol)s
host = localhost
port = %(port)d
tls = %(tls)s
ca_file = %(ca)s
user = %(user)s
password = %(password)s
target = %(tname)s
%(extra)s
""" % {"state": h.path("state", "state.db"), "tname": name_target,
       "target": target_text, "account": account, "protocol": protocol,
       "port": port, "tls": tls, "ca": h.ca, "user": user,
       "password": h.password, "extra": extra}
    return mh.write_config(h.path("mailhaul.ini"), text)


def sync(cfg, *args, ok=(0,), timeout=300, env=None):
    rc, out, err = mh.run_mailhaul(["sync"] + list(args), cfg, timeout=timeout,
                                   env=env)
    assert rc in ok, "sync rc %d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    return rc, out, err


def check_exact(originals, delivered, target="lmtp", received=True, imap=False):
    """Every original arrived exactly once, byte for byte (after one
    Received: header, and what Dovecot's LMTP adds); nothing else arrived.
    imap: Dovecot's IMAP serves a NUL byte as 0x80 (RFC 3501 literals
    cannot carry NUL), so that is what must arrive."""
    if imap:
        originals = [m.replace(b"\x00", b"\x80") for m in originals]
    by_id = {}
    for d in delivered:
        cid = mh.header(d, "X-Corpus-Id")
        assert cid is not None, "delivered message without X-Corpus-Id: %r" % d[:200]
        assert cid not in by_id, "delivered twice: %s" % cid
        by_id[cid] = d
    want = {mh.header(m, "X-Corpus-Id"): m for m in originals}
    missing = sorted(set(want) - set(by_id))
    extra = sorted(set(by_id) - set(want))
    assert not missing, "not delivered: %s" % missing[:10]
    assert not extra, "delivered but never sent: %s" % extra[:10]
    for cid, m in want.items():
        diff = mh.explain_difference(m, by_id[cid], received, target)
        assert diff is None, "message %s: %s" % (cid, diff)


def received_header(delivered, target="lmtp"):
    """mailhaul's Received: field (unfolded) of a delivered message."""
    if target == "lmtp":
        for name in ("Return-Path", "Delivered-To", "Received"):
            try:
                delivered = mh.strip_field(delivered, name)
            except ValueError:
                pass
    return (mh.header(delivered, "Received") or "").encode()


def tricky_corpus(big=0):
    msgs = list(corpus.tricky(seed=5).values())
    msgs += [m["raw"] for m in corpus.generate(20, seed=6)]
    if big:
        msgs.append(corpus.big_message(big, seed=7))
    return msgs


# ---- cases -------------------------------------------------------------------
def case_pop3s_lmtp_socket_keep():
    """POP3S -> LMTP (unix socket), keep: byte-exact, tricky corpus with a
    30 MB message; a second pass and a renamed section deliver nothing."""
    with mh.Harness() as h:
        msgs = tricky_corpus(big=30 * 1024 * 1024)
        h.inject("alice", msgs)
        cfg = config(h)
        rc, out, err = sync(cfg, "-v")
        check_exact(msgs, h.messages("bob"))
        assert "%d delivered" % len(msgs) in out, out
        # Dovecot's LMTP offers CHUNKING: every message went as BDAT
        # chunks (the 30 MB one as 1 MiB chunks), never as DATA
        chunks = [int(n) for n in re.findall(
            r"target home: \d+ bytes in (\d+) BDAT chunk", err)]
        assert len(chunks) == len(msgs), (len(chunks), len(msgs), err[-2000:])
        assert max(chunks) >= 30, chunks
        rh = received_header(h.messages("bob")[0])
        assert b"old" in rh and b"pop3" in rh.lower(), rh
        assert h.server_count("alice") == len(msgs), "keep mode deleted mail"
        # second pass: nothing new
        rc, out, err = sync(cfg)
        assert h.count("bob") == len(msgs), "second pass delivered again"
        assert " 0 delivered" in out, out
        # a renamed account section is the same source: nothing again
        cfg = config(h, account="renamed")
        rc, out, err = sync(cfg)
        assert h.count("bob") == len(msgs), "renamed section refetched"
        assert " 0 delivered" in out, out


def case_pop3s_lmtp_tcp_delete():
    """POP3S -> LMTP over TCP, keep = no: the mailbox ends empty, and every
    message arrived exactly once."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        target = ("type = lmtp\nhost = 127.0.0.1\nport = %d\ntls = none\n"
                  "recipient = bob@localhost\n" % h.lmtp_port)
        cfg = config(h, target_text=target, extra="keep = no\n")
        rc, out, err = sync(cfg)
        check_exact(msgs, h.messages("bob"))
        assert h.server_count("alice") == 0, "delete mode left mail"
        assert "%d deleted" % len(msgs) in out, out
        rc, out, err = sync(cfg)
        assert h.count("bob") == len(msgs)


def case_pop3_stls_smtp_auth():
    """POP3 + STLS -> SMTP with STARTTLS and AUTH: byte-exact at the SMTP
    receiver, envelope from Return-Path, AUTH used over TLS."""
    with mh.Harness() as h:
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nuser = alice\npassword = %s\n"
                  "recipient = carol@localhost\n" % (h.smtp_port, h.ca, h.password))
        cfg = config(h, tls="starttls", target_text=target)
        rc, out, err = sync(cfg)
        check_exact(msgs, h.smtp_messages("carol"), target="smtp")
        envs = h.smtp_envelopes()
        assert len(envs) == len(msgs), envs[:3]
        assert all(e.get("tls") for e in envs), envs[:3]
        assert all(e.get("auth") for e in envs), envs[:3]
        assert all(e["rcpt_tos"] == ["carol@localhost"] for e in envs), envs[:3]
        rc, out, err = sync(cfg)
        assert h.smtp_count("carol") == len(msgs)


def case_delete_after():
    """delete_after keeps messages until they are old enough."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(5, seed=8)]
        h.inject("alice", msgs)
        cfg = config(h, extra="delete_after = 2s\n")
        sync(cfg)
        assert h.server_count("alice") == 5, "deleted too early"
        time.sleep(2.5)
        rc, out, err = sync(cfg)
        assert h.server_count("alice") == 0, "delete_after did not delete"
        assert h.count("bob") == 5


def case_permfail_and_retry():
    """A target that refuses one message for good (5xx): the others are
    delivered, the refused one stays on the server, shows in status with
    the server's reply, is not resent by the next pass; retry resends it."""
    with mh.Harness(smtp_args=["--reject-header", "X-Test-Reject"]) as h:
        msgs = [m["raw"] for m in corpus.generate(6, seed=9)]
        bad = msgs[2].replace(b"\n\n", b"\nX-Test-Reject: 554 5.7.1 no thanks\n\n", 1)
        if bad == msgs[2]:
            bad = msgs[2].replace(b"\r\n\r\n", b"\r\nX-Test-Reject: 554 5.7.1 no thanks\r\n\r\n", 1)
        msgs[2] = bad
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target, extra="keep = no\n")
        rc, out, err = sync(cfg, ok=(EX_DATAERR,))
        assert h.smtp_count("carol") == 5, h.smtp_count("carol")
        assert h.server_count("alice") == 1, "the refused message left the server"
        rc, out, err = mh.run_mailhaul(["status"], cfg)
        assert rc == 0, err
        assert "no thanks" in out and "554" in out, out
        rc, out, err = mh.run_mailhaul(["status", "--json"], cfg)
        assert rc == 0 and '"failures":[{' in out, out
        # the next pass does not resend it
        assert len(h.smtp_envelopes()) == 6, h.smtp_envelopes()
        sync(cfg)
        assert h.smtp_count("carol") == 5
        assert len(h.smtp_envelopes()) == 6, "refused message resent"
        # retry: resent (and refused again)
        rc, out, err = mh.run_mailhaul(["retry", "old"], cfg)
        assert rc == 0 and "1 refused" in out, (out, err)
        sync(cfg, ok=(EX_DATAERR,))
        assert len(h.smtp_envelopes()) == 7, "retry did not resend"
        assert h.server_count("alice") == 1


def case_tempfail_retried():
    """A 4xx after the data: nothing deleted, exit 75, and the next pass
    (target healthy again) delivers it."""
    with mh.Harness(smtp_args=["--data-reply", "451 4.3.0 try later"]) as h:
        msgs = [m["raw"] for m in corpus.generate(3, seed=10)]
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target, extra="keep = no\n")
        sync(cfg, ok=(EX_TEMPFAIL,))
        assert h.server_count("alice") == 3, "deleted after a 4xx"
        assert h.smtp_count("carol") == 0
        h.restart_smtp([])     # new ports: write the config again
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target, extra="keep = no\n")
        sync(cfg)
        check_exact(msgs, h.smtp_messages("carol"), target="smtp")
        assert h.server_count("alice") == 0


def case_target_down():
    """The target is unreachable: exit 75, nothing deleted, then delivered."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(3, seed=11)]
        h.inject("alice", msgs)
        target = ("type = lmtp\nsocket = %s\nrecipient = bob@localhost\n"
                  % h.path("no-such-socket"))
        cfg = config(h, target_text=target, extra="keep = no\n")
        sync(cfg, ok=(EX_TEMPFAIL,))
        assert h.server_count("alice") == 3
        cfg = config(h, extra="keep = no\n")
        sync(cfg)
        check_exact(msgs, h.messages("bob"))
        assert h.server_count("alice") == 0


def count_ids(h):
    seen = {}
    for d in h.messages("bob"):
        cid = mh.header(d, "X-Corpus-Id")
        seen[cid] = seen.get(cid, 0) + 1
    return seen


def case_kill9_midpass():
    """SIGKILL in the middle of a 500-message delete-mode pass, four times
    at different points, then a run to completion: nothing lost, at most
    one duplicate per kill, the mailbox ends empty."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(500, seed=12, tricks=False)]
        h.inject("alice", msgs)
        cfg = config(h, extra="keep = no\n")
        kills = 0
        for at in (20, 130, 260, 400):
            p = subprocess.Popen([mh.mailhaul_path(), "-c", cfg, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=dict(os.environ, XDG_STATE_HOME=h.path("xdg")))
            got = mh.wait_for(lambda: h.count("bob") >= at or p.poll() is not None,
                              timeout=120, step=0.005)
            assert got, "no progress to %d" % at
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=30)
        sync(cfg)
        seen = count_ids(h)
        want = {mh.header(m, "X-Corpus-Id") for m in msgs}
        assert set(seen) == want, "lost: %s" % sorted(want - set(seen))[:10]
        dups = sum(n - 1 for n in seen.values())
        assert dups <= kills, "%d duplicates after %d kills" % (dups, kills)
        assert h.server_count("alice") == 0
        sync(cfg)
        assert sum(count_ids(h).values()) == len(msgs) + dups


def crash_every_step(make_config, keep):
    """The hidden crash switch: for every step N of a 4-message pass, stop
    dead at N, then run to completion: nothing lost; a duplicate only when
    the crash fell between the target's acceptance and the commit (at
    most one); in delete mode the mailbox ends empty.  Dovecot's LMTP
    offers PIPELINING and CHUNKING, so the next message is sent ahead
    while one is recorded (step "prepare"): a crash there or at "record"
    still leaves at most the one message before in doubt, never the one
    sent ahead (its BDAT LAST never went)."""
    msgs = [m["raw"] for m in corpus.generate(4, seed=13, tricks=False)]
    n = 1
    prepared = False
    while True:
        with mh.Harness() as h:
            h.inject("alice", msgs)
            cfg = make_config(h, "" if keep else "keep = no\n")
            rc, out, err = mh.run_mailhaul(["sync"], cfg,
                                           env={"MAILHAUL_CRASH_AT_STEP": str(n)})
            crashed = rc == 99
            assert rc in (0, 99), (n, rc, err)
            sync(cfg)
            seen = count_ids(h)
            want = {mh.header(m, "X-Corpus-Id") for m in msgs}
            assert set(seen) == want, "step %d: lost %s" % (n, want - set(seen))
            dups = sum(v - 1 for v in seen.values())
            assert dups <= 1, "step %d: %d duplicates" % (n, dups)
            m = re.search(r"stopping dead at step %d \(([\w-]+)"
                          r"(?:; delivery side after ([\w-]+))?\)" % n, err)
            prepared = prepared or bool(m and m.group(1) == "prepare")
            if dups:
                # only a crash between the target's acceptance and the
                # commit may leave a duplicate: at the steps "prepare"
                # (the next message sent ahead) and "record", or at a
                # step of the fetch thread while the delivery side was
                # past "deliver" (the two run at once)
                assert m and (m.group(1) in ("prepare", "record") or
                              (m.group(1) == "fetch" and
                               m.group(2) in ("deliver", "prepare",
                                              "record"))), \
                    "step %d: duplicate after a crash at %s" % (n, err.strip())
            left = h.server_count("alice")
            assert left == (4 if keep else 0), "step %d: %d left" % (n, left)
        if not crashed:
            assert n > 8, "the pass had only %d steps" % n
            assert prepared, "no message was sent ahead (step prepare)"
            break
        n += 1


def case_crash_every_step():
    """POP3, delete mode: see crash_every_step()."""
    crash_every_step(lambda h, extra: config(h, extra=extra), keep=False)


def case_crash_every_step_keep():
    """POP3, keep mode: see crash_every_step()."""
    crash_every_step(lambda h, extra: config(h, extra=extra), keep=True)


def case_crash_every_step_imap():
    """IMAP, delete mode (UID STORE + UID EXPUNGE): see crash_every_step()."""
    import test_sync_imap
    crash_every_step(lambda h, extra: test_sync_imap.config(h, extra=extra),
                     keep=False)


def case_crash_every_step_imap_keep():
    """IMAP, keep mode (UIDs and the folder's last UID): see
    crash_every_step()."""
    import test_sync_imap
    crash_every_step(lambda h, extra: test_sync_imap.config(h, extra=extra),
                     keep=True)


def case_concurrent_syncs():
    """Two `mailhaul sync` at once on one account: no duplicate."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(200, seed=14, tricks=False)]
        h.inject("alice", msgs)
        cfg = config(h, extra="keep = no\n")
        env = dict(os.environ, XDG_STATE_HOME=h.path("xdg"))
        ps = [subprocess.Popen([mh.mailhaul_path(), "-c", cfg, "sync"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
              for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in ps]
        rcs = [p.returncode for p in ps]
        assert all(rc in (0, EX_TEMPFAIL) for rc in rcs), (rcs, outs)
        sync(cfg)
        seen = count_ids(h)
        assert len(seen) == 200 and all(v == 1 for v in seen.values()), \
            "duplicates: %s" % [k for k, v in seen.items() if v > 1][:5]


def case_memory_30mb():
    """Peak RSS while fetching and delivering a 30 MB message stays under
    16 MB (the child's maxrss: a bound, not a timing)."""
    with mh.Harness() as h:
        big = corpus.big_message(30 * 1024 * 1024, seed=15)
        h.inject("alice", [big])
        cfg = config(h)
        env = {"XDG_STATE_HOME": h.path("xdg")}
        rc, _, err, kb = mh.run_maxrss(["-c", cfg, "sync"], env=env)
        assert rc == 0, err
        check_exact([big], h.messages("bob"))
        mh.check_rss(kb, cfg, env=env)


def case_dry_run_mark_seen():
    """--dry-run changes nothing; mark-seen adopts the mailbox so that only
    later mail is delivered."""
    with mh.Harness() as h:
        old = [m["raw"] for m in corpus.generate(4, seed=16)]
        h.inject("alice", old)
        cfg = config(h, extra="keep = no\n")
        rc, out, err = sync(cfg, "--dry-run")
        assert "would fetch" in out and "4 new" in out, out
        assert h.count("bob") == 0 and h.server_count("alice") == 4
        db = sqlite3.connect("file:%s?mode=ro" % h.path("state", "state.db"),
                             uri=True)
        try:
            n = db.execute("SELECT count(*) FROM sources").fetchone()[0]
        finally:
            db.close()
        assert n == 0, "a dry run recorded %d sources" % n
        rc, out, err = mh.run_mailhaul(["mark-seen", "old"], cfg)
        assert rc == 0 and "4 messages recorded" in out, (out, err)
        new = [m["raw"] for m in corpus.generate(7, seed=17)][4:]
        h.inject("alice", new)
        cfg = config(h)     # keep
        sync(cfg)
        check_exact(new, h.messages("bob"))
        rc, out, err = mh.run_mailhaul(["forget", "--yes", "old"], cfg)
        assert rc == 0, err
        sync(cfg)
        assert h.count("bob") == 3 + 7, "forget did not refetch"


def case_dry_run_writes_nothing():
    """--dry-run on an account whose host is now spelled differently
    writes nothing: the state row keeps its spelling (seen_ident_find
    updated it even when asked only to look)."""
    with mh.Harness() as h:
        h.inject("alice", [m["raw"] for m in corpus.generate(2, seed=18)])
        cfg = config(h)
        sync(cfg)
        with open(cfg) as f:
            text = f.read()
        mh.write_config(cfg, text.replace("host = localhost",
                                          "host = LOCALHOST"))
        rc, out, err = sync(cfg, "--dry-run")
        db = sqlite3.connect("file:%s?mode=ro" % h.path("state", "state.db"),
                             uri=True)
        try:
            hosts = [r[0] for r in db.execute("SELECT host FROM sources")]
        finally:
            db.close()
        assert hosts == ["localhost"], "a dry run wrote %s" % hosts


def case_max_size_and_messages():
    """max_size skips (and records) larger messages; max_messages bounds a
    pass."""
    with mh.Harness() as h:
        small = [m["raw"] for m in corpus.generate(5, seed=18, tricks=False)]
        big = corpus.big_message(300 * 1024, seed=19)
        h.inject("alice", small + [big])
        cfg = config(h, extra="max_size = 100k\nmax_messages = 3\n")
        rc, out, err = sync(cfg)
        assert h.count("bob") == 3, out
        assert "1 skipped" in out, out
        sync(cfg)
        check_exact(small, h.messages("bob"))


def case_check_and_tls():
    """check shows TLS and login; an untrusted certificate (no ca_file, so
    the system store) is refused before login with exit 69; a wrong
    password is exit 77 with the server's reply and no password."""
    with mh.Harness() as h:
        cfg = config(h)
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == 0, (out, err)
        assert "login: ok" in out and "TLS" in out, out
        text = open(cfg).read().replace("ca_file = %s\n" % h.ca, "")
        mh.write_config(cfg, text)
        rc, out, err = mh.run_mailhaul(["check"], cfg)
        assert rc == 69, (rc, out, err)
        assert "certificate" in (out + err), out + err
        text = open(config(h)).read().replace("password = %s" % h.password,
                                              "password = wrong-Passw0rd")
        mh.write_config(cfg, text)
        rc, out, err = mh.run_mailhaul(["sync"], cfg)
        assert rc == 77, (rc, out, err)
        assert "wrong-Passw0rd" not in out + err
        log = open(os.path.join(h.dir, "log", "dovecot.log"), errors="replace").read()
        assert "auth" in log.lower()


def case_check_protocols():
    """`mailhaul check` connects, verifies TLS and logs in over POP3S, POP3
    with STLS, IMAPS and IMAP with STARTTLS, and reaches the target."""
    import test_sync_imap
    with mh.Harness() as h:
        for cfg in (config(h), config(h, tls="starttls"),
                    test_sync_imap.config(h),
                    test_sync_imap.config(h, tls="starttls")):
            rc, out, err = mh.run_mailhaul(["check"], cfg)
            assert rc == 0, (open(cfg).read(), out, err)
            assert "login: ok" in out and "certificate verified" in out, out
            assert "subject: /CN=localhost" in out, out
            assert "target greeting: 220" in out, out


def case_target_refuses_login():
    """A target that refuses our login stops the pass at the first
    message (exit 77, the target's reply shown): nothing deleted, and the
    mailbox is not downloaded message by message to be refused."""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(5, seed=41, tricks=False)]
        h.inject("alice", msgs)
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nuser = alice\npassword = not-the-password\n"
                  "recipient = carol@localhost\n" % (h.smtp_port, h.ca))
        cfg = config(h, target_text=target, extra="keep = no\n")
        rc, out, err = sync(cfg, ok=(77,))
        assert "535" in out + err or "auth" in (out + err).lower(), out + err
        assert "not-the-password" not in out + err
        assert h.server_count("alice") == 5
        # one login attempt at the target, not one per message
        log = open(os.path.join(h.dir, "log", "smtp-sink.log"), errors="replace").read()
        tries = [l for l in log.split("\n") if "AUTH" in l and "failed" in l]
        assert len(tries) == 1, tries


def case_config_errors():
    """A broken config: exit 78, every error with file:line, nothing runs."""
    with mh.Harness() as h:
        cfg = config(h, extra="keep = maybe\npasword = x\n")
        rc, out, err = mh.run_mailhaul(["sync"], cfg)
        assert rc == 78, (rc, out, err)
        lines = open(cfg).read().split("\n")
        kl = lines.index("keep = maybe") + 1
        pl = lines.index("pasword = x") + 1
        assert "%s:%d" % (cfg, kl) in err, err
        assert "%s:%d" % (cfg, pl) in err and "password" in err, err
        assert h.count("bob") == 0


def sync_counts(path):
    """{(call, file name): count} from a synccount log; the state's files
    keep their names (state.db, state.db-wal), others count by dir."""
    counts = {}
    if os.path.exists(path):
        for line in open(path).read().splitlines():
            call, _, f = line.partition(" ")
            key = (call, os.path.basename(f))
            counts[key] = counts.get(key, 0) + 1
    return counts


def case_state_syncs():
    """The disk syncs of a pass into LMTP: each delivered record is its own
    synchronous commit (at least one sync of the log per message), the
    intent before it is not (no second sync per message): N messages cost
    N + a constant, not 2N (counted by an LD_PRELOAD shim, not timed)."""
    n = 40
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(n, seed=8)]
        h.inject("alice", msgs)
        cfg = config(h, extra="keep = yes\n")
        log = h.path("syncs.log")
        env = {"LD_PRELOAD": os.environ["SYNCCOUNT"], "SYNCCOUNT_OUT": log,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "")
               + ":verify_asan_link_order=0"}
        rc, out, err = sync(cfg, env=env)
        check_exact(msgs, h.messages("bob"))
        c = sync_counts(log)
        wal = c.get(("fdatasync", "state.db-wal"), 0) + \
            c.get(("fsync", "state.db-wal"), 0)
        state = sum(v for (call, f), v in c.items() if f.startswith("state.db"))
        assert wal >= n, ("fewer log syncs than delivered records", wal, c)
        assert state <= n + 16, ("a delivery costs more than one sync of the "
                                 "state", state, n, c)
        # a second pass, nothing new: a few syncs, none per message
        os.unlink(log)
        rc, out, err = sync(cfg, env=env)
        assert " 0 delivered" in out, out
        c = sync_counts(log)
        state = sum(v for (call, f), v in c.items() if f.startswith("state.db"))
        assert state <= 16, ("a pass with nothing new", state, c)



def case_system_cas_once():
    """Accounts that verify with the system's CAs (no ca_file) share one
    load of them: the CA file is read once, by the process that forks
    the workers, not once per connection (Debian's bundle costs about
    20 ms of CPU per load).  Three TLS accounts, POP3S and IMAPS, two
    users; SSL_CERT_FILE names a copy of the test CA as the system's
    store; the LD_PRELOAD shim counts the opens of that file."""
    with mh.Harness() as h:
        a = [m["raw"] for m in corpus.generate(4, seed=21)]
        c = [m["raw"] for m in corpus.generate(3, seed=22)]
        h.inject("alice", a)
        h.inject("carol", c)
        cfg = config(h, account="pa", extra="keep = yes\n")
        text = open(cfg).read().replace("ca_file = %s\n" % h.ca, "")
        for name, proto, port, user in (
                ("pc", "pop3", h.pop3s_port, "carol"),
                ("ia", "imap", h.imaps_port, "alice")):
            text += ("\n[account:%s]\nprotocol = %s\nhost = localhost\n"
                     "port = %d\ntls = implicit\nuser = %s\npassword = %s\n"
                     "target = home\nkeep = yes\n"
                     % (name, proto, port, user, h.password))
        mh.write_config(cfg, text)
        assert "ca_file" not in text
        store = h.path("system-cas.pem")
        shutil.copy(h.ca, store)
        os.makedirs(h.path("no-ca-dir"), exist_ok=True)
        log = h.path("opens.log")
        env = {"LD_PRELOAD": os.environ["SYNCCOUNT"], "SYNCCOUNT_OUT": log,
               "SYNCCOUNT_WATCH": store, "SSL_CERT_FILE": store,
               "SSL_CERT_DIR": h.path("no-ca-dir"),
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "")
               + ":verify_asan_link_order=0"}
        rc, out, err = sync(cfg, env=env)
        for acct in ("pa", "pc", "ia"):
            assert "%s:" % acct in out, out
        # alice's four twice (her POP3 and IMAP accounts), carol's three
        assert h.count("bob") == 2 * len(a) + len(c), out
        opens = sync_counts(log).get(("fopen", "system-cas.pem"), 0)
        assert opens == 1, ("the system's CAs were loaded %d times" % opens,
                            out, err)
        # the environment alone does not make them trusted: without the
        # copy named, the same accounts are refused (exit 69, TLS)
        env2 = dict(env, SSL_CERT_FILE=h.path("no-such-file.pem"))
        rc, out, err = sync(cfg, env=env2, ok=(69,))
        assert "certificate" in out + err, out + err


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
