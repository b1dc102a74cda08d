#!/bin/sh
# Counts the primes in block N, the integers [N*10000, (N+1)*10000), with a segmented
# sieve of Eratosthenes in awk, and writes "N COUNT" to $PRIMES_OUT/block-N.txt
# (default target/primes), atomically: a temporary file, then a rename.
#
# To show what sturdy does with trouble, some attempts misbehave on purpose:
# - every 17th block (N % 17 == 5) fails its first attempt with exit status 75
#   (EX_TEMPFAIL, "try again later"): a transient failure that a retry fixes;
# - block 150 hangs on its first attempt: --task-timeout kills it and it is retried;
# - block 99 kills its own worker process (the `sturdy worker` above this shell) on its
#   first attempt: a worker crash; the block moves to another worker and the dead
#   worker is restarted.
set -eu
n=$1
out=${PRIMES_OUT:-target/primes}
attempt=${STURDY_ATTEMPT:-1}
mkdir -p "$out"
if [ $((n % 17)) -eq 5 ] && [ "$attempt" -eq 1 ]; then
  echo "block $n: scratch space busy, try again later" >&2
  exit 75
fi
if [ "$n" -eq 99 ] && [ "$attempt" -eq 1 ] && [ -n "${STURDY_WORKER:-}" ]; then
  p=$PPID
  while [ "$p" -gt 1 ] && [ "$(cat "/proc/$p/comm")" != sturdy ]; do
    p=$(cut -d' ' -f4 "/proc/$p/stat")
  done
  [ "$p" -gt 1 ] && kill -KILL "$p"
  sleep 5
fi
if [ "$n" -eq 150 ] && [ "$attempt" -eq 1 ]; then
  echo "block $n: stuck" >&2
  sleep 3600
fi
awk -v n="$n" -v lo=$((n * 10000)) -v hi=$(((n + 1) * 10000)) 'BEGIN {
  r = int(sqrt(hi)) + 1
  for (i = 2; i <= r; i++) small[i] = 1
  for (i = 2; i * i <= r; i++) if (small[i]) for (j = i * i; j <= r; j += i) small[j] = 0
  for (p = 2; p <= r; p++) {
    if (!small[p]) continue
    start = int((lo + p - 1) / p) * p
    if (start < p * p) start = p * p
    for (j = start; j < hi; j += p) composite[j - lo] = 1
  }
  c = 0
  for (i = (lo < 2 ? 2 : lo); i < hi; i++) if (!composite[i - lo]) c++
  print n, c
}' > "$out/.block-$n.tmp"
mv "$out/.block-$n.tmp" "$out/block-$n.txt"
echo "block $n: $(cut -d' ' -f2 "$out/block-$n.txt") primes"
