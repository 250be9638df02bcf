"""test_gmail.py -- `type = gmail` end to end: Dovecot POP3/IMAP -> mailhaul
-> a strict local stand-in for the Gmail API (tests/gmail/fakegmail.py),
with tokens from the local OAuth2 provider (tests/oauth2/provider.py).

    MAILHAUL=build/mailhaul python3 tests/integration/test_gmail.py [CASE...]

What the fake stored is compared byte for byte with what Dovecot served
(after mailhaul's Received: line).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oauth2"))
sys.path.insert(0, os.path.join(HERE, "..", "gmail"))
import corpus  # noqa: E402
import fakegmail  # noqa: E402
import mh  # noqa: E402
import provider  # noqa: E402
from test_sync_pop3 import check_exact, tricky_corpus  # noqa: E402

EX_TEMPFAIL = 75
EX_DATAERR = 65
EX_NOPERM = 77
SCOPE = "https://www.googleapis.com/auth/gmail.modify"


class Bed:
    """A harness (Dovecot), an OAuth2 provider and a fake Gmail, both on
    the harness's certificate; a token store seeded as `mailhaul auth`
    leaves it; a config with one account into [target:gmail]."""

    def __init__(self, h, labels="INBOX, UNREAD, old-isp", protocol="pop3",
                 lifetime=3600, extra_target="", extra_account=""):
        self.h = h
        cert, key = h.path("server.pem"), h.path("server.key")
        self.p = provider.Provider(cert, key, scope=SCOPE).start()
        self.p.lifetime = lifetime
        self.g = fakegmail.FakeGmail(cert, key, provider=self.p).start()
        self.state = h.path("state")
        self.seed_tokens()
        port = h.pop3s_port if protocol == "pop3" else h.imaps_port
        self.cfg = mh.write_config(h.path("mailhaul.ini"), """[general]
state = %(state)s/state.db

[oauth2:google-me]
provider = custom
client_id = mailhaul-test
auth_url = %(auth)s
token_url = %(token)s
scope = %(scope)s
ca_file = %(ca)s

