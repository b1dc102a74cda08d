#!/bin/bash
# t.sh BIN DIR: the time from starting `BIN run DIR/tasks.txt --resume` on a copy of DIR/state (made by mk.py) until its journal grows (its first attempt journaled); prints seconds
BIN=$1; D=$2
rm -rf $D/run; cp -a $D/state $D/run
before=$(wc -l < $D/run/journal.tsv)
t0=$(date +%s.%N)
$BIN run $D/tasks.txt --resume --workers 4 --state-dir $D/run --json > /dev/null 2>$D/err &
pid=$!
until (( $(wc -l < $D/run/journal.tsv) > before )); do sleep 0.01; done
t1=$(date +%s.%N)
kill $pid; wait $pid 2>/dev/null
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
