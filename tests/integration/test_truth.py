"""test_truth.py -- what mailhaul prints and checks tells the truth
(issue 17): `check` catches the usual mistakes, a wrong recipient is a
configuration error and not 100 refused messages, the summary lines and
exit codes say what happened, per-command --help, `forget` asks.

    MAILHAUL=build/mailhaul python3 tests/integration/test_truth.py [CASE...]
"""
import os
import re
import signal
import subprocess
import sys
import time

import corpus
import mh
import test_sync_pop3
import test_sync_imap

EX_USAGE = 64
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_CONFIG = 78


def run(cfg, *args, ok=(0,), **kw):
    rc, out, err = mh.run_mailhaul(list(args), cfg, **kw)
    assert rc in ok, "%s: rc %d\nstdout:\n%s\nstderr:\n%s" % (args, rc, out, err)
    return rc, out, err


def refusing(h, msgs, i):
    """Puts the smtp-sink's refusal (--reject-header) into msgs[i] and
    injects msgs into alice's mailbox; returns an SMTP target for it."""
    msgs[i] = msgs[i].replace(b"\n\n", b"\nX-Test-Reject: 554 5.7.1 no thanks\n\n", 1)
    h.inject("alice", msgs)
    return ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
            "ca_file = %s\nrecipient = carol@localhost\n" % (h.smtp_port, h.ca))


def lmtp_target(h, rcpt):
    return "type = lmtp\nsocket = %s\nrecipient = %s\n" % (h.lmtp_socket, rcpt)


# ---- check ---------------------------------------------------------------
def case_check_wrong_recipient():
    """check sends MAIL FROM/RCPT TO/RSET to the target: a recipient
    Dovecot's LMTP does not know fails check (67) with its reply, where
    it used to pass; a known one passes and nothing is delivered."""
    with mh.Harness() as h:
        cfg = test_sync_pop3.config(h, target_text=lmtp_target(h, "nosuchuser@localhost"))
        rc, out, err = run(cfg, "check", ok=(EX_NOUSER,))
        assert "refuses recipient <nosuchuser@localhost>" in out, out
        assert "550" in out, out
        cfg = test_sync_pop3.config(h)
        rc, out, err = run(cfg, "check")
        assert "recipient(s) accepted at RCPT TO" in out, out
        assert h.count("bob") == 0


def case_check_missing_folder():
    """check SELECTs each IMAP folder: a missing one fails check (65)."""
    with mh.Harness() as h:
        cfg = test_sync_imap.config(h, extra="folders = INBOX, NoSuchFolder\n")
        rc, out, err = run(cfg, "check", ok=(65,))
        assert "folder INBOX: ok" in out, out
        assert "folder NoSuchFolder: FAILED" in out, out


def case_check_target_alone():
    """check --target NAME checks that target alone; a wrong name lists
    the targets; --account NAME a wrong one lists the accounts."""
    with mh.Harness() as h:
        cfg = test_sync_pop3.config(h)
        rc, out, err = run(cfg, "check", "--target", "home")
        assert "target home:" in out and "recipient(s) accepted" in out, out
        assert "login: ok" not in out, out      # the account was not checked
        rc, out, err = run(cfg, "check", "--target", "hme", ok=(EX_USAGE,))
        assert "no target named 'hme'" in err and "  home" in err, err
        rc, out, err = run(cfg, "check", "--account", "olt", ok=(EX_USAGE,))
        assert "no account named 'olt'" in err and "  old" in err, err
        rc, out, err = run(cfg, "check", "--account", "old")
        assert "login: ok" in out, out


def case_check_imap_target():
    """check EXAMINEs an IMAP target's folder: a missing one is noted (the
    first delivery creates it), an existing one is ok."""
    import test_target_imap
    with mh.Harness() as h:
        cfg = test_target_imap.config(h, folder="Old ISP")
        rc, out, err = run(cfg, "check", "--target", "home")
        assert "folder Old ISP does not exist yet" in out, out
        h.doveadm("mailbox", "create", "-u", "bob", "Old ISP")
        rc, out, err = run(cfg, "check", "--target", "home")
        assert "folder Old ISP: selectable" in out, out


def case_check_fingerprint():
    """An untrusted certificate: the error shows its subject and sha256
    and the `fingerprint =` line; with that line the account works."""
    with mh.Harness() as h:
        cfg = test_sync_pop3.config(h)
        text = open(cfg).read().replace("ca_file = %s\n" % h.ca, "")
        mh.write_config(cfg, text)
        rc, out, err = run(cfg, "check", ok=(69,))
        m = re.search(r"fingerprint = ([0-9A-F:]{95})", out)
        assert m and "subject /CN=localhost" in out, out
        mh.write_config(cfg, text.replace("[account:old]\n",
                                          "[account:old]\nfingerprint = %s\n" % m.group(1)))
        rc, out, err = run(cfg, "check")
        assert "login: ok" in out, out


