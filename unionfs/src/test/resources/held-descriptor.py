# Issue 16, items 4 and 5: a descriptor opened while a file is still below, held while
# another opens it for writing (the copy-up) and writes it through a shared writable mapping
# or write(2) + fsync. Prints what each descriptor reads at each step; the lower files f1 and
# f2 hold 8 KiB of 'a'.
import mmap, os, sys

m = sys.argv[1]
out = []


def rd(fd, n=4):
    return os.pread(fd, n, 0)


# a writable shared mapping after the copy-up, while a reader from before it is held
f = os.path.join(m, "f1")
held = os.open(f, os.O_RDONLY)
out.append(("held before", rd(held)))
w = os.open(f, os.O_RDWR)
mm = mmap.mmap(w, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
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
for o in out:
    print(o)
