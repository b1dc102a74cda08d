#!/bin/sh
# Checks the result of examples/primes/tasks.txt: 300 block files whose counts add up
# to pi(3 000 000) = 216 816, the number of primes below three million.
set -eu
out=${PRIMES_OUT:-target/primes}
files=$(find "$out" -name 'block-*.txt' | wc -l)
total=$(cat "$out"/block-*.txt | awk '{ s += $2 } END { print s + 0 }')
echo "$files blocks, $total primes below 3000000 (expected 300 blocks, 216816 primes)"
[ "$files" -eq 300 ] && [ "$total" -eq 216816 ]