[target:gmail]
type = gmail
oauth2 = google-me
labels = %(labels)s
api_url = %(api)s
ca_file = %(ca)s
%(xt)s
[account:old-isp]
protocol = %(proto)s
host = localhost
port = %(port)d
ca_file = %(ca)s
user = alice
password = %(pw)s
target = gmail
%(xa)s""" % {"state": self.state, "auth": self.p.url("/authorize"),
             "token": self.p.url("/token"), "scope": SCOPE, "ca": h.ca,
             "labels": labels, "api": self.g.url, "xt": extra_target,
             "proto": protocol, "port": port, "pw": h.password,
             "xa": extra_account})
        os.chmod(self.cfg, 0o600)
        self.outputs = []

    def seed_tokens(self):
        t = self.p._issue(SCOPE)
        d = os.path.join(self.state, "oauth2")
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, "google-me.json")
        with open(path, "w") as f:
            json.dump({"refresh_token": t["refresh_token"],
                       "access_token": t["access_token"],
                       "expires_at": int(time.time()) + t["expires_in"],
                       "scope": SCOPE}, f)
        os.chmod(path, 0o600)

    def close(self):
        self.g.stop()
        self.p.stop()

    def run(self, *args, ok=(0,), timeout=300):
        rc, out, err = mh.run_mailhaul(list(args), self.cfg, timeout=timeout)
        self.outputs.append(out + err)
        assert rc in ok, "%s rc %d\nstdout:\n%s\nstderr:\n%s" % (
            args, rc, out, err)
        return rc, out, err

    def assert_clean(self):
        assert not self.g.violations, "protocol violations:\n%s" % "\n".join(
            self.g.violations)
        text = "\n".join(self.outputs)
        for needle in (provider.ACCESS_PREFIX, provider.REFRESH_PREFIX):
            assert needle not in text, "a token in the output:\n" + text


def with_bed(fn, **kw):
    with mh.Harness() as h:
        b = Bed(h, **kw)
        try:
            fn(h, b)
            b.assert_clean()
        finally:
            b.close()


def check_gmail(originals, stored, imap=False):
    """check_exact() for what the fake stored: the bytes as Dovecot served
    them after one Received: line.  POP3 serves every message with a
    final CRLF (RETR's terminator needs one); IMAP serves a message whose
    last line has no line end as it is, and mailhaul adds nothing."""
    if not imap:
        return check_exact(originals, stored, target="smtp")
    fixed = []
    for d in stored:
        cid = mh.header(d, "X-Corpus-Id")
        orig = [m for m in originals if mh.header(m, "X-Corpus-Id") == cid]
        if orig and not orig[0].endswith(b"\n"):
            assert not d.endswith(b"\r\n"), "a line end was added: %s" % cid
            d += b"\r\n"
        fixed.append(d)
    return check_exact(originals, fixed, target="smtp", imap=True)


def small_corpus(n, seed):
    return [m["raw"] for m in corpus.generate(n, seed=seed)]


# ---- cases -------------------------------------------------------------------
def case_pop3_corpus_labels():
    """POP3S -> Gmail: the tricky corpus byte-exact (multipart uploads),
    INBOX/UNREAD by ID and a user label created once; a second pass
    imports nothing."""
    def t(h, b):
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        rc, out, err = b.run("sync")
        check_gmail(msgs, b.g.raws())
        assert "%d delivered" % len(msgs) in out, out
        lid = b.g.label_id("old-isp")
        assert lid is not None and lid.startswith("Label_"), b.g.labels
        for m in b.g.messages:
            assert m["labelIds"] == ["INBOX", "UNREAD", lid], m["labelIds"]
            assert m["upload"] == "multipart"
            assert m["params"]["internalDateSource"] == "dateHeader"
            assert m["params"]["neverMarkSpam"] == "false"
        creates = [l for l in b.g.log if l[0] == "POST" and l[1].endswith("/labels")]
        assert len(creates) == 1, creates
        lists = [l for l in b.g.log if l[0] == "GET" and l[1].endswith("/labels")]
        assert len(lists) == 1, "labels.list once per pass: %s" % lists
        rh = mh.header(b.g.messages[0]["raw"], "Received")
        assert "old-isp" in rh and "pop3" in rh.lower(), rh
        b.run("sync")
        assert len(b.g.messages) == len(msgs), "the second pass imported again"
        # a new pass finds the label that exists now: no second create
        creates = [l for l in b.g.log if l[0] == "POST" and l[1].endswith("/labels")]
        assert len(creates) == 1, creates
    with_bed(t)


def case_label_case_and_race():
    """A configured label that exists in another case is that label (Gmail
    refuses to create it: 409); one that another client creates between
    our labels.list and labels.create (409) is listed again and used."""
    def t(h, b):
        b.g.labels.append({"id": "Label_77", "name": "Old-ISP", "type": "user"})
        b.g.race_labels.add("raced")
        msgs = small_corpus(3, seed=14)
        h.inject("alice", msgs)
        rc, out, err = b.run("sync")
        assert "3 delivered" in out, (out, err)
        rid = b.g.label_id("raced")
        assert rid is not None, b.g.labels
        for m in b.g.messages:
            assert m["labelIds"] == ["INBOX", "Label_77", rid], m["labelIds"]
        creates = [l for l in b.g.log if l[0] == "POST" and l[1].endswith("/labels")]
        assert len(creates) == 1 and creates[0][3] == 409, creates
        assert len([l for l in b.g.labels if l["name"].lower() == "old-isp"]) == 1
        assert "was created meanwhile" in err, err
    with_bed(t, labels="INBOX, old-isp, raced")


def case_imap_corpus():
    """IMAPS -> Gmail with internal_date = received and never_mark_spam:
    byte-exact, the query parameters as configured."""
    def t(h, b):
        msgs = tricky_corpus()
        h.inject("alice", msgs)
        b.run("sync")
        check_gmail(msgs, b.g.raws(), imap=True)
        for m in b.g.messages:
            assert m["params"]["internalDateSource"] == "receivedTime", m["params"]
            assert m["params"]["neverMarkSpam"] == "true", m["params"]
            assert m["params"]["processForCalendar"] == "false", m["params"]
            assert m["labelIds"] == ["INBOX"], m["labelIds"]
    with_bed(t, protocol="imap", labels="INBOX",
             extra_target="internal_date = received\nnever_mark_spam = yes\n")


def case_big_50mb_resumable():
    """A 50 MB message goes by resumable upload, the upload broken once in
    the middle and resumed from where the session says; peak RSS under
    16 MB; the small ones by multipart."""
    def t(h, b):
        msgs = small_corpus(3, 21) + [corpus.big_message(50 * 1024 * 1024, seed=22)]
        h.inject("alice", msgs)
        b.g.break_put_at = 20 * 1024 * 1024
        rc, _, err, kb = mh.run_maxrss(["-c", b.cfg, "sync"], timeout=600)
        assert rc == 0, err
        check_gmail(msgs, b.g.raws())
        ups = sorted(m["upload"] for m in b.g.messages)
        assert ups == ["multipart"] * 3 + ["resumable"], ups
        assert "asking the session" in err, err
        queries = [l for l in b.g.log if l[0] == "PUT" and l[3] == 308]
        assert queries, "no status query after the broken upload"
        mh.check_rss(kb, b.cfg)
    with_bed(t)


def case_rate_limited():
    """429 with Retry-After on every 3rd import: everything arrives once,
    nothing is lost, within one pass."""
    def t(h, b):
        msgs = small_corpus(10, 23)
        h.inject("alice", msgs)
        b.g.rate_every = 3
        rc, out, err = b.run("sync", "-v")
        check_gmail(msgs, b.g.raws())
        n429 = len([l for l in b.g.log if l[3] == 429])
        assert n429 >= 3, b.g.log
        assert "rate limited" in err, err
    with_bed(t, extra_account="keep = no\n")


def case_refused_400():
    """A 400 for one message: the others arrive, the refused one stays on
    the source (keep = no), status shows Google's message, the next pass
    does not resend it."""
    def t(h, b):
        msgs = small_corpus(5, 24)
        msgs[2] = msgs[2].replace(b"\n", b"\nX-Test-Gmail-400: yes\n", 1)
        h.inject("alice", msgs)
        b.g.reject_marker = b"X-Test-Gmail-400"
        b.run("sync", ok=(EX_DATAERR,))
        assert len(b.g.messages) == 4, len(b.g.messages)
        assert h.server_count("alice") == 1, "the refused message left the source"
        rc, out, err = b.run("status", ok=(0, EX_DATAERR))
        assert "refused by the test" in out + err, out + err
        n = b.g.imports
        b.run("sync", ok=(0, EX_DATAERR))
        assert b.g.imports == n, "the refused message was sent again"
        assert len(b.g.messages) == 4
    with_bed(t, extra_account="keep = no\n")


def case_token_expiry():
    """Access tokens that live 3 s, imports that take 0.4 s: the token
    expires in the middle of the pass, the 401 gets one refresh and the
    pass goes on; nothing lost or doubled."""
    def t(h, b):
        msgs = small_corpus(14, 25)
        h.inject("alice", msgs)
        b.g.delay = 0.4
        b.run("sync")
        check_gmail(msgs, b.g.raws())
        n401 = len([l for l in b.g.log if l[3] == 401])
        assert n401 >= 1, "the token never expired: make the pass longer"
        assert len(b.p.grants("refresh_token")) >= n401, b.p.log
    with_bed(t, lifetime=3)


def case_server_errors():
    """503s are temporary: the pass fails with EX_TEMPFAIL, the messages
    stay; a 403 that is not a rate limit (the token's scope) is an auth
    error (77) and refuses no message for good; one 401 with a good token is retried after a refresh; the next
    pass imports everything once."""
    def t(h, b):
        msgs = small_corpus(4, 26)
        h.inject("alice", msgs)
        b.g.fail_5xx = 1
        b.run("sync", ok=(EX_TEMPFAIL,))
        assert h.server_count("alice") == 4
        b.g.fail_403 = 1
        rc, out, err = b.run("sync", ok=(EX_NOPERM,))
        assert "gmail.modify" in out + err, out + err
        assert h.server_count("alice") == 4 and not b.g.messages
        b.g.fail_401_once = True
        b.run("sync")
        check_gmail(msgs, b.g.raws())
        assert h.server_count("alice") == 0
        assert len(b.p.grants("refresh_token")) >= 1
    with_bed(t, extra_account="keep = no\n")


def case_lookup():
    """The look-up op for a message in doubt: messages.list with
    q=rfc822msgid:ID finds an imported message, not another; a message
    without a Message-ID is reported not found (imported again)."""
    def t(h, b):
        msgs = small_corpus(2, 27)
        h.inject("alice", msgs)
        b.run("sync")
        mid = mh.header(b.g.messages[0]["raw"], "Message-ID")
        assert mid and mid.startswith("<"), mid
        probe = os.path.join(os.path.dirname(mh.mailhaul_path()), "tests",
                             "gmail-probe")
        for args, want in (([mid], "found"), (["<nope@example.org>"], "not found"),
                           ([], "not found")):
            p = subprocess.run([probe, b.cfg, "gmail"] + args, timeout=60,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out = p.stdout.decode().strip()
            assert p.returncode == 0 and out == want, (args, out, p.stderr)
        qs = [l[2] for l in b.g.log if l[1].endswith("/messages")]
        assert qs[0] == {"q": "rfc822msgid:" + mid[1:-1],
                         "includeSpamTrash": "true"}, qs
        assert len(qs) == 2, "a message without a Message-ID was searched"
    with_bed(t)


def case_keepalive():
    """A pass's requests share one kept-alive connection to the API (no
    TCP and TLS handshake, no read of the CA file per message); a server
    that ends a kept-alive connection after an answer costs nothing but
    a new connection: every message once."""
    def t(h, b):
        msgs = small_corpus(12, 31)
        h.inject("alice", msgs)
        b.run("sync")
        check_gmail(msgs, b.g.raws())
        imports = [l for l in b.g.log if "/import" in l[1]]
        assert len(imports) == len(msgs), imports
        assert b.g.connections == 1, (
            "%d connections for %d requests" % (b.g.connections, len(b.g.log)))
        # the server closes every third answer's connection
        more = small_corpus(9, 32)
        h.inject("alice", more)
        b.g.close_every, before = 3, b.g.connections
        b.run("sync")
        check_gmail(msgs + more, b.g.raws())
        n = len(b.g.log) - len(imports) - 1
        assert b.g.connections - before >= 3, (b.g.connections, before, n)
    with_bed(t)


def case_import_reply_lost():
    """An import whose answer is lost (stored, then the kept-alive
    connection closed) is not sent again blindly on a new connection:
    the pass ends with it in doubt (temporary), and the next pass finds
    it by its Message-ID instead of importing it twice."""
    def t(h, b):
        msgs = small_corpus(5, 33)
        h.inject("alice", msgs)
        b.g.drop_import_at = 3
        rc, out, err = b.run("sync", ok=(EX_TEMPFAIL,))
        assert len(b.g.messages) == 3, len(b.g.messages)
        b.run("sync")
        check_gmail(msgs, b.g.raws())
        looked = [l for l in b.g.log if l[1].endswith("/messages")]
        assert looked, "the message in doubt was not looked up"
    with_bed(t)


def case_check():
    """`mailhaul check`: the profile's address and the labels resolved (a
    missing one created); a revoked grant is an auth error naming
    `mailhaul auth`."""
    def t(h, b):
        rc, out, err = b.run("check")
        assert "me@gmail.example" in out, out
        assert re.search(r"old-isp=Label_\d+", out), out
        assert "INBOX=INBOX" in out, out
        b.p.revoke_all()
        b.p.access.clear()
        rc, out, err = b.run("check", ok=(77,))
        assert "mailhaul auth google-me" in out + err, out + err
    with_bed(t)


def case_man_example():
    """The example of mailhaul.ini(5)'s "Moving off Gmail's retired
    fetcher" section passes `mailhaul config`."""
    man = os.path.join(HERE, "..", "..", "man", "mailhaul.ini.5.scd")
    with open(man) as f:
        text = f.read()
    sec = text.split("# MOVING OFF GMAIL'S RETIRED FETCHER", 1)[1]
    ex = sec.split("```", 2)[1]
    tmp = tempfile.mkdtemp(prefix="mh-gm-", dir="/tmp")
    try:
        cfg = mh.write_config(os.path.join(tmp, "gmail-example.ini"),
                              "[general]\nstate = %s/state.db\n\n%s" % (tmp, ex))
        os.chmod(cfg, 0o600)
        rc, out, err = mh.run_mailhaul(["config"], cfg)
        assert rc == 0, out + err
        assert "type = gmail" in out, out
        assert "labels = INBOX, UNREAD, old-isp" in out, out
        assert "api_url = https://gmail.googleapis.com" in out, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def crash_every_step(protocol, keep):
    """The hidden crash switch: for every step N of a 4-message pass into
    Gmail, stop dead at N, then run to completion: nothing lost and no
    duplicate at any step -- a message in doubt (its intent recorded, no
    outcome) is looked up with rfc822msgid: and recorded, not imported
    again (the engine's in-flight intent and the look-up op)."""
    msgs = small_corpus(4, 28)
    assert all(mh.header(m, "Message-ID") for m in msgs)
    want = {mh.header(m, "X-Corpus-Id") for m in msgs}
    n = 1
    found_window = False
    while True:
        with mh.Harness() as h:
            b = Bed(h, protocol=protocol,
                    extra_account="" if keep else "keep = no\n")
            try:
                h.inject("alice", msgs)
                rc, out, err = mh.run_mailhaul(
                    ["sync"], b.cfg, env={"MAILHAUL_CRASH_AT_STEP": str(n)})
                crashed = rc == 99
                assert rc in (0, 99), (n, rc, err)
                imported = len(b.g.messages)
                b.run("sync")
                ids = [mh.header(r, "X-Corpus-Id") for r in b.g.raws()]
                assert set(ids) == want, "step %d: lost %s" % (n, want - set(ids))
                assert len(ids) == len(want), "step %d (%s): duplicates %s" % (
                    n, err.strip(), sorted(ids))
                looked = [l for l in b.g.log if l[1].endswith("/messages")]
                if crashed and looked and imported > 0:
                    found_window = True
                left = h.server_count("alice")
                assert left == (4 if keep else 0), "step %d: %d left" % (n, left)
                b.assert_clean()
            finally:
                b.close()
        if not crashed:
            assert n > 8, "the pass had only %d steps" % n
            break
        n += 1
    assert found_window, "no step fell between the import and the commit"


