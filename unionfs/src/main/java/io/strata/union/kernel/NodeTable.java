package io.strata.union.kernel;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
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
 * <p>Locking: {@code byId} is read without a lock and each node's first name is volatile, so
 * building a request's path takes no lock; every change of counts or names is made under this
 * table's monitor, which guards no I/O and is held for microseconds.
 *
 * <p>Memory: a mount walked by find holds a node per file the kernel keeps (a Debian image:
 * 6,000), and the daemon holds them for every mount. The two number indexes are open-addressed
 * arrays of nodes (no boxed key, no entry object) and a node with one name (nearly all) keeps
 * it in a field, not a list: about 140 bytes a node instead of 280.
 */
final class NodeTable {
  /** One kernel inode. */
  static final class Node {
    final long id;
    /** Its file's number; changes when a copy-up gives its file another (table lock). */
    long ino;
    final boolean dir;
    /**
     * One name of a lower file with several: its own kernel inode (see {@code Attr.lowerLink}),
     * until that name is copied up (guarded by the table).
     */
    boolean perName;
    /**
     * The names this node is known by (guarded by the table): null, one {@link Name}, or a
     * list of two or more (hard links).
     */
    private Object names;
    /** The first of its names, or null: what its path is built from, read without a lock. */
    volatile Name first;
    long lookups;
    /** Whether the kernel refused this node's file as a passthrough backing. */
    volatile boolean noBacking;
    /**
     * The kernel's open files of this node served from the page cache rather than passed
     * through (a small file below, see Dispatcher#openReply); guarded by the node's lock.
     */
    int cachedOpens;
    /** Whether its small file below was put into the kernel's page cache at an open. */
    boolean stored;
    /**
     * Retired: its kernel inode holds the backing of a file that has since been copied up, so
     * its names went to a new node (see {@link NodeTable#retire}); it keeps its first name for
     * the requests of descriptors still open on it.
     */
    volatile boolean retired;
    /**
     * Taken from the checkpoint of a server that died, and not yet checked against what its
     * name leads to now (see Dispatcher#verify): the checkpoint may be older than a rename or
     * removal that server made.
     */
    volatile boolean unsure;
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
  record Name(long parent, String name) {
    /**
     * Not the record's own hash (31 times the parent's plus the name's): node ids are handed
     * out in order, and names that differ in their last characters differ in their hashes by
     * small multiples of 31, so the two cancel. A hundred directories listed one after the
     * other, each holding f0000 to f0999, gave their 100,000 names 3,880 hashes, up to 37
     * names to one, and every lookup of the table compared its way along such a chain (the
     * top of a cold stat walk's profile). The parent is spread by a multiply first.
     */
    @Override
    public int hashCode() {
      long h = (parent * 0x9E3779B97F4A7C15L + name.hashCode()) * 0xBF58476D1CE4E5B9L;
      return (int) (h ^ (h >>> 32));
    }
  }

  // ---------------------------------------------------------------- a node's names

  @SuppressWarnings("unchecked")
  private static List<Name> names(Node n) {
    return n.names == null ? List.of() : n.names instanceof Name one ? List.of(one)
        : (List<Name>) n.names;
  }

  private static boolean hasNames(Node n) {
    return n.names != null;
  }

  @SuppressWarnings("unchecked")
  private static void addName(Node n, Name name) {
    if (n.names == null) {
      n.names = name;
    } else if (n.names instanceof Name one) {
      List<Name> l = new ArrayList<>(2);
      l.add(one);
      l.add(name);
      n.names = l;
    } else {
      ((List<Name>) n.names).add(name);
    }
    named(n);
  }

  @SuppressWarnings("unchecked")
  private static void removeName(Node n, Name name) {
    if (n.names instanceof Name one) {
      if (one.equals(name)) {
        n.names = null;
      }
    } else if (n.names != null) {
      List<Name> l = (List<Name>) n.names;
      l.remove(name);
      if (l.size() == 1) {
        n.names = l.get(0);
      }
    }
    named(n);
  }

