# Random operations on a union mount (argv[1]) with descriptors held across them: opens kept
# while their files are renamed, exchanged, replaced, unlinked, copied up, written and
# truncated through other names, then fstat, pread, pwrite, ftruncate and fchmod through the
# held descriptors. One line per operation; the same seed (argv[2]) on kernel overlayfs and on
# strata must print the same lines. argv[3] == "mask-held-reads": the data read through a
# read-only descriptor opened before a copy-up is not printed (with passthrough the kernel
# reads the lower file for it: strata's one written-down difference).
import ctypes, errno, mmap, os, random, stat, sys, time

root, seed = sys.argv[1], int(sys.argv[2])
mask = len(sys.argv) > 3 and sys.argv[3] == "mask-held-reads"
# "extended" (argv[4]) adds path chmod/truncate, symlinks, maps, fsync and O_TMPFILE; the
# plain set's sequences stay as they were, so a seed names the same run as before
extended = len(sys.argv) > 4 and sys.argv[4] == "extended"
os.chdir(root)
libc = ctypes.CDLL(None, use_errno=True)
rnd = random.Random(seed)
NAMES = ["f0", "f1", "f2", "d0/f3", "d0/f4", "n0", "n1", "d0/n2", "d1/n3", "d0", "d1", "d2"]
held = {}  # slot -> (fd, read-only?)
slots = 0


def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def attrs(st):
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    nlink = st.st_nlink if kind != "dir" else "-"
    size = st.st_size if kind != "dir" else "-"
    return "%s %o nlink=%s size=%s" % (kind, stat.S_IMODE(st.st_mode), nlink, size)


def op():
    global slots
    k = rnd.randrange(23 if extended else 17)
    a, b = rnd.choice(NAMES), rnd.choice(NAMES)
    s = rnd.choice(sorted(held)) if held else None
    try:
        if k == 0 or k == 1:
            mode = rnd.choice([os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND,
                               os.O_RDWR | os.O_CREAT, os.O_WRONLY | os.O_TRUNC])
            fd = os.open(a, mode, 0o644)
            slots += 1
            held[slots] = (fd, (mode & 3) == os.O_RDONLY)
            return "open %s %o -> slot %d" % (a, mode, slots)
        if k == 2 and s:
            os.close(held.pop(s)[0])
            return "close %d" % s
        if k == 3 and s:
            return "fstat %d: %s" % (s, attrs(os.fstat(held[s][0])))
        if k == 4 and s:
            data = os.pread(held[s][0], 64, 0)
            return "pread %d: %s" % (s, "(masked)" if mask and held[s][1] else data)
        if k == 5 and s:
            return "pwrite %d: %d" % (s, os.pwrite(held[s][0], b"w%d" % rnd.randrange(100),
                                                   rnd.randrange(8)))
        if k == 6 and s:
            os.ftruncate(held[s][0], rnd.randrange(6))
            return "ftruncate %d ok" % s
        if k == 7 and s:
            os.fchmod(held[s][0], rnd.choice([0o600, 0o640, 0o755]))
            return "fchmod %d ok" % s
        if k == 8:
            os.rename(a, b)
            return "rename %s %s ok" % (a, b)
        if k == 9:
            r = libc.renameat2(-100, a.encode(), -100, b.encode(), 2)
            return "exchange %s %s %s" % (a, b, "ok" if r == 0 else
                                          errno.errorcode[ctypes.get_errno()])
        if k == 10:
            os.unlink(a)
            return "unlink %s ok" % a
        if k == 11:
            os.mkdir(a)
            return "mkdir %s ok" % a
        if k == 12:
            os.rmdir(a)
            return "rmdir %s ok" % a
        if k == 13:
            os.link(a, b)
            return "link %s %s ok" % (a, b)
        if k == 14:
            with open(a, "ab") as f:
                f.write(b"+%d" % rnd.randrange(100))
            return "append %s ok" % a
        if k == 15:
            return "stat %s: %s" % (a, attrs(os.lstat(a)))
        if k == 16:
            with open(a, "rb") as f:
                return "read %s: %s" % (a, f.read(64))
        if k == 17:
            os.chmod(a, rnd.choice([0o600, 0o640, 0o755]))
            return "chmod %s ok" % a
        if k == 18:
            os.truncate(a, rnd.randrange(6))
            return "truncate %s ok" % a
        if k == 19:
            os.symlink(b, a)
            return "symlink %s -> %s: %s" % (a, b, os.readlink(a))
        if k == 20 and s:
            fd = held[s][0]
            size = os.fstat(fd).st_size
            if size == 0:
                return "map %d: empty" % s
            with mmap.mmap(fd, min(size, 64), prot=mmap.PROT_READ) as m:
                data = m[:]
            # not compared through a read-only descriptor: kernel overlayfs maps the file the
            # descriptor had at open, so a map of one opened below shows the lower file after
            # a copy-up (its documented non-standard behaviour); strata shows the upper, as
            # its reads through that descriptor do on both
            return "map %d: %s" % (s, "(read-only)" if held[s][1] else data)
        if k == 21 and s:
            os.fsync(held[s][0])
            return "fsync %d ok" % s
        if k == 22:
            fd = os.open(rnd.choice(["d0", "d1", "."]), os.O_TMPFILE | os.O_RDWR, 0o640)
            os.write(fd, b"tmp%d" % rnd.randrange(100))
            slots += 1
            held[slots] = (fd, False)
            if not rnd.randrange(2):
                return "tmpfile -> slot %d" % slots
            r = libc.linkat(fd, b"", -100, a.encode(), 0x1000)  # AT_EMPTY_PATH
            return "tmpfile -> slot %d, linked as %s: %s" % (
                slots, a, "ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
        return None
    except OSError as e:
        return "op %d %s %s: %s" % (k, a, b, err(e))


# PAUSE=N:PATH: before operation N, make PATH.ready and wait for PATH.go (a harness restarts
# the daemon serving the mount meanwhile: what is held must go on as if nothing happened)
pause = os.environ.get("PAUSE", "")
pause_at, pause_path = (int(pause.split(":", 1)[0]), pause.split(":", 1)[1]) if pause else (-1, "")
for i in range(int(os.environ.get("OPS", "120"))):
    if i == pause_at:
        open(pause_path + ".ready", "w").close()
        while not os.path.exists(pause_path + ".go"):
            time.sleep(0.01)
    line = op()
    if line:
        print(i, line)
for s in sorted(held):
    try:
        print("final fstat %d: %s" % (s, attrs(os.fstat(held[s][0]))))
        os.close(held[s][0])
    except OSError as e:
        print("final %d: %s" % (s, err(e)))
for d, dirs, files in os.walk("."):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        content = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else b""
        print("tree", p, attrs(st), content)
