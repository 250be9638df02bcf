"""servers.py -- the interop suite's mail servers, each run from a private
config on 127.0.0.1 on free ports, from packages unpacked (never
installed) by tests/interop/fetch-servers into CACHE/root.

    import mh, servers
    with mh.Harness() as h:                      # Dovecot LMTP, CA, cert
        with servers.Cyrus(h) as cy:             # or Courier, Popa3d
            n = cy.seed(messages)                # what the server took
            served = cy.served("imap")           # bytes as it serves them
            cy.account("imap")                   # config lines of a source
        with servers.Postfix(h) as pf:           # or Exim, OpenSMTPD, ...
            pf.target()                          # config lines of a target
            pf.delivered()                       # bytes of what it stored

Every server lives in a directory below the harness's (so the harness's
CA verifies its certificate, and removing the harness removes it).  As
root, servers run as the user `mail` (the harness's mail user) where they
refuse root; as a normal user, as that user.  Servers log to files in
their directory where they can; Cyrus only logs to syslog (there is no
/dev/log here), so its errors show in the test's transcript instead.

unwrap(target, stored) strips what a target added in front of a stored
message (its trace fields) and gives back what mailhaul sent, with the
target's line ends; see the per-target notes there.
"""
import imaplib
import os
import poplib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback

import mh

EX_SKIP = 77
poplib._MAXLINE = 1 << 20     # the corpus has 100,000-byte lines


def cache_dir():
    c = os.environ.get("MH_INTEROP_CACHE")
    if c:
        return c
    if os.geteuid() == 0:
        return "/var/cache/mailhaul-interop"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "mailhaul-interop")


ROOT = os.path.join(cache_dir(), "root")
LIBDIR = os.path.join(ROOT, "usr/lib/x86_64-linux-gnu")


class Unavailable(Exception):
    """The server's packages are not unpacked (run fetch-servers)."""


def need(group):
    if not os.path.exists(os.path.join(cache_dir(), group + ".done")):
        raise Unavailable("%s is not unpacked in %s: run tests/interop/"
                          "fetch-servers %s" % (group, cache_dir(), group))


def run_test(fn):
    """Runs fn() as a test script's body: exit status 0 (prints PASS), 1
    with the traceback, EX_SKIP when a server is Unavailable."""
    try:
        fn()
    except Unavailable as e:
        print("skip: %s" % e)
        return EX_SKIP
    except Exception:
        traceback.print_exc()
        return 1
    print("PASS")
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15.0):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return False
    if not mh.wait_for(up, timeout, 0.1):
        raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


