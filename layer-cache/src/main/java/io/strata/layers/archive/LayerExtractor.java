package io.strata.layers.archive;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.DiskFullException;
import io.strata.layers.base.Text;
import io.strata.layers.fs.Posix;
import io.strata.layers.fs.RawFs;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Extracts one uncompressed layer tar into an empty directory, refusing anything hostile.
 *
 * <p>The tar is untrusted. Every entry name is normalised and checked before anything is
 * written: no absolute names, no {@code ..}, no entry below a non-directory of this layer (so
 * extraction never follows a symlink the layer made), no duplicates, hard links only to files
 * extracted before them. Symlink targets are stored verbatim: they are resolved inside the
 * container's root, never by the extractor, and absolute targets are normal in real images.
 *
 * <p>Directory modes and times are applied after all entries, deepest first, so that a
 * read-only directory can still be filled and its mtime is not disturbed by its children.
 */
public final class LayerExtractor {

  /** What one extraction produced. */
  public record Result(Digest diffId, long tarBytes, long entries, long diskBytes) {}

  /** What an entry turned out to be, to judge later entries that refer to it. */
  private enum Kind { DIR, IMPLICIT_DIR, FILE, SYMLINK, OTHER }

  /** A directory's metadata, applied last; {@code rel} is a raw path below the root. */
  private record DirMeta(String rel, int mode, long mtimeNanos) {}

  static final int MAX_NAME_BYTES = 255;
  static final int MAX_PATH_BYTES = 4095;
  private static final String WHITEOUT_PREFIX = ".wh.";
  private static final String OPAQUE_MARKER = ".wh..wh..opq";

  private final String layer;
  private final Path root;
  private final boolean asRoot;
  /**
   * Root of a user namespace (a user's store, made by the client's namespace): owners within
   * the namespace's map, no device nodes and no trusted.* xattrs, as in rootless podman.
   */
  private final boolean inUserNamespace;
  private boolean saidDevices;
  private boolean saidOwners;
  private final SpaceBudget budget;
  private final Map<String, Kind> seen = new HashMap<>();
  private final Map<String, DirMeta> dirs = new LinkedHashMap<>();
  private final byte[] buffer = new byte[128 * 1024];
  private long diskBytes;
  private long entries;

  /**
   * @param layer how the layer is named in errors (its DiffID when known, else its source)
   * @param root an existing empty directory to fill
   * @param budget what the import may still write: each file is charged before it is written
   */
  public LayerExtractor(String layer, Path root, SpaceBudget budget) {
    this(layer, root, budget, Posix.isRoot());
  }

  /** @param asRoot whether to restore owners and device nodes, as only root may */
  public LayerExtractor(String layer, Path root, SpaceBudget budget, boolean asRoot) {
    this.layer = layer;
    this.root = root;
    this.asRoot = asRoot;
    this.inUserNamespace = asRoot && !io.strata.layers.fs.Places.inInitialUserNamespace();
    this.budget = budget;
  }

  /** The root directory's descriptor while an extraction runs: every call is relative to it. */
  private int rootFd = -1;

  /** Records the tar's headers while it is read, when a split is asked for. */
  private TarSplit.Recorder recorder;

  /** Extracts the tar read from {@code tar}, hashing it whole, and returns its DiffID. */
  public Result extract(InputStream tar) throws IOException {
    return extract(tar, null);
  }

