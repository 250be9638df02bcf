"""test_oauth2_sync.py -- OAuth2 wired into the logins, end to end:
tokens obtained by `mailhaul auth` from the local provider
(tests/oauth2/provider.py), refreshed by mailhaul, and accepted by the
harness's Dovecot (passdb oauth2, introspection at the provider) and by
the SMTP receiver (AUTH XOAUTH2 checked the same way).

    MAILHAUL=build/mailhaul python3 tests/integration/test_oauth2_sync.py [CASE...]

Every output (mailhaul's, the service's log) is checked for the tokens
and the client secret.
"""
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oauth2"))
import provider  # noqa: E402
import mh  # noqa: E402
import test_oauth2 as T  # noqa: E402
from test_service import Service, gen, service_account, wait_status  # noqa: E402

NAME = T.NAME           # the [oauth2:mail] section
EX_NOPERM = 77
REVOKED = ("mail: the authorization was revoked or has expired; run "
           "'mailhaul auth mail'")


class Bed(T.Bed):
    """A provider, the harness (Dovecot taking tokens), and a config
    written by config(); T.authorize(bed) runs `mailhaul auth`."""

    def __init__(self, lifetime=30):
        self.h = None
        self.outputs = []
        self.start_provider("mh-os-", provider.CLIENT_SECRET)
        self.p.lifetime = lifetime
        self.h = mh.Harness(oauth2_introspect_url=self.p.url("/introspect"),
                            oauth2_ca=self.ca)
        self.h.start()
        self.state = self.h.path("state")
        self.cfg = None

    def __enter__(self):
        return self

    def __exit__(self, etype, *exc):
        if etype is not None and self.h is not None:
            self.h._dump_logs()
        if self.h is not None:
            self.h.close()
        super().__exit__(etype, *exc)

    def config(self, protocol="imap", auth="auto", target=None, account=None,
               general="", o2=None):
        h = self.h
        port = h.imaps_port if protocol == "imap" else h.pop3s_port
        if target is None:
            target = ("type = lmtp\nsocket = %s\nrecipient = bob@localhost\n"
                      % h.lmtp_socket)
        if account is None:
            account = "user = alice\noauth2 = %s\nauth = %s\n" % (NAME, auth)
        if o2 is None:
            o2 = ("provider = custom\nclient_id = mailhaul-test\n"
                  "client_secret = %s\nauth_url = %s\ntoken_url = %s\n"
                  "scope = mail offline_access\nca_file = %s\n" % (
                      provider.CLIENT_SECRET, self.p.url("/authorize"),
                      self.p.url("/token"), self.ca))
        text = """[general]
state = %s/state.db
%s
[oauth2:%s]
%s
[target:home]
%s
[account:remote]
protocol = %s
host = localhost
port = %d
ca_file = %s
%starget = home
""" % (self.state, general, NAME, o2, target, protocol, port, h.ca, account)
        self.cfg = mh.write_config(h.path("mailhaul.ini"), text)
        os.chmod(self.cfg, 0o600)
        return self.cfg

    def sync(self, *args, env=None):
        rc, out, err = mh.run_mailhaul(["sync"] + list(args), self.cfg,
                                       env=env, timeout=120)
        self.outputs.append(out + err)
        return rc, out, err

    def logins(self, method):
        """How many Dovecot logins used method (its log says so)."""
        with open(self.h.path("log", "dovecot.log"), errors="replace") as f:
            text = f.read()
        return len(re.findall(r"Login: user=<alice>, method=%s\b" % method, text))

    def keep(self, text):
        self.outputs.append(text)


