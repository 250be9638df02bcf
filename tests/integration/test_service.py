"""test_service.py -- `mailhaul run`, the background service, against the
harness's Dovecot and SMTP receiver (and a fake POP3 server that stalls).

    MAILHAUL=build/mailhaul python3 tests/integration/test_service.py [CASE...]

Each CASE starts its own harness, so meson runs them in parallel.  Every
wait is bounded; the service is always killed at the end.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import corpus
import mh

EX_TEMPFAIL = 75
HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.normpath(os.path.join(HERE, "..", "..", "scripts", "mailhaul.service"))


# ---- helpers -----------------------------------------------------------------
def account(name, h, user, protocol="pop3", extra=""):
    port = h.pop3s_port if protocol == "pop3" else h.imaps_port
    return """[account:%s]
protocol = %s
host = localhost
port = %d
ca_file = %s
user = %s
password = %s
target = sink%s
%s
""" % (name, protocol, port, h.ca, user, h.password, name, extra)


def target(name, h):
    """An SMTP target that delivers to the sink's maildir <name>."""
    return """[target:sink%s]
type = smtp
host = localhost
port = %d
tls = starttls
ca_file = %s
recipient = %s@localhost

""" % (name, h.smtp_port, h.ca, name)


def config(h, accounts, general="", path="mailhaul.ini"):
    """accounts: list of (name, text) -- text from account()."""
    if "interval" not in general:
        general = "interval = 1s\n" + general
    text = "[general]\nstate = %s\n%s\n" % (h.path("state", "state.db"),
                                               general)
    for name, _ in accounts:
        text += target(name, h)
    for _, acct in accounts:
        text += acct
    return mh.write_config(h.path(path), text)


def xdg_env(cfg):
    base = os.path.join(os.path.dirname(os.path.abspath(cfg)), "xdg")
    e = {}
    for k, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                   ("XDG_CACHE_HOME", "cache"), ("XDG_RUNTIME_DIR", "run")):
        e[k] = os.path.join(base, sub)
        os.makedirs(e[k], mode=0o700, exist_ok=True)
    return e


class Service:
    """`mailhaul -c cfg run` in the background, its stderr in a file."""

    def __init__(self, h, cfg, env=None, name="service"):
        self.cfg = cfg
        self.logpath = h.path(name + ".log")
        e = dict(os.environ)
        e.update(xdg_env(cfg))
        e.update(env or {})
        self.env = e
        self.logf = open(self.logpath, "wb")
        self.p = subprocess.Popen([mh.mailhaul_path(), "-c", cfg, "run"],
                                  stdout=self.logf, stderr=subprocess.STDOUT,
                                  env=e)

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.alive():
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=10)
            raise AssertionError("service did not stop within %ss\n%s"
                                 % (timeout, self.log()[-3000:]))

    def close(self):
        if self.alive():
            self.p.kill()
            self.p.wait(timeout=10)
        self.logf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            sys.stderr.write("---- service log\n%s\n" % self.log()[-4000:])
        self.close()
        return False


def status_json(cfg):
    rc, out, err = mh.run_mailhaul(["status", "--json"], cfg, timeout=30)
    assert rc in (0, 1), err    # 1: a last pass failed
    return json.loads(out)


def service_account(cfg, name):
    st = status_json(cfg)
    if not st.get("service"):
        return None
    for a in st["service"]["accounts"]:
        if a["account"] == name:
            return a
    return None


def wait_status(cfg, name, pred, timeout=20):
    def check():
        a = service_account(cfg, name)
        return a if a is not None and pred(a) else None
    return mh.wait_for(check, timeout=timeout, step=0.1)


def ids(msgs):
    return sorted(mh.header(m, "X-Corpus-Id") for m in msgs)


def assert_once(delivered, want_msgs, what):
    got = ids(delivered)
    want = ids(want_msgs)
    assert len(got) == len(set(got)), "%s: delivered twice: %s" % (
        what, sorted({x for x in got if got.count(x) > 1})[:5])
    assert got == want, "%s: want %d, got %d; missing %s" % (
        what, len(want), len(got), sorted(set(want) - set(got))[:5])


