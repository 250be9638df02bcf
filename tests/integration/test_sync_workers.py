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


def config(h, users, port=None, general=""):
    """users: [(account name, Dovecot user)], each delivering to the SMTP
    sink's maildir of its name; POP3S through port (a Gate) when given."""
    accounts = []
    for name, user in users:
        text = test_service.account(name, h, user)
        if port is not None:
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


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
