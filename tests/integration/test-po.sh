#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The translations (STYLE.md: messages a user reads are translatable; the terminals'
# users read Japanese): every message marked in po/POTFILES' sources has a Japanese
# translation in po/ja.po, none is fuzzy or stale, and each translation takes the same
# printf arguments as its English (msgfmt -c), so a translated message can never read
# the wrong argument.
set -euo pipefail
fail=0
src=${MAMORI_SOURCE_ROOT:-$(dirname "$0")/../..}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src"
echo "1..4"
xgettext --from-code=UTF-8 --keyword=_ --keyword=N_ --language=C --add-comments -o "$tmp/mamori.pot" \
        --files-from=po/POTFILES
n=$(grep -c '^msgid "[^"]' "$tmp/mamori.pot" || true)
if [ "$n" -gt 0 ]; then echo "ok 1 - $n messages marked for translation"; else fail=1; echo "not ok 1 - no messages found"; fi
if msgcmp po/ja.po "$tmp/mamori.pot" 2>"$tmp/cmp"; then
        echo "ok 2 - every marked message is in po/ja.po"
else
        fail=1; echo "not ok 2 - po/ja.po lacks messages:"; sed 's/^/# /' "$tmp/cmp"
fi
if msgfmt -c -o /dev/null po/ja.po 2>"$tmp/fmt"; then
        echo "ok 3 - po/ja.po compiles, translations take the same arguments (msgfmt -c)"
else
        fail=1; echo "not ok 3 - msgfmt -c:"; sed 's/^/# /' "$tmp/fmt"
fi
stats=$(msgfmt --statistics -o /dev/null po/ja.po 2>&1)
if [[ "$stats" != *untranslated* && "$stats" != *fuzzy* ]]; then
        echo "ok 4 - nothing untranslated or fuzzy ($stats)"
else
        fail=1; echo "not ok 4 - $stats"
fi
exit $fail