def gen(n, seed):
    return [m["raw"] for m in corpus.generate(n, seed=seed, tricks=False)]


class Listener:
    """A TCP server on 127.0.0.1: every accepted socket goes to
    accepted() in the accepting thread; close() ends it and closes the
    sockets kept in self.socks."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.socks = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.socks.append(c)
            self.accepted(c)

    def accepted(self, c):
        pass

    def close(self):
        self.stop = True
        self.t.join(timeout=5)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.sock.close()


class StallServer(Listener):
    """Accepts and never says a word."""


class LoginDisabledProxy(Listener):
    """A plain-TCP proxy on 127.0.0.1 in front of Dovecot's IMAP port that
    makes it a server with LOGINDISABLED: every CAPABILITY it forwards
    gains LOGINDISABLED, and a LOGIN command is answered NO without
    reaching Dovecot.  Counts the LOGIN and AUTHENTICATE commands seen."""

    def __init__(self, port):
        self.up = port
        self.logins = self.auths = 0
        super().__init__()

    def accepted(self, c):
        u = socket.create_connection(("127.0.0.1", self.up), timeout=10)
        self.socks.append(u)
        threading.Thread(target=self.down, args=(u, c), daemon=True).start()
        threading.Thread(target=self.upward, args=(c, u), daemon=True).start()

    @staticmethod
    def lines(src):
        f = src.makefile("rb")
        while True:
            try:
                line = f.readline()
            except OSError:
                return
            if not line:
                return
            yield line

    def from_server(self, line):
        """The line to pass on to the client."""
        if b"CAPABILITY IMAP4rev1" in line:
            line = line.replace(b"CAPABILITY IMAP4rev1",
                                b"CAPABILITY IMAP4rev1 LOGINDISABLED")
        return line

    def from_client(self, verb, words, line, c, u):
        """Handles one client line; False ends the connection."""
        if verb == b"LOGIN":
            self.logins += 1
            c.sendall(words[0] + b" NO [PRIVACYREQUIRED] LOGIN is "
                      b"disabled\r\n")
            return True
        if verb == b"AUTHENTICATE":
            self.auths += 1
        u.sendall(line)
        return True

    def down(self, u, c):
        for line in self.lines(u):
            try:
                c.sendall(self.from_server(line))
            except OSError:
                return
        c.close()

    def upward(self, c, u):
        for line in self.lines(c):
            words = line.split(b" ", 2)
            verb = words[1].upper().strip() if len(words) > 1 else b""
            try:
                if not self.from_client(verb, words, line, c, u):
                    break
            except OSError:
                return
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class IdleDropProxy(LoginDisabledProxy):
    """A plain-TCP proxy in front of Dovecot's IMAP port whose server
    takes every login and EXAMINE but drops every IDLE at once (a server
    over its connection limit, a middlebox that kills idle connections):
    IDLE is answered "+ idling", then BYE, and the connection closed.
    Counts the IDLEs."""

    def __init__(self, port):
        self.idles = 0
        super().__init__(port)

    def from_server(self, line):
        return line

    def from_client(self, verb, words, line, c, u):
        if verb == b"IDLE":
            self.idles += 1
            c.sendall(b"+ idling\r\n* BYE going away\r\n")
            return False
        u.sendall(line)
        return True


def idle_account(h, port):
    """Account c: carol over IMAP at 127.0.0.1:port (a proxy before
    Dovecot), plain text allowed, IDLE on, polled once an hour."""
    return ("[account:c]\nprotocol = imap\nhost = localhost\n"
            "port = %d\ntls = none\nallow_plaintext_auth = yes\n"
            "user = carol\npassword = %s\ntarget = sinkc\n"
            "idle = yes\ninterval = 1h\n" % (port, h.password))


# ---- cases ---------------------------------------------------------------------
def case_three_accounts():
    """Three accounts at interval = 1s: what is there at start and what is
    injected while the service runs arrives once; `mailhaul sync` meanwhile
    double-delivers nothing; status shows the next pass; a second run on
    the same state exits 75; notify_command gets account and count."""
    with mh.Harness() as h:
        users = {"a": "alice", "b": "bob", "c": "carol"}
        early = {k: gen(5, seed=i) for i, k in enumerate(users)}
        for k, u in users.items():
            h.inject(u, early[k])
        notes = h.path("notes")
        cfg = config(h, [("a", account("a", h, "alice", extra="keep = no")),
                         ("b", account("b", h, "bob")),
                         ("c", account("c", h, "carol", protocol="imap"))],
                     general="concurrency = 2\nnotify_command = echo "
                             "\"$MAILHAUL_ACCOUNT $MAILHAUL_COUNT\" >> %s\n" % notes)
        with Service(h, cfg) as svc:
            ok = mh.wait_for(lambda: all(h.smtp_count(k) >= 5 for k in users),
                             timeout=30)
            assert ok, {k: h.smtp_count(k) for k in users}
            # a second service on the same state
            rc, out, err = mh.run_mailhaul(["run"], cfg, timeout=30)
            assert rc == EX_TEMPFAIL, (rc, err)
            assert "another mailhaul run (pid %d) serves this state" % svc.p.pid \
                in err, err
            # mail injected while it runs, and syncs racing the service
            late = {k: gen(20, seed=10 + i) for i, k in enumerate(users)}
            for k, u in users.items():
                h.inject(u, late[k])
            synced = {k: 0 for k in users}
            for _ in range(3):
                rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=120)
                assert rc in (0, EX_TEMPFAIL), (rc, out, err)
                for line in out.splitlines():
                    if " on the server, " in line:
                        name, rest = line.split(": ", 1)
                        synced[name] += int(rest.split(", ")[1].split()[0])
            ok = mh.wait_for(lambda: all(h.smtp_count(k) >= 25 for k in users),
                             timeout=60)
            assert ok, {k: h.smtp_count(k) for k in users}
            time.sleep(2.5)		# more passes: nothing more may come
            for k in users:
                assert_once(h.smtp_messages(k), early[k] + late[k], k)
            assert h.server_count("alice") == 0, "keep = no left mail"
            # status: text and JSON
            rc, out, err = mh.run_mailhaul(["status"], cfg, timeout=30)
            assert rc == 0, err
            assert "service: running (pid %d)" % svc.p.pid in out, out
            for k in users:
                assert ("  %s: next pass: " % k in out or
                        "  %s: pass running now" % k in out), out
            st = status_json(cfg)
            assert st["service"]["pid"] == svc.p.pid, st
            names = sorted(a["account"] for a in st["service"]["accounts"])
            assert names == ["a", "b", "c"], st
            for a in st["service"]["accounts"]:
                assert a["running"] or a["next"] > time.time() - 5, a
                assert a["failures"] == 0 and a["idle"] == "off", a
            assert svc.alive()
            assert svc.stop() == 0, svc.log()
        assert status_json(cfg)["service"] is None
        got = {}
        with open(notes) as f:
            for line in f:
                name, n = line.split()
                got[name] = got.get(name, 0) + int(n)
        # the service notified what it delivered, the syncs the rest
        want = {k: 25 - synced[k] for k in users if synced[k] < 25}
        assert got == want, (got, synced)


def case_idle_within_2s():
    """An IMAP account with idle = yes and a 1 h interval: a message put
    in the mailbox while it idles is delivered by IDLE, not by a poll
    (none is due for an hour).  How fast is a benchmark's question, not
    a test's: the latency is printed, never asserted (issue #16)."""
    with mh.Harness() as h:
        cfg = config(h, [("c", account("c", h, "carol", protocol="imap",
                                       extra="idle = yes\ninterval = 1h"))])
        with Service(h, cfg) as svc:
            a = wait_status(cfg, "c", lambda a: a["idle"] == "connected" and
                            a["last_result"] == "ok" and not a["running"])
            assert a, (service_account(cfg, "c"), svc.log())
            for i in range(3):
                msg = gen(1, seed=40 + i)
                t0 = time.monotonic()
                h.inject("carol", msg)
                ok = mh.wait_for(lambda: h.smtp_count("c") >= i + 1,
                                 timeout=60, step=0.02)
                dt = time.monotonic() - t0
                assert ok, "not delivered in 60 s\n" + svc.log()
                print("IDLE delivery %d after %.2f s" % (i, dt))
                time.sleep(0.5)
            assert svc.stop() == 0