  @SuppressWarnings("unchecked")
  private static void replaceName(Node n, Name from, Name to) {
    if (n.names instanceof Name one) {
      if (one.equals(from)) {
        n.names = to;
      }
    } else if (n.names != null) {
      List<Name> l = (List<Name>) n.names;
      int i = l.indexOf(from);
      if (i >= 0) {
        l.set(i, to);
      }
    }
    named(n);
  }

  private static void clearNames(Node n) {
    n.names = null;
    named(n);
  }

  private static void named(Node n) {
    n.first = n.names == null ? null : n.names instanceof Name one ? one
        : names(n).get(0);
  }

  // ---------------------------------------------------------------- number indexes

  /**
   * Nodes by a number of theirs (their id, or their inode number), open-addressed: an array
   * of nodes probed linearly from the number's hash, a removed one marked by a tombstone.
   * Changed only under the table's monitor; {@link #get} on the id index reads without a lock
   * (the array is published through a volatile field and its slots with release/acquire).
   */
  static final class NodeIndex {
    private static final Node TOMB = new Node(-1, -1, false, false);
    private static final java.lang.invoke.VarHandle SLOT =
        java.lang.invoke.MethodHandles.arrayElementVarHandle(Node[].class);
    private final boolean byIno;
    private volatile Node[] slots = new Node[16];
    private int size;
    private int used; // live and tombstones

    NodeIndex(boolean byIno) {
      this.byIno = byIno;
    }

    private long key(Node n) {
      return byIno ? n.ino : n.id;
    }

    private static int hash(long k) {
      long h = k * 0x9E3779B97F4A7C15L;
      return (int) (h ^ (h >>> 32));
    }

    Node get(long k) {
      Node[] a = slots;
      int mask = a.length - 1;
      for (int i = hash(k) & mask; ; i = (i + 1) & mask) {
        Node s = (Node) SLOT.getAcquire(a, i);
        if (s == null) {
          return null;
        }
        if (s != TOMB && key(s) == k) {
          return s;
        }
      }
    }

    /** Maps the node's number to it, replacing another node with that number. */
    void put(Node n) {
      if ((used + 1) * 2 > slots.length) {
        rehash();
      }
      Node[] a = slots;
      int mask = a.length - 1;
      long k = key(n);
      int tomb = -1;
      for (int i = hash(k) & mask; ; i = (i + 1) & mask) {
        Node s = a[i];
        if (s == null) {
          if (tomb >= 0) {
            SLOT.setRelease(a, tomb, n);
          } else {
            SLOT.setRelease(a, i, n);
            used++;
          }
          size++;
          return;
        }
        if (s == TOMB) {
          if (tomb < 0) {
            tomb = i;
          }
        } else if (key(s) == k) {
          SLOT.setRelease(a, i, n);
          return;
        }
      }
    }

    /** Removes the mapping of {@code k} if it is to {@code n} (any node when null). */
    boolean remove(long k, Node n) {
      Node[] a = slots;
      int mask = a.length - 1;
      for (int i = hash(k) & mask; ; i = (i + 1) & mask) {
        Node s = a[i];
        if (s == null) {
          return false;
        }
        if (s != TOMB && key(s) == k) {
          if (n != null && s != n) {
            return false;
          }
          SLOT.setRelease(a, i, TOMB);
          size--;
          return true;
        }
      }
    }

    int size() {
      return size;
    }

    /** The nodes, in no order (under the table's monitor). */
    List<Node> values() {
      List<Node> out = new ArrayList<>(size);
      for (Node s : slots) {
        if (s != null && s != TOMB) {
          out.add(s);
        }
      }
      return out;
    }

    /** A new array for the live nodes: twice as big if they fill a quarter, else as big. */
    private void rehash() {
      Node[] old = slots;
      int cap = old.length;
      while (size * 4 >= cap) {
        cap *= 2;
      }
      Node[] a = new Node[cap];
      int mask = cap - 1;
      for (Node s : old) {
        if (s != null && s != TOMB) {
          int i = hash(key(s)) & mask;
          while (a[i] != null) {
            i = (i + 1) & mask;
          }
          a[i] = s;
        }
      }
      used = size;
      slots = a; // published: readers use the old array or this one, both hold every node
    }
  }