def run_user():
    """(name, uid, gid) the servers run as."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam("mail")
    else:
        pw = pwd.getpwuid(os.getuid())
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def as_user(cmd):
    """cmd run as run_user() (setpriv when root)."""
    if os.geteuid() != 0:
        return cmd
    _, uid, gid = run_user()
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
            "--clear-groups"] + cmd


def env():
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = LIBDIR
    return e


def chown_tree(path):
    if os.geteuid() != 0:
        return
    _, uid, gid = run_user()
    for d, dirs, files in os.walk(path):
        os.chown(d, uid, gid)
        for f in files:
            os.chown(os.path.join(d, f), uid, gid, follow_symlinks=False)


def crlf_exact(raw):
    """raw with every line end CRLF (bare LF -> CRLF), ending in CRLF."""
    return mh.crlf(raw)


class Server:
    """A server in a directory below the harness h.  Subclasses set
    group (fetch-servers group), name, and implement _start()."""
    group = None
    name = None
    user = "alice"

    def __init__(self, h):
        self.h = h
        self.password = h.password
        self.dir = h.path(self.name)
        self.procs = []

    def __enter__(self):
        if self.group:
            need(self.group)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.stop()
        return False

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def copy_cert(self):
        """The harness's server certificate and key, readable by the
        server's user: (cert, key)."""
        cert, key = self.path("server.pem"), self.path("server.key")
        shutil.copy(self.h.path("server.pem"), cert)
        shutil.copy(self.h.path("server.key"), key)
        os.chmod(key, 0o600)
        return cert, key

    def spawn(self, cmd, log, user=True):
        f = open(self.path(log), "ab")
        p = subprocess.Popen(as_user(cmd) if user else cmd, env=env(),
                             stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, cwd=self.dir,
                             start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def etc(self, *p):
        """A path in the /etc overlay's upper directory (DIR/etc-up)."""
        return self.path("etc-up", *p)

    def ns_users(self, passwd=(), group=()):
        """Adds lines to the overlay's /etc/passwd and /etc/group."""
        os.makedirs(self.etc(), exist_ok=True)
        for f, lines in (("passwd", passwd), ("group", group)):
            if not os.path.exists(self.etc(f)):
                shutil.copy(os.path.join("/etc", f), self.etc(f))
            with open(self.etc(f), "a") as out:
                out.writelines(l + "\n" for l in lines)

    def ns_spawn(self, body):
        """Runs NS_PRELUDE + body (sh) in private namespaces, as root."""
        if os.geteuid() != 0:
            raise Unavailable("%s needs root (a private mount namespace "
                              "with overlays)" % self.name)
        probe = self.path("ns-probe")
        os.makedirs(probe, exist_ok=True)
        p = subprocess.run(["unshare", "-m", "--propagation", "private",
                            "mount", "-t", "overlay", "overlay", "-o",
                            "lowerdir=/etc:/usr", probe],
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise Unavailable("%s needs a private mount namespace with an "
                              "overlay, which this machine refuses: %s"
                              % (self.name, p.stderr.decode().strip()))
        os.makedirs(self.etc(), exist_ok=True)
        os.makedirs(self.path("etc-work"), exist_ok=True)
        run = self.path("run.sh")
        with open(run, "w") as f:
            f.write(NS_PRELUDE + body)
        self.spawn(["unshare", "-m", "-p", "--fork", "--kill-child",
                    "--propagation", "private", "/bin/sh", run, cache_dir(),
                    self.dir], "run.log", user=False)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs = []

    def dump_logs(self, lines=30):
        for d, _, files in os.walk(self.dir):
            for n in files:
                if n.endswith(".log"):
                    with open(os.path.join(d, n), "rb") as f:
                        tail = f.read().splitlines()[-lines:]
                    sys.stderr.write("---- %s\n" % os.path.join(d, n))
                    for l in tail:
                        sys.stderr.write(l.decode("utf-8", "replace") + "\n")

    # ---- what a source serves (stdlib clients) ---------------------------
    def served(self, proto):
        """The bytes of every message as the server serves it over proto
        (pop3 RETR, dot-unstuffed; imap BODY.PEEK[]), in UID order."""
        if proto == "pop3":
            p = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=30)
            try:
                try:
                    capa = p.capa()
                except poplib.error_proto:      # popa3d has no CAPA
                    capa = {}
                if "UTF8" in capa:          # RFC 6856, as mailhaul does
                    p._shortcmd("UTF8")
                p.user(self.user)
                p.pass_(self.password)
                n = len(p.list()[1])
                out = []
                for i in range(1, n + 1):
                    _, lines, _ = p.retr(i)
                    out.append(b"".join(l + b"\r\n" for l in lines))
                return out
            finally:
                p.quit()
        m = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)
        try:
            m.login(self.user, self.password)
            m.select("INBOX", readonly=True)
            typ, data = m.uid("SEARCH", None, "ALL")
            out = []
            for uid in data[0].split():
                typ, d = m.uid("FETCH", uid, "(BODY.PEEK[])")
                out.append(next(x[1] for x in d if isinstance(x, tuple)))
            return out
        finally:
            m.logout()

    def count(self, proto):
        """How many messages the server serves.  Right after a session
        that deleted, a POP3 server may still be removing the files when
        the next one lists them (Courier answers RETR "-ERR Can't open
        the message file - it's gone!", seen once with the cells run two
        at a time): asked again, for up to 5 s."""
        for _ in range(50):
            try:
                return len(self.served(proto))
            except poplib.error_proto as e:
                last = e
                time.sleep(0.1)
        raise last

    def account(self, proto, tls="starttls"):
        """The config lines of a mailhaul account on this server."""
        port = self.ports[proto + ("s" if tls == "implicit" else "")]
        return ("protocol = %s\nhost = localhost\nport = %d\ntls = %s\n"
                "ca_file = %s\nuser = %s\npassword = %s\n"
                % (proto, port, tls, self.h.ca, self.user, self.password))

    def imap_append(self, messages):
        """Seeds by IMAP APPEND as the user; returns how many the server
        took (it may refuse some, e.g. Cyrus a NUL byte)."""
        m = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)
        took = 0
        try:
            m.login(self.user, self.password)
            for raw in messages:
                typ, _ = m.append("INBOX", None, None, crlf_exact(raw))
                took += typ == "OK"
        finally:
            m.logout()
        return took


