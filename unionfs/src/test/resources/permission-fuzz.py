"""Random operations on a union, run as one user (DifferentialTest runs it as root and as a
user on kernel overlayfs and on strata over the same layers, with the same seed, and compares
what it prints): creates, removals, renames, hard and symbolic links, modes, owners, times,
reads and listings over directories of every kind of permission (read-only, open to all,
sticky, set-group-ID) holding files of the user, of root and of others. Each operation prints
its outcome (ok, or the errno's name); the tree is printed at the end: mode, owner, link count
and size of every entry the user can reach.

usage: permission-fuzz.py SEED OPERATIONS (in the union's root)"""
import errno
import os
import random
import stat
import sys

rnd = random.Random(int(sys.argv[1]))
NAMES = ["a", "b", "ro", "ro/file", "ro/sub", "open", "open/mine", "open/roots", "open/sub",
         "open/sub/deep", "sticky", "sticky/others", "sticky/mine", "sticky/dir", "sgid",
         "sgid/f", "sgid/d", "rw/file", "hl/a", "hl/b", "open/new", "sgid/new", "sticky/new"]
MODES = [0o644, 0o600, 0o755, 0o777, 0o1777, 0o2775, 0o4755, 0o000, 0o2755]


def shown(path):
    try:
        s = os.lstat(path)
    except OSError as e:
        return errno.errorcode[e.errno]
    size = '-' if stat.S_ISDIR(s.st_mode) else s.st_size
    return f"{stat.filemode(s.st_mode)} {s.st_uid}:{s.st_gid} {s.st_nlink} {size}"


def run(i, what, f):
    try:
        v = f()
        print(i, what, "ok", "" if v is None else v)
    except OSError as e:
        print(i, what, errno.errorcode.get(e.errno, e.errno))


def create(p, m):
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, m))


def write(p):
    with open(p, "a") as f:
        f.write("w")


def read(p):
    with open(p) as f:
        return f.read(10)


for i in range(int(sys.argv[2])):
    a, b = rnd.choice(NAMES), rnd.choice(NAMES)
    m = rnd.choice(MODES)
    k = rnd.randrange(17)
    if k == 0:
        run(i, f"create {a} {m:o}", lambda: create(a, m))
    elif k == 1:
        run(i, f"mkdir {a} {m:o}", lambda: os.mkdir(a, m))
    elif k == 2:
        run(i, f"unlink {a}", lambda: os.unlink(a))
    elif k == 3:
        run(i, f"rmdir {a}", lambda: os.rmdir(a))
    elif k == 4:
        run(i, f"rename {a} {b}", lambda: os.rename(a, b))
    elif k == 5:
        run(i, f"chmod {a} {m:o}", lambda: os.chmod(a, m))
    elif k == 6:
        run(i, f"write {a}", lambda: write(a))
    elif k == 7:
        run(i, f"truncate {a}", lambda: os.truncate(a, 2))
    elif k == 8:
        run(i, f"link {a} {b}", lambda: os.link(a, b))
    elif k == 9:
        run(i, f"symlink {a} {b}", lambda: os.symlink(a, b))
    elif k == 10:
        run(i, f"read {a}", lambda: read(a))
    elif k == 11:
        run(i, f"list {a}", lambda: sorted(os.listdir(a)))
    elif k == 12:
        run(i, f"stat {a}", lambda: shown(a))
    elif k == 13:
        run(i, f"chgrp {a}", lambda: os.chown(a, -1, os.getgid()))
    elif k == 14:
        run(i, f"utime {a}", lambda: os.utime(a, (5, 5)))
    elif k == 15:
        run(i, f"utime-now {a}", lambda: os.utime(a))
    else:
        run(i, f"umask-create {a} {m:o}", lambda: (os.umask(0o027), create(a, m), os.umask(0o022)))
listing = []
for top, dirs, files in os.walk("."):
    for n in dirs + files:
        q = os.path.join(top, n)
        listing.append(f"{q} {shown(q)}")
print("\n".join(sorted(listing)))
