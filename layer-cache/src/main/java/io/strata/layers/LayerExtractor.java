package io.strata.layers;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
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
final class LayerExtractor {

  /** What one extraction produced. */
  record Result(Digest diffId, long tarBytes, long entries, long diskBytes) {}

  /** What an entry turned out to be, to judge later entries that refer to it. */
  private enum Kind { DIR, IMPLICIT_DIR, FILE, SYMLINK, OTHER }

  private record DirMeta(Path path, int mode, long mtimeNanos) {}

  static final int MAX_NAME_BYTES = 255;
  static final int MAX_PATH_BYTES = 4095;
  private static final String WHITEOUT_PREFIX = ".wh.";
  private static final String OPAQUE_MARKER = ".wh..wh..opq";

  private final String layer;
  private final Path root;
  private final boolean asRoot;
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
  LayerExtractor(String layer, Path root, SpaceBudget budget) {
    this(layer, root, budget, Posix.isRoot());
  }

  /** @param asRoot whether to restore owners and device nodes, as only root may */
  LayerExtractor(String layer, Path root, SpaceBudget budget, boolean asRoot) {
    this.layer = layer;
    this.root = root;
    this.asRoot = asRoot;
    this.budget = budget;
  }

  /** Extracts the tar read from {@code tar}, hashing it whole, and returns its DiffID. */
  Result extract(InputStream tar) throws IOException {
    DigestingInputStream hashed = new DigestingInputStream(tar, null);
    String current = "(first header)";
    try {
      TarReader in = new TarReader(hashed);
      TarReader.Entry entry;
      while ((entry = in.next()) != null) {
        current = entry.name;
        entries++;
        extractEntry(in, entry);
        current = "(header after '" + entry.name + "')";
      }
      current = "(end of archive)";
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
      dirs.put("", new DirMeta(root, e.mode, e.mtimeNanos));
      chown(root, e);
      return;
    }
    Kind prior = seen.get(name);
    if (prior != null && !(prior == Kind.IMPLICIT_DIR && e.isDirectory())
        && !(prior == Kind.DIR && e.isDirectory())) {
      throw BadInputException.entry(layer, rawName, "duplicate entry (already a "
          + prior.name().toLowerCase().replace('_', ' ') + " in this layer)");
    }
    ensureParents(rawName, name);
    Path target = root.resolve(name);

    if (e.isDirectory()) {
      if (prior == null) {
        Files.createDirectory(target);
      }
      seen.put(name, Kind.DIR);
      chown(target, e);
      applyXattrs(target, e, rawName);
      dirs.put(name, new DirMeta(target, e.mode, e.mtimeNanos));
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
      Files.createSymbolicLink(target, Path.of(linkTarget));
      seen.put(name, Kind.SYMLINK);
      chown(target, e);
      applyXattrs(target, e, rawName);
      Posix.lutimes(target, -1, e.mtimeNanos);
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
      int type = e.type == '3' ? Posix.S_IFCHR : Posix.S_IFBLK;
      Posix.mknod(target, type | 0600, e.devMajor, e.devMinor);
      finishNode(target, e, rawName, name);
      return;
    }
    if (e.type == '6') {
      Posix.mknod(target, Posix.S_IFIFO | 0600, 0, 0);
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

  private void extractHardLink(TarReader.Entry e, String rawName, String name, Path target)
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
    Files.createLink(target, root.resolve(to));
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
    Files.createFile(root.resolve(wh));
  }

  private void finishNode(Path target, TarReader.Entry e, String rawName, String name)
      throws IOException {
    seen.put(name, e.isRegular() ? Kind.FILE : Kind.OTHER);
    chown(target, e);
    // chown clears setuid and setgid, so the mode comes after it.
    Posix.chmod(target, e.mode);
    applyXattrs(target, e, rawName);
    Posix.lutimes(target, -1, e.mtimeNanos);
  }

  private void writeFile(TarReader in, TarReader.Entry e, Path target) throws IOException {
    try (FileChannel out = FileChannel.open(target,
        StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      if (e.sparse != null) {
        writeSparse(in, e, out);
      } else {
        copy(in, out, 0, e.size);
      }
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
  private void writeSparse(TarReader in, TarReader.Entry e, FileChannel out) throws IOException {
    for (TarReader.Region region : e.sparse) {
      copy(in, out, region.offset(), region.length());
    }
    if (out.size() < e.realSize) {
      // A trailing hole: writing its last byte, a zero, sets the size and allocates one block.
      out.write(ByteBuffer.wrap(new byte[1]), e.realSize - 1);
    }
  }

  /** Copies exactly {@code length} bytes of content to {@code out} at {@code at}. */
  private void copy(TarReader in, FileChannel out, long at, long length) throws IOException {
    long done = 0;
    while (done < length) {
      int n = in.read(buffer, 0, (int) Math.min(buffer.length, length - done));
      if (n < 0) {
        throw new java.io.EOFException("entry content ends " + (length - done) + " bytes early");
      }
      ByteBuffer bb = ByteBuffer.wrap(buffer, 0, n);
      while (bb.hasRemaining()) {
        done += out.write(bb, at + done);
      }
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
        Files.createDirectory(root.resolve(ancestor));
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
    if (raw.getBytes(StandardCharsets.UTF_8).length > MAX_PATH_BYTES) {
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
      if (part.getBytes(StandardCharsets.UTF_8).length > MAX_NAME_BYTES) {
        throw BadInputException.entry(layer, abbreviate(raw),
            "a component is longer than " + MAX_NAME_BYTES + " bytes");
      }
      parts.add(part);
    }
    return String.join("/", parts);
  }

  private void chown(Path target, TarReader.Entry e) throws IOException {
    if (asRoot) {
      Posix.lchown(target, (int) e.uid, (int) e.gid);
    }
  }

  private void applyXattrs(Path target, TarReader.Entry e, String rawName) throws IOException {
    for (Map.Entry<String, byte[]> x : e.xattrs.entrySet()) {
      String attr = x.getKey();
      if (attr.equals("trusted.overlay.opaque") || attr.equals("user.overlay.opaque")) {
        // Overlay-style opaque marker: the store keeps the OCI form.
        if (e.isDirectory()) {
          Path marker = target.resolve(OPAQUE_MARKER);
          if (!Files.exists(marker, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            Files.createFile(marker);
          }
        }
        continue;
      }
      if (!asRoot && !attr.startsWith("user.")) {
        continue; // only root may set trusted.* and security.*; a user import keeps user.*
      }
      try {
        Posix.lsetxattr(target, attr, x.getValue());
      } catch (Posix.PosixException failed) {
        throw BadInputException.entry(layer, rawName, "cannot set xattr " + attr + ": "
            + failed.getMessage());
      }
    }
  }

  private void applyDirectoryMetadata() throws IOException {
    List<DirMeta> all = new ArrayList<>(dirs.values());
    // Deepest first: setting a child's time never disturbs the parent after the parent is set.
    all.sort((a, b) -> Integer.compare(b.path().getNameCount(), a.path().getNameCount()));
    for (DirMeta d : all) {
      Posix.chmod(d.path(), d.mode());
      Posix.lutimes(d.path(), -1, d.mtimeNanos());
    }
  }

  private static String abbreviate(String s) {
    return s.length() <= 80 ? s : s.substring(0, 60) + "…(" + s.length() + " chars)";
  }
}
