#!/usr/bin/env python3
# Usage: mk.py BIN N DONE DIR (cli/bench/RESULTS.md, "faster resume")
# Builds a resumable state dir: N-line list of `true`, DONE journaled done lines and out/T.1.err marks.
import os, sys, subprocess
bin, N, DONE, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.makedirs(d, exist_ok=True)
with open(f"{d}/tasks.txt", "w") as f:
    f.write("true\n" * N)
st = f"{d}/state"
subprocess.run(["rm", "-rf", st])
# a real run.toml, lock, checkpoint dir: run with --halt soon,done=1
subprocess.run([bin, "run", f"{d}/tasks.txt", "--state-dir", st, "--json", "--workers", "1", "--halt", "now,done=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for e in os.listdir(f"{st}/out"): os.unlink(f"{st}/out/{e}")
for e in os.listdir(f"{st}/checkpoints/run"): os.unlink(f"{st}/checkpoints/run/{e}")
with open(f"{st}/journal.tsv", "w") as f:
    f.write("# sturdy journal v1\ntask\tattempt\tworker\tepoch\tstart\tend\truntime\texit\tsignal\tkind\tnext\tcommand\n")
    f.writelines(f"{t}\t1\t1\t1\t1796572304.955\t1796572304.962\t0.007\t0\t-\t-\tdone\ttrue\n" for t in range(1, DONE + 1))
for t in range(1, DONE + 1):
    os.close(os.open(f"{st}/out/{t}.1.err", os.O_CREAT | os.O_WRONLY, 0o644))