def case_idle_bounded():
    """folders = * with idle = yes on six folders: IDLE on INBOX and two
    more (idle_connections defaults to 3, well below Dovecot's 10 per
    user), the rest polled; mail still arrives through IDLE in INBOX."""
    import test_sync_imap
    with mh.Harness() as h:
        for i in range(5):
            test_sync_imap.save_as(h, "carol", "F%d" % i, gen(1, seed=70 + i))
        cfg = config(h, [("c", account("c", h, "carol", protocol="imap",
                                       extra="idle = yes\ninterval = 1h\n"
                                             "folders = *"))])
        with Service(h, cfg) as svc:
            a = wait_status(cfg, "c", lambda a: a["idle"] == "connected"
                            and a["last_result"] == "ok"
                            and not a["running"], timeout=60)
            assert a, (service_account(cfg, "c"), svc.log())
            assert a["idle_folders"] == 3 and a["idle_connected"] == 3, a
            assert "IDLE on 3 of 6 folders" in svc.log(), svc.log()
            assert h.smtp_count("c") == 5, h.smtp_count("c")
            msg = gen(1, seed=79)
            h.inject("carol", msg)
            assert mh.wait_for(lambda: h.smtp_count("c") >= 6, timeout=60), \
                svc.log()
            assert svc.stop() == 0


