"""test_oauth2.py -- OAuth2 tokens end to end against a local provider.

    MAILHAUL=build/mailhaul python3 tests/integration/test_oauth2.py [CASE...]

tests/oauth2/provider.py plays Google/Microsoft over HTTPS with the test
CA (tests/unit/net/mkcerts.sh); the test plays the browser: it reads the
URL `mailhaul auth` prints, GETs it from the provider and follows the
redirect to mailhaul's loopback listener.  Every output is checked for
the tokens and the client secret.
"""
import base64
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oauth2"))
import provider  # noqa: E402  (tests/oauth2/provider.py)
import mh  # noqa: E402

NAME = "mail"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


class Bed:
    """Certificates, a provider, a config with [oauth2:mail]; every
    mailhaul output is kept for assert_no_secret()."""

    def __init__(self, client_secret=None, extra="", token_command=None):
        self.start_provider("mh-oa-", client_secret)
        self.state = os.path.join(self.tmp, "state")
        self.outputs = []
        sec = "client_secret = %s\n" % client_secret if client_secret else ""
        if token_command:
            o2 = "token_command = %s\n" % token_command
        else:
            o2 = ("provider = custom\nclient_id = mailhaul-test\n%s"
                  "auth_url = %s\ntoken_url = %s\ndevice_url = %s\n"
                  "scope = mail offline_access\nca_file = %s\n%s" % (
                      sec, self.p.url("/authorize"), self.p.url("/token"),
                      self.p.url("/device"), self.ca, extra))
        self.cfg = mh.write_config(os.path.join(self.tmp, "mailhaul.ini"), """
[general]
state = %s/state.db

[target:home]
type = lmtp
socket = %s/lmtp
recipient = alice@localhost

[oauth2:%s]
%s
[account:remote]
protocol = imap
host = 127.0.0.1
user = alice
oauth2 = %s
target = home
""" % (self.state, self.tmp, NAME, o2, NAME))
        os.chmod(self.cfg, 0o600)

    def start_provider(self, prefix, client_secret):
        """A temporary directory (self.tmp), certificates for 127.0.0.1
        (self.ca) and the provider (self.p), started."""
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        certs = os.path.join(self.tmp, "certs")
        os.mkdir(certs)
        subprocess.run(["sh", os.path.join(HERE, "..", "unit", "net", "mkcerts.sh"),
                        certs], check=True, timeout=60)
        self.ca = os.path.join(certs, "ca.pem")
        self.p = provider.Provider(os.path.join(certs, "good.pem"),
                                   os.path.join(certs, "good.key"),
                                   client_secret=client_secret).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.p.stop()
        if os.environ.get("MH_KEEP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, *args, timeout=60):
        rc, out, err = mh.run_mailhaul(list(args), self.cfg, timeout=timeout)
        self.outputs.append(out + err)
        return rc, out, err

    def store(self):
        return os.path.join(self.state, "oauth2", NAME + ".json")

    def tokens(self):
        with open(self.store()) as f:
            return json.load(f)

    def ssl_ctx(self):
        return ssl.create_default_context(cafile=self.ca)

    def assert_no_secret(self):
        text = "\n".join(self.outputs)
        for needle in (provider.ACCESS_PREFIX, provider.REFRESH_PREFIX,
                       provider.CLIENT_SECRET, "Oa2-Code-", "Oa2-DC-"):
            assert needle not in text, "a secret (%s...) in the output:\n%s" % (
                needle, text)

    # ---- the browser -------------------------------------------------
    def start_auth(self, *flags, env=None):
        e = dict(os.environ, DISPLAY="", WAYLAND_DISPLAY="")
        e.update(env or {})
        self.proc = subprocess.Popen(
            [mh.mailhaul_path(), "-c", self.cfg, "auth"] + list(flags) + [NAME],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        self.seen = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.seen.append(line)
            if line.startswith("https://") or line.startswith("http://"):
                return line.strip()
        raise AssertionError("no URL printed: %r" % self.seen)

    def finish_auth(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        out = "".join(self.seen) + out
        self.outputs.append(out + err)
        return self.proc.returncode, out, err

    def browse(self, url):
        """GETs url at the provider without following the redirect;
        returns the Location."""
        op = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=self.ssl_ctx()))
        try:
            op.open(url, timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code == 302, (e.code, e.read())
            return e.headers["Location"]
        raise AssertionError("no redirect from " + url)


def get(url, headers=None):
    """GET on the loopback listener: (status, body)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(
                url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def authorize(b):
    url = b.start_auth("--no-browser")
    loc = b.browse(url)
    assert loc.startswith("http://127.0.0.1:"), loc
    st, body = get(loc)
    assert st == 200 and "close this window" in body, (st, body)
    rc, out, err = b.finish_auth()
    assert rc == 0, (rc, out, err)
    return out


def assert_private(b):
    st = os.stat(b.store())
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    st = os.stat(os.path.dirname(b.store()))
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)


# ---- cases ----------------------------------------------------------------

def case_code_flow():
    """auth: URL printed, PKCE + state checked by the provider, the
    redirect caught, the code exchanged, tokens stored 0600."""
    with Bed(client_secret=provider.CLIENT_SECRET) as b:
        out = authorize(b)
        assert re.search(r"mail: authorized; scope: mail offline_access; "
                         r"access token valid for \d+ s", out), out
        t = b.tokens()
        assert t["refresh_token"].startswith(provider.REFRESH_PREFIX), t.keys()
        assert t["access_token"] in b.p.access
        assert_private(b)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(
            [f for p, f in b.p.log if p == "/authorize"][0]["redirect_uri"]).query))
        assert q == {}, q
        codes = b.p.grants("authorization_code")
        assert len(codes) == 1 and codes[0]["client_secret"] == provider.CLIENT_SECRET
        b.assert_no_secret()


def case_browser_opened():
    """With a display and without --no-browser, xdg-open gets the URL
    (a stand-in here, first in PATH); with --no-browser it is not run."""
    with Bed() as b:
        bindir = os.path.join(b.tmp, "bin")
        os.mkdir(bindir)
        got = os.path.join(b.tmp, "opened")
        with open(os.path.join(bindir, "xdg-open"), "w") as f:
            f.write("#!/bin/sh\nprintf '%%s\\n' \"$1\" >> %s\n" % got)
        os.chmod(os.path.join(bindir, "xdg-open"), 0o755)
        env = {"PATH": bindir + ":" + os.environ["PATH"], "DISPLAY": ":0"}
        url = b.start_auth(env=env)
        assert mh.wait_for(lambda: os.path.exists(got), timeout=10), "not opened"
        assert open(got).read().strip() == url
        assert get(b.browse(url))[0] == 200
        rc, out, err = b.finish_auth()
        assert rc == 0, (rc, out, err)
        os.unlink(got)
        url = b.start_auth("--no-browser", env=env)
        assert get(b.browse(url))[0] == 200
        rc, out, err = b.finish_auth()
        assert rc == 0 and not os.path.exists(got), (rc, err)
        b.assert_no_secret()


def case_state_checked():
    """A redirect with a wrong state or to another path is refused and
    the listener keeps waiting for the right one, which is taken however
    long its head; a denial ends with 77."""
    with Bed() as b:
        url = b.start_auth("--no-browser")
        loc = b.browse(url)
        u = urllib.parse.urlsplit(loc)
        q = dict(urllib.parse.parse_qsl(u.query))
        bad = "http://%s/?%s" % (u.netloc, urllib.parse.urlencode(
            {"code": "forged", "state": "not-ours"}))
        assert get(bad)[0] == 400
        assert get("http://%s/favicon.ico" % u.netloc)[0] == 404
        # a browser's cookies for 127.0.0.1 (other local apps' ports
        # share them) make a head far longer than the request line
        st, body = get(loc, {"Cookie": "; ".join(
            "c%d=%s" % (i, "v" * 200) for i in range(150))})
        assert st == 200 and "close this window" in body, (st, body)
        rc, out, err = b.finish_auth()
        assert rc == 0, (rc, out, err)
        assert q["state"] and "forged" not in json.dumps(b.tokens())
        b.p.deny = True
        url = b.start_auth("--no-browser")
        assert get(b.browse(url))[0] == 200
        rc, out, err = b.finish_auth()
        assert rc == 77 and "access_denied" in err, (rc, err)
        b.assert_no_secret()


def case_device_flow():
    """auth --device: code shown, authorization_pending twice, then
    slow_down (+5 s), then the tokens."""
    with Bed() as b:
        b.p.pending = 2
        b.p.slow_downs = 1
        t0 = time.time()
        rc, out, err = b.run("auth", "--device", NAME, timeout=90)
        assert rc == 0, (rc, out, err)
        assert "WDJB-MJHT" in out and b.p.url("/activate") in out, out
        polls = b.p.grants(provider.DEVICE_GRANT)
        assert len(polls) == 4, len(polls)
        # intervals: 1 s to each of the pendings and the slow_down, then
        # 1 + 5 s: the client added 5 s (else the provider says slow_down
        # again and the count above is wrong)
        assert time.time() - t0 >= 1 + 1 + 1 + 6 - 0.5, time.time() - t0
        assert_private(b)
        b.assert_no_secret()


def case_refresh_rotation():
    """An expired access token is refreshed (scope sent); a rotated
    refresh token replaces the stored one at once; a valid one is
    cached; --refresh forces."""
    with Bed() as b:
        b.p.lifetime = 30       # < 60 s margin: every use refreshes
        authorize(b)
        first = b.tokens()["refresh_token"]
        b.p.rotate = True
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 0, (rc, out, err)
        ref = b.p.grants("refresh_token")
        assert len(ref) == 1 and ref[0]["scope"] == "mail offline_access", ref
        second = b.tokens()["refresh_token"]
        assert second != first and second in b.p.refresh and first not in b.p.refresh
        assert_private(b)
        b.p.lifetime = 3600
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 0 and len(b.p.grants("refresh_token")) == 2, (rc, err)
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 0 and len(b.p.grants("refresh_token")) == 2, "not cached"
        assert re.search(r"valid for 3[0-6]\d\d s", out), out
        rc, out, err = b.run("auth", "--check", "--refresh", NAME)
        assert rc == 0 and len(b.p.grants("refresh_token")) == 3
        b.assert_no_secret()


def case_invalid_grant():
    """A revoked grant: the message naming 'mailhaul auth', exit 77;
    no tokens at all: the same advice."""
    with Bed() as b:
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 77 and "run 'mailhaul auth mail'" in err, (rc, err)
        b.p.lifetime = 10
        authorize(b)
        b.p.revoke_all()
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 77, (rc, out, err)
        assert ("mail: the authorization was revoked or has expired; run "
                "'mailhaul auth mail'") in err, err
        b.assert_no_secret()


def case_network_error_temporary():
    """The token endpoint down: a temporary failure (75), not 77."""
    with Bed() as b:
        b.p.lifetime = 10
        authorize(b)
        b.p.stop()
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 75, (rc, out, err)
        b.assert_no_secret()


def case_token_command():
    """token_command: its first line is the token; a failing command is
    an error naming the section, never printing its output."""
    with Bed(token_command="printf '%s\\nsecond\\n' Oa2-AT-7x9Q-fromcmd") as b:
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc == 0 and "token_command gave an access token (19 bytes)" in out, \
            (rc, out, err)
        rc, out, err = b.run("auth", NAME)
        assert rc != 0 and "token_command" in err, (rc, err)
        b.assert_no_secret()
    with Bed(token_command="echo Oa2-AT-7x9Q-x; exit 3") as b:
        rc, out, err = b.run("auth", "--check", NAME)
        assert rc != 0 and "exited with status 3" in err, (rc, err)
        b.assert_no_secret()


def case_config_checks():
    """https required (but loopback), unknown oauth2 names listed, the
    client secret masked in `mailhaul config`."""
    with Bed(client_secret=provider.CLIENT_SECRET) as b:
        rc, out, err = b.run("config")
        assert rc == 0, err
        assert "client_secret = ********" in out, out
        text = open(b.cfg).read()
        bad = text.replace("oauth2 = mail", "oauth2 = mial").replace(
            "token_url = https://127.0.0.1", "token_url = http://example.org")
        with open(b.cfg, "w") as f:
            f.write(bad)
        rc, out, err = b.run("config")
        assert rc == 78, (rc, err)
        assert "unknown oauth2 'mial'" in err and "known: mail" in err, err
        assert "expected an https:// URL" in err, err
        assert re.search(r"mailhaul\.ini:\d+: ", err), err
        b.assert_no_secret()
    # the man page's examples load
    man = open(os.path.join(HERE, "..", "..", "man", "mailhaul.ini.5.scd")).read()
    ex = man[man.index("Examples:"):]
    ex = ex[ex.index("```") + 4:]
    ex = ex[:ex.index("```")]
    with tempfile.TemporaryDirectory(prefix="mh-oa-man-") as d:
        cfg = mh.write_config(os.path.join(d, "man.ini"), "[target:home]\n"
                              "type = lmtp\nsocket = /tmp/x\n"
                              "recipient = me@example.org\n" + ex)
        os.chmod(cfg, 0o600)
        rc, out, err = mh.run_mailhaul(["config"], cfg)
        assert rc == 0, (rc, err)
        assert "[oauth2:gmail]" in out and "tenant = common" in out, out
        # the provider presets, as `mailhaul config` prints them
        sect = {}
        for part in out.split("\n["):
            head, _, body = part.partition("]\n")
            sect[head.lstrip("[")] = body
        assert "host = imap.gmail.com\nport = 993\ntls = implicit\n" in \
            sect["account:gmail"], sect["account:gmail"]
        assert "host = outlook.office365.com\nport = 995\ntls = implicit\n" in \
            sect["account:outlook"], sect["account:outlook"]
        assert "host = smtp.gmail.com\nport = 465\ntls = implicit\n" in \
            sect["target:gmail-smtp"], sect["target:gmail-smtp"]
        # any key still overrides; a provider without the protocol says so
        more = ("\n[target:o365]\ntype = smtp\nprovider = office365\n"
                "recipient = me@example.org\n"
                "\n[account:icloud]\nprovider = icloud\nprotocol = imap\n"
                "user = me@icloud.com\npassword_file = /dev/null\n"
                "host = imap.example.org\ntarget = o365\n")
        with open(cfg, "a") as f:
            f.write(more)
        rc, out, err = mh.run_mailhaul(["config"], cfg)
        assert rc == 0, (rc, err)
        assert "host = smtp.office365.com\nport = 587\ntls = starttls\n" in out, out
        assert "host = imap.example.org\nport = 993\n" in out, out
        assert "auth = password\n" in out.split("[account:icloud]")[1], out
        with open(cfg, "a") as f:
            f.write("\n[account:icloud-pop]\nprovider = icloud\n"
                    "protocol = pop3\nuser = me@icloud.com\n"
                    "password_file = /dev/null\ntarget = home\n")
        rc, out, err = mh.run_mailhaul(["config"], cfg)
        assert rc == 78 and "provider = icloud has no pop3 server" in err, (rc, err)


def case_dovecot_xoauth2():
    """The token mailhaul obtained logs in to Dovecot (passdb oauth2,
    introspection at the provider) with IMAP AUTHENTICATE XOAUTH2 done
    by this test: the recipe for wiring tokens into the logins."""
    with Bed() as b:
        authorize(b)
        token = b.tokens()["access_token"]
        h = mh.Harness(oauth2_introspect_url=b.p.url("/introspect"),
                       oauth2_ca=b.ca)
        with h:
            ctx = ssl.create_default_context(cafile=h.ca)
            with socket.create_connection(("127.0.0.1", h.imaps_port), 10) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    f = t.makefile("rwb")
                    f.readline()
                    ir = base64.b64encode(("user=alice\x01auth=Bearer %s\x01\x01"
                                           % token).encode()).decode()
                    f.write(("a AUTHENTICATE XOAUTH2 %s\r\n" % ir).encode())
                    f.flush()
                    line = f.readline().decode()
                    assert line.startswith("a OK"), line
                    f.write(b"b LOGOUT\r\n")
                    f.flush()
            assert any(p == "/introspect" for p, _ in b.p.log)
        b.assert_no_secret()


if __name__ == "__main__":
    sys.exit(mh.run_cases(globals(), sys.argv))
