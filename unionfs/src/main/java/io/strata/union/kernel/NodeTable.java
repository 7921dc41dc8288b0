package io.strata.union.kernel;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The kernel's inodes as strata knows them: node ids with the kernel's lookup counts, each
 * bound to the view's inode number and to the names it is known by (parent node, name). A
 * request names a node; its path in the view is built by walking parents, never looked up from
 * the root. Hard links of a layer have one inode number in the view and so one node here, and a
 * copy-up keeps the number, so it keeps the node.
 *
 * <p>Node ids are handed out by a counter and never reused, so a forgotten id stays unknown
 * (ESTALE), and an inode number of the upper filesystem that is reused for a new file after the
 * old one lost its last name gets a new node.
 *
 * <p>Locking: {@code byId} is concurrent and each node's first name is volatile, so building a
 * request's path takes no lock; every change of counts or names is made under this table's
 * monitor, which guards no I/O and is held for microseconds.
 */
final class NodeTable {
  /** One kernel inode. */
  static final class Node {
    final long id;
    final long ino;
    final boolean dir;
    /** One name of a lower file with several: its own kernel inode (see {@code Attr.lowerLink}). */
    final boolean perName;
    /** The names this node is known by (guarded by the table). */
    final List<Name> names = new ArrayList<>(1);
    /** The first of {@code names}, or null: what its path is built from, read without a lock. */
    volatile Name first;
    long lookups;
    /** Whether the kernel refused this node's file as a passthrough backing. */
    volatile boolean noBacking;
    /**
     * Retired: its kernel inode holds the backing of a file that has since been copied up, so
     * its names went to a new node (see {@link NodeTable#retire}); it keeps its first name for
     * the requests of descriptors still open on it.
     */
    volatile boolean retired;
    /** Whether the node is known to have no extended attributes (null: not known yet). */
    volatile Boolean noXattrs;
    /** GETXATTR misses before {@code noXattrs} was known (a hint: races only cost a syscall). */
    int xattrMisses;

    Node(long id, long ino, boolean dir, boolean perName) {
      this.id = id;
      this.ino = ino;
      this.dir = dir;
      this.perName = perName;
    }
  }

  /** A name of a node: an entry in a parent directory. */
  record Name(long parent, String name) {}

  private final ConcurrentHashMap<Long, Node> byId = new ConcurrentHashMap<>();
  private final Map<Long, Node> byIno = new HashMap<>();
  private final Map<Name, Node> byName = new HashMap<>();
  /** The per-name nodes of lower hard links, by inode number, for invalidations. */
  private final Map<Long, List<Node>> perName = new HashMap<>();
  private final AtomicLong next = new AtomicLong(Fuse.ROOT_ID + 1);
  private final Node root;

  NodeTable(long rootIno) {
    root = new Node(Fuse.ROOT_ID, rootIno, true, false);
    root.lookups = 1; // the kernel holds the root for the life of the mount
    byId.put(root.id, root);
  }

  Node get(long id) {
    return byId.get(id);
  }

  int size() {
    return byId.size();
  }

  /**
   * The view path of a node: "/" for the root, null when the node has no name left (an open
   * file whose last name was removed) or an ancestor was forgotten.
   */
  String path(Node n) {
    if (n.id == Fuse.ROOT_ID) {
      return "/";
    }
    java.util.ArrayDeque<String> parts = new java.util.ArrayDeque<>();
    int length = 0;
    Node at = n;
    while (at.id != Fuse.ROOT_ID) {
      Name first = at.first;
      if (first == null || parts.size() > 65_536) {
        return null;
      }
      parts.push(first.name());
      length += first.name().length() + 1;
      at = byId.get(first.parent());
      if (at == null) {
        return null;
      }
    }
    StringBuilder sb = new StringBuilder(length);
    for (String name : parts) {
      sb.append('/').append(name);
    }
    return sb.toString();
  }

  /** A child's path: its parent's and the name, or null when the parent has no path. */
  String childPath(Node parent, String name) {
    String p = path(parent);
    if (p == null) {
      return null;
    }
    return p.length() == 1 ? "/" + name : p + "/" + name;
  }

  /**
   * Counts one lookup of {@code name} in {@code parent}, which the view says is inode
   * {@code ino}: the known node for that number, or a new one. A lower file with other names
   * ({@code ownName}) gets a node per name: a copy-up through one of them breaks the link.
   */
  synchronized Node lookedUp(Node parent, String name, long ino, boolean dir, boolean ownName) {
    Name key = new Name(parent.id, name);
    Node before = byName.get(key);
    Node n;
    if (ownName) {
      n = before != null && before.perName && before.ino == ino ? before : null;
      if (n == null) {
        n = new Node(next.getAndIncrement(), ino, false, true);
        byId.put(n.id, n);
        perName.computeIfAbsent(ino, k -> new ArrayList<>(2)).add(n);
      }
    } else {
      n = byIno.get(ino);
      if (n == null || n.dir != dir) {
        n = new Node(next.getAndIncrement(), ino, dir, false);
        byId.put(n.id, n);
        byIno.put(ino, n);
      }
    }
    if (before != n) {
      if (before != null) {
        before.names.remove(key);
      }
      byName.put(key, n);
      if (n.dir) {
        // a directory has one name: a lookup under another means it moved
        for (Name old : n.names) {
          byName.remove(old, n);
        }
        n.names.clear();
      }
      n.names.add(key);
      named(n);
      if (before != null) {
        named(before);
      }
    }
    n.lookups++;
    return n;
  }