def case_idle_logindisabled():
    """A server that disables LOGIN but offers AUTH=PLAIN: the IDLE
    watcher logs in with AUTHENTICATE PLAIN like the fetch does, so new
    mail still arrives through IDLE (interval 1 h), and LOGIN is never
    sent."""
    with mh.Harness() as h:
        proxy = LoginDisabledProxy(h.imap_port)
        try:
            cfg = config(h, [("c", idle_account(h, proxy.port))])
            with Service(h, cfg) as svc:
                a = wait_status(cfg, "c", lambda a: a["idle"] == "connected"
                                and a["last_result"] == "ok"
                                and not a["running"])
                assert a, (service_account(cfg, "c"), svc.log())
                msgs = gen(2, seed=60)
                h.inject("carol", msgs)
                assert mh.wait_for(lambda: h.smtp_count("c") >= 2,
                                   timeout=10, step=0.05), svc.log()
                assert_once(h.smtp_messages("c"), msgs, "c")
                assert svc.stop() == 0
            assert proxy.logins == 0, "LOGIN sent %d times" % proxy.logins
            assert proxy.auths >= 2, "AUTHENTICATE seen %d times" % proxy.auths
        finally:
            proxy.close()


def case_idle_dropped_backoff():
    """A server that logs in fine but drops every IDLE at once: the
    watcher's reconnects back off (1 s, 2 s, 4 s...) rather than log in
    and start a pass every second for ever."""
    with mh.Harness() as h:
        proxy = IdleDropProxy(h.imap_port)
        try:
            cfg = config(h, [("c", idle_account(h, proxy.port))])
            with Service(h, cfg) as svc:
                assert mh.wait_for(lambda: "reconnecting in 4 s" in svc.log(),
                                   timeout=30), svc.log()
                log = svc.log()
                assert "reconnecting in 1 s" in log and \
                    "reconnecting in 2 s" in log, log
                assert svc.stop() == 0
            # 1 + 2 + 4 s of waiting: three or four IDLEs, not one a second
            assert 3 <= proxy.idles <= 5, proxy.idles
        finally:
            proxy.close()


