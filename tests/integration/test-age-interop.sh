#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# age interoperability, both ways, with the reference CLI (Debian `age`):
# mamori-age-tool encrypts -> `age -d` decrypts, and `age` encrypts -> mamori decrypts
# (threaded fd path and the incremental reader), for X25519 and passphrase, on empty,
# 64 KiB, 64 KiB + 1 and 1 GiB files in tmpfs. Also: mamori's identity strings work
# with age-keygen -y, and a flipped byte in an age-made file is refused.
# R-OUT-1 (files decrypt on police-managed computers with the standard tool),
# R-CRY-1 (established, replaceable format), R-CRY-4 (tampering detected).
# Set MAMORI_AGE_INTEROP_BIG=0 to leave out the 1 GiB files.
set -euo pipefail

command -v age >/dev/null && command -v age-keygen >/dev/null || { echo "age not installed"; exit 77; }
TOOL="${MAMORI_BUILD_ROOT:?}/tests/mamori-age-tool"
[ -x "$TOOL" ] || { echo "missing $TOOL"; exit 1; }

WORK=$(mktemp -d /dev/shm/mamori-age-interop.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# age reads passphrases only from a terminal: run it on a pty and answer every prompt.
cat > pty-age.py <<'PY'
import os, pty, select, sys
pw = open(sys.argv[1], "rb").read()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
seen, answered = b"", 0
while True:
    try:
        ready, _, _ = select.select([fd], [], [], 600)
        data = os.read(fd, 4096) if ready else b""
    except OSError:
        break
    if not data:
        break
    seen += data
    prompts = seen.lower().count(b"passphrase")
    if prompts > answered:
        os.write(fd, pw + b"\n")
        answered = prompts
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
PY
age_pty() { python3 pty-age.py pass.txt age "$@" >/dev/null; }
# age -o creates its output only once it has a byte to write.
out_or_empty() { [ -e "$1" ] || : >"$1"; }

printf 'interop passphrase %s' "$RANDOM" >pass.txt
age-keygen -o age-id.txt 2>/dev/null
AGE_R=$(age-keygen -y age-id.txt)
"$TOOL" keygen >our-id.txt
OUR_R=$("$TOOL" recipient <our-id.txt)
[ "$(age-keygen -y our-id.txt)" = "$OUR_R" ] && pass "age-keygen -y agrees with our recipient" ||
        fail "age-keygen -y our-id.txt != $OUR_R"
[ "$("$TOOL" recipient <age-id.txt)" = "$AGE_R" ] && pass "our recipient of age's identity" ||
        fail "recipient of age-keygen identity"

sizes="0 65536 65537"
[ "${MAMORI_AGE_INTEROP_BIG:-1}" = 0 ] || sizes="$sizes 1073741824"

for n in $sizes; do
        head -c "$n" /dev/urandom >plain
        want=$(sha256sum <plain)
        got() { sha256sum <"$1"; }

        # mamori -> age, X25519 (to both keys: age must find its own stanza).
        "$TOOL" encrypt -r "$OUR_R" -r "$AGE_R" <plain >ct
        rm -f dec; age -d -i age-id.txt -o dec ct && out_or_empty dec && [ "$(got dec)" = "$want" ] &&
                pass "mamori -> age X25519 $n" || fail "mamori -> age X25519 $n"

        # age -> mamori, X25519: threaded fd path, single thread, incremental reader.
        age -r "$OUR_R" -o ct plain
        [ "$("$TOOL" decrypt -i our-id.txt <ct | sha256sum)" = "$want" ] &&
                pass "age -> mamori X25519 $n" || fail "age -> mamori X25519 $n"
        [ "$("$TOOL" decrypt -t 1 --reader -i our-id.txt <ct | sha256sum)" = "$want" ] &&
                pass "age -> mamori reader $n" || fail "age -> mamori reader $n"
        # One flipped byte in the last 16 bytes (the final tag) must be refused. Flipped,
        # not overwritten: a byte that already was the new value (1 in 256) changed nothing.
        size=$(stat -c %s ct)
        b=$(od -An -tu1 -j $((size - 3)) -N1 ct | tr -d ' ')
        printf "\\x$(printf %02x $((b ^ 1)))" | dd of=ct bs=1 seek=$((size - 3)) conv=notrunc status=none
        [ "$(od -An -tu1 -j $((size - 3)) -N1 ct | tr -d ' ')" != "$b" ] || fail "the byte was not flipped"
        if "$TOOL" decrypt -i our-id.txt <ct >/dev/null 2>&1; then fail "flipped age file accepted $n"
        else pass "flipped age file refused $n"; fi

        # mamori -> age, passphrase (work factor 18, as age itself uses).
        "$TOOL" encrypt -P pass.txt <plain >ct
        rm -f dec; age_pty -d -o dec ct && out_or_empty dec && [ "$(got dec)" = "$want" ] &&
                pass "mamori -> age passphrase $n" || fail "mamori -> age passphrase $n"

        # age -> mamori, passphrase.
        rm -f ct; age_pty -p -o ct plain
        [ "$("$TOOL" decrypt -P pass.txt <ct | sha256sum)" = "$want" ] &&
                pass "age -> mamori passphrase $n" || fail "age -> mamori passphrase $n"
        rm -f plain ct dec
done

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all interop checks passed"