  /**
   * As {@link #extract(InputStream)}, also writing the layer's {@link TarSplit} to {@code split}
   * (which the caller closes) when it is not null.
   */
  public Result extract(InputStream tar, java.io.OutputStream split) throws IOException {
    rootFd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(root), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      return extractAll(tar, split);
    } finally {
      recorder = null;
      RawFs.close(rootFd);
      rootFd = -1;
    }
  }

  private Result extractAll(InputStream tar, java.io.OutputStream split) throws IOException {
    DigestingInputStream hashed = new DigestingInputStream(tar, null);
    recorder = split == null ? null : new TarSplit.Recorder(hashed, split);
    String current = "(first header)";
    try {
      TarReader in = new TarReader(recorder != null ? recorder : hashed);
      TarReader.Entry entry;
      while ((entry = in.next()) != null) {
        io.strata.layers.base.Invocation.checkCancelled();
        current = entry.name;
        entries++;
        extractEntry(in, entry);
        current = "(header after '" + entry.name + "')";
      }
      current = "(end of archive)";
      if (recorder != null) {
        recorder.drain();
        recorder.finish();
      }
      hashed.drain();
    } catch (BadInputException e) {
      throw e;
    } catch (IOException e) {
      if (String.valueOf(e.getMessage()).contains("No space left on device")) {
        throw new DiskFullException("the store's filesystem filled up while importing layer "
            + layer + " (at entry '" + Text.clip(current) + "'); nothing was stored");
      }
      throw BadInputException.entry(layer, current, "corrupt or truncated tar: " + e.getMessage());
    } catch (ArithmeticException e) {
      // TarReader and the decompressors report truncated, corrupt and oversized input this way.
      throw BadInputException.entry(layer, current, "corrupt or truncated tar: " + e.getMessage());
    }
    applyDirectoryMetadata();
    return new Result(hashed.digest(), hashed.count(), entries, diskBytes);
  }

  private void extractEntry(TarReader in, TarReader.Entry e) throws IOException {
    String rawName = e.name;
    String name = normalize(rawName);
    if (name.isEmpty()) {
      if (!e.isDirectory()) {
        throw BadInputException.entry(layer, rawName, "the layer root must be a directory");
      }
      dirs.put("", new DirMeta("", e.mode, e.mtimeNanos));
      chown("", e);
      return;
    }
    Kind prior = seen.get(name);
    if (prior != null && !(prior == Kind.IMPLICIT_DIR && e.isDirectory())
        && !(prior == Kind.DIR && e.isDirectory())) {
      throw BadInputException.entry(layer, rawName, "duplicate entry (already a "
          + prior.name().toLowerCase().replace('_', ' ') + " in this layer)");
    }
    ensureParents(rawName, name);
    String target = name; // names and paths are raw: the tar's bytes, one char each

    if (e.isDirectory()) {
      if (prior == null) {
        RawFs.mkdir(rootFd, target, 0700);
      }
      seen.put(name, Kind.DIR);
      chown(target, e);
      applyXattrs(target, e, rawName);
      dirs.put(name, new DirMeta(name, e.mode, e.mtimeNanos));
      return;
    }
    if (e.type == '1') {
      extractHardLink(e, rawName, name, target);
      return;
    }
    if (e.type == '2') {
      String linkTarget = e.linkName;
      if (linkTarget == null || linkTarget.isEmpty()) {
        throw BadInputException.entry(layer, rawName, "symlink with an empty target");
      }
      if (linkTarget.indexOf('\0') >= 0) {
        throw BadInputException.entry(layer, rawName, "symlink target contains a NUL byte");
      }
      RawFs.symlink(linkTarget, rootFd, target);
      seen.put(name, Kind.SYMLINK);
      chown(target, e);
      applyXattrs(target, e, rawName);
      RawFs.lutimes(rootFd, target, -1, e.mtimeNanos);
      return;
    }
    if (e.type == '3' || e.type == '4') {
      if (e.type == '3' && e.devMajor == 0 && e.devMinor == 0) {
        // An overlay-style whiteout: the store keeps the OCI form, .wh.NAME.
        writeWhiteout(rawName, name);
        return;
      }
      if (!asRoot) {
        throw BadInputException.entry(layer, rawName,
            "device node " + e.devMajor + ":" + e.devMinor
                + " can only be imported as root");
      }
      if (inUserNamespace) {
        // the kernel refuses mknod of a device in a user namespace; containers/storage skips
        // them there too (a container's /dev is bind mounts of the host's nodes anyway)
        if (!saidDevices) {
          saidDevices = true;
          io.strata.layers.base.Log.info("layer " + layer + ": device nodes such as " + name
              + " are not made in a user namespace");
        }
        return;
      }
      int type = e.type == '3' ? Posix.S_IFCHR : Posix.S_IFBLK;
      RawFs.mknod(rootFd, target, type | 0600, e.devMajor, e.devMinor);
      finishNode(target, e, rawName, name);
      return;
    }
    if (e.type == '6') {
      RawFs.mknod(rootFd, target, Posix.S_IFIFO | 0600, 0, 0);
      finishNode(target, e, rawName, name);
      return;
    }
    if (e.isRegular()) {
      if (dataBytes(e) > budget.capacity()) {
        throw BadInputException.entry(layer, rawName, "size " + e.size
            + " bytes is larger than the store's whole filesystem");
      }
      budget.charge(dataBytes(e), "layer " + layer + ", entry '" + Text.clip(rawName) + "'");
      writeFile(in, e, target);
      finishNode(target, e, rawName, name);
      return;
    }
    throw BadInputException.entry(layer, rawName,
        "unsupported entry type '" + e.type + "'");
  }

  private void extractHardLink(TarReader.Entry e, String rawName, String name, String target)
      throws IOException {
    String rawTarget = e.linkName;
    String to;
    try {
      to = normalize(rawTarget);
    } catch (BadInputException bad) {
      throw BadInputException.entry(layer, rawName,
          "hard link target '" + rawTarget + "' leaves the layer");
    }
    Kind kind = seen.get(to);
    if (kind == null) {
      throw BadInputException.entry(layer, rawName,
          "hard link to '" + rawTarget + "', which is not earlier in this layer");
    }
    if (kind == Kind.DIR || kind == Kind.IMPLICIT_DIR) {
      throw BadInputException.entry(layer, rawName, "hard link to directory '" + rawTarget + "'");
    }
    RawFs.link(rootFd, to, rootFd, target);
    seen.put(name, kind);
  }

  private void writeWhiteout(String rawName, String name) throws IOException {
    int slash = name.lastIndexOf('/');
    String parent = slash < 0 ? "" : name.substring(0, slash + 1);
    String leaf = name.substring(slash + 1);
    String wh = parent + WHITEOUT_PREFIX + leaf;
    if (seen.containsKey(wh)) {
      throw BadInputException.entry(layer, rawName, "whiteout given twice");
    }
    seen.put(name, Kind.OTHER);
    seen.put(wh, Kind.FILE);
    RawFs.close(RawFs.open(rootFd, wh, RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0644));
  }

  private void finishNode(String target, TarReader.Entry e, String rawName, String name)
      throws IOException {
    seen.put(name, e.isRegular() ? Kind.FILE : Kind.OTHER);
    chown(target, e);
    // chown clears setuid and setgid, so the mode comes after it.
    RawFs.chmod(rootFd, target, e.mode);
    applyXattrs(target, e, rawName);
    RawFs.lutimes(rootFd, target, -1, e.mtimeNanos);
  }

  private void writeFile(TarReader in, TarReader.Entry e, String target) throws IOException {
    int fd = RawFs.open(rootFd, target, RawFs.O_WRONLY | RawFs.O_CREAT | RawFs.O_EXCL, 0600);
    try {
      if (e.sparse != null) {
        writeSparse(in, e, fd);
      } else {
        if (recorder != null) {
          recorder.payload(target, e.size);
        }
        copy(in, fd, 0, e.size);
      }
    } finally {
      RawFs.close(fd);
    }
    diskBytes += e.realSize;
  }

  /** The bytes an entry puts on disk: its data regions when sparse, else its size. */
  private static long dataBytes(TarReader.Entry e) {
    if (e.sparse == null) {
      return e.size;
    }
    long n = 0;
    for (TarReader.Region r : e.sparse) {
      n += r.length();
    }
    return n;
  }

  /**
   * Writes only the data regions of a sparse entry at their offsets and leaves the rest as
   * holes, as {@code tar --sparse} does, so a 100 GiB sparse file costs what its data costs.
   */
  private void writeSparse(TarReader in, TarReader.Entry e, int fd) throws IOException {
    long end = 0;
    for (TarReader.Region region : e.sparse) {
      copy(in, fd, region.offset(), region.length());
      end = Math.max(end, region.offset() + region.length());
    }
    if (end < e.realSize) {
      // A trailing hole: writing its last byte, a zero, sets the size and allocates one block.
      RawFs.pwrite(fd, new byte[1], 1, e.realSize - 1);
    }
  }

  /** Copies exactly {@code length} bytes of content to {@code out} at {@code at}. */
  private void copy(TarReader in, int fd, long at, long length) throws IOException {
    long done = 0;
    while (done < length) {
      int n = in.read(buffer, 0, (int) Math.min(buffer.length, length - done));
      if (n < 0) {
        throw new java.io.EOFException("entry content ends " + (length - done) + " bytes early");
      }
      RawFs.pwrite(fd, buffer, n, at + done);
      done += n;
    }
  }

  /**
   * Checks every ancestor of {@code name}: one this layer made must be a directory, and one it
   * did not make is created as a plain directory, so that no write ever goes through a link.
   */
  private void ensureParents(String rawName, String name) throws IOException {
    int slash = -1;
    while ((slash = name.indexOf('/', slash + 1)) >= 0) {
      String ancestor = name.substring(0, slash);
      Kind kind = seen.get(ancestor);
      if (kind == null) {
        RawFs.mkdir(rootFd, ancestor, 0755);
        seen.put(ancestor, Kind.IMPLICIT_DIR);
      } else if (kind != Kind.DIR && kind != Kind.IMPLICIT_DIR) {
        throw BadInputException.entry(layer, rawName, "its parent '" + ancestor + "' is a "
            + kind.name().toLowerCase() + " in this layer, not a directory");
      }
    }
  }

  /**
   * Turns a tar name into a relative path with no {@code .} or empty components, or refuses it.
   * Returns "" for the layer root ({@code ./} or {@code .}).
   */
  String normalize(String raw) {
    if (raw == null || raw.isEmpty()) {
      throw BadInputException.entry(layer, String.valueOf(raw), "empty name");
    }
    if (raw.indexOf('\0') >= 0) {
      throw BadInputException.entry(layer, raw, "name contains a NUL byte");
    }
    if (raw.startsWith("/") && !raw.chars().allMatch(c -> c == '/')) {
      // "/" alone names the layer root (umoci writes it); anything else absolute is refused,
      // although GNU tar and containerd would strip the slash: a layer tool that writes
      // absolute names is broken or hostile.
      throw BadInputException.entry(layer, raw, "absolute name escapes the layer");
    }
    if (raw.length() > MAX_PATH_BYTES) { // a raw string has one char per byte
      throw BadInputException.entry(layer, abbreviate(raw),
          "name longer than " + MAX_PATH_BYTES + " bytes");
    }
    List<String> parts = new ArrayList<>();
    for (String part : raw.split("/")) {
      if (part.isEmpty() || part.equals(".")) {
        continue;
      }
      if (part.equals("..")) {
        throw BadInputException.entry(layer, raw, "'..' escapes the layer");
      }
      if (part.length() > MAX_NAME_BYTES) {
        throw BadInputException.entry(layer, abbreviate(raw),
            "a component is longer than " + MAX_NAME_BYTES + " bytes");
      }
      parts.add(part);
    }
    return String.join("/", parts);
  }

  private void chown(String target, TarReader.Entry e) throws IOException {
    if (!asRoot) {
      return;
    }
    try {
      RawFs.lchown(rootFd, target, (int) e.uid, (int) e.gid);
    } catch (Posix.PosixException failed) {
      if (!inUserNamespace || failed.errno() != Posix.EINVAL) {
        throw failed;
      }
      // an id outside the namespace's map (a user without subordinate ids has only 0): the
      // file stays the namespace root's, as podman's ignore_chown_errors does
      if (!saidOwners) {
        saidOwners = true;
        io.strata.layers.base.Log.info("layer " + layer + ": owner " + e.uid + ":" + e.gid
            + " of " + RawFs.display(target) + " is outside this user namespace's ids;"
            + " such files stay root's");
      }
    }
  }

  private void applyXattrs(String target, TarReader.Entry e, String rawName) throws IOException {
    for (Map.Entry<String, byte[]> x : e.xattrs.entrySet()) {
      String attr = x.getKey();
      if (attr.equals("trusted.overlay.opaque") || attr.equals("user.overlay.opaque")) {
        // Overlay-style opaque marker: the store keeps the OCI form.
        if (e.isDirectory()) {
          String marker = target.isEmpty() ? OPAQUE_MARKER : target + "/" + OPAQUE_MARKER;
          if (RawFs.lstat(rootFd, marker) == null) {
            RawFs.close(RawFs.open(rootFd, marker, RawFs.O_WRONLY | RawFs.O_CREAT, 0644));
          }
        }
        continue;
      }
      if (!asRoot && !attr.startsWith("user.")) {
        continue; // only root may set trusted.* and security.*; a user import keeps user.*
      }
      if (inUserNamespace && attr.startsWith("trusted.")) {
        continue; // trusted.* needs the host's root
      }
      try {
        RawFs.lsetxattr(rootFd, target, attr, x.getValue());
      } catch (Posix.PosixException failed) {
        throw BadInputException.entry(layer, rawName, "cannot set xattr "
            + RawFs.display(attr) + ": " + failed.getMessage());
      }
    }
  }

  private void applyDirectoryMetadata() throws IOException {
    List<DirMeta> all = new ArrayList<>(dirs.values());
    // Deepest first: setting a child's time never disturbs the parent after the parent is set.
    all.sort((a, b) -> Integer.compare(depth(b.rel()), depth(a.rel())));
    for (DirMeta d : all) {
      RawFs.chmod(rootFd, d.rel(), d.mode());
      RawFs.lutimes(rootFd, d.rel(), -1, d.mtimeNanos());
    }
  }

  private static int depth(String rel) {
    return rel.isEmpty() ? 0 : (int) rel.chars().filter(c -> c == '/').count() + 1;
  }

  private static String abbreviate(String s) {
    return s.length() <= 80 ? s : s.substring(0, 60) + "…(" + s.length() + " chars)";
  }
}
