package io.strata.runtime.container;

import io.strata.layers.base.Text;
import java.nio.charset.StandardCharsets;

/**
 * Turns a container's USER[:GROUP] into numeric ids as Docker does: numbers stand for
 * themselves; names are looked up in the image's own /etc/passwd and /etc/group; a user
 * without a group takes the primary group of its passwd entry (group 0 for a number the image
 * does not know, as runc), and the groups that list it as a member. Ids are 0 to 4294967294
 * ((uid_t) -1 means "unchanged" to the kernel).
 */
final class Users {
  static final long MAX_ID = 0xffff_fffeL;

  /** Reads one of the image's files, or null when it has none. */
  interface Files {
    byte[] read(String path);
  }

  private Users() {}

  /**
   * "UID:GID" for {@code user}, followed by ":G1,G2…" when the user belongs to more groups;
   * IllegalArgumentException naming {@code what} when it cannot be used (the caller decides
   * whose fault that is).
   */
  static String resolve(String user, String what, Files image) {
    String[] p = user.split(":", -1);
    if (user.isEmpty() || p.length > 2 || p[0].isEmpty() || (p.length == 2 && p[1].isEmpty())) {
      throw bad(what, user, "expected USER[:GROUP], by name or number");
    }
    byte[] passwd = image.read("/etc/passwd");
    long uid;
    long gid = 0; // a number the image does not know gets group 0, as runc gives it
    String name = null;
    if (isNumber(p[0])) {
      uid = id(p[0], what, user);
      String[] entry = find(passwd, 2, p[0]);
      if (entry != null && entry.length >= 4 && isNumber(entry[3])) {
        name = entry[0];
        gid = id(entry[3], what, user);
      }
    } else {
      String[] entry = find(passwd, 0, p[0]);
      if (entry == null || entry.length < 4 || !isNumber(entry[2]) || !isNumber(entry[3])) {
        throw bad(what, user, "no user '" + p[0] + "' in the image's /etc/passwd");
      }
      name = entry[0];
      uid = id(entry[2], what, user);
      gid = id(entry[3], what, user);
    }
    byte[] group = image.read("/etc/group");
    if (p.length == 2) {
      if (isNumber(p[1])) {
        gid = id(p[1], what, user);
      } else {
        String[] entry = find(group, 0, p[1]);
        if (entry == null || entry.length < 3 || !isNumber(entry[2])) {
          throw bad(what, user, "no group '" + p[1] + "' in the image's /etc/group");
        }
        gid = id(entry[2], what, user);
      }
    }
    java.util.Set<Long> more = new java.util.TreeSet<>();
    if (name != null && group != null) {
      for (String line : new String(group, StandardCharsets.UTF_8).split("\n")) {
        String[] f = line.split(":", -1);
        if (f.length >= 4 && isNumber(f[2]) && java.util.Arrays.asList(f[3].split(","))
            .contains(name)) {
          more.add(id(f[2], what, user));
        }
      }
    }
    more.remove(gid);
    StringBuilder out = new StringBuilder().append(uid).append(':').append(gid);
    if (!more.isEmpty()) {
      out.append(':');
      more.forEach(g -> out.append(out.charAt(out.length() - 1) == ':' ? "" : ",").append(g));
    }
    return out.toString();
  }

  private static boolean isNumber(String s) {
    return s.matches("\\d{1,19}");
  }

  private static long id(String s, String what, String user) {
    long v;
    try {
      v = Long.parseLong(s);
    } catch (NumberFormatException e) {
      v = Long.MAX_VALUE;
    }
    if (v > MAX_ID) {
      throw bad(what, user, "ids go from 0 to " + MAX_ID);
    }
    return v;
  }

  /** The colon-separated fields of the first line whose field {@code field} is {@code value}. */
  private static String[] find(byte[] file, int field, String value) {
    if (file == null) {
      return null;
    }
    for (String line : new String(file, StandardCharsets.UTF_8).split("\n")) {
      String[] f = line.split(":", -1);
      if (f.length > field && f[field].equals(value)) {
        return f;
      }
    }
    return null;
  }

  private static IllegalArgumentException bad(String what, String user, String why) {
    return new IllegalArgumentException(what + " '" + Text.clip(user) + "': " + why);
  }
}