def case_crash_every_step():
    """POP3, delete mode: see crash_every_step()."""
    crash_every_step("pop3", keep=False)


def case_crash_every_step_imap_keep():
    """IMAP, keep mode: see crash_every_step()."""
    crash_every_step("imap", keep=True)


def case_fake_cut_request():
    """The fake's own rule, which the crash cases rely on: a request whose
    body the client never finished (it died mid-upload) is dropped
    unanswered, as a real server drops it, and is not a violation; the
    same request sent whole but malformed still is one."""
    import socket
    import ssl
    with mh.Harness() as h:
        g = fakegmail.FakeGmail(h.path("server.pem"), h.path("server.key"),
                                tokens=("T",)).start()
        try:
            ctx = ssl.create_default_context(cafile=h.ca)
            head = ("POST /upload/gmail/v1/users/me/messages/import"
                    "?uploadType=multipart HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\nAuthorization: Bearer T\r\n"
                    "Content-Type: multipart/related; boundary=b\r\n"
                    "Content-Length: 40\r\n\r\n").encode()

            def send(body):
                with socket.create_connection(("127.0.0.1", g.port), 10) as r:
                    with ctx.wrap_socket(r, server_hostname="localhost") as t:
                        t.sendall(head + body)
                        if len(body) < 40:
                            return b""
                        t.settimeout(10)
                        return t.recv(4096)
            send(b"--b\r\n")                # 6 of 40 bytes, then gone
            for _ in range(100):
                if g.cut_requests:
                    break
                time.sleep(0.05)
            assert g.cut_requests == 1, g.cut_requests
            assert not g.violations, g.violations
            assert not g.messages
            reply = send(b"x" * 40)           # whole, and not multipart
            assert reply.startswith(b"HTTP/1.1 400"), reply
            assert len(g.violations) == 1 and "boundary" in g.violations[0], \
                g.violations
        finally:
            g.stop()


