#!/usr/bin/python3
"""tests/install: `meson install --destdir` into a temporary directory and
check what a distribution gets: exactly the expected files, the systemd
user units naming the installed binary (and passing `systemd-analyze
--user verify`, man pages found), every example config accepted by the
installed `mailhaul config`, and completions that parse and complete.

Run by meson (suite install) with the directories in MH_* variables;
MH_KEEP=1 keeps the destdir."""
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

ENV = os.environ


def run(cmd, env=None, cwd=None, timeout=120):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, cwd=cwd, timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def under(dest, path):
    """path (absolute, as configured) inside the destdir."""
    return os.path.join(dest, path.lstrip("/"))


def expected_files():
    ex = sorted(f for f in os.listdir(ENV["MH_EXAMPLES_SRC"])
                if f.endswith(".ini"))
    assert len(ex) >= 7, ex
    files = [os.path.join(ENV["MH_BINDIR"], "mailhaul")]
    if ENV["MH_MAN_PAGES"] == "1":
        files += [os.path.join(ENV["MH_MANDIR"], "man1", "mailhaul.1"),
                  os.path.join(ENV["MH_MANDIR"], "man5", "mailhaul.ini.5")]
    files += [os.path.join(ENV["MH_UNITDIR"], u) for u in
              ("mailhaul.service", "mailhaul-sync.service",
               "mailhaul-sync.timer")]
    files += [os.path.join(ENV["MH_BASHDIR"], "mailhaul"),
              os.path.join(ENV["MH_ZSHDIR"], "_mailhaul"),
              os.path.join(ENV["MH_FISHDIR"], "mailhaul.fish")]
    files += [os.path.join(ENV["MH_EXAMPLESDIR"], f) for f in ex]
    return sorted(files)


def installed_files(dest):
    out = []
    for root, _, names in os.walk(dest):
        for n in names:
            out.append("/" + os.path.relpath(os.path.join(root, n), dest))
    return sorted(out)


def check_files(dest):
    want, got = expected_files(), installed_files(dest)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, \
        "missing: %s; unexpected: %s" % (missing, extra)
    assert os.access(under(dest, os.path.join(ENV["MH_BINDIR"], "mailhaul")),
                     os.X_OK)
    print("  %d files, as expected" % len(got))


def unit_text(dest, name):
    with open(under(dest, os.path.join(ENV["MH_UNITDIR"], name))) as f:
        return f.read()


def check_units(dest):
    binary = os.path.join(ENV["MH_BINDIR"], "mailhaul")
    for name, cmd in (("mailhaul.service", "run"),
                      ("mailhaul-sync.service", "sync")):
        text = unit_text(dest, name)
        lines = [l for l in text.splitlines() if l.startswith("ExecStart=")]
        assert lines == ["ExecStart=%s %s" % (binary, cmd)], (name, lines)
        assert "@" + "bindir@" not in text and "%h/.local/bin" not in text
        assert "Documentation=man:mailhaul(1)" in text, name
    timer = unit_text(dest, "mailhaul-sync.timer")
    assert "[Timer]" in timer and "WantedBy=timers.target" in timer
    print("  ExecStart names %s" % binary)


def check_verify(dest, tmp):
    """systemd-analyze --user verify on the installed units; the binary is
    looked for where the destdir has it and the man pages through MANPATH
    (a prefix whose man directory man(1) searches)."""
    sa = shutil.which("systemd-analyze")
    if sa is None or ENV["MH_MAN_PAGES"] != "1":
        print("  skip verify: no systemd-analyze or no man pages")
        return
    binary = os.path.join(ENV["MH_BINDIR"], "mailhaul")
    vdir = os.path.join(tmp, "verify")
    run_dir = os.path.join(tmp, "run")
    os.makedirs(vdir)
    os.makedirs(run_dir, mode=0o700)
    names = ("mailhaul.service", "mailhaul-sync.service",
             "mailhaul-sync.timer")
    for n in names:
        with open(os.path.join(vdir, n), "w") as f:
            f.write(unit_text(dest, n).replace(binary, under(dest, binary)))
    env = dict(ENV, HOME=tmp, XDG_RUNTIME_DIR=run_dir,
               MANPATH=under(dest, ENV["MH_MANDIR"]))
    rc, out, err = run([sa, "--user", "verify"] + list(names), env=env,
                       cwd=vdir)
    # verify exits 0 on unknown keys: any line naming a unit is a complaint
    bad = [l for l in (out + err).splitlines() if "mailhaul" in l]
    assert rc == 0 and not bad, out + err
    print("  systemd-analyze --user verify: clean (man pages found)")