def sync_mechanisms(protocol):
    with Bed() as b:
        b.config(protocol=protocol)
        T.authorize(b)
        first = b.tokens()["access_token"]
        done = 0
        for auth, method in (("xoauth2", "XOAUTH2"), ("oauthbearer", "OAUTHBEARER"),
                             ("auto", "OAUTHBEARER")):
            b.config(protocol=protocol, auth=auth)
            msgs = gen(2, seed=len(auth))
            b.h.inject("alice", msgs)
            before = b.logins(method)
            rc, out, err = b.sync()
            assert rc == 0, (auth, rc, out, err)
            done += 2
            assert b.h.count("bob") == done, (auth, b.h.count("bob"), out, err)
            assert b.logins(method) == before + 1, (auth, method, b.logins(method))
        # the provider's tokens live 30 s, under the 60 s margin: every
        # pass refreshed, with the scope (Microsoft needs it)
        ref = b.p.grants("refresh_token")
        assert len(ref) >= 3 and all(r["scope"] == "mail offline_access"
                                     for r in ref), ref
        assert b.tokens()["access_token"] != first
        b.assert_no_secret()


def case_pop3_mechanisms():
    """POP3 (two-step AUTH) with auth = xoauth2, oauthbearer and auto
    (which picks OAUTHBEARER): each pass logs in with a token mailhaul
    refreshed itself, and delivers."""
    sync_mechanisms("pop3")


def case_imap_mechanisms():
    """IMAP AUTHENTICATE with auth = xoauth2, oauthbearer and auto."""
    sync_mechanisms("imap")


def case_refused_token_refreshed():
    """A cached token the server refuses (revoked early) is refreshed and
    the login tried once more: the pass succeeds."""
    with Bed(lifetime=3600) as b:
        b.config(protocol="imap")
        T.authorize(b)
        with b.p.lock:
            b.p.access.clear()          # introspection now says inactive
        b.h.inject("alice", gen(1, seed=3))
        rc, out, err = b.sync("-v")
        assert rc == 0, (rc, out, err)
        assert b.h.count("bob") == 1
        assert len(b.p.grants("refresh_token")) == 1, b.p.grants("refresh_token")
        assert "refreshing it and trying once more" in err, err
        b.assert_no_secret()


def case_smtp_target_xoauth2():
    """An SMTP target that logs in with XOAUTH2 (the receiver checks the
    token at the provider); a refused cached token is refreshed there
    too."""
    with Bed(lifetime=3600) as b:
        h = b.h
        target = ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                  "ca_file = %s\nuser = alice\noauth2 = %s\nauth = xoauth2\n"
                  "recipient = carol@localhost\n" % (h.smtp_port, h.ca, NAME))
        account = "user = alice\npassword = %s\n" % h.password
        b.config(protocol="pop3", target=target, account=account)
        T.authorize(b)
        h.inject("alice", gen(2, seed=5))
        rc, out, err = b.sync()
        assert rc == 0, (rc, out, err)
        assert h.smtp_count("carol") == 2
        assert all(e.get("auth") == "alice" for e in h.smtp_envelopes()), \
            h.smtp_envelopes()
        with b.p.lock:
            b.p.access.clear()
        h.inject("alice", gen(1, seed=6))
        rc, out, err = b.sync()
        assert rc == 0, (rc, out, err)
        assert h.smtp_count("carol") == 3
        assert len(b.p.grants("refresh_token")) == 1
        b.assert_no_secret()


def case_kill9_after_refresh():
    """The process killed (SIGKILL) right after a refresh stored the
    rotated refresh token: the next sync uses the rotated one, and the
    old one, which the provider revoked, is gone from the store."""
    with Bed(lifetime=30) as b:
        b.p.rotate = True
        b.config(protocol="imap")
        T.authorize(b)
        old = b.tokens()["refresh_token"]
        b.h.inject("alice", gen(2, seed=7))
        rc, out, err = b.sync(env={"MAILHAUL_TEST_KILL_AFTER_TOKEN_STORE": "1"})
        assert rc != 0, (rc, out, err)
        assert b.h.count("bob") == 0
        new = b.tokens()["refresh_token"]
        assert new != old and new in b.p.refresh and old not in b.p.refresh
        rc, out, err = b.sync()
        assert rc == 0, (rc, out, err)
        assert b.h.count("bob") == 2
        T.assert_private(b)
        b.assert_no_secret()


