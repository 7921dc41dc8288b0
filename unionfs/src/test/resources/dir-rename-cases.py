# Issue 16, item 6: renaming directories that a lower layer contributes to, as
# unionmount-testsuite's rename-dir, rename-move-dir, rename-pop-dir and rename-empty-dir
# exercise them (the cases are written anew here). Each case works in a directory of its own,
# cN, which the lower layer fills with: p/ (a, pop/b, pop/c/), e/ and e2/ (empty), f (a file).
# Prints each operation's outcome and what each check saw; run on kernel overlayfs with
# redirect_dir=on and on strata, the two outputs must be equal.
import errno
import os
import sys

root = sys.argv[1]
cases = []


def case(fn):
    cases.append(fn)
    return fn


class Ctx:
    def __init__(self, base):
        self.base = base
        self.out = []

    def p(self, rel):
        return os.path.join(self.base, rel)

    def do(self, what, fn, *rels):
        try:
            fn(*[self.p(r) for r in rels])
            self.out.append((what, rels, "ok"))
        except OSError as e:
            self.out.append((what, rels, errno.errorcode.get(e.errno, str(e.errno))))

    def rename(self, a, b):
        self.do("rename", os.rename, a, b)

    def mkdir(self, a):
        self.do("mkdir", os.mkdir, a)

    def rmdir(self, a):
        self.do("rmdir", os.rmdir, a)

    def unlink(self, a):
        self.do("unlink", os.unlink, a)

    def write(self, a, text):
        def w(path):
            with open(path, "w") as f:
                f.write(text)
        self.do("write", w, a)

    def ls(self, a):
        try:
            self.out.append(("ls", a, sorted(os.listdir(self.p(a)))))
        except OSError as e:
            self.out.append(("ls", a, errno.errorcode.get(e.errno, str(e.errno))))

    def cat(self, a):
        try:
            with open(self.p(a)) as f:
                self.out.append(("cat", a, f.read()))
        except OSError as e:
            self.out.append(("cat", a, errno.errorcode.get(e.errno, str(e.errno))))

    def rmtree(self, a):
        for dirpath, dirs, files in os.walk(self.p(a), topdown=False):
            for f in files:
                os.unlink(os.path.join(dirpath, f))
            for d in dirs:
                os.rmdir(os.path.join(dirpath, d))
        self.rmdir(a)


@case
def move_populated_into_empty_sibling(c):
    c.rename("p", "e/x"); c.rename("p", "e/x"); c.ls("e/x"); c.ls("p"); c.cat("e/x/a")


@case
def move_populated_subdir(c):
    c.rename("p/pop", "e/pop"); c.rename("p/pop", "e/pop"); c.ls("e/pop"); c.ls("p/pop")
    c.cat("e/pop/b"); c.ls("p")


@case
def move_empty_into_populated(c):
    c.rename("e", "p/e"); c.rename("e", "p/e"); c.ls("p/e"); c.ls("e"); c.ls("p")


@case
def move_populated_into_empty(c):
    c.rename("p", "e/p"); c.rename("p", "e/p"); c.ls("e/p"); c.ls("p"); c.cat("e/p/a")


@case
def rename_then_move(c):
    c.rename("p", "px"); c.rename("p", "px"); c.rename("px", "e/p"); c.rename("px", "e/p")
    c.ls("p"); c.ls("px"); c.ls("e/p"); c.cat("e/p/a")


@case
def move_then_rename(c):
    c.rename("p", "e/p"); c.rename("e/p", "e/px"); c.ls("p"); c.ls("e/p"); c.ls("e/px")
    c.cat("e/px/a")


@case
def move_then_move_subdir(c):
    c.rename("p", "e/p"); c.rename("e/p/pop", "e2/pop"); c.ls("e/p"); c.ls("e/p/pop")
    c.ls("e2/pop"); c.cat("e/p/a"); c.cat("e2/pop/b")


@case
def rename_child_and_self_then_move(c):
    c.rename("p/pop", "p/popx"); c.rename("p", "px"); c.rename("px", "e/p"); c.ls("e/p")
    c.ls("e/p/pop"); c.ls("e/p/popx"); c.cat("e/p/popx/b")


@case
def rename_child_and_parent_then_move_child(c):
    c.rename("p/pop", "p/popx"); c.rename("p", "px"); c.rename("px/popx", "e/popx")
    c.ls("px"); c.ls("e"); c.cat("px/a"); c.cat("e/popx/b")


@case
def new_dirs_into_lower_dirs(c):
    c.mkdir("e-new"); c.rename("e-new", "e/new"); c.ls("e")
    c.mkdir("e2/new"); c.rename("e2/new", "n"); c.ls("n"); c.ls("e2")
    c.mkdir("e2/newp"); c.mkdir("e2/newp/new"); c.rename("e2/newp", "n2"); c.ls("n2")


@case
def rename_back(c):
    c.rename("p", "n"); c.rename("p", "n"); c.rename("n", "p"); c.rename("n", "p"); c.ls("p")
    c.ls("n"); c.cat("p/pop/b")


@case
def rename_and_remove_old_name(c):
    c.rename("p", "n"); c.rmdir("p"); c.unlink("p"); c.rename("n", "p"); c.rmdir("p")
    c.unlink("p"); c.ls("p"); c.ls("n")


@case
def remove_then_rename(c):
    c.rmdir("p"); c.rename("p", "n"); c.rmdir("p"); c.rmdir("n"); c.ls("n")


@case
def rename_twice(c):
    c.rename("p", "n"); c.rename("n", "nx"); c.ls("p"); c.ls("n"); c.ls("nx")


@case
def rename_over_empty_lower_dir(c):
    c.rename("p", "e"); c.ls("e"); c.ls("p"); c.cat("e/a"); c.ls("e/pop")


@case
def rename_over_self_file_and_child(c):
    c.rename("p", "p"); c.rename("p", "f"); c.rename("p", "p/a"); c.rename("p/pop", "p/a")
    c.rename("p", "."); c.ls("p")


@case
def empty_lower_dir_moved_and_made_again(c):
    c.rename("e", "n"); c.mkdir("e"); c.ls("e"); c.ls("n"); c.write("e/new", "x"); c.ls("e")


@case
def changes_inside_a_moved_dir(c):
    c.rename("p", "n"); c.write("n/new", "new"); c.unlink("n/a"); c.mkdir("n/pop/d")
    c.rmdir("n/pop/c"); c.ls("n"); c.ls("n/pop"); c.rename("n", "p2"); c.ls("p2")
    c.ls("p2/pop"); c.cat("p2/new")


@case
def remove_a_moved_dir(c):
    c.rename("p", "n"); c.rmtree("n"); c.ls("."); c.rename("e", "p"); c.ls("p")


@case
def move_into_a_moved_dir(c):
    c.rename("p", "n"); c.rename("e", "n/e"); c.rename("e2", "n/e/e2"); c.ls("n"); c.ls("n/e")
    c.rename("n", "p"); c.ls("p/e"); c.ls("p/e/e2")


def main():
    results = []
    for i, fn in enumerate(cases):
        c = Ctx(os.path.join(root, "c%d" % i))
        fn(c)
        results.append((fn.__name__, c.out))
    for name, out in results:
        print(name)
        for o in out:
            print("  ", o)


main()