def case_tls_hint():
    """Implicit TLS on a port that starts in clear: the error suggests
    tls = starttls or the implicit-TLS port."""
    with mh.Harness() as h:
        cfg = test_sync_pop3.config(h, tls="implicit", port=h.pop3_port)
        rc, out, err = run(cfg, "check", ok=(69, 75))
        assert "tls = starttls" in out and "995" in out, out


# ---- a wrong recipient -----------------------------------------------------
def case_wrong_recipient_stops_pass():
    """Dovecot's LMTP refuses an unknown recipient with 550 5.1.1 for
    every message.  That is a configuration error: the pass stops at the
    first message (exit 67, the message says what to check), nothing is
    recorded as refused, nothing is deleted; with the recipient fixed the
    next pass delivers everything.  (It used to record every message as
    refused for good, exit 65.)"""
    with mh.Harness() as h:
        msgs = [m["raw"] for m in corpus.generate(5, seed=17, tricks=False)]
        h.inject("alice", msgs)
        cfg = test_sync_pop3.config(h, target_text=lmtp_target(h, "Nosuch@localhost"),
                                    extra="keep = no\n")
        rc, out, err = run(cfg, "sync", ok=(EX_NOUSER,))
        assert "auth_username_format" in out + err, out + err
        assert " on the server" not in out, out     # no summary of a failed pass
        rc, st, _ = run(cfg, "status", ok=(1,))
        assert "refused for good" not in st, st
        assert h.server_count("alice") == 5
        rc, out, err = run(cfg, "sync", ok=(EX_NOUSER,))
        assert h.server_count("alice") == 5
        cfg = test_sync_pop3.config(h, extra="keep = no\n")
        rc, out, err = run(cfg, "sync")
        assert h.count("bob") == 5, (out, err)
        assert h.server_count("alice") == 0
        rc, st, _ = run(cfg, "status")
        assert "last pass" in st and ", ok:" in st, st


# ---- stopping ------------------------------------------------------------
def case_sigterm_deletions_take_effect():
    """The man page: SIGTERM to the service lets the running pass finish
    the message in flight and end its session so that the deletions of
    what was delivered take effect.  With POP3 pipelining, messages asked
    for ahead were read and dropped and the pass ended 'without QUIT,
    deletions postponed': now they are delivered too, and QUIT deletes
    every delivered message at once."""
    import test_service
    with mh.Harness() as h:
        msgs = test_service.gen(300, seed=71)
        h.inject("alice", msgs)
        cfg = test_service.config(h, [("a", test_service.account("a", h, "alice",
                                                                  extra="keep = no"))],
                                  general="interval = 1h")
        with test_service.Service(h, cfg) as svc:
            assert mh.wait_for(lambda: h.smtp_count("a") >= 30, timeout=60,
                               step=0.01), svc.log()
            assert h.smtp_count("a") < 300, "the pass ended before the signal"
            rc = svc.stop(timeout=90)
            assert rc == 0, (rc, svc.log())
            log = svc.log()
        assert "stopping after" in log, log
        assert "postponed" not in log, log
        n = h.smtp_count("a")
        assert n < 300, n
        assert h.server_count("alice") == 300 - n, (n, h.server_count("alice"), log)
        rc, out, err = run(cfg, "sync", timeout=300)
        test_service.assert_once(h.smtp_messages("a"), msgs, "a")
        assert h.server_count("alice") == 0


