"""mh.py -- shared helpers for mailhaul's integration tests (stdlib only).

    import mh
    with mh.Harness() as h:                 # Dovecot + SMTP sink, free ports
        h.inject("alice", [b"Subject: x\\r\\n\\r\\nhi\\r\\n"])
        cfg = mh.write_config(h.path("mailhaul.ini"), "...%d..." % h.pop3s_port)
        rc, out, err = mh.run_mailhaul(["sync"], cfg)
        got = h.smtp_messages("bob")        # bytes of each delivered copy

The harness lives in tests/harness (start, stop, inject, doveadm,
smtp-sink); see tests/harness/README.md.  The mailhaul binary is taken
from $MAILHAUL (meson passes it).  MH_KEEP=1 keeps the harness directory
(and prints where it is) instead of deleting it.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.normpath(os.path.join(HERE, "..", "harness"))

_ENV_ATTRS = {
    "TESTBED_DIR": "dir", "TESTBED_CONF": "conf", "TESTBED_CA": "ca",
    "TESTBED_PASSWORD": "password", "LMTP_SOCKET": "lmtp_socket",
    "SMTP_MAILDIR_ROOT": "smtp_maildir_root",
    "SMTP_ENVELOPE_LOG": "smtp_envelope_log",
}
_INT_ATTRS = {
    "TESTBED_MAIL_UID": "mail_uid", "TESTBED_MAIL_GID": "mail_gid",
    "POP3_PORT": "pop3_port", "POP3S_PORT": "pop3s_port",
    "IMAP_PORT": "imap_port", "IMAPS_PORT": "imaps_port",
    "LMTP_PORT": "lmtp_port", "SMTP_PORT": "smtp_port",
}


def parse_env(path):
    """DIR/env (KEY=VALUE lines, values possibly in double quotes) -> dict."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            env[k] = v
    return env


