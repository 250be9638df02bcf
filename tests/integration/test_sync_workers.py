"""test_sync_workers.py -- `mailhaul sync` runs its accounts in the
service's worker pool: in parallel up to [general] concurrency, each pass
in its own process, one summary line per account in config order.

    MAILHAUL=build/mailhaul python3 tests/integration/test_sync_workers.py [CASE...]

Parallelism is asserted by what a gate in front of Dovecot's POP3S port
sees, never by timing: the gate holds every connection (forwards nothing)
until `want` connections are open at once, and records the most it saw
open together.  Run one after another, the passes can never have two
connections open at once, whatever the timing; run in parallel, they
must.  The gate's own wait is only a bound so a sequential run ends.
"""
import os
import socket
import sys
import threading

import mh
import test_service

EX_SOFTWARE = 70


class Gate(test_service.Listener):
    """A TCP proxy on 127.0.0.1 to upstream port up.  Each client waits,
    greeting withheld, until `want` clients are connected at once (or
    `bound` seconds pass); then bytes flow both ways.  Records the most
    clients open at once and whether the gate ever opened on the bound."""

    def __init__(self, up, want, bound):
        self.up, self.want, self.bound = up, want, bound
        self.cond = threading.Condition()
        self.open = self.most = self.total = 0
        self.opened_on_bound = False
        super().__init__()

    def accepted(self, c):
        threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        with self.cond:
            self.open += 1
            self.total += 1
            self.most = max(self.most, self.open)
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.most >= self.want,
                                      timeout=self.bound):
                self.opened_on_bound = True
        try:
            u = socket.create_connection(("127.0.0.1", self.up), timeout=30)
        except OSError:
            self.closed(c)
            return
        self.socks.append(u)
        t = threading.Thread(target=self.pump, args=(u, c), daemon=True)
        t.start()
        self.pump(c, u)
        t.join(timeout=60)
        self.closed(c)

    def closed(self, c):
        with self.cond:
            self.open -= 1
        try:
            c.close()
        except OSError:
            pass

    @staticmethod
    def pump(src, dst):
        while True:
            try:
                b = src.recv(65536)
            except OSError:
                b = b""
            if not b:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(b)
            except OSError:
                return


def config(h, users, port=None, general="", keep_host=()):
    """users: [(account name, Dovecot user)], each delivering to the SMTP
    sink's maildir of its name; POP3S through port (a Gate) when given,
    at host 127.0.0.1, or at host localhost for the names in keep_host
    (another server, as far as concurrency_per_server knows)."""
    accounts = []
    for name, user in users:
        text = test_service.account(name, h, user)
        if port is not None and name in keep_host:
            text = text.replace("port = %d" % h.pop3s_port, "port = %d" % port)
            assert "port = %d" % port in text, text
        elif port is not None:
            text = text.replace("host = localhost\nport = %d" % h.pop3s_port,
                                "host = 127.0.0.1\nport = %d" % port)
            assert "port = %d" % port in text, text
        accounts.append((name, text))
    return test_service.config(h, accounts, general=general)


def summary(out):
    """The summary lines' account names, in the order printed."""
    return [line.split(":", 1)[0] for line in out.splitlines()
            if " on the server, " in line or ": crashed: " in line]


def two_through_gate(concurrency, bound):
    """Syncs "zed" (3 messages) and "amy" (2), in that config order (not
    alphabetical), through a Gate that wants both open at once; returns
    the gate and sync's output."""
    with mh.Harness() as h:
        h.inject("alice", test_service.gen(3, seed=201))
        h.inject("carol", test_service.gen(2, seed=202))
        gate = Gate(h.pop3s_port, want=2, bound=bound)
        try:
            cfg = config(h, [("zed", "alice"), ("amy", "carol")], gate.port,
                         general="concurrency = %d\n" % concurrency)
            rc, out, err = mh.run_mailhaul(["sync"], cfg)
            assert rc == 0, (rc, out, err)
        finally:
            gate.close()
        assert summary(out) == ["zed", "amy"], out
        assert "zed: 3 on the server, 3 delivered" in out, out
        assert "amy: 2 on the server, 2 delivered" in out, out
        assert h.smtp_count("zed") == 3 and h.smtp_count("amy") == 2
        return gate, err


def case_parallel():
    """Two accounts, concurrency 2: both passes hold a connection to the
    (gated) server at once; the summary lines come in config order."""
    gate, err = two_through_gate(2, bound=30)
    assert gate.most == 2 and not gate.opened_on_bound, \
        (gate.most, gate.opened_on_bound, err)


def case_concurrency_one():
    """The same with concurrency 1: never two connections at once (the
    gate opens on its bound for each) -- the case above could fail."""
    gate, err = two_through_gate(1, bound=2)
    assert gate.most == 1 and gate.total == 2, (gate.most, gate.total, err)


