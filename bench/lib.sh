# The small helpers bench/*.sh share; each script sources it after cd to the checkout.
# sh has no local variables: a helper here names only variables no script uses.
step() { echo "bench: $*" >&2; }
# a / b with $3 decimals (default 2).
ratio() { awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN { printf "%." p "f", a / b }'; }
# From bench/timeit's output on stdin: the median of the figure named $1 (first-byte, exit).
med() { sed -n "s/.*$1 ms min [0-9.]* median \([0-9.]*\).*/\1/p"; }
# A process and its descendants, one PID a line (a jailed lkvm's VM is its supervisor's child).
tree() { echo "$1"; for _tree_c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$_tree_c"; done; }
# Milliseconds since the epoch.
ms() { date +%s%N | cut -c1-13; }
