"""test_local_faults.py -- local failures during `mailhaul sync`: the state
DB locked by another process, the state dir on a full disk or read-only,
a corrupt state DB.  In each, the pass must fail with a clear error and
nothing may be deleted on the source.

    MAILHAUL=build/mailhaul python3 tests/integration/test_local_faults.py [CASE...]

The source and target are tests/faults/faultd.py servers (they record
every DELE and whether a QUIT committed it).  Exit 77 (skip) for a case
that needs root and a tmpfs mount when neither is available.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "faults"))
import run as faults  # noqa: E402  (tests/faults/run.py)
import mh  # noqa: E402
from mh import Skip  # noqa: E402

EX_IOERR = 74


class Bed:
    """A fault POP3 source with 3 messages, a fault SMTP target, a config
    with keep = no, in a fresh temp dir; state dir given or tmp/state."""

    def __init__(self, state_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="mh-local-", dir="/tmp")
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        certs = os.path.join(self.tmp, "certs")
        os.mkdir(certs)
        self.src = faults.FaultServer(self.tmp, "source", {
            "proto": "pop3", "messages": 3, "password": faults.PASSWORD}, certs)
        self.tgt = faults.FaultServer(self.tmp, "target", {"proto": "smtp"}, certs)
        self.db = os.path.join(self.state_dir, "state.db")
        text = """[general]
state = %s
timeout = 5s

[target:t]
type = smtp
host = localhost
port = %d
tls = none
recipient = rcpt@example.org