# ---- Cyrus IMAP 3.6 ----------------------------------------------------------
class Cyrus(Server):
    """Cyrus IMAP/POP3 (STARTTLS and implicit TLS) and LMTP (TCP,
    preauthenticated: lmtpd -a) from one master.  Mailboxes are created
    at login or first delivery (autocreate_quota: 0); users are in a
    private sasldb.  duplicatesuppression stays at its default (on)."""
    group = "cyrus"
    name = "cyrus"

    def _start(self):
        bindir = os.path.join(ROOT, "usr/lib/cyrus/bin")
        self.ports = {k: free_port() for k in
                      ("imap", "imaps", "pop3", "pop3s", "lmtp")}
        for d in ("conf", "spool", "sieve", "sock"):
            os.makedirs(self.path(d), exist_ok=True)
        cert, key = self.copy_cert()
        conf = self.path("imapd.conf")
        uname = run_user()[0]
        with open(conf, "w") as f:
            f.write("""configdirectory: %(d)s/conf
partition-default: %(d)s/spool
sievedir: %(d)s/sieve
servername: localhost
cyrus_user: %(user)s
admins: cyrusadm
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: %(d)s/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
tls_server_cert: %(cert)s
tls_server_key: %(key)s
lmtpsocket: %(d)s/sock/lmtp
idlesocket: %(d)s/sock/idle
notifysocket: %(d)s/sock/notify
unixhierarchysep: yes
autocreate_quota: 0
autocreate_post: yes
syslog_prefix: mh-cyrus
""" % {"d": self.dir, "user": uname, "cert": cert, "key": key})
        svc = lambda n, a: '"%s %s -C %s"' % (os.path.join(bindir, n), a,
                                              conf)
        with open(self.path("cyrus.conf"), "w") as f:
            f.write("START {\n  recover cmd=%s\n}\nSERVICES {\n"
                    % svc("ctl_cyrusdb", "-r"))
            for name, cmd, port in (
                    ("imap", svc("imapd", ""), self.ports["imap"]),
                    ("imaps", svc("imapd", "-s"), self.ports["imaps"]),
                    ("pop3", svc("pop3d", ""), self.ports["pop3"]),
                    ("pop3s", svc("pop3d", "-s"), self.ports["pop3s"]),
                    ("lmtp", svc("lmtpd", "-a"), self.ports["lmtp"])):
                f.write('  %s cmd=%s listen="127.0.0.1:%d" prefork=0\n'
                        % (name, cmd, port))
            f.write("}\nEVENTS {\n}\nDAEMON {\n}\n")
        p = subprocess.run([os.path.join(ROOT, "usr/sbin/saslpasswd2"),
                            "-p", "-c", "-f", self.path("sasldb2"),
                            "-u", "localhost", self.user],
                           input=self.password.encode(), env=env(),
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("saslpasswd2: %r" % p.stderr)
        chown_tree(self.dir)
        self.spawn([os.path.join(bindir, "master"), "-C", conf, "-M",
                    self.path("cyrus.conf"), "-p", self.path("master.pid"),
                    "-D"], "master.log")
        for port in self.ports.values():
            wait_port(port)

    def seed(self, messages):
        return self.imap_append(messages)

    def target(self, recipient="alice@localhost"):
        return ("type = lmtp\nhost = localhost\nport = %d\nrecipient = %s\n"
                % (self.ports["lmtp"], recipient))

    def delivered(self):
        return self.served("imap")


# ---- Dovecot (the harness's) ---------------------------------------------------
class Dovecot(Server):
    """The harness's own Dovecot as a source, user alice, for the matrix's
    reference row.  Seeded into the Maildir (tests/harness/inject)."""
    group = None
    name = "dovecot"

    def __enter__(self):
        self.ports = {"pop3": self.h.pop3_port, "pop3s": self.h.pop3s_port,
                      "imap": self.h.imap_port, "imaps": self.h.imaps_port}
        return self

    def __exit__(self, *exc):
        return False

    def seed(self, messages):
        self.h.inject(self.user, messages)
        return len(messages)


# ---- Courier IMAP 5 / Courier POP3 ---------------------------------------------
NS_PRELUDE = r"""#!/bin/sh
# Runs inside private mount and pid namespaces (unshare, root only): the
# servers' paths are compiled in (/usr/lib/..., /etc/...), so the
# unpacked /usr is laid over the system's, DIR/etc-up over /etc (an
# overlay: our configs, and the servers' users added to passwd/group)
# and a tmpfs over /run -- for these processes only.  Killing the first
# process of the pid namespace kills every server in it.
set -e
C=$1 D=$2
mount -t overlay overlay -o lowerdir=$C/root/usr:/usr /usr
mount -t overlay overlay -o lowerdir=/etc,upperdir=$D/etc-up,workdir=$D/etc-work /etc
mount -t tmpfs tmpfs /run
"""

COURIER_RUN = r"""
mkdir -p /run/courier/authdaemon
makeuserdb
(set -a; . /etc/courier/authdaemonrc
 exec /usr/lib/courier/courier-authlib/authdaemond) >>$D/authdaemond.log 2>&1 &
(set -a; . /etc/courier/imapd; . /etc/courier/imapd-ssl
 IMAP_STARTTLS=$IMAPDSTARTTLS
 exec /usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=20 -nodnslookup \
     -noidentlookup -stderr=$D/imapd.log $PORT \
     /usr/lib/courier/courier/imaplogin /usr/bin/imapd Maildir) &
(set -a; . /etc/courier/pop3d; . /etc/courier/pop3d-ssl
 exec /usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=20 -nodnslookup \
     -noidentlookup -stderr=$D/pop3d.log $PORT \
     /usr/lib/courier/courier/courierpop3login \
     /usr/lib/courier/courier/courierpop3d Maildir) &
wait
"""


class Courier(Server):
    """Courier IMAP and Courier POP3 (STARTTLS) on a Maildir, users in a
    userdb, authdaemond: all in private namespaces (see NS_PRELUDE).
    Seeded by writing the files into Maildir/new as they are (LF or
    CRLF): Courier serves what is on disk with LF turned into CRLF, so a
    CRLF file is served with CR CR LF."""
    group = "courier"
    name = "courier"

    def _start(self):
        self.ports = {"imap": free_port(), "pop3": free_port()}
        etc = self.etc("courier")
        os.makedirs(etc, exist_ok=True)
        for f in ("imapd", "imapd-ssl", "pop3d", "pop3d-ssl",
                  "authdaemonrc"):
            shutil.copy(os.path.join(ROOT, "etc/courier", f), etc)
        cert, key = self.copy_cert()
        pem = self.path("etc-up", "courier", "server.pem")
        with open(pem, "wb") as out:
            for f in (key, cert):
                with open(f, "rb") as i:
                    out.write(i.read())
        os.chmod(pem, 0o600)
        os.chown(pem, *run_user()[1:])      # couriertls runs as courier
        tls = ("TLS_CERTFILE=%s\nTLS_DHPARAMS=/usr/share/dovecot/dh.pem\n"
               "TLS_CACHEFILE=\n" % pem)
        with open(os.path.join(etc, "imapd"), "a") as f:
            # no dot-locks: Debian's default IMAP_USELOCKS=1 waits for
            # the lock with FAM, and with no gam_server here each APPEND
            # and SELECT then took over a second (a login still does:
            # imapd tries FAM as it starts)
            f.write("\nPORT=%d\nIMAP_USELOCKS=0\n" % self.ports["imap"])
        with open(os.path.join(etc, "pop3d"), "a") as f:
            f.write("\nPORT=%d\n" % self.ports["pop3"])
        for n in ("imapd-ssl", "pop3d-ssl"):
            with open(os.path.join(etc, n), "a") as f:
                f.write("\n" + tls)
        # couriertls runs as the user courier: the mail user's ids
        _, uid, gid = run_user()
        self.ns_users(["courier:x:%d:%d::/nonexistent:/bin/false"
                       % (uid, gid)], ["courier:x:%d:" % gid])
        with open(os.path.join(etc, "authdaemonrc"), "a") as f:
            f.write('\nauthmodulelist="authuserdb"\ndaemons=2\n')
        _, uid, gid = run_user()
        home = self.path("home", self.user)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(home, "Maildir", sub), exist_ok=True)
        chown_tree(self.path("home"))
        pw = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                            input=self.password.encode(), check=True,
                            capture_output=True).stdout.decode().strip()
        udb = os.path.join(etc, "userdb")
        with open(udb, "w") as f:
            f.write("%s\tuid=%d|gid=%d|home=%s|mail=%s/Maildir|"
                    "systempw=%s\n" % (self.user, uid, gid, home, home, pw))
        os.chmod(udb, 0o600)
        self.ns_spawn(COURIER_RUN)
        for port in self.ports.values():
            wait_port(port)
        self.seq = 0

    def seed(self, messages):
        md = self.path("home", self.user, "Maildir")
        for raw in messages:
            self.seq += 1
            name = "%d.M%dP%d.interop" % (1700000000 + self.seq, self.seq,
                                           os.getpid())
            tmp = os.path.join(md, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(raw)
            os.chown(tmp, *run_user()[1:])
            os.rename(tmp, os.path.join(md, "new", name))
        # Courier keeps a Maildir's UIDVALIDITY (courierimapuiddb) only
        # once a session opened it read-write: until then every EXAMINE
        # sees a new one.  A mail client would have done this.
        m = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)
        try:
            m.login(self.user, self.password)
            m.select("INBOX")
        finally:
            m.logout()
        return len(messages)


