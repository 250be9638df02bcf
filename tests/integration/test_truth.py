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


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
