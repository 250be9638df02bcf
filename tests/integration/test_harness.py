"""Self-test of the integration harness: every server speaks, TLS verifies
against the harness CA only, mail goes in and out of each service, and the
mh.py comparison helpers hold for every corpus trick.

    MAILHAUL=build/mailhaul PYTHONPATH=tests/integration \\
        /usr/bin/python3 tests/integration/test_harness.py -v
"""
import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import stat
import tempfile
import unittest

import corpus
import mh

poplib._MAXLINE = 1 << 24       # the corpus has 100000-byte lines


def ca_context(h):
    ctx = ssl.create_default_context(cafile=h.ca)
    return ctx


def pop3_retr(p, n):
    """RETR n on a poplib connection, as exact bytes (CRLF line ends,
    dot-unstuffed)."""
    p._putcmd("RETR %d" % n)
    resp = p._getresp()
    if not resp.startswith(b"+OK"):
        raise AssertionError("RETR %d: %r" % (n, resp))
    lines = []
    while True:
        line, _ = p._getline()
        if line == b".":
            break
        if line.startswith(b".."):
            line = line[1:]
        lines.append(line)
    return b"".join(l + b"\r\n" for l in lines)


class HarnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = mh.Harness()
        cls.h.__enter__()
        cls.tricky = corpus.tricky(seed=5)

    @classmethod
    def tearDownClass(cls):
        cls.h.__exit__(None, None, None)

    # ---- every listener answers ------------------------------------------
    def greeting(self, port, tls=False, host="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            s = ca_context(self.h).wrap_socket(s, server_hostname=host)
        try:
            return s.recv(512)
        finally:
            s.close()

    def test_greetings(self):
        h = self.h
        self.assertTrue(self.greeting(h.pop3_port).startswith(b"+OK"))
        self.assertTrue(self.greeting(h.pop3s_port, tls=True).startswith(b"+OK"))
        self.assertTrue(self.greeting(h.pop3s_port, tls=True, host="localhost")
                        .startswith(b"+OK"))
        self.assertTrue(self.greeting(h.imap_port).startswith(b"* OK"))
        self.assertTrue(self.greeting(h.imaps_port, tls=True).startswith(b"* OK"))
        self.assertTrue(self.greeting(h.lmtp_port).startswith(b"220"))
        self.assertTrue(self.greeting(h.smtp_port).startswith(b"220"))
        u = socket.socket(socket.AF_UNIX)
        u.settimeout(10)
        u.connect(h.lmtp_socket)
        self.assertTrue(u.recv(512).startswith(b"220"))
        u.close()

    def test_env_file(self):
        env = mh.parse_env(self.h.path("env"))
        for k in ("TESTBED_DIR", "TESTBED_CONF", "TESTBED_CA", "TESTBED_USERS",
                  "TESTBED_PASSWORD", "TESTBED_MAIL_UID", "TESTBED_MAIL_GID",
                  "POP3_PORT", "POP3S_PORT", "IMAP_PORT", "IMAPS_PORT", "LMTP_PORT",
                  "LMTP_SOCKET", "SMTP_PORT", "SMTP_MAILDIR_ROOT"):
            self.assertIn(k, env)
        ports = [self.h.pop3_port, self.h.pop3s_port, self.h.imap_port,
                 self.h.imaps_port, self.h.lmtp_port, self.h.smtp_port]
        self.assertEqual(len(set(ports)), 6)
        self.assertEqual(self.h.users, ["alice", "bob", "carol"])

    def test_system_store_does_not_trust_the_harness(self):
        s = socket.create_connection(("127.0.0.1", self.h.pop3s_port), timeout=10)
        with self.assertRaises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(s, server_hostname="localhost")
        s.close()

    def test_wrong_hostname_fails(self):
        s = socket.create_connection(("127.0.0.1", self.h.imaps_port), timeout=10)
        with self.assertRaises(ssl.SSLCertVerificationError):
            ca_context(self.h).wrap_socket(s, server_hostname="mail.example.org")
        s.close()

    # ---- Dovecot: inject, then read back over POP3S / POP3+STLS / IMAPS ----
    def test_pop3_byte_exact_per_trick(self):
        h = self.h
        names = list(self.tricky)
        before = h.count("carol")
        h.inject("carol", [self.tricky[n] for n in names])
        self.assertEqual(h.count("carol"), before + len(names))
        self.assertEqual(h.server_count("carol"), before + len(names))
        p = poplib.POP3_SSL("127.0.0.1", h.pop3s_port, context=ca_context(h), timeout=30)
        try:
            p.user("carol")
            p.pass_(h.password)
            count, _ = p.stat()
            self.assertEqual(count, before + len(names))
            for k, n in enumerate(names):
                got = pop3_retr(p, before + k + 1)
                self.assertEqual(got, mh.crlf(self.tricky[n]), "trick %s: %s" % (
                    n, mh.explain_difference(self.tricky[n], got, received=False)))
        finally:
            p.quit()

    def test_pop3_stls_and_bad_password(self):
        h = self.h
        p = poplib.POP3("127.0.0.1", h.pop3_port, timeout=10)
        try:
            self.assertIn("STLS", p.capa())
            p.stls(context=ca_context(h))
            p.user("alice")
            with self.assertRaises(poplib.error_proto):
                p.pass_("wrong")
        finally:
            p.close()
        p = poplib.POP3("127.0.0.1", h.pop3_port, timeout=10)
        p.stls(context=ca_context(h))
        p.user("alice")
        p.pass_(h.password)
        p.quit()

    def test_imaps_login(self):
        h = self.h
        raw = corpus.tricky(seed=9)["utf8-8bit"]
        h.inject("alice", [raw])
        m = imaplib.IMAP4_SSL("127.0.0.1", h.imaps_port, ssl_context=ca_context(h),
                              timeout=10)
        try:
            m.login("alice", h.password)
            typ, data = m.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            n = int(data[0])
            self.assertGreaterEqual(n, 1)
            typ, data = m.fetch(str(n), "(BODY.PEEK[])")
            self.assertEqual(data[0][1], mh.crlf(raw))
            m.logout()
        except Exception:
            m.shutdown()
            raise

    # ---- SMTP receiver: STARTTLS, AUTH, byte-exact store, faults -----------
    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.h.smtp_port, timeout=10)
        s.ehlo("test")
        return s

    def test_smtp_auth_only_after_starttls(self):
        s = self.smtp()
        try:
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"))
            code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
            self.assertEqual(code, 538)
            s.starttls(context=ca_context(self.h))
            s.ehlo("test")
            self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("alice", "wrong")
        finally:
            s.quit()

    def test_smtp_starttls_auth_byte_exact(self):
        h = self.h
        names = list(self.tricky)
        s = self.smtp()
        try:
            s.starttls(context=ca_context(h))
            s.ehlo("test")
            s.login("alice", h.password)
            for n in names:
                refused = s.sendmail("alice@example.org", ["dave@example.org"],
                                     mh.crlf(self.tricky[n]))
                self.assertEqual(refused, {})
        finally:
            s.quit()
        got = h.smtp_messages("dave")
        self.assertEqual(len(got), len(names))
        byid = {mh.header(m, "X-Corpus-Id"): m for m in got}
        for n in names:
            want = mh.crlf(self.tricky[n])
            self.assertEqual(byid[mh.header(want, "X-Corpus-Id")], want, n)
        env = [e for e in h.smtp_envelopes() if e["rcpt_tos"] == ["dave@example.org"]]
        self.assertEqual(len(env), len(names))
        self.assertTrue(all(e["tls"] and e["auth"] == "alice" for e in env))

    def test_smtp_recipient_faults(self):
        s = self.smtp()
        msg = mh.crlf(self.tricky["plain"])
        try:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("a@example.org", ["reject5xx@example.org"], msg)
            self.assertEqual(cm.exception.recipients["reject5xx@example.org"][0], 550)
            s.rset()
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("a@example.org", ["tempfail@example.org"], msg)
            self.assertEqual(cm.exception.recipients["tempfail@example.org"][0], 451)
            s.rset()
            refused = s.sendmail("a@example.org", ["erin@x", "tempfail2@x"], msg)
            self.assertEqual(refused["tempfail2@x"][0], 451)
        finally:
            s.quit()
        self.assertEqual(self.h.smtp_count("erin"), 1)
        self.assertEqual(self.h.smtp_count("tempfail2"), 0)

    def test_smtp_data_reply_second_harness(self):
        # also shows two harnesses running side by side
        with mh.Harness(smtp_args=["--data-reply", "451 4.3.0 busy (test)",
                                   "--data-reply-count", "1",
                                   "--require-auth"]) as h2:
            self.assertNotEqual(h2.smtp_port, self.h.smtp_port)
            s = smtplib.SMTP("127.0.0.1", h2.smtp_port, timeout=10)
            try:
                s.ehlo("t")
                code, _ = s.docmd("MAIL", "FROM:<a@x>")
                self.assertEqual(code, 530)          # --require-auth
                s.starttls(context=ca_context(h2))
                s.ehlo("t")
                s.login("bob", h2.password)
                msg = mh.crlf(self.tricky["plain"])
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.sendmail("a@x", ["frank@x"], msg)
                self.assertEqual(cm.exception.smtp_code, 451)
                s.sendmail("a@x", ["frank@x"], msg)
            finally:
                s.quit()
            self.assertEqual(h2.smtp_messages("frank"), [msg])

    # ---- LMTP into Dovecot --------------------------------------------------
    def test_lmtp_socket_and_tcp(self):
        h = self.h
        names = list(self.tricky)
        before = h.count("bob")
        l = smtplib.LMTP(h.lmtp_socket, timeout=30)
        try:
            for n in names:
                self.assertEqual(l.sendmail("x@example.org", ["bob@localhost"],
                                            mh.crlf(self.tricky[n])), {})
        finally:
            l.quit()
        l = smtplib.LMTP("127.0.0.1", h.lmtp_port, timeout=30)
        try:
            l.sendmail("x@example.org", ["bob"], mh.crlf(self.tricky["plain"]))
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                l.sendmail("x@example.org", ["nosuchuser"], b"Subject: x\r\n\r\nx\r\n")
        finally:
            l.quit()
        self.assertEqual(h.count("bob"), before + len(names) + 1)
        stored = {}
        for m in h.messages("bob"):
            stored.setdefault(mh.header(m, "X-Corpus-Id"), m)
        for n in names:
            orig = self.tricky[n]
            got = stored[mh.header(orig, "X-Corpus-Id")]
            self.assertTrue(mh.same_message(orig, got, received=False, target="lmtp"),
                            "%s: %s" % (n, mh.explain_difference(orig, got, received=False,
                                                                  target="lmtp")))

    # ---- mh.py helpers --------------------------------------------------------
    def test_strip_received(self):
        orig = b"Subject: a\nX: y\n\nbody\n"
        d = (b"Received: from pop3s://alice@127.0.0.1\r\n\tby host (mailhaul)\r\n"
             b" id 42; Sat, 1 Jan 2000 00:00:00 +0000\r\n") + mh.crlf(orig)
        self.assertEqual(mh.strip_received(d), mh.crlf(orig))
        self.assertTrue(mh.same_message(orig, d))
        self.assertFalse(mh.same_message(orig, mh.crlf(orig)))         # no Received
        self.assertFalse(mh.same_message(orig, d.replace(b"body", b"bodY")))
        self.assertFalse(mh.same_message(orig, b"Received: x\r\n" + d))  # two of them
        self.assertIn("byte", mh.explain_difference(orig, d + b"x"))
        with self.assertRaises(ValueError):
            mh.strip_received(b"Subject: x\r\n\r\n")
        self.assertEqual(mh.crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\rd\r\n")

    def test_write_config_and_run_mailhaul(self):
        d = tempfile.mkdtemp(dir=self.h.dir)
        cfg = mh.write_config(os.path.join(d, "c.ini"), "[x]\npassword = s\n")
        self.assertEqual(stat.S_IMODE(os.stat(cfg).st_mode), 0o600)
        fake = os.path.join(d, "fake")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\necho "$@"; echo "$XDG_STATE_HOME" >&2; exit 3\n')
        os.chmod(fake, 0o755)
        old = os.environ.get("MAILHAUL")
        os.environ["MAILHAUL"] = fake
        try:
            rc, out, err = mh.run_mailhaul(["sync", "acct"], cfg)
            self.assertEqual((rc, out), (3, "-c %s sync acct\n" % cfg))
            self.assertTrue(err.startswith(d))
            with open(fake, "w") as f:
                f.write("#!/bin/sh\nsleep 5\n")
            rc, out, err = mh.run_mailhaul([], cfg, timeout=0.5)
            self.assertEqual(rc, -9)
        finally:
            if old is None:
                del os.environ["MAILHAUL"]
            else:
                os.environ["MAILHAUL"] = old

    @unittest.skipUnless(os.environ.get("MAILHAUL"), "MAILHAUL not set")
    def test_mailhaul_binary_exists(self):
        self.assertTrue(os.access(os.environ["MAILHAUL"], os.X_OK))


if __name__ == "__main__":
    unittest.main(verbosity=2)
