#!/usr/bin/env bash
# Benchmark of retention: `globofs prune` and `globofs gc` on a volume with history.
#
# Builds a fresh volume from the `tree/` dataset of ../shared/bench/gen.sh: a scratch copy of
# the tree is imported ROUNDS times (default 5) under each of DESTS destinations (default 4:
# t1, t2, ...), and between rounds a deterministic sample of the copy is edited (a line
# appended to every 10th file, a few of the largest files rewritten), so that old versions
# exist. Then it times, with /usr/bin/time -v (wall time, peak RSS):
#
#   prune --keep-last 1 --dry-run,  prune --keep-last 1,  gc (collecting),  gc (nothing to free)
#
# and, on a copy of the volume taken before pruning, runs prune and gc again under
# `strace -f -e trace=openat,open,openat2` to count the block files they open (expected:
# none; they need block names, never block contents). About 25 minutes on 2 cores.
#
#   scripts/bench-gc.sh                      # uses target/release/globofs
#   GLOBOFS=/path/to/globofs BENCH_DIR=/tmp/globofs-bench DESTS=4 ROUNDS=5 scripts/bench-gc.sh
#
# Environment: GLOBOFS (binary), BENCH_DIR (where tree/ is; default /tmp/globofs-bench),
# WORK (scratch; default $BENCH_DIR/gc-work, deleted first and at the end unless KEEP=1),
# DESTS, ROUNDS, STRACE=0 to skip the strace step, SUBSET="include py" to import only those
# top-level directories of tree/ (chosen automatically when the disk is short of space).
# Results go to stdout and $WORK/results.txt (copied to $BENCH_DIR/gc-results.txt).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/.." && pwd)
GLOBOFS=${GLOBOFS:-$here/target/release/globofs}
BENCH_DIR=${BENCH_DIR:-/tmp/globofs-bench}
WORK=${WORK:-$BENCH_DIR/gc-work}
DESTS=${DESTS:-4}
ROUNDS=${ROUNDS:-5}
STRACE=${STRACE:-1}
KEEP=${KEEP:-0}
SUBSET=${SUBSET:-}
tree=$BENCH_DIR/tree

