package io.strata.union.mount;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * One filesystem operation as a program would do it, applied to a mounted tree, with an
 * outcome ("ok" or the error) that two mounts must agree on.
 */
interface FsOp {
  void apply(Path root) throws IOException;

  /** Runs the operation and describes what happened, errors by their kind and reason. */
  default String outcome(Path root) {
    try {
      apply(root);
      return "ok";
    } catch (io.strata.layers.fs.Posix.PosixException e) {
      return "errno " + e.errno() + " (" + io.strata.layers.fs.Posix.strerror(e.errno()) + ")";
    } catch (FileSystemException e) {
      return e.getClass().getSimpleName() + (e.getReason() == null ? "" : ": " + e.getReason());
    } catch (IOException e) {
      return e.getClass().getSimpleName() + ": " + e.getMessage().replace(root.toString(), "MNT");
    }
  }

  static FsOp named(String text, FsOp op) {
    return new FsOp() {
      @Override
      public void apply(Path root) throws IOException {
        op.apply(root);
      }

      @Override
      public String toString() {
        return text;
      }
    };
  }

  static FsOp write(String path, String content) {
    return named("write " + path + " '" + content + "'", r -> Files.write(r.resolve(path),
        content.getBytes(StandardCharsets.UTF_8)));
  }

  static FsOp append(String path, String content) {
    return named("append " + path + " '" + content + "'", r -> Files.write(r.resolve(path),
        content.getBytes(StandardCharsets.UTF_8), StandardOpenOption.APPEND));
  }

  static FsOp mkdir(String path) {
    return named("mkdir " + path, r -> Files.createDirectory(r.resolve(path)));
  }

  static FsOp delete(String path) {
    return named("delete " + path, r -> Files.delete(r.resolve(path)));
  }

  static FsOp rename(String from, String to) {
    return named("rename " + from + " " + to, r -> Posix.rename(r.resolve(from), r.resolve(to)));
  }

  static FsOp chmod(String path, int mode) {
    return named(String.format("chmod %o %s", mode, path), r -> Posix.chmod(r.resolve(path), mode));
  }

  static FsOp chown(String path, int uid, int gid) {
    return named("chown " + uid + ":" + gid + " " + path,
        r -> Posix.lchown(r.resolve(path), uid, gid));
  }

  static FsOp symlink(String path, String target) {
    return named("symlink " + path + " -> " + target,
        r -> Files.createSymbolicLink(r.resolve(path), Path.of(target)));
  }

  static FsOp link(String existing, String path) {
    return named("link " + existing + " " + path,
        r -> Files.createLink(r.resolve(path), r.resolve(existing)));
  }

  static FsOp truncate(String path, long size) {
    return named("truncate " + path + " " + size, r -> Posix.truncate(r.resolve(path), size));
  }

  static FsOp setxattr(String path, String value) {
    return named("setxattr " + path + " user.t=" + value,
        r -> Posix.lsetxattr(r.resolve(path), "user.t", value.getBytes(StandardCharsets.UTF_8)));
  }

  /**
   * A shell command run in the mount's root as user and group {@code uid} (no supplementary
   * groups), as a program of another user would act; its outcome is its exit status and its
   * output, so that what it prints (a mode, say) is compared too.
   */
  static FsOp shellAs(int uid, String command) {
    return new FsOp() {
      @Override
      public void apply(Path root) throws IOException {
        outcome(root);
      }

      @Override
      public String outcome(Path root) {
        try {
          Process p = new ProcessBuilder("setpriv", "--reuid=" + uid, "--regid=" + uid,
              "--clear-groups", "sh", "-c", command).directory(root.toFile())
              .redirectErrorStream(true).start();
          String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
          if (!p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return "timed out";
          }
          return "exit " + p.exitValue() + ": " + out.trim().replace(root.toString(), "MNT");
        } catch (IOException | InterruptedException e) {
          return e.toString();
        }
      }

      @Override
      public String toString() {
        return "as " + uid + ": " + command;
      }
    };
  }

  /** A seeded random sequence over a small namespace, so that operations collide often. */
  static List<FsOp> random(long seed, int count) {
    Random rnd = new Random(seed);
    String[] dirs = {"", "d1/", "d1/d2/", "x/", "gone/", "opq/"};
    String[] names = {"a", "b", "c", "d1", "x", "sub"};
    List<FsOp> ops = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      String p = dirs[rnd.nextInt(dirs.length)] + names[rnd.nextInt(names.length)];
      String q = dirs[rnd.nextInt(dirs.length)] + names[rnd.nextInt(names.length)];
      String content = Integer.toString(rnd.nextInt(100000), 36);
      switch (rnd.nextInt(12)) {
        case 0, 1 -> ops.add(write(p, content));
        case 2 -> ops.add(append(p, content));
        case 3 -> ops.add(mkdir(p));
        case 4, 5 -> ops.add(delete(p));
        case 6 -> ops.add(rename(p, q));
        case 7 -> ops.add(chmod(p, rnd.nextBoolean() ? 0600 : 04755));
        case 8 -> ops.add(symlink(p, rnd.nextBoolean() ? q : "/" + q));
        case 9 -> ops.add(link(p, q));
        case 10 -> ops.add(truncate(p, rnd.nextInt(4)));
        default -> ops.add(setxattr(p, content));
      }
    }
    return ops;
  }
}