class Harness:
    """Context manager: a private Dovecot + SMTP receiver in a fresh
    /tmp/mh-XXXXXX, stopped and removed on exit (also on failure).

    smtp_args: extra smtp-sink options, e.g. ["--data-reply", "451 4.3.0 x"].
    oauth2_introspect_url, oauth2_ca: Dovecot also offers XOAUTH2 and
    OAUTHBEARER, checking each token at that URL (tests/oauth2/provider.py).
    Attributes after start: dir, conf, ca, users (list), password,
    mail_uid, mail_gid, pop3_port, pop3s_port, imap_port, imaps_port,
    lmtp_port, lmtp_socket, smtp_port, smtp_maildir_root,
    smtp_envelope_log, env (the whole DIR/env as a dict)."""

    def __init__(self, smtp_args=None, oauth2_introspect_url=None,
                 oauth2_ca=None):
        self.smtp_args = list(smtp_args or [])
        # Dovecot also takes XOAUTH2/OAUTHBEARER, checking tokens there
        self.oauth2_env = {}
        if oauth2_introspect_url:
            self.oauth2_env["HARNESS_OAUTH2_INTROSPECT_URL"] = oauth2_introspect_url
        if oauth2_ca:
            self.oauth2_env["HARNESS_OAUTH2_CA"] = oauth2_ca
        self.dir = None
        self.env = {}

    # ---- life cycle ---------------------------------------------------
    def start(self):
        if self.dir is None:
            # short: Dovecot's unix socket paths must fit in 107 bytes
            self.dir = tempfile.mkdtemp(prefix="mh-", dir="/tmp")
        cmd = [os.path.join(HARNESS, "start"), self.dir]
        if self.smtp_args:
            cmd += ["--"] + self.smtp_args
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120, env=dict(os.environ, **self.oauth2_env))
        if p.returncode != 0:
            sys.stderr.write(p.stdout.decode("utf-8", "replace"))
            self._dump_logs()
            raise RuntimeError("harness start failed (rc %d)" % p.returncode)
        self.env = parse_env(os.path.join(self.dir, "env"))
        for k, a in _ENV_ATTRS.items():
            setattr(self, a, self.env.get(k))
        for k, a in _INT_ATTRS.items():
            setattr(self, a, int(self.env[k]))
        self.users = self.env.get("TESTBED_USERS", "").split()
        return self

    def stop(self):
        if self.dir and os.path.isdir(self.dir):
            subprocess.run([os.path.join(HARNESS, "stop"), self.dir],
                           stdout=subprocess.DEVNULL, timeout=60)

    def restart_smtp(self, smtp_args=None):
        """Restart the whole bed (mail kept) with other smtp-sink options;
        the ports change, so re-read them (attributes are updated)."""
        self.smtp_args = list(smtp_args or [])
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        if not self.dir:
            return
        if os.environ.get("MH_KEEP"):
            sys.stderr.write("mh: harness kept in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, etype, evalue, tb):
        if etype is not None:
            self._dump_logs()
        self.close()
        return False

    def _dump_logs(self, lines=30):
        if not self.dir:
            return
        for name in ("dovecot.log", "smtp-sink.log"):
            p = os.path.join(self.dir, "log", name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    tail = f.read().splitlines()[-lines:]
                sys.stderr.write("---- %s (last %d lines)\n" % (p, len(tail)))
                for l in tail:
                    sys.stderr.write(l.decode("utf-8", "replace") + "\n")

    # ---- paths and tools ------------------------------------------------
    def path(self, *parts):
        """A path inside the harness directory (for configs, state, ...)."""
        return os.path.join(self.dir, *parts)

    def maildir(self, user):
        """The Dovecot Maildir of user (cur, new, tmp below it)."""
        return os.path.join(self.dir, "mail", user)

    def smtp_maildir(self, local):
        """Where the SMTP sink stores mail for recipient local@..."""
        return os.path.join(self.smtp_maildir_root, local)

    def inject(self, user, messages):
        """Put messages (bytes, or paths of files) into user's Maildir new/.
        Returns the paths written."""
        files, tmpfiles = [], []
        try:
            for m in messages:
                if isinstance(m, (bytes, bytearray)):
                    fd, p = tempfile.mkstemp(dir=self.dir, prefix="inject-")
                    with os.fdopen(fd, "wb") as f:
                        f.write(m)
                    tmpfiles.append(p)
                    files.append(p)
                else:
                    files.append(os.fspath(m))
            if not files:
                return []
            out = subprocess.run([os.path.join(HARNESS, "inject"), self.dir, user] + files,
                                 check=True, stdout=subprocess.PIPE, timeout=300).stdout
            return out.decode().split("\n")[:-1]
        finally:
            for p in tmpfiles:
                os.unlink(p)

    def inject_many(self, user, messages, seen=False):
        """inject() for many messages (bytes) at once, in this process:
        the same tmp/ and rename into DIR/mail/USER/new, the same owner,
        without a process per message.  seen: into cur/ with the Maildir
        flag S instead (\\Seen, as if a client had read them)."""
        md = os.path.join(self.dir, "mail", user)
        st = os.stat(md)
        host = socket.gethostname().replace("/", "_").replace(":", "_")
        for n, m in enumerate(messages, 1):
            name = "%d.M%dP%dQ%d.%s" % (time.time(), time.time_ns() % 10**9,
                                        os.getpid(), n, host)
            tmp = os.path.join(md, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(m)
            if os.getuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
            os.rename(tmp, os.path.join(md, "cur" if seen else "new", "%s,S=%d%s"
                                        % (name, len(m), ":2,S" if seen else "")))

    def doveadm(self, *args, check=True):
        """Runs doveadm with the bed's config; returns its stdout (str)."""
        p = subprocess.run([os.path.join(HARNESS, "doveadm"), self.dir] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError("doveadm %s: rc %d: %s" % (" ".join(args), p.returncode,
                                                          p.stderr.decode("utf-8", "replace")))
        return p.stdout.decode("utf-8", "replace")

    def server_count(self, user, folder="INBOX"):
        """Messages in user's folder as Dovecot sees them (doveadm)."""
        out = self.doveadm("mailbox", "status", "-u", user, "messages", folder)
        return int(out.split("messages=")[1].split()[0])

    # ---- what was delivered -----------------------------------------------
    def messages(self, user):
        """Bytes of every message in user's Dovecot Maildir (new + cur),
        in file-name order (Maildir names start with the delivery time)."""
        return read_maildir(self.maildir(user))

    def count(self, user):
        """Number of message files in user's Dovecot Maildir (new + cur)."""
        return len(maildir_files(self.maildir(user)))

    def smtp_messages(self, local):
        """Bytes of every message the SMTP sink stored for local@...."""
        return read_maildir(self.smtp_maildir(local))

    def smtp_count(self, local):
        return len(maildir_files(self.smtp_maildir(local)))

    def smtp_envelopes(self):
        """The sink's envelope log: list of dicts (mail_from, rcpt_tos,
        size, tls, auth, files, reply)."""
        import json
        try:
            with open(self.smtp_envelope_log) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []


# ---- maildirs ---------------------------------------------------------------
def maildir_files(md):
    """Paths of the messages in Maildir md (new + cur), sorted by name."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(md, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in os.listdir(d) if not n.startswith(".")]
    return sorted(out, key=os.path.basename)


def read_maildir(md):
    out = []
    for p in maildir_files(md):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def wait_for(pred, timeout=10.0, step=0.05):
    """Polls pred() until it is true or timeout seconds passed; returns
    its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# ---- config and the binary ---------------------------------------------------
def write_config(path, text):
    """Writes text to path with mode 0600 (mailhaul refuses configs with
    secrets that others can read).  Returns path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def mailhaul_path():
    p = os.environ.get("MAILHAUL")
    if not p:
        raise RuntimeError("MAILHAUL is not set (run under meson test, or export "
                           "MAILHAUL=build/mailhaul)")
    return p


RSS_BOUND_MB = 16


def sanitized():
    """Whether $MAILHAUL is a -Db_sanitize build (meson sets it)."""
    return os.environ.get("MAILHAUL_SANITIZE", "none") not in ("", "none")


def run_maxrss(args, env=None, timeout=300):
    """Runs `$MAILHAUL args...` under /usr/bin/time from its own small
    process (a child of this big Python process would start its maxrss
    at Python's size): (returncode, stdout, stderr, maxrss in kB).  env
    replaces os.environ's values it names.  Under a sanitizer freed
    memory is not held in quarantine, so that peak RSS stays a measure
    of what the pass holds."""
    e = dict(os.environ, **(env or {}))
    if sanitized():
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M",
                        mailhaul_path()] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=e, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    kb = int(err.rsplit("maxrss_kb=", 1)[1].split()[0])
    return p.returncode, p.stdout.decode("utf-8", "replace"), err, kb


def check_rss(kb, cfg, env=None):
    """The bound on a pass's peak RSS (kb, from run_maxrss): under
    RSS_BOUND_MB.  A sanitizer's runtime and shadow memory cost tens of
    MB whatever the pass does, so under one the bound is on the growth
    over `mailhaul check` of the same config (same libraries, TLS and
    state set up, nothing fetched)."""
    print("maxrss %.1f MB" % (kb / 1024.0))
    if not sanitized():
        assert kb < RSS_BOUND_MB * 1024, "peak RSS %.1f MB" % (kb / 1024.0)
        return
    rc, _, err, base = run_maxrss(["-c", cfg, "check"], env=env)
    assert rc == 0, "check for the RSS baseline: rc %d\n%s" % (rc, err)
    print("maxrss of check %.1f MB" % (base / 1024.0))
    assert kb - base < RSS_BOUND_MB * 1024, \
        "peak RSS %.1f MB, %.1f MB over check" % (kb / 1024.0, (kb - base) / 1024.0)


def run_mailhaul(args, config=None, env=None, timeout=120, stdin=None):
    """Runs `$MAILHAUL [-c config] args...`; returns (rc, stdout, stderr)
    as str.  XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_CACHE_HOME and
    XDG_RUNTIME_DIR point into <dir of config>/xdg unless env sets them,
    so a test never touches the real home.  env adds to os.environ.
    A run that outlives timeout is killed and reported as rc -9."""
    cmd = [mailhaul_path()]
    if config is not None:
        cmd += ["-c", config]
    cmd += list(args)
    e = dict(os.environ)
    base = os.path.join(os.path.dirname(os.path.abspath(config)) if config
                        else tempfile.gettempdir(), "xdg")
    for k, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                   ("XDG_CACHE_HOME", "cache"), ("XDG_RUNTIME_DIR", "run")):
        if not (env and k in env):
            e[k] = os.path.join(base, sub)
            os.makedirs(e[k], mode=0o700, exist_ok=True)
    if env:
        e.update(env)
    try:
        p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as ex:
        return (-9, (ex.stdout or b"").decode("utf-8", "replace"),
                (ex.stderr or b"").decode("utf-8", "replace")
                + "\nmh: killed after %ss\n" % timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


# ---- byte-exact comparison ------------------------------------------------------
def crlf(raw):
    """What Dovecot serves for a stored message: every line end CRLF (a
    bare LF becomes CRLF, an existing CRLF stays), a final CRLF added when
    missing.  A lone CR is passed through."""
    out = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def strip_field(raw, name):
    """raw minus exactly one leading header field called name (with its
    continuation lines).  Raises ValueError if raw does not start with it."""
    key = name.encode() + b":"
    if raw[:len(key)].lower() != key.lower():
        raise ValueError("message does not start with %s: %r" % (name, raw[:60]))
    pos, n = 0, len(raw)
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            return b""
        pos = nl + 1
        if pos >= n or raw[pos:pos + 1] not in (b" ", b"\t"):
            return raw[pos:]


def strip_received(delivered):
    """delivered minus exactly one leading `Received:` header field (with
    its continuation lines) -- the one mailhaul prepends.  Raises
    ValueError if it does not start with one."""
    return strip_field(delivered, "Received")


def unwrap_lmtp(stored):
    """A message as Dovecot's LMTP stored it, minus what Dovecot added in
    front: Return-Path:, Delivered-To: and its own Received: field.
    Dovecot stores LF line ends (CRLF -> LF; a lone CR stays)."""
    for name in ("Return-Path", "Delivered-To"):
        try:
            stored = strip_field(stored, name)
        except ValueError:
            pass
    return strip_field(stored, "Received")


def expected(original, target="smtp"):
    """The bytes a delivery of original (as served by Dovecot's POP3/IMAP)
    must carry after the trace fields are removed: crlf(original) for the
    SMTP sink (byte-exact), the same with LF line ends for Dovecot LMTP."""
    want = crlf(original)
    if target == "lmtp":
        want = want.replace(b"\r\n", b"\n")
    return want


def _unwrap(delivered, received, target):
    if target == "lmtp":
        delivered = unwrap_lmtp(delivered)
    return strip_received(delivered) if received else delivered


def same_message(original, delivered, received=True, target="smtp"):
    """True when delivered is original as served by Dovecot (crlf()),
    preceded by one Received: header when received is true.  target
    "lmtp": delivered is a file of a Dovecot Maildir written by LMTP (see
    unwrap_lmtp(), expected())."""
    try:
        return _unwrap(delivered, received, target) == expected(original, target)
    except ValueError:
        return False


def explain_difference(original, delivered, received=True, target="smtp"):
    """A one-line description of the first difference (for assertion
    messages), or None when same_message() holds."""
    try:
        got = _unwrap(delivered, received, target)
    except ValueError as e:
        return str(e)
    want = expected(original, target)
    if got == want:
        return None
    k = 0
    m = min(len(got), len(want))
    while k < m and got[k] == want[k]:
        k += 1
    return ("differs at byte %d (want %d bytes, got %d): want %r, got %r"
            % (k, len(want), len(got), want[max(0, k - 20):k + 20],
               got[max(0, k - 20):k + 20]))


def header(raw, name):
    """The first value of header field name in raw (unfolded, str), or None."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    key = name.lower().encode() + b":"
    for i, l in enumerate(lines):
        if l.lower().startswith(key):
            v = l[len(key):]
            for c in lines[i + 1:]:
                if c[:1] in (b" ", b"\t"):
                    v += b" " + c.strip()
                else:
                    break
            return v.strip().decode("utf-8", "replace")
    return None


SKIP = 77  # meson's exit status for a skipped test


class Skip(Exception):
    """Raised by a case that cannot run here (says why); counted as a skip."""


def run_cases(namespace, argv):
    """The main of a test file whose cases are functions case_NAME: runs
    the cases named in argv[1:] (all when none), prints one line each and
    "N passed, N failed, N skipped"; returns the exit status.  One case
    named alone exits SKIP when it raised Skip, so meson counts it as
    skipped, not passed."""
    import time
    import traceback
    cases = {k[5:]: v for k, v in sorted(namespace.items()) if k.startswith("case_")}
    names = argv[1:] or list(cases)
    passed = failed = skipped = 0
    for name in names:
        t0 = time.monotonic()
        try:
            cases[name]()
        except Skip as e:
            print("SKIP %s: %s" % (name, e))
            skipped += 1
        except Exception as e:
            traceback.print_exc()
            print("FAIL %s (%.1f s): %s" % (name, time.monotonic() - t0, e))
            failed += 1
        else:
            print("ok   %s (%.1f s)" % (name, time.monotonic() - t0))
            passed += 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if failed:
        return 1
    return SKIP if skipped and not passed else 0
