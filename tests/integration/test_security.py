"""test_security.py -- secrets never leak, state files are private, the
config is masked and an exposed config is flagged.

    MAILHAUL=build/mailhaul python3 tests/integration/test_security.py [CASE...]

Sources and target are tests/faults/faultd.py servers on 127.0.0.1: one
account logs in, one is refused (wrong password), the target needs AUTH
over STARTTLS and refuses one message for good.
"""
import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "faults"))
import run as faults  # noqa: E402  (tests/faults/run.py)
import mh  # noqa: E402

GOOD_PW = "Sec-Good-Pw-4r8T"
WRONG_PW = "Sec-Wrong-Pw-6h1K"
TARGET_PW = "Sec-Tgt-Pw-2m5X"
SECRETS = [GOOD_PW, WRONG_PW, TARGET_PW]


def forms(secret, user):
    """The secret as it may travel: clear, and inside AUTH PLAIN /
    AUTH LOGIN base64."""
    out = [secret, base64.b64encode(secret.encode()).decode()]
    out.append(base64.b64encode(("\0%s\0%s" % (user, secret)).encode()).decode())
    return out


NEEDLES = forms(GOOD_PW, "joe") + forms(WRONG_PW, "joe") + forms(TARGET_PW, "tuser")


class Bed:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="mh-sec-", dir="/tmp")
        certs = os.path.join(self.tmp, "certs")
        os.mkdir(certs)
        subprocess.run(["sh", os.path.join(faults.HERE, "..", "unit", "net", "mkcerts.sh"), certs],
                       check=True, timeout=60)
        self.good = faults.FaultServer(self.tmp, "good", {
            "proto": "pop3", "tls": "starttls", "messages": 3,
            "password": GOOD_PW}, certs)
        self.bad = faults.FaultServer(self.tmp, "bad", {
            "proto": "pop3", "tls": "implicit", "messages": 2,
            "password": "the-server-wants-this"}, certs)
        self.tgt = faults.FaultServer(self.tmp, "target", {
            "proto": "smtp", "tls": "starttls", "auth": True, "user": "tuser",
            "password": TARGET_PW,
            "rules": [{"match": "<EOM>", "times": 1,
                       "reply": "554 5.7.1 refused for the test"}]}, certs)
        self.state_dir = os.path.join(self.tmp, "private", "state")
        self.db = os.path.join(self.state_dir, "state.db")
        ca = os.path.join(certs, "ca.pem")
        text = """[general]
state = %(db)s
timeout = 5s

[target:t]
type = smtp
host = localhost
port = %(tport)d
tls = starttls
ca_file = %(ca)s
user = tuser
password = %(tpw)s
recipient = rcpt@example.org

[account:good]
protocol = pop3
host = localhost
port = %(gport)d
tls = starttls
ca_file = %(ca)s
user = joe
password = %(gpw)s
target = t

[account:wrong]
protocol = pop3
host = localhost
port = %(bport)d
tls = implicit
ca_file = %(ca)s
user = joe
password = %(wpw)s
target = t
""" % {"db": self.db, "tport": self.tgt.port, "ca": ca, "tpw": TARGET_PW,
            "gport": self.good.port, "gpw": GOOD_PW, "bport": self.bad.port,
            "wpw": WRONG_PW}
        self.cfg = mh.write_config(os.path.join(self.tmp, "mailhaul.ini"), text)
        self.outputs = []

    def run(self, *args, umask=None):
        old = os.umask(umask) if umask is not None else None
        try:
            rc, out, err, secs = faults.run_mailhaul(self.tmp, self.cfg, list(args), None)
        finally:
            if old is not None:
                os.umask(old)
        self.outputs.append(("mailhaul -v %s" % " ".join(args), out + err))
        print("mailhaul %s -> %d in %.1f s" % (" ".join(args), rc, secs))
        return rc, out, err

    def assert_no_secret(self):
        for what, text in self.outputs:
            for n in NEEDLES:
                assert n not in text, "%s printed a secret (%s...)\n%s" % (
                    what, n[:4], text[-2000:])
        for p in (self.db, self.db + "-wal", self.db + "-journal", self.db + "-shm"):
            if os.path.exists(p):
                with open(p, "rb") as f:
                    data = f.read()
                for n in NEEDLES:
                    assert n.encode() not in data, "%s holds a secret" % p
        # nothing else mailhaul wrote (spool, locks) either
        for root, _, files in os.walk(os.path.join(self.tmp, "private")):
            for fn in files:
                with open(os.path.join(root, fn), "rb") as f:
                    data = f.read()
                for n in NEEDLES:
                    assert n.encode() not in data, "%s holds a secret" % fn

    def close(self):
        for s in (self.good, self.bad, self.tgt):
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