# ---- popa3d 1.0 ------------------------------------------------------------------
POPA3D_RUN = r"""
mount -t overlay overlay -o lowerdir=/var,upperdir=$D/var-up,workdir=$D/var-work /var
mkdir -p /var/lib/popa3d /var/mail
mount --bind $D/mail /var/mail
exec python3 $D/inetd.py $(cat $D/port) /usr/sbin/popa3d
"""

# A minimal inetd (no systemd or inetd package needed): each connection
# becomes the stdin and stdout of a new server process.
INETD = r"""
import os, signal, socket, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    if os.fork() == 0:
        os.dup2(c.fileno(), 0)
        os.dup2(c.fileno(), 1)
        os.execv(sys.argv[2], sys.argv[2:])
    c.close()
"""


class Popa3d(Server):
    """popa3d (Openwall) over POP3, no TLS (it has none), in inetd mode,
    in private namespaces (NS_PRELUDE):
    users from the overlay's passwd/shadow through PAM (pam_unix), the
    mailbox /var/mail/alice (an mbox) bind-mounted from DIR/mail.  It has
    no UIDL of its own choosing: its UIDL is a digest of the message.
    Its inetd is INETD, a few lines of Python."""
    group = "popa3d"
    name = "popa3d"

    def _start(self):
        self.ports = {"pop3": free_port()}
        _, uid, gid = run_user()
        self.ns_users(["%s:x:%d:%d::/nonexistent:/bin/false"
                       % (self.user, uid, gid),
                       "popa3d:x:%d:%d::/nonexistent:/bin/false"
                       % (MTA_UID + 5, MTA_UID + 5)],
                      ["popa3d:x:%d:" % (MTA_UID + 5)])
        pw = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                            input=self.password.encode(), check=True,
                            capture_output=True).stdout.decode().strip()
        if not os.path.exists(self.etc("shadow")):
            shutil.copy("/etc/shadow", self.etc("shadow"))
        with open(self.etc("shadow"), "a") as f:
            f.write("%s:%s:19000:0:99999:7:::\n" % (self.user, pw))
        os.makedirs(self.etc("pam.d"), exist_ok=True)
        with open(self.etc("pam.d", "popa3d"), "w") as f:
            f.write("auth required pam_unix.so\n"
                    "account required pam_unix.so\n")
        for d in ("var-up", "var-work", "mail"):
            os.makedirs(self.path(d), exist_ok=True)
        os.chmod(self.path("mail"), 0o1777)
        with open(self.path("port"), "w") as f:
            f.write("%d\n" % self.ports["pop3"])
        with open(self.path("inetd.py"), "w") as f:
            f.write(INETD)
        self.mbox = self.path("mail", self.user)
        open(self.mbox, "wb").close()
        os.chown(self.mbox, uid, gid)
        os.chmod(self.mbox, 0o600)
        self.ns_spawn(POPA3D_RUN)
        wait_port(self.ports["pop3"])

    def seed(self, messages):
        """Appends to the mbox: a From_ line, the message with its body's
        "From " lines quoted (">From "), a line end added when missing,
        an empty line."""
        with open(self.mbox, "ab") as f:
            for raw in messages:
                raw = re.sub(rb"(?m)^(>*From )", rb">\1", raw)
                if not raw.endswith(b"\n"):
                    raw += b"\n"
                f.write(b"From alice@localhost Mon Jan  5 10:00:00 2026\n"
                        + raw + b"\n")
        return len(messages)

    def account(self, proto, tls="starttls"):
        """popa3d has no TLS: the account is tls = none."""
        return ("protocol = pop3\nhost = localhost\nport = %d\ntls = none\n"
                "allow_plaintext_auth = yes\nuser = %s\npassword = %s\n"
                % (self.ports["pop3"], self.user, self.password))