def case_config_checks():
    """A gmail target needs oauth2 and takes no user; api_url must be https
    (or loopback); a bad internal_date and an smtp key are refused at
    their lines."""
    tmp = tempfile.mkdtemp(prefix="mh-gm-", dir="/tmp")
    base = """[general]
state = %s/state.db

[oauth2:g]
provider = google
client_id = x

[target:gmail]
type = gmail
%%s
[account:a]
protocol = pop3
host = pop.example
user = joe
password_command = echo x
target = gmail
""" % tmp
    bad = [("labels = INBOX\n", "missing required key 'oauth2'"),
           ("oauth2 = g\nuser = joe\n", "'user' is not a key of gmail"),
           ("oauth2 = g\napi_url = http://gmail.example\n", "api_url"),
           ("oauth2 = g\ninternal_date = now\n", "date-header|received"),
           ("oauth2 = g\nrecipient = a@b.example\n", "'recipient' is not a key"),
           ("oauth2 = nope\n", "nope")]
    try:
        for text, want in bad:
            cfg = mh.write_config(os.path.join(tmp, "c.ini"), base % text)
            os.chmod(cfg, 0o600)
            rc, out, err = mh.run_mailhaul(["config"], cfg)
            assert rc != 0 and want in out + err, (text, rc, out + err)
        cfg = mh.write_config(os.path.join(tmp, "c.ini"), base % "oauth2 = g\n")
        rc, out, err = mh.run_mailhaul(["config"], cfg)
        assert rc == 0, out + err
        assert "labels = INBOX, UNREAD" in out, out
        assert "internal_date = date-header" in out, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
