# scripts/bench.d/common.sh -- sourced by scripts/bench and bench.d/run-tool.
# Needs W (work dir) and TB (harness dir, tests/harness/start'ed); sources
# the harness's env.
[ -r "$TB/env" ] || { echo "bench: no harness in $TB" >&2; exit 1; }
# shellcheck disable=SC1091
. "$TB/env"
PRISTINE=$W/pristine
# PY: the Python that runs the floors, by the interpreter's own path.  The
# python3 on PATH may be a version manager's shim (pyenv's is a bash
# script that runs pyenv first: 60-70 ms per start on the bench machine),
# and that start would be timed as part of every floor.
PY=$(python3 -c 'import sys; print(sys.executable)') && [ -x "$PY" ] ||
	{ echo "bench: no python3" >&2; exit 1; }

# seed_alice CORPUSDIR: alice's Maildir := the corpus, indexed by Dovecot
# (so no tool pays for the first indexing), then a pristine copy of it.
seed_alice() {
	local md=$TB/mail/alice
	rm -rf "$md"; mkdir -p "$md/cur" "$md/new" "$md/tmp"
	chown -R "$TESTBED_MAIL_UID:$TESTBED_MAIL_GID" "$md"
	find "$1" -name '*.eml' -print0 | sort -zV |
		xargs -0 -r -n 500 "$TOP/tests/harness/inject" "$TB" alice >/dev/null || return 1
	doveadm -c "$TB/dovecot.conf" mailbox status -u alice "messages vsize" INBOX >/dev/null || return 1
	doveadm -c "$TB/dovecot.conf" fetch -u alice "uid size.virtual pop3.uidl" mailbox INBOX >/dev/null || return 1
	rm -rf "$PRISTINE"
	cp -a "$md" "$PRISTINE"
}

# restore_alice: alice's Maildir := the pristine copy.  Message files are
# hard links (Dovecot only renames them, never rewrites them); Dovecot's
# index files, which it appends to in place, are real copies.  A tool
# that need not wait for QUIT's answer (nothing deleted) may be gone
# while Dovecot's session still writes there: the removal is tried again
# for up to 5 s, and the bench stops if the Maildir is still there.
restore_alice() {
	local md=$TB/mail/alice i
	for i in $(seq 50); do
		rm -rf "$md" 2>/dev/null && break
		sleep 0.1
	done
	[ ! -e "$md" ] || { echo "bench: cannot empty $md" >&2; return 1; }
	mkdir -p "$md"
	cp -al "$PRISTINE/cur" "$PRISTINE/new" "$PRISTINE/tmp" "$md/"
	find "$PRISTINE" -maxdepth 1 -type f -exec cp -p {} "$md/" \;
	chown "$TESTBED_MAIL_UID:$TESTBED_MAIL_GID" "$md"
}

# reset_targets: empty bob's Maildir (LMTP, dovecot-lda) and $W/out.
# The old ones are moved aside into $W/trash, deleted with $W at the
# end, not now: on ext4 without a journal (this VM) the inode allocator
# skips every inode freed in the last minute, so deleting a run's 1000
# files just before the next run made each of its file creations
# (every tool's Maildir writer, and Dovecot's for LMTP) pay for reading
# inode tables -- a cost of the benchmark, not of the tools.
reset_targets() {
	local d
	mkdir -p "$W/trash"
	for d in "$TB/mail/bob" "$W/out"; do
		[ -e "$d" ] && mv "$d" "$(mktemp -d "$W/trash/t.XXXXXX")/"
		mkdir -p "$d/cur" "$d/new" "$d/tmp"
	done
	chown -R "$TESTBED_MAIL_UID:$TESTBED_MAIL_GID" "$TB/mail/bob"
}

# count_delivered DEST: messages in the Maildir DEST delivers to
count_delivered() {
	local d
	case $1 in maildir) d=$W/out ;; *) d=$TB/mail/bob ;; esac
	find "$d/new" "$d/cur" -type f 2>/dev/null | wc -l
}