def case_crash_isolated():
    """A worker that dies (MAILHAUL_TEST_WORKER_ABORT) is reported as
    crashed for its account; the other accounts, before and after it in
    the config, deliver; the exit status is EX_SOFTWARE (the worst)."""
    with mh.Harness() as h:
        h.inject("alice", test_service.gen(2, seed=205))
        h.inject("carol", test_service.gen(2, seed=206))
        h.inject("bob", test_service.gen(1, seed=207))
        cfg = config(h, [("one", "alice"), ("crash", "bob"), ("two", "carol")],
                     general="concurrency = 2\n")
        rc, out, err = mh.run_mailhaul(
            ["sync"], cfg, env={"MAILHAUL_TEST_WORKER_ABORT": "crash"})
        assert rc == EX_SOFTWARE, (rc, out, err)
        assert summary(out) == ["one", "crash", "two"], out
        assert "crash: crashed: the pass ended with signal 6" in out, out
        assert h.smtp_count("one") == 2 and h.smtp_count("two") == 2, out
        assert h.smtp_count("crash") == 0
        assert h.server_count("bob") == 1
        # the crashed account is whole: the next sync delivers it
        rc, out, err = mh.run_mailhaul(["sync", "crash"], cfg)
        assert rc == 0, (rc, out, err)
        assert "crash: 1 on the server, 1 delivered" in out, out


def many_through_gate(n, want, bound, general, keep_host=(), service=False):
    """n accounts a0..a(n-1), each its own Dovecot user with one message,
    through a Gate wanting `want` open at once, by one `sync` or, with
    service, by `mailhaul run` until every message arrived; returns the
    gate."""
    names = ["a%d" % i for i in range(n)]
    old = os.environ.get("TESTBED_USERS")
    # tests/harness/start takes its users from the environment
    os.environ["TESTBED_USERS"] = " ".join(["alice", "bob", "carol"] + names)
    with mh.Harness() as h:
        if old is None:
            del os.environ["TESTBED_USERS"]
        else:
            os.environ["TESTBED_USERS"] = old
        for i, a in enumerate(names):
            h.inject(a, test_service.gen(1, seed=300 + i))
        gate = Gate(h.pop3s_port, want=want, bound=bound)
        try:
            cfg = config(h, [(a, a) for a in names], gate.port,
                         general=general, keep_host=keep_host)
            if service:
                with test_service.Service(h, cfg) as svc:
                    assert mh.wait_for(lambda: sum(
                        h.smtp_count(a) for a in names) == n,
                        timeout=120), svc.log()
                    assert svc.stop(timeout=60) == 0, svc.log()
            else:
                rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=300)
                assert rc == 0, (rc, out, err)
                assert summary(out) == names, out
        finally:
            gate.close()
        for a in names:
            assert h.smtp_count(a) == 1, (a, h.smtp_count(a))
        return gate


def case_per_server_cap():
    """Three accounts on one server, concurrency 3, concurrency_per_server
    2: never three connections to it at once (the gate, wanting three,
    opens on its bound), though all three are synced."""
    gate = many_through_gate(3, want=3, bound=2, general=(
        "concurrency = 3\nconcurrency_per_server = 2\n"))
    assert gate.most == 2 and gate.total == 3, (gate.most, gate.total)


def case_per_server_hosts():
    """The same with the third account at another host name: it is
    another server, so all three connections are open at once -- the cap
    counts per server, and the case above could fail."""
    gate = many_through_gate(3, want=3, bound=30, keep_host=("a2",),
                             general="concurrency = 3\n"
                             "concurrency_per_server = 2\n")
    assert gate.most == 3 and not gate.opened_on_bound, \
        (gate.most, gate.opened_on_bound)


def case_default_caps():
    """Defaults: five accounts on one server get at most 4 connections at
    once (concurrency_per_server 4); five on two servers (3 + 2) all run
    at once (concurrency above 4)."""
    gate = many_through_gate(5, want=5, bound=2, general="")
    assert gate.most == 4 and gate.total == 5, (gate.most, gate.total)
    gate = many_through_gate(5, want=5, bound=30, general="",
                             keep_host=("a3", "a4"))
    assert gate.most == 5 and not gate.opened_on_bound, \
        (gate.most, gate.opened_on_bound)


def case_twenty_at_once():
    """Defaults but concurrency_per_server (raised so that one server can
    stand for twenty providers): twenty accounts all hold a connection at
    once -- one wave, so a pass over twenty accounts takes about as long
    as the slowest, not twice that (concurrency 16 made two waves)."""
    gate = many_through_gate(20, want=20, bound=30,
                             general="concurrency_per_server = 20\n")
    assert gate.most == 20 and not gate.opened_on_bound, \
        (gate.most, gate.opened_on_bound)


def case_service_per_server_cap():
    """`mailhaul run`: three accounts due at once on one server,
    concurrency_per_server 2: never three connections at once, and every
    account delivers (the third waits for a slot, then runs)."""
    gate = many_through_gate(3, want=3, bound=2, service=True, general=(
        "interval = 1h\nconcurrency = 3\nconcurrency_per_server = 2\n"))
    assert gate.most == 2 and gate.total >= 3, (gate.most, gate.total)


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