def case_idle_restart():
    """IDLE restarted every 2 s (MAILHAUL_IDLE_RESTART) keeps working: new
    mail still arrives through IDLE well before the 1 h interval."""
    with mh.Harness() as h:
        cfg = config(h, [("c", account("c", h, "carol", protocol="imap",
                                       extra="idle = yes\ninterval = 1h"))])
        with Service(h, cfg, env={"MAILHAUL_IDLE_RESTART": "1"}) as svc:
            assert wait_status(cfg, "c", lambda a: a["idle"] == "connected"
                               and a["last_result"] == "ok"), svc.log()
            time.sleep(3.5)		# several DONE / IDLE rounds
            msgs = gen(2, seed=50)
            h.inject("carol", msgs)
            assert mh.wait_for(lambda: h.smtp_count("c") >= 2, timeout=5), \
                svc.log()
            assert_once(h.smtp_messages("c"), msgs, "c")
            assert svc.stop() == 0


def case_sighup_broken_config():
    """SIGHUP with a broken config: the errors are logged, the service keeps
    the old config and still delivers; a good config then reloads."""
    with mh.Harness() as h:
        cfg = config(h, [("a", account("a", h, "alice"))])
        with open(cfg) as f:
            good = f.read()
        with Service(h, cfg) as svc:
            assert wait_status(cfg, "a", lambda a: a["last_result"] == "ok"), \
                svc.log()
            mh.write_config(cfg, good + "no_such_key = 1\n[account:x\n")
            svc.send(signal.SIGHUP)
            assert mh.wait_for(lambda: "keeping the old one" in svc.log(),
                               timeout=10), svc.log()
            assert "no_such_key" in svc.log(), svc.log()
            msgs = gen(3, seed=60)
            h.inject("alice", msgs)
            assert mh.wait_for(lambda: h.smtp_count("a") >= 3, timeout=15), \
                svc.log()
            assert svc.alive()
            # a good config with a second account reloads
            mh.write_config(cfg, good + account("b", h, "bob").replace(
                "target = sinkb", "target = sinka"))
            svc.send(signal.SIGHUP)
            assert mh.wait_for(lambda: "config reloaded, 2 accounts" in
                               svc.log(), timeout=10), svc.log()
            more = gen(2, seed=61)
            h.inject("bob", more)
            assert mh.wait_for(lambda: h.smtp_count("a") >= 5, timeout=15), \
                svc.log()
            assert_once(h.smtp_messages("a"), msgs + more, "a")
            assert svc.stop() == 0


def case_sigterm_midpass():
    """SIGTERM while a 300-message delete-mode pass runs: the service lets
    the pass end and exits 0; a sync then finds nothing left; nothing was
    lost or delivered twice."""
    with mh.Harness() as h:
        msgs = gen(300, seed=70)
        h.inject("alice", msgs)
        cfg = config(h, [("a", account("a", h, "alice", extra="keep = no"))],
                     general="interval = 1h")
        with Service(h, cfg) as svc:
            assert mh.wait_for(lambda: h.smtp_count("a") >= 30, timeout=60,
                               step=0.01), svc.log()
            n = h.smtp_count("a")
            assert n < 300, "the pass ended before the signal (%d)" % n
            rc = svc.stop(timeout=90)
            assert rc == 0, (rc, svc.log())
            assert "the running passes stop after the message in flight" \
                in svc.log(), svc.log()
            assert "stopping after" in svc.log(), svc.log()
        rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=300)
        assert rc == 0, (rc, out, err)
        assert_once(h.smtp_messages("a"), msgs, "a")
        assert h.server_count("alice") == 0