  private static void named(Node n) {
    n.first = n.names.isEmpty() ? null : n.names.get(0);
  }

  /** A node with no name yet (an O_TMPFILE file), counted once; a LINK names it later. */
  synchronized Node unnamed(long ino) {
    Node n = new Node(next.getAndIncrement(), ino, false, false);
    byId.put(n.id, n);
    byIno.put(ino, n);
    n.lookups = 1;
    return n;
  }

  /** Drops {@code count} lookups; the node goes when none is left. */
  synchronized void forget(long id, long count) {
    Node n = byId.get(id);
    if (n == null || n.id == Fuse.ROOT_ID) {
      return;
    }
    n.lookups -= count;
    if (n.lookups <= 0) {
      byId.remove(id);
      byIno.remove(n.ino, n);
      if (n.perName) {
        List<Node> l = perName.get(n.ino);
        if (l != null && l.remove(n) && l.isEmpty()) {
          perName.remove(n.ino);
        }
      }
      for (Name name : n.names) {
        byName.remove(name, n);
      }
      // children keep their names; their paths fail until looked up again under a live parent
    }
  }

  /** The name is gone from the view (unlink, rmdir, or replaced by a rename). */
  synchronized void removed(long parent, String name) {
    Name key = new Name(parent, name);
    Node n = byName.remove(key);
    if (n != null) {
      n.names.remove(key);
      named(n);
      if (n.names.isEmpty()) {
        byIno.remove(n.ino, n); // a new file may reuse the number: it gets a node of its own
      }
    }
  }

  /** A rename: the node at the old name now has the new one; whatever had the new one lost it. */
  synchronized void renamed(long oldParent, String oldName, long newParent, String newName) {
    Name from = new Name(oldParent, oldName);
    Name to = new Name(newParent, newName);
    Node moving = byName.remove(from);
    Node replaced = byName.remove(to);
    if (replaced != null && replaced != moving) {
      replaced.names.remove(to);
      named(replaced);
      if (replaced.names.isEmpty()) {
        byIno.remove(replaced.ino, replaced);
      }
    }
    if (moving != null) {
      int i = moving.names.indexOf(from);
      moving.names.set(i, to);
      named(moving);
      byName.put(to, moving);
    }
  }

  /** RENAME_EXCHANGE: the two names swap their nodes. */
  synchronized void exchanged(long parentA, String nameA, long parentB, String nameB) {
    Name a = new Name(parentA, nameA);
    Name b = new Name(parentB, nameB);
    Node na = byName.remove(a);
    Node nb = byName.remove(b);
    if (na != null) {
      na.names.set(na.names.indexOf(a), b);
      named(na);
      byName.put(b, na);
    }
    if (nb != null) {
      nb.names.set(nb.names.indexOf(b), a);
      named(nb);
      byName.put(a, nb);
    }
  }

  /**
   * Takes every name from {@code n}, so that the next lookup of any of them makes a new node
   * (a new kernel inode), and returns the names, for the kernel to drop its entries. {@code n}
   * keeps its first name for building paths: descriptors open on its kernel inode still ask
   * through it until the kernel forgets it.
   */
  synchronized List<Name> retire(Node n) {
    n.retired = true;
    byIno.remove(n.ino, n);
    if (n.perName) {
      List<Node> l = perName.get(n.ino);
      if (l != null && l.remove(n) && l.isEmpty()) {
        perName.remove(n.ino);
      }
    }
    List<Name> out = new ArrayList<>();
    for (Name name : n.names) {
      if (byName.remove(name, n)) {
        out.add(name);
      }
    }
    return out;
  }

  /** The nodes of an inode number, for invalidations the view reports by number. */
  synchronized List<Node> byIno(long ino) {
    List<Node> out = new ArrayList<>(perName.getOrDefault(ino, List.of()));
    Node n = byIno.get(ino);
    if (n != null) {
      out.add(n);
    }
    return out;
  }

  /** Lookup counts of all nodes but the root, for tests. */
  synchronized Map<Long, Long> counts() {
    Map<Long, Long> out = new HashMap<>();
    byId.values().forEach(n -> {
      if (n.id != Fuse.ROOT_ID) {
        out.put(n.id, n.lookups);
      }
    });
    return out;
  }
}
