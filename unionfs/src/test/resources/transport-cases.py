# The cases strata's own transport adds, run in a union mount (argv[1]) over the lower that
# TransportTest makes: renameat2's flags, fstat of an unlinked open file, hard links with the
# kernel's caches on, mmap around a copy-up, SEEK_DATA/SEEK_HOLE. Kernel overlayfs runs the
# same script; the outputs must match line for line.
import ctypes, errno, mmap, os, sys

os.chdir(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)


def renameat2(a, b, flags):
    r = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)
    return "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]


def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError as e:
        return errno.errorcode[e.errno]


NOREPLACE, EXCHANGE = 1, 2
out = []
out.append(("noreplace onto an existing name", renameat2("lf1", "lf2", NOREPLACE), read("lf1"), read("lf2")))
out.append(("noreplace onto a free name", renameat2("lf1", "new1", NOREPLACE), read("lf1"), read("new1")))
out.append(("exchange two lower files", renameat2("lf2", "lf3", EXCHANGE), read("lf2"), read("lf3")))
with open("up1", "w") as f:
    f.write("upper one")
out.append(("exchange upper and lower", renameat2("up1", "lf3", EXCHANGE), read("up1"), read("lf3")))
out.append(("exchange with a missing name", renameat2("up1", "missing", EXCHANGE)))
os.mkdir("udir")
with open("udir/inside", "w") as f:
    f.write("in")
out.append(("exchange a file and a directory", renameat2("up1", "udir", EXCHANGE),
            sorted(os.listdir(".")), read("up1/inside"), read("udir")))
out.append(("exchange a lower directory", renameat2("ldir", "lf2", EXCHANGE),
            sorted(os.listdir("lf2")), read("ldir")))
out.append(("and back", renameat2("ldir", "lf2", EXCHANGE), sorted(os.listdir("ldir")),
            read("lf2")))
out.append(("whiteout flag", renameat2("lf2", "w", 4)))

fd = os.open("lf2", os.O_RDWR)
os.write(fd, b"XY")
os.unlink("lf2")
st = os.fstat(fd)
out.append(("fstat of an unlinked open file", st.st_nlink, st.st_size, read("lf2")))
os.lseek(fd, 0, os.SEEK_END)
os.write(fd, b"more")
st = os.fstat(fd)
out.append(("after a write", st.st_nlink, st.st_size))
os.close(fd)

with open("h", "w") as f:
    f.write("h")
os.link("h", "h2")
out.append(("nlink after link", os.stat("h").st_nlink, os.stat("h2").st_nlink))
c0 = os.stat("h").st_ctime_ns
with open("h2", "a") as f:
    f.write(" appended")
out.append(("read through the other name", read("h"), os.stat("h").st_size))
os.chmod("h2", 0o600)
out.append(("mode through the other name", oct(os.stat("h").st_mode)))
os.unlink("h2")
out.append(("nlink after unlink", os.stat("h").st_nlink, os.stat("h").st_ctime_ns >= c0))

with open("lh1", "a") as f:
    f.write("+")
out.append(("a lower hard link written through one name", read("lh1"), read("lh2"),
            os.stat("lh1").st_nlink, os.stat("lh2").st_nlink,
            os.stat("lh1").st_ino == os.stat("lh2").st_ino))

f = open("mm", "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
before = m[:8]
with open("mm", "r+b") as w:
    w.write(b"CHANGED")
out.append(("a map made before the copy-up", before, m[:8], read("mm")[:8]))
m.close()
f.close()
with open("mm", "r+b") as w:
    mw = mmap.mmap(w.fileno(), 0)
    mw[0:4] = b"MMAP"
    mw.flush()
    mw.close()
out.append(("written through a map after the copy-up", read("mm")[:8]))

fd = os.open("sparse", os.O_RDONLY)
out.append(("SEEK_DATA, SEEK_HOLE on a sparse lower file", os.lseek(fd, 0, os.SEEK_DATA),
            os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, (1 << 20) + 10, os.SEEK_HOLE),
            os.fstat(fd).st_size))
try:
    os.lseek(fd, 4 << 20, os.SEEK_DATA)
except OSError as e:
    out.append(("SEEK_DATA past the end", errno.errorcode[e.errno]))
os.close(fd)
fd = os.open("ldir", os.O_TMPFILE | os.O_RDWR, 0o640)
os.write(fd, b"anonymous")
st = os.fstat(fd)
out.append(("O_TMPFILE in a lower directory", st.st_nlink, st.st_size, oct(st.st_mode),
            sorted(os.listdir("ldir"))))
# linkat(fd, "", AT_EMPTY_PATH) names it (through /proc/self/fd both say EXDEV on 6.18)
r = libc.linkat(fd, b"", -100, b"ldir/named-tmp", 0x1000)
st = os.fstat(fd)
out.append(("O_TMPFILE given a name", "ok" if r == 0 else errno.errorcode[ctypes.get_errno()],
            st.st_nlink, read("ldir/named-tmp"), sorted(os.listdir("ldir"))))
os.close(fd)

# Descriptors follow their file through renames: the name a file was opened by is not its
# name later (an fstat once answered for whatever had that name then: a directory, so EIO).
with open("ren-a", "w") as f:
    f.write("renamed")
fd = os.open("ren-a", os.O_RDONLY)
os.rename("ren-a", "ren-b")
os.mkdir("ren-a")
os.unlink("ren-b")
st = os.fstat(fd)
out.append(("fstat after rename, a directory at the old name, unlink", st.st_nlink, st.st_size,
            oct(st.st_mode), os.pread(fd, 20, 0)))
os.close(fd)
os.rmdir("ren-a")
fd = os.open("lf3", os.O_RDONLY)
with open("over", "w") as f:
    f.write("the file that replaces")
os.rename("over", "lf3")
st = os.fstat(fd)
out.append(("fstat of a file a rename replaced", st.st_nlink, st.st_size, os.pread(fd, 40, 0),
            read("lf3")))
os.close(fd)
os.mkdir("xd")
with open("xd/in", "w") as f:
    f.write("inside")
fd = os.open("xd/in", os.O_RDONLY)
with open("xf", "w") as f:
    f.write("a file")
out.append(("exchange the directory of an open file", renameat2("xd", "xf", EXCHANGE)))
os.unlink("xf/in")
st = os.fstat(fd)
out.append(("fstat after its directory moved and it was unlinked", st.st_nlink, st.st_size,
            read("xd")))
os.close(fd)
# a name of a lower hard link is copied up (its number changes) while a descriptor is open on
# it: a lookup that revalidates the name (mkdir's) must keep the node the descriptor holds
os.rename("lh2", "lhm")
fd = os.open("lhm", os.O_RDWR)
try:
    os.mkdir("lhm")
except OSError as e:
    out.append(("mkdir over a copied-up hard link", errno.errorcode[e.errno]))
os.fchmod(fd, 0o600)
out.append(("fchmod through a descriptor on it", oct(os.stat("lhm").st_mode), os.stat("lhm").st_nlink))
os.close(fd)
for o in out:
    print(o)