def case_sigterm_grace_kill():
    """SIGTERM with a short grace (MAILHAUL_STOP_GRACE): the pass is
    SIGKILLed; nothing is lost, a sync completes it (at most the one
    message in flight twice, invariant I1/I3)."""
    with mh.Harness() as h:
        msgs = gen(300, seed=75)
        h.inject("alice", msgs)
        cfg = config(h, [("a", account("a", h, "alice", extra="keep = no"))],
                     general="interval = 1h")
        with Service(h, cfg, env={"MAILHAUL_STOP_GRACE": "0.2"}) as svc:
            assert mh.wait_for(lambda: h.smtp_count("a") >= 30, timeout=60,
                               step=0.01), svc.log()
            rc = svc.stop(timeout=30)
            assert rc == 0, (rc, svc.log())
            # the pass stops after the message in flight, or is killed
            # when that takes longer than the grace
            assert ("killing the pass to stop" in svc.log() or
                    "stopping after" in svc.log()), svc.log()
        rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=300)
        assert rc == 0, (rc, out, err)
        got = ids(h.smtp_messages("a"))
        assert set(got) == set(ids(msgs)), "lost: %s" % sorted(
            set(ids(msgs)) - set(got))[:5]
        assert len(got) - len(set(got)) <= 1, "%d duplicates" % (
            len(got) - len(set(got)))
        assert h.server_count("alice") == 0


def case_hung_worker():
    """A server that accepts and never answers (account timeout 1 h): the
    worker, making no progress for MAILHAUL_WORKER_DEADLINE, is stopped
    (SIGTERM), then killed, and reported, with backoff; `status` shows
    the killed pass from its run record (not "last pass: never"); a
    worker that crashes is reported; the other account keeps delivering
    all along."""
    stall = StallServer()
    try:
        with mh.Harness() as h:
            hung = """[account:hung]
protocol = pop3
host = 127.0.0.1
port = %d
tls = none
allow_plaintext_auth = yes
user = x
password = y
timeout = 1h
target = sinka
""" % stall.port
            cfg = config(h, [("a", account("a", h, "alice")),
                             ("crash", account("crash", h, "carol")),
                             ("hung", hung)],
                         general="concurrency = 3\n")
            env = {"MAILHAUL_WORKER_DEADLINE": "2",
                   "MAILHAUL_KILL_GRACE": "1",
                   "MAILHAUL_TEST_WORKER_ABORT": "crash"}
            with Service(h, cfg, env=env) as svc:
                for i in range(3):
                    msgs = gen(2, seed=80 + i)
                    h.inject("alice", msgs)
                    assert mh.wait_for(lambda: h.smtp_count("a") >= 2 * (i + 1),
                                       timeout=15), svc.log()
                    time.sleep(1)
                assert mh.wait_for(lambda: "hung: the pass (worker" in svc.log()
                                   and "made no progress for 2 s; stopping"
                                   in svc.log() and "hung: killed: the pass "
                                   "made no progress" in svc.log(),
                                   timeout=15), svc.log()
                assert "crash: the worker crashed (signal 6)" in svc.log(), \
                    svc.log()
                a = service_account(cfg, "hung")
                assert a["last_result"] == "killed" and a["failures"] >= 1, a
                assert a["backoff_until"] > 0, a
                c = service_account(cfg, "crash")
                assert c["last_result"] == "crashed", c
                rc, out, err = mh.run_mailhaul(["status"], cfg, timeout=30)
                assert rc == 1, (rc, out, err)  # a last pass was killed
                block = out[out.index("hung ("):]
                block = block[:block.index("delivered in all")]
                assert "last pass: " in block and ", killed: " in block \
                    and "made no progress" in block, out
                assert svc.alive()
                assert svc.stop(timeout=30) == 0
    finally:
        stall.close()


# a pass without progress for 2 s is stopped, and killed 1 s later
STALL_ENV = {"MAILHAUL_WORKER_DEADLINE": "2", "MAILHAUL_KILL_GRACE": "1"}


def mda_config(h, command):
    """Account a (alice, POP3, interval 1 h) into an MDA target running
    command."""
    text = ("[general]\nstate = %s\ninterval = 1h\n\n"
            "[target:slow]\ntype = mda\ncommand = %s\n\n"
            % (h.path("state", "state.db"), command))
    text += account("a", h, "alice").replace("target = sinka",
                                              "target = slow")
    return mh.write_config(h.path("mda.ini"), text)