def case_invalid_grant():
    """A revoked grant: sync says so and exits 77; status shows it; the
    service waits (no pass, nothing asked of the provider), tells
    notify_command, and syncs again once `mailhaul auth` stored new
    tokens."""
    with Bed(lifetime=30) as b:
        notified = b.h.path("notified")
        general = ("interval = 1s\nnotify_command = printf '%%s|%%s|%%s\\n' "
                   "\"$MAILHAUL_ACCOUNT\" \"$MAILHAUL_COUNT\" \"$MAILHAUL_ERROR\" "
                   ">> %s\n" % notified)
        b.config(protocol="imap", general=general)
        T.authorize(b)
        b.p.revoke_all()
        rc, out, err = b.sync()
        assert rc == EX_NOPERM and REVOKED in out + err, (rc, out, err)
        asked = len(b.p.grants("refresh_token"))
        rc, out, err = b.sync()
        assert rc == EX_NOPERM and REVOKED in out + err, (rc, out, err)
        assert len(b.p.grants("refresh_token")) == asked, "asked again"
        rc, out, err = mh.run_mailhaul(["status"], b.cfg, timeout=30)
        b.keep(out + err)
        assert REVOKED in out, out
        with Service(b.h, b.cfg) as svc:
            a = wait_status(b.cfg, "remote", lambda a: a.get("waiting_for_auth"))
            assert a and REVOKED in a["last_error"], (a, svc.log())
            time.sleep(4)                       # four intervals
            assert len(b.p.grants("refresh_token")) == asked, "the service asked"
            rc, out, err = mh.run_mailhaul(["status"], b.cfg, timeout=30)
            b.keep(out + err)
            assert "waiting for 'mailhaul auth'" in out, out
            rc, out, err = mh.run_mailhaul(["status", "--json"], b.cfg, timeout=30)
            b.keep(out + err)
            assert REVOKED in json.dumps(json.loads(out)), out
            assert mh.wait_for(lambda: os.path.exists(notified), timeout=10)
            with open(notified) as f:
                assert f.read().startswith("remote|0|" + REVOKED), open(notified).read()
            b.h.inject("alice", gen(2, seed=9))
            T.authorize(b)
            assert mh.wait_for(lambda: b.h.count("bob") == 2, timeout=20), svc.log()
            a = wait_status(b.cfg, "remote", lambda a: not a.get("waiting_for_auth")
                            and a["last_result"] == "ok")
            assert a, service_account(b.cfg, "remote")
            b.keep(svc.log())
            assert svc.stop() == 0
        b.assert_no_secret()


def case_idle_token_expiry():
    """IDLE with tokens that live 6 s: the IDLE connection logs in again
    before its token expires, and mail that comes after the first
    token's expiry is still delivered at once, without a restart."""
    with Bed(lifetime=6) as b:
        b.config(protocol="imap", general="interval = 1h\n")
        with open(b.cfg, "a") as f:
            f.write("idle = yes\n")
        T.authorize(b)
        with Service(b.h, b.cfg) as svc:
            a = wait_status(b.cfg, "remote", lambda a: a["idle"] == "connected"
                            and a["last_result"] == "ok" and not a["running"])
            assert a, (service_account(b.cfg, "remote"), svc.log())
            time.sleep(10)                      # past the first token
            before = b.h.count("bob")
            b.h.inject("alice", gen(1, seed=11))
            assert mh.wait_for(lambda: b.h.count("bob") == before + 1,
                               timeout=10), svc.log()
            log = svc.log()
            assert "the access token expires; logging in again" in log, log
            assert b.logins("OAUTHBEARER") >= 3, b.logins("OAUTHBEARER")
            b.keep(log)
            assert svc.stop() == 0
        b.assert_no_secret()


def case_token_command():
    """token_command: an external helper's token logs in to Dovecot."""
    with Bed(lifetime=3600) as b:
        with b.p.lock:
            tok = b.p._issue("mail offline_access", refresh=False)["access_token"]
        path = b.h.path("token")
        with open(path, "w") as f:
            f.write(tok + "\n")
        b.config(protocol="imap", o2="token_command = cat %s\n" % path)
        b.h.inject("alice", gen(2, seed=13))
        rc, out, err = b.sync()
        assert rc == 0, (rc, out, err)
        assert b.h.count("bob") == 2
        assert b.p.grants("refresh_token") == []
        b.assert_no_secret()


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