[account:acct]
protocol = pop3
host = localhost
port = %d
tls = none
allow_plaintext_auth = yes
user = joe
password = %s
keep = no
target = t
""" % (self.db, self.tgt.port, self.src.port, faults.PASSWORD)
        self.cfg = os.path.join(self.tmp, "mailhaul.ini")
        fd = os.open(self.cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def run(self, *args):
        rc, out, err, secs = faults.run_mailhaul(self.tmp, self.cfg, list(args), None)
        print("mailhaul %s -> %d in %.1f s" % (" ".join(args), rc, secs))
        return rc, out, err, secs

    def source(self):
        return self.src.read()

    def dele_seen(self):
        return [d for c in self.source()["connections"] for d in c["dele"]]

    def assert_nothing_deleted(self, ctx):
        st = self.source()
        assert sorted(st["left"]) == [1, 2, 3] and not st["committed"], \
            "deleted on the source: %s\n%s" % (st, ctx)

    def accepted(self):
        return faults.accepted_counts(self.tgt)

    def close(self):
        self.src.stop()
        self.tgt.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


def ctx_of(rc, out, err):
    return "rc %d\n--- stdout\n%s--- stderr\n%s" % (rc, out, err[-3000:])


# ---- cases -------------------------------------------------------------------
def case_db_locked():
    """Another process holds the state DB in an exclusive transaction for
    longer than the busy timeout (5 s): the pass fails cleanly within a
    bound, nothing is deleted, and after the lock goes the next pass
    delivers everything once."""
    with Bed() as b:
        rc, out, err, _ = b.run("forget", "--yes", "acct")     # creates the DB
        assert os.path.exists(b.db), ctx_of(rc, out, err)
        con = sqlite3.connect(b.db, timeout=1, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        try:
            rc, out, err, secs = b.run("sync")
        finally:
            con.execute("ROLLBACK")
            con.close()
        ctx = ctx_of(rc, out, err)
        assert rc in (EX_IOERR, 75), ctx
        assert secs < 40, "took %.1f s" % secs
        assert "lock" in (out + err).lower() or "busy" in (out + err).lower(), ctx
        b.assert_nothing_deleted(ctx)
        assert not b.dele_seen(), ctx
        rc, out, err, _ = b.run("sync")
        assert rc == 0, ctx_of(rc, out, err)
        assert b.accepted() == {"1": 1, "2": 1, "3": 1}, b.accepted()
        assert b.source()["left"] == []


def case_db_locked_mid_pass():
    """The lock is taken after the pass has started (while the source is
    slow): deliveries that cannot be committed must not be deleted."""
    with Bed() as b:
        b.run("forget", "--yes", "acct")
        con = sqlite3.connect(b.db, timeout=1, isolation_level=None, check_same_thread=False)
        done = threading.Event()

        def locker():
            # wait for the first RETR, then hold the DB for 12 s
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                st = b.source()
                if any("C RETR" in l for c in st["connections"] for l in c["transcript"]):
                    break
                time.sleep(0.005)
            con.execute("BEGIN EXCLUSIVE")
            done.wait(12)
            con.execute("ROLLBACK")

        t = threading.Thread(target=locker, daemon=True)
        t.start()
        rc, out, err, _ = b.run("sync")
        done.set()
        t.join(20)
        con.close()
        ctx = ctx_of(rc, out, err)
        st = b.source()
        # whatever was deleted must have been accepted by the target
        acc = b.accepted()
        for i in st["committed"]:
            assert acc.get(str(i)), "message %d deleted but not delivered\n%s" % (i, ctx)
        rc, out, err, _ = b.run("sync")
        assert rc == 0, ctx_of(rc, out, err)
        acc = b.accepted()
        assert set(acc) == {"1", "2", "3"}, acc
        assert all(v <= 2 for v in acc.values()), acc


def mount_tmpfs(path, opts):
    if os.geteuid() != 0:
        raise Skip("needs root to mount a tmpfs")
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        raise Skip("mount -t tmpfs failed: %s" % p.stdout.decode(errors="replace").strip())


def umount(path):
    subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def case_disk_full():
    """The state dir (state DB and spool) on a tiny tmpfs that is full:
    a clear error, nothing deleted; after space comes back, delivered."""
    mnt = tempfile.mkdtemp(prefix="mh-full-", dir="/tmp")
    try:
        mount_tmpfs(mnt, "size=512k,mode=0700")
        with Bed(state_dir=os.path.join(mnt, "state")) as b:
            rc, out, err, _ = b.run("forget", "--yes", "acct")
            assert os.path.exists(b.db), ctx_of(rc, out, err)
            filler = os.path.join(mnt, "filler")
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while os.write(fd, b"\0" * 4096) > 0:
                    pass
            except OSError:
                pass
            os.close(fd)
            rc, out, err, _ = b.run("sync")
            ctx = ctx_of(rc, out, err)
            assert rc != 0, "a pass on a full disk succeeded\n" + ctx
            assert rc != -9, ctx
            low = (out + err).lower()
            assert "space" in low or "disk" in low or "full" in low or "write" in low, ctx
            st = b.source()
            acc = b.accepted()
            for i in st["committed"]:
                assert acc.get(str(i)), "message %d deleted but not delivered\n%s" % (i, ctx)
            assert not st["committed"], "deleted with a full state disk\n" + ctx
            os.unlink(filler)
            rc, out, err, _ = b.run("sync")
            assert rc == 0, ctx_of(rc, out, err)
            acc = b.accepted()
            assert set(acc) == {"1", "2", "3"} and all(v <= 2 for v in acc.values()), acc
            assert b.source()["left"] == []
    finally:
        umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


def case_readonly_state_dir():
    """A state dir that cannot be written (a read-only mount as root, mode
    0500 otherwise): a clear error, nothing fetched or deleted."""
    mnt = tempfile.mkdtemp(prefix="mh-ro-", dir="/tmp")
    try:
        if os.geteuid() == 0:
            mount_tmpfs(mnt, "ro,size=64k")
            state = mnt
        else:
            state = os.path.join(mnt, "state")
            os.mkdir(state, 0o500)
        with Bed(state_dir=state) as b:
            rc, out, err, _ = b.run("sync")
            ctx = ctx_of(rc, out, err)
            assert rc == EX_IOERR, ctx
            low = (out + err).lower()
            assert "read-only" in low or "permission" in low or "cannot" in low, ctx
            assert state in out + err, "the error does not name the path\n" + ctx
            b.assert_nothing_deleted(ctx)
            assert not b.dele_seen() and not b.accepted(), ctx
    finally:
        umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


def case_corrupt_db():
    """A state DB of garbage bytes: refuses to run with a message that
    says how to recover; never treats it as empty (no refetch), leaves
    the file as it was."""
    with Bed() as b:
        os.makedirs(b.state_dir, mode=0o700, exist_ok=True)
        garbage = bytes((i * 131 + 7) % 256 for i in range(64 * 1024))
        with open(b.db, "wb") as f:
            f.write(garbage)
        os.chmod(b.db, 0o600)
        for args in (["sync"], ["status"]):
            rc, out, err, _ = b.run(*args)
            ctx = ctx_of(rc, out, err)
            assert rc == EX_IOERR, ctx
            low = (out + err).lower()
            assert "corrupt" in low or "not a database" in low, ctx
            assert any(w in low for w in ("recover", "move", "rename", "restore",
                                          "backup", "mark-seen", ".recover")), \
                "no recovery advice\n" + ctx
        assert not b.accepted() and not b.dele_seen(), "fetched from a corrupt state"
        assert not any("RETR" in l for c in b.source()["connections"]
                       for l in c["transcript"]), "RETR with a corrupt state"
        with open(b.db, "rb") as f:
            assert f.read() == garbage, "the corrupt DB was modified"


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