def first_pass(cfg, timeout=60):
    """Account a's status once its first pass has ended."""
    return wait_status(cfg, "a", lambda a: a["last_result"] != "" and
                       not a["running"], timeout=timeout)


def case_slow_progress():
    """A pass that takes three times MAILHAUL_WORKER_DEADLINE but makes
    progress all along (an MDA that takes 0.5 s per message) is not
    killed: the limit is on time without progress, not on the pass (the
    old fixed deadline killed it and backed off; a big first sync over a
    slow link never finished)."""
    with mh.Harness() as h:
        msgs = gen(12, seed=95)
        h.inject("alice", msgs)
        out = h.path("slow.mbox")
        cfg = mda_config(h, "sleep 0.5; cat >> %s" % out)
        with Service(h, cfg, env=STALL_ENV) as svc:
            a = first_pass(cfg)
            assert a and a["last_result"] == "ok", (a, svc.log())
            assert a["failures"] == 0 and a["backoff_until"] == 0, a
            assert "made no progress" not in svc.log(), svc.log()
            assert svc.stop() == 0
        with open(out, "rb") as f:
            data = f.read()
        got = sorted(set(l.split(b":", 1)[1].strip().decode() for l in
                         data.splitlines() if l.startswith(b"X-Corpus-Id:")))
        assert got == ids(msgs), (got, ids(msgs))
        assert data.count(b"\nX-Corpus-Id:") + data.startswith(
            b"X-Corpus-Id:") == 12, "delivered twice"


def case_stalled_after_progress():
    """A pass that delivered three messages and then stalls (the MDA hangs
    on the fourth) is stopped and killed, its run record closed as
    killed with the three it delivered (`status` shows it), and -- since
    it was getting somewhere -- it does not back off."""
    with mh.Harness() as h:
        msgs = gen(5, seed=96)
        h.inject("alice", msgs)
        out = h.path("stall.mbox")
        cmd = ("cat >> %s; [ $(grep -c '^X-Corpus-Id:' %s) -ge 4 ] && "
               "exec sleep 60; true" % (out, out))
        cfg = mda_config(h, cmd + "\ntimeout = 1h")
        with Service(h, cfg, env=STALL_ENV) as svc:
            a = first_pass(cfg)
            assert a and a["last_result"] == "killed", (a, svc.log())
            assert a["last_delivered"] == 3, a
            assert a["failures"] == 0 and a["backoff_until"] == 0, a
            assert "the pass had delivered 3 messages; no backoff" in \
                svc.log(), svc.log()
            rc, text, err = mh.run_mailhaul(["status"], cfg, timeout=30)
            assert rc == 1, err     # the last pass was killed
            assert ", killed: " in text and "3 delivered" in text, text
            assert svc.stop() == 0


def case_state_removed():
    """The state file removed while the service runs: the service notices
    before its next pass and stops with EX_IOERR (74) instead of
    recreating it -- which would deliver every kept message again; a new
    start creates it, with a notice."""
    with mh.Harness() as h:
        msgs = gen(3, seed=97)
        h.inject("alice", msgs)
        cfg = config(h, [("a", account("a", h, "alice"))])
        state = h.path("state", "state.db")
        with Service(h, cfg) as svc:
            assert wait_status(cfg, "a", lambda a: a["last_result"] == "ok"), \
                svc.log()
            assert mh.wait_for(lambda: h.smtp_count("a") >= 3, timeout=15)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(state + suffix):
                    os.unlink(state + suffix)
            try:
                rc = svc.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError("still running\n" + svc.log())
            assert rc == 74, (rc, svc.log())
            assert "was removed or replaced while the service ran" in \
                svc.log(), svc.log()
            # created at start only, never again
            after = svc.log().split("was removed or replaced", 1)[1]
            assert "creating" not in after, svc.log()
        assert not os.path.exists(state), "recreated"
        assert_once(h.smtp_messages("a"), msgs, "a")
        # a start begins a new one, and says so
        with Service(h, cfg, name="service2") as svc:
            # (before any `mailhaul status`, which would create it too)
            assert mh.wait_for(lambda: "service: started" in svc.log(),
                               timeout=15), svc.log()
            assert "no state file yet; creating" in svc.log(), svc.log()
            assert wait_status(cfg, "a", lambda a: a["last_result"] != ""), \
                svc.log()
            assert svc.stop() == 0