def case_ctrl_c_sync():
    """Ctrl-C (SIGINT to the process group) during `sync`: says what
    happens, each pass finishes the message in flight and ends its
    session (deletions take effect), the summary line says what was
    done, exit 130; the next sync delivers the rest once."""
    import test_service
    with mh.Harness() as h:
        msgs = test_service.gen(300, seed=72)
        h.inject("alice", msgs)
        cfg = test_sync_pop3.config(h, extra="keep = no\n",
                                    target_text="type = smtp\nhost = localhost\n"
                                    "port = %d\ntls = starttls\nca_file = %s\n"
                                    "recipient = a@localhost\n" % (h.smtp_port, h.ca))
        env = dict(os.environ)
        env.update(test_service.xdg_env(cfg))
        p = subprocess.Popen([mh.mailhaul_path(), "-c", cfg, "sync"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
        try:
            assert mh.wait_for(lambda: h.smtp_count("a") >= 30, timeout=60,
                               step=0.01)
            os.killpg(p.pid, signal.SIGINT)
            out, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        out, err = out.decode(), err.decode()
        assert p.returncode == 130, (p.returncode, out, err)
        assert "interrupted" in err and "stays on the server" in err, err
        n = h.smtp_count("a")
        assert n < 300, n
        assert "old: 300 on the server, %d delivered, %d deleted" % (n, n) in out, (n, out, err)
        assert h.server_count("alice") == 300 - n
        run(cfg, "sync", timeout=300)
        test_service.assert_once(h.smtp_messages("a"), msgs, "a")


# ---- output ------------------------------------------------------------
def case_summary_lines():
    """IMAP: the summary counts what is on the server, not only what was
    new (it said `0 on the server` while the messages were kept there);
    -q prints nothing when nothing failed; a pass with refusals is
    `ok, N refused` in status, which exits 0 for it."""
    with mh.Harness(smtp_args=["--reject-header", "X-Test-Reject"]) as h:
        msgs = [m["raw"] for m in corpus.generate(4, seed=5, tricks=False)]
        target = refusing(h, msgs, 1)
        cfg = test_sync_imap.config(h, target_text=target)
        rc, out, err = run(cfg, "sync", ok=(65,))
        assert "4 on the server, 3 delivered" in out and "1 refused" in out, out
        rc, st, _ = run(cfg, "status")
        assert ", ok, 1 refused: 4 on the server" in st, st
        rc, out, err = run(cfg, "-q", "sync")
        assert out == "" and err == "", (out, err)
        rc, out, err = run(cfg, "sync")
        assert "imapacct: 4 on the server, 0 delivered" in out, out


def case_mark_seen_counted_apart():
    """What mark-seen records is not counted as delivered: status shows
    it apart ("delivered in all" used to include it)."""
    with mh.Harness() as h:
        h.inject("alice", [m["raw"] for m in corpus.generate(4, seed=11, tricks=False)])
        cfg = test_sync_imap.config(h)
        rc, out, err = run(cfg, "mark-seen", "imapacct")
        assert "4 messages recorded as seen, 0 already known" in out, out
        h.inject("alice", [m["raw"] for m in corpus.generate(2, seed=12, tricks=False)])
        rc, out, err = run(cfg, "sync")
        assert "imapacct: 6 on the server, 2 delivered" in out, out
        rc, st, _ = run(cfg, "status")
        assert "delivered in all: 2\n" in st, st
        assert "recorded as seen by mark-seen (not delivered): 4" in st, st
        rc, js, _ = run(cfg, "status", "--json")
        assert '"adopted_total":4' in js and '"delivered_total":2' in js, js
        rc, out, err = run(cfg, "mark-seen", "imapacct")
        assert "0 messages recorded as seen, 6 already known" in out, out


def case_log_file_and_stamps():
    """log = FILE appends stamped lines (the summary stays on stdout);
    without it, stderr that is not a terminal gets stamped lines."""
    with mh.Harness(smtp_args=["--reject-header", "X-Test-Reject"]) as h:
        msgs = [m["raw"] for m in corpus.generate(2, seed=7, tricks=False)]
        target = refusing(h, msgs, 0)
        stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d mailhaul\[\d+\]: ")
        cfg = test_sync_pop3.config(h, target_text=target)
        rc, out, err = run(cfg, "sync", ok=(65,))
        lines = [l for l in err.split("\n") if l]
        assert lines and all(stamp.match(l) for l in lines), err
        log = h.path("mailhaul.log")
        text = open(cfg).read().replace("[general]\n", "[general]\nlog = %s\n" % log)
        mh.write_config(cfg, text)
        run(cfg, "retry", "old")
        rc, out, err = run(cfg, "sync", ok=(65,))
        assert err == "" and "1 refused" in out, (out, err)
        first = open(log).read().split("\n")
        assert any("no thanks" in l for l in first), first
        assert all(stamp.match(l) for l in first if l), first
        run(cfg, "retry", "old")
        run(cfg, "sync", ok=(65,))
        assert len(open(log).read().split("\n")) > len(first), "not appended"
        bad = text.replace("log = %s" % log, "log = %s/no/such/dir/x.log" % h.dir)
        mh.write_config(cfg, bad)
        rc, out, err = run(cfg, "sync", ok=(EX_CONFIG,))
        assert "no/such/dir" in err, err


def case_cli_help():
    """Every command has its own --help (sync --help printed the global
    usage), `help CMD` says the same, the global usage and the man page
    name every command; an unknown command names the nearest one."""
    rc, glob, _ = mh.run_mailhaul(["--help"])
    assert rc == 0
    man = open(os.path.join(mh.HERE, "..", "..", "man", "mailhaul.1.scd")).read()
    for cmd in ("sync", "run", "check", "status", "mark-seen", "retry",
                "forget", "config", "auth", "import"):
        rc, out, err = mh.run_mailhaul([cmd, "--help"])
        assert rc == 0 and out.startswith("usage: mailhaul"), (cmd, rc, out, err)
        assert (" %s " % cmd) in out.split("\n")[0] + " ", (cmd, out)
        assert out != glob, cmd
        rc, out2, _ = mh.run_mailhaul(["help", cmd])
        assert rc == 0 and out2 == out, cmd
        assert ("  " + cmd) in glob, (cmd, glob)
        assert ("*%s*" % cmd) in man, cmd
    rc, out, err = mh.run_mailhaul(["synk"])
    assert rc == EX_USAGE and "did you mean 'sync'" in err, (rc, err)
    rc, out, err = mh.run_mailhaul(["sync", "--bogus"])
    assert rc == EX_USAGE and "sync [-n|--dry-run]" in err, (rc, err)


def case_config_errors_name_the_mistake():
    """A bad value is reported once, at its line, without the wrong
    follow-on errors it used to cause (`file:0: tls over a unix socket`
    after a bad type; `keep = maybe` reported as a contradiction with
    delete_after); a mistyped section names the one probably meant."""
    import tempfile
    d = tempfile.mkdtemp(prefix="mh-truth-")
    cfg = mh.write_config(os.path.join(d, "typo.ini"), """[target:home]
type = lmpt
socket = /run/dovecot/lmtp
recipient = me@example.org

[acount:x]
host = a

[account:old]
protocol = pop3
host = pop.example
user = joe
password = secret
keep = maybe
delete_after = 30d
target = home
""")
    rc, out, err = mh.run_mailhaul(["config"], cfg)
    import shutil
    shutil.rmtree(d, ignore_errors=True)
    assert rc == EX_CONFIG, (rc, out, err)
    lines = [l for l in err.split("\n") if l.startswith(cfg)]
    assert len(lines) == 3, err
    assert "%s:2: bad value 'lmpt' for 'type'" % cfg in err, err
    assert "%s:6: unknown section [acount:x]; did you mean [account:x]?" % cfg in err, err
    assert "%s:14: bad value 'maybe' for 'keep'" % cfg in err, err
    assert ":0:" not in err and "contradict" not in err and "socket" not in err, err


def on_tty(cfg, args, answer=None, timeout=60):
    """Runs mailhaul args on a pseudo-terminal (answering answer to its
    [y/N] question); returns (exit status, everything it printed)."""
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        env = dict(os.environ)
        base = os.path.join(os.path.dirname(cfg), "xdg")
        env["XDG_STATE_HOME"] = os.path.join(base, "state")
        env["XDG_CONFIG_HOME"] = os.path.join(base, "config")
        os.execve(mh.mailhaul_path(), [mh.mailhaul_path(), "-c", cfg] + args, env)
    out = b""
    end = time.monotonic() + timeout
    while answer is not None and b"[y/N]" not in out and time.monotonic() < end:
        out += os.read(fd, 4096)
    if answer is not None:
        os.write(fd, answer.encode() + b"\n")
    while time.monotonic() < end:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def forget_on_tty(cfg, answer):
    return on_tty(cfg, ["forget", "old"], answer)


def case_mark_seen_progress():
    """mark-seen reads every message: on a terminal it shows a progress
    line, and ends it."""
    with mh.Harness() as h:
        h.inject("alice", [m["raw"] for m in corpus.generate(40, seed=13, tricks=False)])
        cfg = test_sync_pop3.config(h)
        rc, out = on_tty(cfg, ["mark-seen", "old"])
        assert rc == 0, out
        assert "old: 40/40 messages" in out and "\r\033[K" in out, repr(out)
        assert "40 messages recorded as seen" in out, out


def case_forget_asks():
    """forget asks on a terminal; without one it refuses unless --yes;
    what it keeps or drops shows in the next pass."""
    with mh.Harness() as h:
        h.inject("alice", [m["raw"] for m in corpus.generate(3, seed=3, tricks=False)])
        cfg = test_sync_pop3.config(h)
        run(cfg, "sync")
        rc, out, err = run(cfg, "forget", "old", ok=(EX_USAGE,))
        assert "--yes" in err, err
        rc, out = forget_on_tty(cfg, "n")
        assert rc == 1 and "[y/N]" in out and "nothing forgotten" in out, (rc, out)
        rc, out, err = run(cfg, "sync")
        assert h.count("bob") == 3, "state was dropped"
        rc, out = forget_on_tty(cfg, "y")
        assert rc == 0 and "state forgotten" in out, (rc, out)
        run(cfg, "sync")
        assert h.count("bob") == 6
        rc, out, err = run(cfg, "forget", "--yes", "old")
        assert "state forgotten" in out, out


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
