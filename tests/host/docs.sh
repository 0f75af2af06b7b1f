#!/bin/sh
# The texts made from the option tables agree with what is shipped: the README's
# `lkvm run` table is what `lkvm help --markdown run` prints and names every option
# `lkvm run --help` lists; the man page and bash completion are well formed and name
# every option; `make install` puts binary, man page and completion under DESTDIR/PREFIX.
BUILD=${1:-build}
cd "$(dirname "$0")/../.." || exit 1
LKVM=$BUILD/lkvm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1: $2"; fail=$((fail + 1)); }

sed -n '/^<!-- options: run -->$/,/^<!-- end of options -->$/p' README.md | sed '1d;$d' > "$T/readme"
"$LKVM" help --markdown run > "$T/made"
if [ -s "$T/readme" ] && cmp -s "$T/readme" "$T/made"; then ok "README's option table is the one the tables make"
else ko "README's option table" "differs from 'lkvm help --markdown run' (run make readme-options): $(diff "$T/readme" "$T/made" | head -5 | tr '\n' '|')"; fi

"$LKVM" run --help > "$T/help"
missing=
for o in $(grep -o -- '--[a-z0-9-]*' "$T/help" | sort -u); do
	[ "$o" = --help ] && continue
	grep -q -- "\`\(-., \)\?$o[ =\`\[]" "$T/readme" || missing="$missing $o"
done
n=$(grep -c -- '--[a-z]' "$T/help")
if [ -z "$missing" ] && [ "$n" -gt 10 ]; then ok "every option of 'lkvm run --help' ($n) is in the README's table"
else ko "README names every option of --help" "missing:$missing"; fi

"$LKVM" help --man > "$T/lkvm.1"
tp=$(grep -c '^\.TP' "$T/lkvm.1"); opts=$(grep -c '^| `' "$T/made")
if head -n 1 "$T/lkvm.1" | grep -q '^\.TH LKVM 1' && [ "$tp" -gt "$opts" ] && ! grep -q '^[^.\\].*\\[^-efBRI&]' "$T/lkvm.1"; then
	ok "man page: .TH, an entry for each of the $opts options and the commands"
else ko "man page" "$tp entries for $opts options: $(head -c 200 "$T/lkvm.1")"; fi

"$LKVM" help --bash-completion > "$T/lkvm.bash"
if bash -n "$T/lkvm.bash" && grep -q -- '--network' "$T/lkvm.bash" && grep -q 'complete -F _lkvm lkvm' "$T/lkvm.bash" &&
   [ "$(bash -c ". $T/lkvm.bash; COMP_WORDS=(lkvm run --net); COMP_CWORD=2; _lkvm; echo \${COMPREPLY[*]}")" = "--network" ]; then
	ok "bash completion parses and completes 'lkvm run --net' to --network"
else ko "bash completion" "$(head -c 300 "$T/lkvm.bash")"; fi

if make -s install DESTDIR="$T/root" PREFIX=/usr BUILD="$BUILD" > "$T/install.log" 2>&1 &&
   [ -x "$T/root/usr/bin/lkvm" ] && [ -f "$T/root/usr/share/man/man1/lkvm.1" ] &&
   [ "$(readlink "$T/root/usr/bin/lkvm-oci")" = lkvm ] &&
   [ -f "$T/root/usr/share/bash-completion/completions/lkvm" ] &&
   [ "$(find "$T/root" -type f | wc -l)" = 3 ]; then
	ok "make install DESTDIR=... PREFIX=/usr: binary (and lkvm-oci, a symlink to it), man page, completion and nothing else"
else ko "make install" "$(cat "$T/install.log" | tail -3 | tr '\n' '|') $(find "$T/root" -type f | tr '\n' ' ')"; fi
echo "docs: $pass passed, $fail failed, 0 skipped"
[ $fail = 0 ]
