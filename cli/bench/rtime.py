#!/usr/bin/env python3
"""rtime.py OUTFILE CMD...: runs CMD and writes "WALL USER SYS" (seconds) to OUTFILE.

Unlike GNU time, it counts every descendant of CMD, also those CMD never waits for: it
is a child subreaper (PR_SET_CHILD_SUBREAPER), so orphans are re-parented to it, and it
reaps until none is left, summing each reaped child's rusage (which holds that child's
own waited-for descendants). `sturdy run` exits without waiting for its workers, whose
CPU (and that of the commands they ran) GNU time therefore misses at random. Its exit
status is CMD's.
"""
import ctypes
import os
import sys
import time

PR_SET_CHILD_SUBREAPER = 36

out, cmd = sys.argv[1], sys.argv[2:]
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("rtime.py: prctl(PR_SET_CHILD_SUBREAPER) failed")
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
user = system = 0.0
status = 0
while True:
    try:
        p, st, ru = os.wait4(-1, 0)
    except ChildProcessError:
        break
    user += ru.ru_utime
    system += ru.ru_stime
    if p == pid:
        status = os.waitstatus_to_exitcode(st)
        wall = time.monotonic() - start
with open(out, "w") as f:
    f.write(f"{wall:.3f} {user:.3f} {system:.3f}\n")
sys.exit(status if status >= 0 else 128 - status)
