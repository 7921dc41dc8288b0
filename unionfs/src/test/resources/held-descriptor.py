# Issue 16, items 4 and 5: a descriptor opened while a file is still below, held while
# another opens it for writing (the copy-up) and writes it through a shared writable mapping
# or write(2) + fsync. Prints what each descriptor reads at each step; the lower files f1 and
# f2 hold argv[2] bytes of 'a'.
import ctypes, mmap, os, struct, sys

m = sys.argv[1]
size = int(sys.argv[2])
out = []


def rd(fd, n=4):
    return os.pread(fd, n, 0)


# a writable shared mapping after the copy-up, while a reader from before it is held
f = os.path.join(m, "f1")
held = os.open(f, os.O_RDONLY)
out.append(("held before", rd(held)))
w = os.open(f, os.O_RDWR)
mm = mmap.mmap(w, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
mm[0:4] = b"MMAP"
mm.flush()
mm.close()
os.close(w)
n = os.open(f, os.O_RDONLY)
out.append(("new open after the mmap write", rd(n)))
os.close(n)
out.append(("held after the mmap write", rd(held)))
os.close(held)
n = os.open(f, os.O_RDONLY)
out.append(("after all closed", rd(n)))
os.close(n)

# write + fsync after the copy-up, the held reader reading between
f = os.path.join(m, "f2")
held = os.open(f, os.O_RDONLY)
out.append(("held2 before", rd(held)))
w = os.open(f, os.O_RDWR)
os.pwrite(w, b"WRIT", 0)
os.fsync(w)
os.close(w)
out.append(("held2 after the write", rd(held)))
n = os.open(f, os.O_RDONLY)
out.append(("new open after the write", rd(n)))
os.close(n)
os.close(held)
n = os.open(f, os.O_RDONLY)
out.append(("after all closed 2", rd(n)))
os.close(n)

# the held reader's file renamed, a directory made at its old name: a stat that must ask the
# filesystem (AT_STATX_FORCE_SYNC) still answers for the file the reader holds
libc = ctypes.CDLL(None, use_errno=True)


def statx(fd):
    buf = ctypes.create_string_buffer(256)
    if libc.statx(fd, b"", 0x1000 | 0x2000, 0x7ff, buf) != 0:  # AT_EMPTY_PATH, FORCE_SYNC
        return os.strerror(ctypes.get_errno())
    nlink, mode = struct.unpack_from("=I", buf, 16)[0], struct.unpack_from("=H", buf, 28)[0]
    return oct(mode), nlink, struct.unpack_from("=Q", buf, 40)[0]


f = os.path.join(m, "big1")
held = os.open(f, os.O_RDONLY)
w = os.open(f, os.O_RDWR)
os.pwrite(w, b"X", 0)
os.close(w)
os.rename(f, f + "-moved")
os.mkdir(f)
out.append(("held3 after a rename and a directory at its old name", statx(held)))
os.fchmod(held, 0o600)
out.append(("held3 fchmod reaches its file, not the name's new owner",
            oct(os.stat(f + "-moved").st_mode), oct(os.stat(f).st_mode)))
os.close(held)
os.rmdir(f)
for o in out:
    print(o)