# ---- cases -------------------------------------------------------------------
def case_no_secret_anywhere():
    """A failed login, a refused message and a successful pass, at debug
    level; then status, status --json, check, config, retry: no password
    (clear or base64 in AUTH) in any output or in the state files."""
    with Bed() as b:
        rc, out, err = b.run("sync")
        assert rc in (65, 77), (rc, out, err)
        # the run did what the test needs: a refused login, a 5xx, deliveries
        assert b.bad.read()["connections"][0]["login"] == "refused", b.bad.transcript()
        g = b.good.read()["connections"][0]
        assert g["login"] == "ok" and g["tls"], b.good.transcript()
        recv = b.tgt.read()["received"]
        assert any(r["replies"][0].startswith("554") for r in recv), recv
        assert sum(r["replies"][0].startswith("250") for r in recv) == 2, recv
        assert any(c["login"] == "ok" and c["tls"] for c in b.tgt.read()["connections"])
        assert "Sec-" not in out + err
        rc, out, err = b.run("sync")
        assert rc == 77, (rc, out, err)		# "wrong" is still refused
        # each command must have done its work, or it proves nothing
        # status exits 1: the last pass of "wrong" failed
        for args, want in ((["status"], 1), (["status", "--json"], 1),
                           (["check"], 77), (["config"], 0),
                           (["retry", "good"], 0), (["sync", "good"], 0),
                           (["check", "wrong"], 77)):
            rc, out, err = b.run(*args)
            assert rc == want, (args, rc, out, err)
            if args == ["status", "--json"]:
                st = json.loads(out)
                names = sorted(a["account"] for a in st["accounts"])
                assert names == ["good", "wrong"], st
                good = [a for a in st["accounts"] if a["account"] == "good"]
                assert good[0]["delivered_total"] >= 2, st
            if args == ["status"]:
                assert "good (" in out and "wrong (" in out, out
        b.assert_no_secret()


def case_state_private():
    """The state DB and its directory are created 0600 / 0700, even under
    umask 0 (and the spool and lock files in it are not readable by
    others)."""
    with Bed() as b:
        rc, out, err = b.run("sync", "good", umask=0)
        assert rc in (0, 65), (rc, out, err)
        assert os.path.exists(b.db), (out, err)
        dmode = stat.S_IMODE(os.stat(b.state_dir).st_mode)
        fmode = stat.S_IMODE(os.stat(b.db).st_mode)
        assert dmode == 0o700, "state dir mode %o" % dmode
        assert fmode == 0o600, "state db mode %o" % fmode
        for root, dirs, files in os.walk(b.state_dir):
            for n in dirs + files:
                m = stat.S_IMODE(os.lstat(os.path.join(root, n)).st_mode)
                assert m & 0o077 == 0, "%s is mode %o" % (os.path.join(root, n), m)


def case_config_masked():
    """`mailhaul config` prints the effective config with every secret
    masked, but still shows that a password is set."""
    with Bed() as b:
        rc, out, err = b.run("config")
        assert rc == 0, (rc, out, err)
        assert "good" in out and "wrong" in out, out
        for s in SECRETS:
            assert s not in out + err, "config printed a password"
        assert re.search(r"password\s*[=:]\s*\S", out), "no masked password line:\n" + out
        b.assert_no_secret()


def case_config_readable_warns():
    """A config readable by others that holds a password gets a warning
    (or a refusal) naming the file; 0600 gets none."""
    with Bed() as b:
        rc, out, err = b.run("config")
        assert rc == 0, (rc, out, err)
        assert not re.search(r"readable|permission|mode", err, re.I), err
        os.chmod(b.cfg, 0o644)
        rc, out, err = b.run("config")
        text = out + err
        assert re.search(r"readable|permission|mode", text, re.I), \
            "no warning for a 0644 config with passwords (rc %d)\n%s" % (rc, text)
        assert b.cfg in text, "the warning does not name the file\n" + text
        assert rc in (0, 78), (rc, text)
        b.assert_no_secret()


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