  private final NodeIndex byId = new NodeIndex(false);
  private final NodeIndex byIno = new NodeIndex(true);
  private final Map<Name, Node> byName = new HashMap<>();
  /** The per-name nodes of lower hard links, by inode number, for invalidations. */
  private final Map<Long, List<Node>> perName = new HashMap<>();
  /** Retired nodes by the number of their file now (see {@link #retire}, {@link #sameFile}). */
  private final Map<Long, List<Node>> retired = new HashMap<>();
  private final AtomicLong next = new AtomicLong(Fuse.ROOT_ID + 1);
  private final Node root;

  NodeTable(long rootIno) {
    root = new Node(Fuse.ROOT_ID, rootIno, true, false);
    root.lookups = 1; // the kernel holds the root for the life of the mount
    byId.put(root);
  }

  Node get(long id) {
    return byId.get(id);
  }

  /**
   * Hands out ids from {@code base} on: a server taking over a mount must not give an id that
   * the kernel still holds from the server before it (the kernel finds inodes by id).
   */
  void startIdsAt(long base) {
    next.set(base);
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
        byId.put(n);
        perName.computeIfAbsent(ino, k -> new ArrayList<>(2)).add(n);
      }
    } else if (before != null && !before.dir && !dir && !before.retired
        && !(before.unsure && before.ino != ino)) { // (a dead server's name of another file)
      // Every change of what a name is passes through this table, so a file's name keeps its
      // node (kernel overlayfs keeps its inode), also when the file got a new number: a lower
      // hard link's name copied up, or a copy-up that made a new upper file. Going by the
      // number here gave the name to a new node (the kernel inode descriptors held went
      // stale), or to whatever node an old number of another file had, once reused.
      n = before;
      if (before.perName || before.ino != ino) {
        ownNumber(before, ino);
      }
    } else {
      n = byIno.get(ino);
      if (n == null || n.dir != dir) {
        n = new Node(next.getAndIncrement(), ino, dir, false);
        byId.put(n);
        byIno.put(n);
      }
    }
    if (n.unsure) {
      // its names came from a checkpoint that may be older than their changes (it was found
      // by its number under another name, say, after a rename): only this one is known right,
      // and an old one kept would be its path (the file now there answering for it)
      for (Name old : names(n)) {
        byName.remove(old, n);
      }
      clearNames(n);
      if (before == n) {
        byName.put(key, n);
        addName(n, key);
      }
    }
    if (before != n) {
      if (before != null) {
        removeName(before, key);
      }
      byName.put(key, n);
      if (n.dir) {
        // a directory has one name: a lookup under another means it moved
        for (Name old : names(n)) {
          byName.remove(old, n);
        }
        clearNames(n);
      }
      addName(n, key);
    }
    n.lookups++;
    if (n.unsure && n.ino == ino) {
      n.unsure = false; // its name leads to its file
    }
    return n;
  }

  /**
   * A node of a checkpoint whose path ({@link Node#first}) was found to lead to its file: that
   * name is kept, its others (not checked) go.
   */
  synchronized void verified(Node n) {
    Name keep = n.first;
    for (Name old : names(n)) {
      if (!old.equals(keep)) {
        byName.remove(old, n);
      }
    }
    clearNames(n);
    if (keep != null) {
      addName(n, keep);
    }
    n.unsure = false;
  }

  /**
   * A file made by CREATE, MKNOD, MKDIR or SYMLINK, counted once: always a new node. A node
   * that still has its number is another file's, whose number the filesystem reused.
   */
  synchronized Node created(Node parent, String name, long ino, boolean dir) {
    Name key = new Name(parent.id, name);
    Node before = byName.remove(key);
    if (before != null) {
      removeName(before, key);
    }
    Node n = new Node(next.getAndIncrement(), ino, dir, false);
    byId.put(n);
    byIno.put(n); // replaces the stale one
    byName.put(key, n);
    addName(n, key);
    n.lookups++;
    return n;
  }

  /** {@code n}'s file is now numbered {@code ino} (and no name of a lower hard link). */
  private void ownNumber(Node n, long ino) {
    if (n.perName) {
      List<Node> l = perName.get(n.ino);
      if (l != null && l.remove(n) && l.isEmpty()) {
        perName.remove(n.ino);
      }
    } else {
      byIno.remove(n.ino, n);
    }
    n.ino = ino;
    n.perName = false;
    byIno.put(n);
  }

  /** A node with no name yet (an O_TMPFILE file), counted once; a LINK names it later. */
  synchronized Node unnamed(long ino) {
    Node n = new Node(next.getAndIncrement(), ino, false, false);
    byId.put(n);
    byIno.put(n);
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
      byId.remove(id, n);
      byIno.remove(n.ino, n);
      if (n.retired) {
        List<Node> r = retired.get(n.ino);
        if (r != null && r.remove(n) && r.isEmpty()) {
          retired.remove(n.ino);
        }
      }
      if (n.perName) {
        List<Node> l = perName.get(n.ino);
        if (l != null && l.remove(n) && l.isEmpty()) {
          perName.remove(n.ino);
        }
      }
      for (Name name : names(n)) {
        byName.remove(name, n);
      }
      // children keep their names; their paths fail until looked up again under a live parent
    }
  }

  /** The node that has {@code name} in {@code parent}, or null. */
  synchronized Node named(long parent, String name) {
    return byName.get(new Name(parent, name));
  }

  /** The name is gone from the view (unlink, rmdir, or replaced by a rename). */
  synchronized void removed(long parent, String name) {
    Name key = new Name(parent, name);
    Node n = byName.remove(key);
    if (n != null) {
      removeName(n, key);
      if (!hasNames(n)) {
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
      removeName(replaced, to);
      if (!hasNames(replaced)) {
        byIno.remove(replaced.ino, replaced);
      }
    }
    if (moving != null) {
      replaceName(moving, from, to);
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
      replaceName(na, a, b);
      byName.put(b, na);
    }
    if (nb != null) {
      replaceName(nb, b, a);
      byName.put(a, nb);
    }
  }

  /**
   * Takes every name from {@code n}, so that the next lookup of any of them makes a new node
   * (a new kernel inode), and returns the names, for the kernel to drop its entries. {@code n}
   * keeps its first name for building paths: descriptors open on its kernel inode still ask
   * through it until the kernel forgets it.
   */
  synchronized List<Name> retire(Node n, long ino) {
    n.retired = true;
    byIno.remove(n.ino, n);
    if (n.perName) {
      List<Node> l = perName.get(n.ino);
      if (l != null && l.remove(n) && l.isEmpty()) {
        perName.remove(n.ino);
      }
      n.perName = false;
    }
    n.ino = ino; // a lower hard link's name gets the number of its copy
    retired.computeIfAbsent(ino, k -> new ArrayList<>(1)).add(n);
    List<Name> out = new ArrayList<>();
    for (Name name : names(n)) {
      if (byName.remove(name, n)) {
        out.add(name);
      }
    }
    return out;
  }

  /**
   * The other kernel inodes of {@code n}'s file: a node retired from it (descriptors from
   * before its copy-up hold it), or the node that took its names. A change of the file's
   * attributes through one must drop what the kernel caches for the others.
   */
  synchronized List<Node> sameFile(Node n) {
    List<Node> r = retired.get(n.ino);
    Node live = byIno.get(n.ino);
    if (r == null && (live == null || live == n)) {
      return List.of();
    }
    List<Node> out = new ArrayList<>(r == null ? List.of() : r);
    if (live != null) {
      out.add(live);
    }
    out.remove(n);
    return out;
  }

  /**
   * A LINK of {@code from} gave its file the number {@code ino}: a lower hard link's name that
   * the link copied up is that file now, and the new name gets the same node (one kernel inode
   * for the file's names, as kernel overlayfs keeps one).
   */
  synchronized void linked(Node from, long ino) {
    if (from.perName && !from.dir && !from.retired && byIno.get(ino) == null) {
      ownNumber(from, ino);
    }
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

  // ---------------------------------------------------------------- hand-over

  /**
   * Writes every node as the kernel knows it (id, number, kind, lookups, names, and whether
   * it is a lower hard link's name, retired, or its number's node), for a server that takes
   * the mount over ({@link #restore}): as they are at one moment, while requests are served
   * or not.
   */
  void writeTo(java.io.DataOutputStream out) throws java.io.IOException {
    // copied under the table's lock, written after it: a checkpoint of a busy mount (100,000
    // nodes: tens of milliseconds to write) does not hold its lookups up meanwhile
    long nextId;
    int count;
    long[] ids;
    long[] inos;
    long[] lookups;
    byte[] flags;
    Object[] names;
    synchronized (this) {
      List<Node> all = byId.values();
      nextId = next.get();
      count = all.size();
      ids = new long[count];
      inos = new long[count];
      lookups = new long[count];
      flags = new byte[count];
      names = new Object[count];
      for (int i = 0; i < count; i++) {
        Node n = all.get(i);
        ids[i] = n.id;
        inos[i] = n.ino;
        lookups[i] = n.lookups;
        flags[i] = (byte) ((n.dir ? 1 : 0) | (n.perName ? 2 : 0) | (n.retired ? 4 : 0)
            | (n.noBacking ? 8 : 0) | (byIno.get(n.ino) == n ? 16 : 0));
        names[i] = n.names instanceof Name one ? one
            : n.names == null ? null : names(n).toArray(new Name[0]);
      }
    }
    out.writeLong(nextId);
    out.writeInt(count);
    for (int i = 0; i < count; i++) {
      out.writeLong(ids[i]);
      out.writeLong(inos[i]);
      out.writeLong(lookups[i]);
      out.writeByte(flags[i]);
      Name[] ns = names[i] == null ? new Name[0] : names[i] instanceof Name one
          ? new Name[] {one} : (Name[]) names[i];
      out.writeInt(ns.length);
      for (Name name : ns) {
        out.writeLong(name.parent());
        byte[] b = io.strata.layers.fs.RawFs.bytes(name.name());
        out.writeShort(b.length);
        out.write(b);
      }
    }
  }

  /**
   * Takes the nodes {@link #writeTo} wrote (the root's lookups stay one: the kernel holds it
   * for the mount's life); ids handed out from here on are above {@code base}. Nodes of a
   * checkpoint ({@code unsure}: written while the server before served on, which then died)
   * are checked before use.
   */
  synchronized void restore(java.io.DataInputStream in, long base, boolean unsure)
      throws java.io.IOException {
    long nextBefore = in.readLong();
    next.set(Math.max(base, nextBefore));
    int count = in.readInt();
    for (int i = 0; i < count; i++) {
      long id = in.readLong();
      long ino = in.readLong();
      long lookups = in.readLong();
      int flags = in.readByte();
      int nnames = in.readInt();
      List<Name> names = new ArrayList<>(nnames);
      for (int k = 0; k < nnames; k++) {
        long parent = in.readLong();
        byte[] b = new byte[in.readUnsignedShort()];
        in.readFully(b);
        names.add(new Name(parent, io.strata.layers.fs.RawFs.raw(b)));
      }
      Node n = id == Fuse.ROOT_ID ? root : new Node(id, ino, (flags & 1) != 0, (flags & 2) != 0);
      if (n != root) {
        n.unsure = unsure;
        n.lookups = lookups;
        n.retired = (flags & 4) != 0;
        n.noBacking = (flags & 8) != 0;
        byId.put(n);
      }
      for (Name name : names) {
        addName(n, name);
        if (!n.retired) {
          byName.put(name, n);
        }
      }
      if ((flags & 16) != 0) {
        byIno.put(n);
      }
      if (n.perName) {
        perName.computeIfAbsent(ino, x -> new ArrayList<>(2)).add(n);
      }
      if (n.retired) {
        retired.computeIfAbsent(ino, x -> new ArrayList<>(1)).add(n);
      }
    }
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
