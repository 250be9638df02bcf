#!/usr/bin/python3
"""tests/install: scripts/deb builds the Debian package from a copy of the
tree (dpkg-buildpackage -b -us -uc); the package holds the binary, the
units (ExecStart /usr/bin/mailhaul, enabled for nobody), man pages,
completions and examples, depends on libcurl4 (the OpenSSL build), and
lintian finds no error in it.  Skipped (77) without debhelper or git."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ["MH_SOURCE_ROOT"]

WANT = [
    "usr/bin/mailhaul",
    "usr/lib/systemd/user/mailhaul.service",
    "usr/lib/systemd/user/mailhaul-sync.service",
    "usr/lib/systemd/user/mailhaul-sync.timer",
    "usr/share/man/man1/mailhaul.1.gz",
    "usr/share/man/man5/mailhaul.ini.5.gz",
    "usr/share/bash-completion/completions/mailhaul",
    "usr/share/zsh/vendor-completions/_mailhaul",
    "usr/share/fish/vendor_completions.d/mailhaul.fish",
    "usr/share/doc/mailhaul/copyright",
]


def out(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                          **kw).stdout.decode()


def check_not_enabled(ctl):
    """dh_installsystemduser --no-enable: the postinst enables a unit again
    only for a user who had it enabled ('debian-installed' guard); the
    default snippet enables it for every user on first install."""
    path = os.path.join(ctl, "postinst")
    if not os.path.exists(path):
        return
    with open(path) as f:
        text = f.read()
    for unit in ("mailhaul.service", "mailhaul-sync.timer"):
        if "enable '%s'" % unit in text:
            assert "--user debian-installed '%s'" % unit in text, unit


def main():
    if shutil.which("dpkg-buildpackage") is None or \
            shutil.which("dh") is None or shutil.which("git") is None or \
            not os.path.exists(os.path.join(SRC, ".git")):
        print("skip: needs dpkg-buildpackage, debhelper and a git tree")
        return 77
    tmp = tempfile.mkdtemp(prefix="mh-deb-")
    try:
        p = subprocess.run([os.path.join(SRC, "scripts", "deb"),
                            "--no-lintian", tmp], cwd=SRC,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=900)
        log = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0, log[-4000:]
        assert "warning:" not in log, [l for l in log.splitlines()
                                       if "warning:" in l]
        debs = [f for f in os.listdir(tmp) if f.startswith("mailhaul_")
                and f.endswith(".deb")]
        assert len(debs) == 1, os.listdir(tmp)
        deb = os.path.join(tmp, debs[0])
        x = os.path.join(tmp, "x")
        out(["dpkg-deb", "-x", deb, x])
        for f in WANT:
            assert os.path.isfile(os.path.join(x, f)), f
        ex = os.listdir(os.path.join(x, "usr/share/doc/mailhaul/examples"))
        assert len([e for e in ex if e.endswith(".ini")]) >= 7, ex
        for unit, cmd in (("mailhaul.service", "run"),
                          ("mailhaul-sync.service", "sync")):
            with open(os.path.join(x, "usr/lib/systemd/user", unit)) as f:
                assert "\nExecStart=/usr/bin/mailhaul %s\n" % cmd in f.read()
        depends = out(["dpkg-deb", "-f", deb, "Depends"])
        assert "libcurl4 " in depends or depends.rstrip().endswith(
            "libcurl4"), depends
        assert "libcurl3-gnutls" not in depends, depends
        ctl = os.path.join(tmp, "ctl")
        out(["dpkg-deb", "-e", deb, ctl])
        check_not_enabled(ctl)
        print("package: %d files checked, Depends: %s" % (len(WANT),
                                                           depends.strip()))
        if shutil.which("lintian") is None:
            print("lintian not installed: not run")
            return 0
        p = subprocess.run(["lintian", "--pedantic", "-I", "-E", deb],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
        text = p.stdout.decode("utf-8", "replace")
        errors = [l for l in text.splitlines() if l.startswith("E:")]
        assert p.returncode == 0 and not errors, text
        print("lintian: no error (%d other lines)" % len(
            [l for l in text.splitlines() if l[:2] in ("W:", "I:", "P:")]))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