[[ -x $GLOBOFS ]] || { echo "bench-gc: no binary $GLOBOFS (cargo build --release)" >&2; exit 2; }
[[ -d $tree ]] || { echo "bench-gc: no $tree (run ../shared/bench/gen.sh)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "bench-gc: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
if [[ $STRACE == 1 ]] && ! command -v strace >/dev/null; then
  echo "bench-gc: needs strace (apt-get install strace), or STRACE=0" >&2
  exit 2
fi

rm -rf "$WORK"
mkdir -p "$WORK"
vol=$WORK/vol
src=$WORK/src
out=$WORK/results.txt
: >"$out"
say() { echo "$*" | tee -a "$out"; }

# Space: the scratch copy, the volume (about the tree's size), its copy for strace, and
# the rewritten files. Ask for 4x the tree; otherwise import a subset and say so.
tree_kb=$(du -sk "$tree" | cut -f1)
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if [[ -z $SUBSET && $avail_kb -lt $((tree_kb * 4)) ]]; then
  SUBSET="include py"
  say "WARNING: only $((avail_kb >> 10)) MiB free for a $((tree_kb >> 10)) MiB tree: importing the subset '$SUBSET'"
fi

mkdir -p "$src"
if [[ -n $SUBSET ]]; then
  for d in $SUBSET; do cp -a "$tree/$d" "$src/$d"; done
else
  cp -a "$tree/." "$src/"
fi
say "dataset: $(find "$src" -type f | wc -l) files, $(du -sh "$src" | cut -f1) ($tree${SUBSET:+, subset: $SUBSET}); $DESTS destinations x $ROUNDS imports"
say "binary: $GLOBOFS ($(git -C "$here" describe --always --dirty 2>/dev/null || echo '?'))"

# Round R's edits, deterministic: a line appended to every 10th file (sorted by name) and
# the 4 files ranked 4(R-2)..4(R-2)+3 among the 16 largest rewritten (bytes reversed, plus a
# marker: every block new, same compressibility).
edit() {
  python3 - "$src" "$1" <<'EOF'
import os, sys
src, rnd = sys.argv[1], int(sys.argv[2])
files = []
for d, dirs, names in os.walk(src):
    dirs.sort()
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
appended = 0
for p in files[::10]:
    with open(p, "ab") as f:
        f.write(b"globofs bench-gc round %d\n" % rnd)
    appended += 1
big = sorted(files, key=lambda p: (-os.path.getsize(p), p))[:16]
rewritten = 0
for p in big[4 * (rnd - 2):4 * (rnd - 2) + 4]:
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(data[::-1] + b"\nglobofs bench-gc rewrite round %d\n" % rnd)
    rewritten += 1
print("round %d: appended to %d files, rewrote %d large files" % (rnd, appended, rewritten))
EOF
}

g() { "$GLOBOFS" -V "$vol" "$@"; }

"$GLOBOFS" init "$vol" --name bench-gc >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
  ((r == 1)) || edit "$r" | tee -a "$out"
  for ((d = 1; d <= DESTS; d++)); do
    t0=$(date +%s%N)
    g import "$src" "t$d" >/dev/null
    say "import round $r -> t$d: $(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }') s"
  done
done

# Manifests are the files in */versions/ whose names do not start with a dot (`.heads`,
# `.pruned`, temp files); a block reference is one `block` line (docs/FORMAT.md).
manifests() { find "$1/local/root" -path '*/versions/*' -type f ! -name '.*' -print0; }
refs() { manifests "$1" | xargs -0 cat | grep -c '^block ' || true; }
distinct() { manifests "$1" | xargs -0 cat | grep '^block ' | cut -d' ' -f2 | sort -u | wc -l; }
stored() { find "$1/local/hashes" -type f -name '*.gz' | wc -l; }
state() {
  say "$1: manifests $(manifests "$vol" | tr -cd '\0' | wc -c), block references $(refs "$vol"), distinct blocks referenced $(distinct "$vol"), block files $(stored "$vol"), du -sh volume $(du -sh "$vol" | cut -f1), du -sh local/hashes $(du -sh "$vol/local/hashes" | cut -f1)"
}
state "before"

if [[ $STRACE == 1 ]]; then
  cp -a "$vol" "$WORK/vol-strace"
  # A copy refuses to prune or collect until told it stands for the node (it has no peers).
  "$GLOBOFS" -V "$WORK/vol-strace" reidentify --moved >/dev/null
fi
sync

# One timed step: wall seconds, peak RSS, and the command's summary line.
step() {
  local name=$1
  shift
  sync
  /usr/bin/time -v -o "$WORK/time.$name" "$GLOBOFS" -V "$vol" "$@" >"$WORK/out.$name" 2>"$WORK/err.$name"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s }' "$WORK/time.$name")
  rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$WORK/time.$name")
  say "| $name | $wall | $rss | $(grep -v '@\|^run ' "$WORK/out.$name" | tr '\n' ' ' || true)|"
}
say ""
say "| step | seconds | peak RSS MiB | result |"
say "|---|---|---|---|"
step prune-dry-run prune --keep-last 1 --dry-run
step prune prune --keep-last 1
step gc gc
step gc-again gc
say ""
state "after"

if [[ $STRACE == 1 ]]; then
  # Block files are local/hashes/ab/cd/<60 hex>.gz; directories are opened with O_DIRECTORY.
  sv=$WORK/vol-strace
  for cmd in "prune --keep-last 1" "gc"; do
    name=${cmd%% *}
    strace -f -e trace=openat,open,openat2 -o "$WORK/strace.$name" "$GLOBOFS" -V "$sv" $cmd >/dev/null 2>&1
    f=$WORK/strace.$name
    opens() { grep 'open\(at2\?\)\?(' "$f" || true; }
    hashes() { opens | grep '/local/hashes/' || true; }
    say "strace $cmd: open calls $(opens | wc -l); under local/hashes/: $(hashes | wc -l), of which directories (O_DIRECTORY) $(hashes | grep -c O_DIRECTORY), block files (.gz) $(hashes | grep -v O_DIRECTORY | grep -c '\.gz"'), other files $(hashes | grep -v O_DIRECTORY | grep -vc '\.gz"'); manifests and other files under local/root/: $(opens | grep '/local/root/' | grep -vc O_DIRECTORY)"
  done
fi

cp "$out" "$BENCH_DIR/gc-results.txt"
[[ $KEEP == 1 ]] || rm -rf "$WORK"
