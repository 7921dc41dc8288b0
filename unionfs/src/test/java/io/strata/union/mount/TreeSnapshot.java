package io.strata.union.mount;

import io.strata.layers.base.Digest;
import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * What a mounted tree looks like through the syscalls programs use: every path with its type,
 * permission bits, owner, size, content digest or link target, link count and user xattrs.
 * Times and inode numbers are left out: they legitimately differ between two mounts.
 */
final class TreeSnapshot {
  private TreeSnapshot() {}

  static Map<String, String> of(Path root) throws IOException {
    Map<String, String> out = new TreeMap<>();
    try (Stream<Path> walk = Files.walk(root)) {
      for (Path p : (Iterable<Path>) walk::iterator) {
        String rel = root.relativize(p).toString();
        out.put(rel.isEmpty() ? "/" : rel, describe(p));
      }
    }
    return out;
  }

  static String describe(Path p) throws IOException {
    Map<String, Object> a = Files.readAttributes(p, "unix:mode,uid,gid,size,nlink",
        LinkOption.NOFOLLOW_LINKS);
    int mode = (Integer) a.get("mode");
    int type = mode & Posix.S_IFMT;
    StringBuilder sb = new StringBuilder();
    sb.append(String.format("%06o %s:%s", mode, a.get("uid"), a.get("gid")));
    if (type == Posix.S_IFREG) {
      sb.append(" size=").append(a.get("size")).append(" nlink=").append(a.get("nlink"))
          .append(" sha=").append(Digest.of(Files.readAllBytes(p)).shortHex());
    } else if (type == Posix.S_IFLNK) {
      sb.append(" -> ").append(Files.readSymbolicLink(p));
    } else if (type == Posix.S_IFDIR) {
      sb.append(" nlink=").append(a.get("nlink"));
    }
    List<String> xattrs = new ArrayList<>();
    for (String x : Posix.llistxattr(p)) {
      if (x.startsWith("user.")) {
        xattrs.add(x + "=" + new String(Posix.lgetxattr(p, x)));
      }
    }
    Collections.sort(xattrs);
    if (!xattrs.isEmpty()) {
      sb.append(" xattrs=").append(xattrs);
    }
    return sb.toString();
  }
}
