"""Makes files, directories, fifos and O_TMPFILE files under several umasks in the current
directory (a mount), in a directory given a default ACL through the mount and in one without,
and prints each new entry's mode and ACL xattrs: DifferentialTest compares the print-out of
kernel overlayfs and strata (FUSE_DONT_MASK: a default ACL, not the umask, shapes the mode).
With --no-tmpfile it makes no O_TMPFILE file (jnr-fuse's libfuse 2 has no such request).

The default ACLs are written as the kernel's binary form (version 2, then tag, permissions
and id per entry), so no acl package is needed."""
import os
import stat
import struct
import sys

UNDEFINED = 0xffffffff


def acl(*entries):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in entries)


# user::rwx group::rwx other::r-x
MINIMAL = acl((0x01, 7, UNDEFINED), (0x04, 7, UNDEFINED), (0x20, 5, UNDEFINED))
# user::rwx group::r-x group:100:rwx mask::rwx other::---
EXTENDED = acl((0x01, 7, UNDEFINED), (0x04, 5, UNDEFINED), (0x08, 7, 100),
               (0x10, 7, UNDEFINED), (0x20, 0, UNDEFINED))


def shown(path):
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False)
                   if n.startswith('system.posix_acl'))
    return ' '.join(f'{n}={os.getxattr(path, n, follow_symlinks=False).hex()}' for n in names)


def main():
    for d, a in (('minimal', MINIMAL), ('extended', EXTENDED), ('plain', None)):
        os.mkdir(d, 0o755)
        if a:
            os.setxattr(d, 'system.posix_acl_default', a)
    lines = []
    for d in ('minimal', 'extended', 'plain'):
        for um in (0o022, 0o077, 0o002, 0o000):
            os.umask(um)
            made = []
            p = f'{d}/file{um:03o}'
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o666))
            made.append(p)
            p = f'{d}/suid{um:03o}'
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o4777))
            made.append(p)
            p = f'{d}/dir{um:03o}'
            os.mkdir(p, 0o777)
            made.append(p)
            p = f'{d}/fifo{um:03o}'
            os.mkfifo(p, 0o666)
            made.append(p)
            p = f'{d}/dir{um:03o}/inner'
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o640))
            made.append(p)
            for p in made:
                lines.append(f'{stat.filemode(os.lstat(p).st_mode)} {p} {shown(p)}')
            if '--no-tmpfile' in sys.argv:
                continue
            fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o666)
            lines.append(f'{stat.filemode(os.fstat(fd).st_mode)} {d}/O_TMPFILE under {um:03o}')
            os.close(fd)
    os.umask(0o022)
    print('\n'.join(lines))


main()