def check_examples(dest, tmp):
    binary = under(dest, os.path.join(ENV["MH_BINDIR"], "mailhaul"))
    exdir = under(dest, ENV["MH_EXAMPLESDIR"])
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    env = dict(ENV, HOME=home, XDG_CONFIG_HOME=os.path.join(home, "c"),
               XDG_STATE_HOME=os.path.join(home, "s"))
    seen = set()
    for name in sorted(os.listdir(exdir)):
        path = os.path.join(exdir, name)
        with open(path) as f:
            text = f.read()
        rc, out, err = run([binary, "-c", path, "config"], env=env)
        assert rc == 0 and err == "", (name, rc, err)
        assert "[account:" in out and "[target:" in out, name
        for kind in ("maildir", "mda", "lmtp", "smtp"):
            if "type = %s" % kind in text:
                seen.add(kind)
        if "oauth2" in name:
            assert "[oauth2:" in text and "\noauth2 = " in text, name
            seen.add("oauth2")
        if "password_command" in text:
            seen.add("password_command")
        for p in ("google", "microsoft", "fastmail"):
            if "provider = %s" % p in text:
                seen.add(p)
    want = {"maildir", "mda", "lmtp", "smtp", "oauth2", "password_command",
            "google", "microsoft", "fastmail"}
    assert want <= seen, "no example shows %s" % sorted(want - seen)
    # nothing was written: `config` needs no network, no state
    assert not os.path.exists(os.path.join(home, "s")), "state written"
    print("  %d examples pass `mailhaul config`" % len(os.listdir(exdir)))


def check_completions(dest, tmp):
    bash = under(dest, os.path.join(ENV["MH_BASHDIR"], "mailhaul"))
    rc, out, err = run(["bash", "-n", bash])
    assert rc == 0, err
    for shell, path in (("zsh", os.path.join(ENV["MH_ZSHDIR"], "_mailhaul")),
                        ("fish", os.path.join(ENV["MH_FISHDIR"],
                                              "mailhaul.fish"))):
        if shutil.which(shell) is None:
            print("  skip %s -n: %s not installed" % (shell, shell))
            continue
        rc, out, err = run([shell, "-n", under(dest, path)])
        assert rc == 0, (shell, out, err)
    cfg = os.path.join(tmp, "c.ini")
    with open(cfg, "w") as f:
        f.write("[target:home]\ntype = maildir\npath = m\n"
                "[Account:alpha]\nprotocol = pop3\n"
                "[account:beta]\n[oauth2:gmail]\n")
    if shutil.which("fish") is not None:
        check_fish(under(dest, os.path.join(ENV["MH_FISHDIR"],
                                            "mailhaul.fish")), cfg, tmp)
    lib = "/usr/share/bash-completion/bash_completion"
    if not os.path.exists(lib):
        print("  skip bash completion run: bash-completion not installed")
        return

    def complete(*words):
        script = ('source %s; source %s; COMP_WORDS=(%s); '
                  'COMP_CWORD=%d; COMP_LINE="${COMP_WORDS[*]}"; '
                  'COMP_POINT=${#COMP_LINE}; _mailhaul; '
                  'printf "%%s\\n" "${COMPREPLY[@]}"' % (
                      lib, bash, " ".join("'%s'" % w for w in words),
                      len(words) - 1))
        rc, out, err = run(["bash", "-c", script],
                           env=dict(ENV, HOME=tmp,
                                    XDG_CONFIG_HOME=os.path.join(tmp, "x")))
        assert rc == 0, err
        return sorted(l for l in out.splitlines() if l)

    got = complete("mailhaul", "")
    for c in ("sync", "check", "forget", "auth", "import", "help"):
        assert c in got, got
    assert complete("mailhaul", "-c", cfg, "sync", "") == ["alpha", "beta"]
    assert complete("mailhaul", "-c", cfg, "check", "--target", "") == \
        ["home"]
    assert complete("mailhaul", "-c", cfg, "auth", "") == ["gmail"]
    assert "--yes" in complete("mailhaul", "-c", cfg, "forget", "--")
    assert complete("mailhaul", "import", "") == ["fetchmail", "getmail"]
    print("  completions parse; bash completes commands and names")


def check_fish(path, cfg, tmp):
    def complete(line):
        rc, out, err = run(["fish", "--no-config", "-c",
                            "source %s; complete -C'%s'" % (path, line)],
                           env=dict(ENV, HOME=tmp))
        assert rc == 0, err
        return sorted(l.split("\t")[0] for l in out.splitlines() if l)

    got = complete("mailhaul ")
    for c in ("sync", "check", "forget", "auth", "import", "help"):
        assert c in got, got
    assert complete("mailhaul -c %s sync " % cfg) == ["alpha", "beta"]
    assert complete("mailhaul -c %s check --target " % cfg) == ["home"]
    assert complete("mailhaul -c %s auth " % cfg) == ["gmail"]
    assert complete("mailhaul import ") == ["fetchmail", "getmail"]
    print("  fish completes commands and names")


def main():
    tmp = tempfile.mkdtemp(prefix="mh-install-")
    dest = os.path.join(tmp, "dest")
    failed = 0
    try:
        rc, out, err = run([ENV["MESON"], "install", "-C",
                            ENV["MESON_BUILD_ROOT"], "--no-rebuild",
                            "--destdir", dest, "--quiet"], timeout=240)
        assert rc == 0, out + err
        for step in (check_files, check_units, check_verify, check_examples,
                     check_completions):
            try:
                if step in (check_files, check_units):
                    step(dest)
                else:
                    step(dest, tmp)
                print("ok   %s" % step.__name__)
            except Exception:
                traceback.print_exc()
                print("FAIL %s" % step.__name__)
                failed += 1
    finally:
        if os.environ.get("MH_KEEP"):
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (5 - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