# ---- targets ---------------------------------------------------------------
class Target:
    """A delivery target: target() gives mailhaul's config lines,
    delivered() the stored messages, unwrap() strips what the target and
    mailhaul put in front of one (their trace fields), expect() turns
    what the source served into what must remain after unwrap().
    chunking: the server offers CHUNKING (RFC 3030), so mailhaul must
    send BDAT (the cell checks it)."""
    chunking = False

    def unwrap(self, stored):
        for name in self.added:
            try:
                stored = mh.strip_field(stored, name)
            except ValueError:
                pass
        try:
            return mh.strip_received(stored)      # mailhaul's
        except ValueError:
            return stored

    def expect(self, served):
        return wire(served)


def wire(raw):
    """What mailhaul sends over SMTP/LMTP for a served message: every line
    end CRLF (a run of CRs before LF is one line end: CR CR LF comes from
    servers that serve CRLF-stored files), CRLF added at the end when
    missing; a CR inside a line stays."""
    raw = re.sub(rb"\r+\n", b"\r\n", raw.replace(b"\r\n", b"\n")
                 .replace(b"\n", b"\r\n"))
    raw = re.sub(rb"\r+\Z", b"", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


class DovecotLmtp(Target):
    """The harness's Dovecot LMTP over TCP, to bob; Dovecot stores LF
    line ends (a lone CR stays) and adds Return-Path, Delivered-To and
    its own Received in front."""
    added = ("Return-Path", "Delivered-To", "Received")
    chunking = True     # Dovecot 2.3's LMTP offers CHUNKING

    def __init__(self, h):
        self.h = h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def target(self):
        return ("type = lmtp\nhost = localhost\nport = %d\n"
                "recipient = bob@localhost\n" % self.h.lmtp_port)

    def delivered(self):
        return self.h.messages("bob")

    def expect(self, served):
        return wire(served).replace(b"\r\n", b"\n")


# ---- MTAs as SMTP targets -------------------------------------------------------
MTA_UID = 64990         # the MTAs' own users in the overlay's passwd: ids
                        # no other user has (Postfix insists)
DOMAIN = "interop.test"


def maildir_files(md):
    return mh.read_maildir(md)


POSTFIX_RUN = r"""
exec /usr/lib/postfix/sbin/master -d
"""


class Mta(Target, Server):
    """An MTA on 127.0.0.1:PORT offering STARTTLS, storing bob@interop.test's
    mail in DIR/vmail/bob (a Maildir)."""

    def target(self):
        return ("type = smtp\nhost = localhost\nport = %d\ntls = starttls\n"
                "ca_file = %s\nrecipient = bob@%s\n"
                % (self.ports["smtp"], self.h.ca, DOMAIN))

    def delivered(self):
        return maildir_files(self.path("vmail", "bob"))


class Postfix(Mta):
    """Postfix 3.7 on 127.0.0.1:PORT (STARTTLS offered), delivering mail
    for bob@interop.test with virtual(8) into DIR/vmail/bob/ (Maildir,
    LF line ends).  No header rewriting for our clients
    (local_header_rewrite_clients empty: no Message-ID or Date added).
    Runs in private namespaces (NS_PRELUDE) with its users postfix and
    postdrop in the overlay's passwd."""
    group = "postfix"
    name = "postfix"
    added = ("Return-Path", "X-Original-To", "Delivered-To", "Received")
    chunking = True     # Postfix >= 3.4 offers CHUNKING
    extra_main = ""     # lines added to main.cf (test_etrn.py)

    def _start(self):
        self.ports = {"smtp": free_port()}
        cert, key = self.copy_cert()
        self.ns_users(["postfix:x:%d:%d::/nonexistent:/bin/false"
                       % (MTA_UID, MTA_UID)],
                      ["postfix:x:%d:" % MTA_UID,
                       "postdrop:x:%d:" % (MTA_UID + 1)])
        etc = self.etc("postfix")
        os.makedirs(etc, exist_ok=True)
        open(os.path.join(etc, "dynamicmaps.cf"), "w").close()
        _, uid, gid = run_user()
        spool = self.path("spool")
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
queue_directory = %(d)s/spool
data_directory = %(d)s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = localhost
mydomain = localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = %(dom)s
virtual_mailbox_base = %(d)s/vmail
virtual_mailbox_maps = inline:{ bob@%(dom)s=bob/ }
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(gid)d
virtual_mailbox_limit = 0
virtual_minimum_uid = 1
alias_maps =
alias_database =
message_size_limit = 104857600
local_header_rewrite_clients =
smtpd_tls_cert_file = %(cert)s
smtpd_tls_key_file = %(key)s
smtpd_tls_security_level = may
maillog_file = /dev/stdout
biff = no
""" % {"d": self.dir, "dom": DOMAIN, "uid": uid, "gid": gid,
               "cert": cert, "key": key})
            f.write(self.extra_main)
        services = [
            ("127.0.0.1:%d" % self.ports["smtp"], "inet", "n", "-",
             "smtpd"),
            ("pickup", "unix", "n", "1", "pickup"),
            ("cleanup", "unix", "n", "0", "cleanup"),
            ("qmgr", "unix", "n", "1", "qmgr"),
            ("tlsmgr", "unix", "-", "1", "tlsmgr"),
            ("rewrite", "unix", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "0", "bounce"),
            ("defer", "unix", "-", "0", "bounce"),
            ("trace", "unix", "-", "0", "bounce"),
            ("verify", "unix", "-", "1", "verify"),
            ("flush", "unix", "n", "0", "flush"),
            ("proxymap", "unix", "-", "-", "proxymap"),
            ("smtp", "unix", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "showq"),
            ("error", "unix", "-", "-", "error"),
            ("retry", "unix", "-", "-", "error"),
            ("discard", "unix", "-", "-", "discard"),
            ("virtual", "unix", "-", "-", "virtual"),
            ("anvil", "unix", "-", "1", "anvil"),
            ("scache", "unix", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "1", "postlogd"),
        ]
        with open(os.path.join(etc, "master.cf"), "w") as f:
            for name, kind, priv, limit, cmd in services:
                unpriv = "n" if cmd in ("virtual",) else "-"
                f.write("%-20s %-10s %s %s n - %s %s\n"
                        % (name, kind, priv, unpriv, limit, cmd))
        for q in ("active", "bounce", "corrupt", "defer", "deferred",
                  "flush", "hold", "incoming", "private", "saved", "trace",
                  "maildrop", "public", "pid"):
            os.makedirs(os.path.join(spool, q), exist_ok=True)
            os.chmod(os.path.join(spool, q), 0o700)
            if q != "pid":
                os.chown(os.path.join(spool, q), MTA_UID, MTA_UID)
        os.chmod(os.path.join(spool, "maildrop"), 0o730)
        os.chmod(os.path.join(spool, "public"), 0o710)
        os.makedirs(self.path("data"), exist_ok=True)
        os.chown(self.path("data"), MTA_UID, MTA_UID)
        os.makedirs(self.path("vmail", "bob"), exist_ok=True)
        os.chown(self.path("vmail"), uid, gid)
        os.chown(self.path("vmail", "bob"), uid, gid)
        self.ns_spawn(POSTFIX_RUN)
        wait_port(self.ports["smtp"])

    def expect(self, served):
        """LF line ends; a CR inside a line becomes a space; cleanup(8)
        drops every Return-Path: field of the header (the one in front is
        the envelope sender it adds)."""
        raw = re.sub(rb"\r(?!\n)", b" ", wire(served))
        return drop_header_fields(raw, b"return-path").replace(b"\r\n",
                                                               b"\n")


def drop_header_fields(raw, name):
    """raw without the header fields called name (lowercase bytes), with
    their continuation lines; the body is untouched."""
    out, pos, skipping = [], 0, False
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end]
        if line in (b"\r\n", b"\n"):
            out.append(raw[pos:])
            break
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
        else:
            skipping = line.split(b":", 1)[0].strip().lower() == name
            if not skipping:
                out.append(line)
        pos = end
    return b"".join(out)


OPENSMTPD_RUN = r"""
mount -t overlay overlay -o lowerdir=/var,upperdir=$D/var-up,workdir=$D/var-work /var
mkdir -p /var/lib/opensmtpd/empty
exec /usr/sbin/smtpd -d -f $D/smtpd.conf
"""


class OpenSMTPD(Target, Server):
    """OpenSMTPD 6.8 on 127.0.0.1:PORT without TLS (with OpenSSL 3 its
    handshakes fail: see mailhaul.ini(5)), delivering bob@interop.test
    into DIR/vmail/bob (Maildir) as a virtual user.  Its spool and
    chroot live in an overlay of /var in its namespaces."""
    group = "opensmtpd"
    name = "opensmtpd"
    added = ("Return-Path", "Delivered-To", "Received")
    tls = False         # True: STARTTLS offered (and broken)

    def _start(self):
        self.ports = {"smtp": free_port()}
        _, uid, gid = run_user()
        self.ns_users(["opensmtpd:x:%d:%d::/nonexistent:/bin/false"
                       % (MTA_UID, MTA_UID),
                       "opensmtpq:x:%d:%d::/nonexistent:/bin/false"
                       % (MTA_UID + 1, MTA_UID + 1),
                       "vmail:x:%d:%d::%s:/bin/false"
                       % (uid, gid, self.path("vmail"))],
                      ["opensmtpd:x:%d:" % MTA_UID,
                       "opensmtpq:x:%d:" % (MTA_UID + 1)])
        for d in ("var-up", "var-work", "vmail/bob"):
            os.makedirs(self.path(d), exist_ok=True)
        os.chown(self.path("vmail"), uid, gid)
        os.chown(self.path("vmail", "bob"), uid, gid)
        cert, key = self.copy_cert()
        with open(self.path("smtpd.conf"), "w") as f:
            if self.tls:
                f.write('pki localhost cert "%s"\npki localhost key "%s"\n'
                        % (cert, key))
            f.write('table vusers { "bob@%(dom)s" = "vmail" }\n'
                    'listen on 127.0.0.1 port %(port)d hostname localhost'
                    '%(tls)s\n'
                    'action "deliver" maildir "%(d)s/vmail/bob" '
                    'virtual <vusers>\n'
                    'match from any for domain "%(dom)s" action "deliver"\n'
                    % {"dom": DOMAIN, "port": self.ports["smtp"],
                       "d": self.dir,
                       "tls": " tls pki localhost" if self.tls else ""})
        self.ns_spawn(OPENSMTPD_RUN)
        wait_port(self.ports["smtp"])

    def unwrap(self, stored):
        """Also drops the Message-ID and Date fields OpenSMTPD adds to a
        header without them (they name localhost / end in "(UTC)")."""
        head, sep, body = Target.unwrap(self, stored).partition(b"\n\n")
        head = re.sub(rb"\nMessage-ID: <[0-9a-f]+@localhost>(?=\n|$)", b"",
                      head)
        head = re.sub(rb"\nDate: [^\n]* \(UTC\)(?=\n|$)", b"", head)
        return head + sep + body

    def target(self):
        return ("type = smtp\nhost = localhost\nport = %d\ntls = none\n"
                "recipient = bob@%s\n" % (self.ports["smtp"], DOMAIN))

    def delivered(self):
        return maildir_files(self.path("vmail", "bob"))

    def expect(self, served):
        """LF line ends; a line with a NUL byte is cut there (the rest of
        that line is lost: an OpenSMTPD bug)."""
        return re.sub(rb"\x00[^\n]*", b"", wire(served).replace(b"\r\n",
                                                                b"\n"))


EXIM_RUN = r"""
mount -t overlay overlay -o lowerdir=/var,upperdir=$D/var-up,workdir=$D/var-work /var
mkdir -p /var/spool/exim4 /var/log/exim4
chown Debian-exim:Debian-exim /var/spool/exim4 /var/log/exim4
exec /usr/sbin/exim4 -bdf -q10s
"""


class Exim(Mta):
    """Exim 4.96 (exim4-daemon-light) on 127.0.0.1:PORT with STARTTLS,
    accepting mail for bob@interop.test only and delivering it into
    DIR/vmail/bob (Maildir, LF line ends) with appendfile.  Its config is
    /etc/exim4/exim4.conf of the /etc overlay, its spool in an overlay
    of /var, both in its own namespaces (NS_PRELUDE), as root (it
    changes to Debian-exim, a user of the overlay's passwd)."""
    chunking = True     # Exim >= 4.88 offers CHUNKING
    group = "exim"
    name = "exim"
    added = ("Return-path", "Envelope-to", "Delivery-date", "Received")

    def _start(self):
        self.ports = {"smtp": free_port()}
        _, uid, gid = run_user()
        self.ns_users(["Debian-exim:x:%d:%d::/nonexistent:/bin/false"
                       % (MTA_UID + 10, MTA_UID + 10)],
                      ["Debian-exim:x:%d:" % (MTA_UID + 10)])
        for d in ("var-up", "var-work", "vmail/bob", "log"):
            os.makedirs(self.path(d), exist_ok=True)
        os.chown(self.path("vmail"), uid, gid)
        os.chown(self.path("vmail", "bob"), uid, gid)
        os.chown(self.path("log"), MTA_UID + 10, MTA_UID + 10)
        cert, key = self.copy_cert()
        os.chown(key, MTA_UID + 10, MTA_UID + 10)
        os.makedirs(self.etc("exim4"), exist_ok=True)
        with open(self.etc("exim4", "exim4.conf"), "w") as f:
            f.write(EXIM_CONF % {"d": self.dir, "dom": DOMAIN, "uid": uid,
                                 "gid": gid, "cert": cert, "key": key,
                                 "port": self.ports["smtp"]})
        self.ns_spawn(EXIM_RUN)
        wait_port(self.ports["smtp"])

    def expect(self, served):
        """LF line ends; a CR inside a line becomes a line end; a
        message without a body (no empty line) gets the empty line after
        its header; the message's own Return-Path fields are dropped
        (appendfile's return_path_remove: the one in front is Exim's)."""
        raw = re.sub(rb"\r(?!\n)", b"\r\n", wire(served))
        if b"\r\n\r\n" not in raw and not raw.startswith(b"\r\n"):
            raw += b"\r\n"
        return drop_header_fields(raw, b"return-path").replace(b"\r\n",
                                                               b"\n")


EXIM_CONF = """primary_hostname = localhost
daemon_smtp_ports = %(port)d
local_interfaces = 127.0.0.1
domainlist local_domains = %(dom)s
log_file_path = %(d)s/log/%%s.log
tls_certificate = %(cert)s
tls_privatekey = %(key)s
tls_advertise_hosts = *
message_size_limit = 100M
smtp_etrn_command = /bin/true
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_etrn = acl_check_etrn
never_users = root
host_lookup =
rfc1413_hosts =

begin acl
acl_check_rcpt:
  accept domains = +local_domains
         local_parts = bob
  deny   message = relay not permitted

acl_check_etrn:
  accept

begin routers
bob:
  driver = accept
  domains = +local_domains
  local_parts = bob
  transport = vmail

begin transports
vmail:
  driver = appendfile
  directory = %(d)s/vmail/bob
  maildir_format
  user = %(uid)d
  group = %(gid)d
  mode = 0600

begin retry
*  *  F,1h,1m
"""


class CyrusLmtp(Target, Cyrus):
    """A second Cyrus (its own directory and ports) as an LMTP target,
    delivering to bob (mailbox created on delivery); what it stored is
    read back over IMAP.  lmtpd adds Return-Path, Received,
    X-Cyrus-Session-Id and X-Sieve in front, drops the message's own
    Return-Path fields, adds a Message-ID where there is none (and, by
    default, drops a second copy of the same Message-ID+Date:
    duplicatesuppression)."""
    name = "cyrus-lmtp"
    user = "bob"
    added = ("Return-Path", "Received", "X-Cyrus-Session-Id", "X-Sieve")

    def unwrap(self, stored):
        head, sep, body = Target.unwrap(self, stored).partition(b"\r\n\r\n")
        head = re.sub(rb"\r\nMessage-ID: <cmu-lmtpd-[^>]*@localhost>"
                      rb"(?=\r\n|$)", b"", head)
        return head + sep + body

    def target(self):
        return ("type = lmtp\nhost = localhost\nport = %d\n"
                "recipient = bob@localhost\n" % self.ports["lmtp"])

    def delivered(self):
        return self.served("imap")

    def expect(self, served):
        """A CR inside a line is dropped; 8-bit bytes in the header become
        'X' (munge8bit, on by default)."""
        return cyrus_munge8bit(drop_header_fields(
            re.sub(rb"\r(?!\n)", b"", wire(served)), b"return-path"))


def cyrus_munge8bit(raw):
    """What Cyrus stores, by LMTP or by APPEND: every 8-bit byte of the
    header as 'X'."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    return re.sub(rb"[\x80-\xff]", b"X", head) + sep + body


def append_wire(raw):
    """What mailhaul APPENDs for a served message (forward/imap_append.c):
    a LF not preceded by CR made CRLF, everything else as it is."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


class ImapTarget(Target):
    """A server's own IMAP as an IMAP APPEND target (type = imap): bob's
    INBOX over STARTTLS, read back over IMAP."""
    user = "bob"
    added = ()

    def target(self):
        return ("type = imap\nhost = localhost\nport = %d\n"
                "tls = starttls\nca_file = %s\nuser = %s\npassword = %s\n"
                "folder = INBOX\n" % (self.ports["imap"], self.h.ca,
                                      self.user, self.password))

    def delivered(self):
        return self.served("imap")


class CyrusImap(ImapTarget, Cyrus):
    """A second Cyrus as an IMAP target.  It does not offer UTF8=ACCEPT
    and turns every 8-bit byte of an APPENDed message's header into 'X',
    as its LMTP does (munge8bit); it refuses a message with a NUL byte."""
    name = "cyrus-append"

    def expect(self, served):
        return cyrus_munge8bit(append_wire(served))


class CourierImap(ImapTarget, Courier):
    """A second Courier as an IMAP target: it stores what it is sent with
    LF line ends (and serves them as CRLF), drops a CR inside a line and
    ends a message that does not end in a line end with one."""
    name = "courier-append"

    def expect(self, served):
        raw = re.sub(rb"\r(?!\n)", b"", append_wire(served))
        return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


SOURCES = {"dovecot": Dovecot, "cyrus": Cyrus, "courier": Courier,
           "popa3d": Popa3d}
TARGETS = {"dovecot-lmtp": DovecotLmtp, "postfix": Postfix,
           "cyrus-lmtp": CyrusLmtp, "opensmtpd": OpenSMTPD, "exim": Exim,
           "cyrus-append": CyrusImap, "courier-append": CourierImap}