def case_auth_refused():
    """A refused login is logged once, clearly, and retried slowly: it shows
    as a backoff in status; the other account is unaffected."""
    with mh.Harness() as h:
        bad = account("bad", h, "bob").replace("password = %s" % h.password,
                                              "password = wrong")
        cfg = config(h, [("a", account("a", h, "alice")), ("bad", bad)])
        with Service(h, cfg) as svc:
            msgs = gen(2, seed=90)
            h.inject("alice", msgs)
            assert mh.wait_for(lambda: h.smtp_count("a") >= 2, timeout=15)
            time.sleep(3)		# three intervals
            log = svc.log()
            assert log.count("bad: login refused") == 1, log
            a = service_account(cfg, "bad")
            assert a["auth_failed"] and a["backoff_until"] >= time.time() + 3000, a
            rc, out, err = mh.run_mailhaul(["status"], cfg, timeout=30)
            assert "bad: next pass:" in out and "login refused" in out, out
            assert svc.stop() == 0


def case_unit_file():
    """scripts/mailhaul.service passes `systemd-analyze verify` (skipped
    where systemd-analyze is missing)."""
    with open(UNIT) as f:
        text = f.read()
    for key in ("ExecStart=", "ExecReload=", "Restart=on-failure",
                "NoNewPrivileges=yes", "ProtectSystem=full"):
        assert key in text, key
    sa = shutil.which("systemd-analyze")
    if sa is None:
        print("skip: systemd-analyze not installed")
        return
    d = tempfile.mkdtemp(prefix="mh-unit-")
    try:
        # verify needs the ExecStart binary to exist: point it at ours
        # (meson install writes the installed one; tests/install checks)
        unit = text.replace("@bindir@/mailhaul", mh.mailhaul_path())
        path = os.path.join(d, "mailhaul.service")
        with open(path, "w") as f:
            f.write(unit)
        run = os.path.join(d, "run")
        os.mkdir(run, 0o700)
        p = subprocess.run([sa, "verify", "--user", "--man=no", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60, env=dict(os.environ, HOME=d,
                                                XDG_RUNTIME_DIR=run))
        out = p.stdout.decode("utf-8", "replace")
        # verify exits 0 on unknown keys and bad values: every line that
        # names the unit is a complaint.
        bad = [l for l in out.splitlines() if "mailhaul.service" in l]
        assert p.returncode == 0 and not bad, out
        print("systemd-analyze verify --user: clean")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_slow_mda_killed_dup():
    """review: defaults except general timeout = 5s (stall limit 30 s);
    the MDA (timeout 300 s default) takes 35 s.  The service kills the
    pass; the MDA, in its own process group, still delivers; the next
    pass delivers again."""
    with mh.Harness() as h:
        msgs = gen(1, seed=123)
        h.inject("alice", msgs)
        out = h.path("slow.mbox")
        cfg = mda_config(h, "sleep 55; cat >> %s" % out)
        text = open(cfg).read().replace("interval = 1h", "interval = 1h\ntimeout = 5s")
        open(cfg, "w").write(text)
        with Service(h, cfg) as svc:
            a = first_pass(cfg, timeout=120)
            print("first pass:", a)
            assert svc.stop() == 0
        time.sleep(15)
        print("copies after the killed pass:", open(out).read().count("X-Corpus-Id:") if os.path.exists(out) else 0)
        rc, o, e = mh.run_mailhaul(["sync"], cfg, timeout=120)
        print("sync:", rc, e[-400:])
        n = open(out).read().count("X-Corpus-Id:")
        print("copies:", n)
        assert n == 1, "delivered %d times" % n


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
