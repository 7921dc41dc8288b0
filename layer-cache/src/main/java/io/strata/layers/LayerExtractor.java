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
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;

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
  private static final int BLOCK = 4096;

  private final String layer;
  private final Path root;
  private final boolean asRoot;
  private final long freeBytesLimit;
  private final Map<String, Kind> seen = new HashMap<>();
  private final Map<String, DirMeta> dirs = new LinkedHashMap<>();
  private final byte[] buffer = new byte[128 * 1024];
  private long diskBytes;
  private long entries;

  /**
   * @param layer how the layer is named in errors (its DiffID when known, else its source)
   * @param root an existing empty directory to fill
   * @param freeBytesLimit entries larger than this are refused before a byte is written
   */
  LayerExtractor(String layer, Path root, long freeBytesLimit) {
    this(layer, root, freeBytesLimit, Posix.isRoot());
  }

  /** @param asRoot whether to restore owners and device nodes, as only root may */
  LayerExtractor(String layer, Path root, long freeBytesLimit, boolean asRoot) {
    this.layer = layer;
    this.root = root;
    this.asRoot = asRoot;
    this.freeBytesLimit = freeBytesLimit;
  }

  /** Extracts the tar read from {@code tar}, hashing it whole, and returns its DiffID. */
  Result extract(InputStream tar) throws IOException {
    DigestingInputStream hashed = new DigestingInputStream(tar, null);
    String current = "(archive header)";
    try {
      TarArchiveInputStream in = new TarArchiveInputStream(hashed, 512 * 20, 512, "UTF-8", false);
      TarArchiveEntry entry;
      while ((entry = in.getNextEntry()) != null) {
        current = entry.getName();
        entries++;
        extractEntry(in, entry);
      }
      current = "(end of archive)";
      hashed.drain();
    } catch (BadInputException e) {
      throw e;
    } catch (IOException | IllegalArgumentException | IllegalStateException e) {
      // commons-compress reports truncated, corrupt and oversized input this way.
      throw BadInputException.entry(layer, current, "corrupt or truncated tar: " + e.getMessage());
    }
    applyDirectoryMetadata();
    return new Result(hashed.digest(), hashed.count(), entries, diskBytes);
  }

  private void extractEntry(TarArchiveInputStream in, TarArchiveEntry e) throws IOException {
    String rawName = e.getName();
    if (!e.isCheckSumOK()) {
      // commons-compress reads on past a bad checksum; a corrupt header must stop the import.
      throw BadInputException.entry(layer, rawName, "corrupt tar header (checksum mismatch)");
    }
    String name = normalize(rawName);
    if (name.isEmpty()) {
      if (!e.isDirectory()) {
        throw BadInputException.entry(layer, rawName, "the layer root must be a directory");
      }
      dirs.put("", new DirMeta(root, (int) e.getMode(), mtimeNanos(e)));
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
      dirs.put(name, new DirMeta(target, (int) e.getMode(), mtimeNanos(e)));
      return;
    }
    if (e.isLink()) {
      extractHardLink(e, rawName, name, target);
      return;
    }
    if (e.isSymbolicLink()) {
      String linkTarget = e.getLinkName();
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
      Posix.lutimes(target, -1, mtimeNanos(e));
      return;
    }
    if (e.isCharacterDevice() || e.isBlockDevice()) {
      if (e.isCharacterDevice() && e.getDevMajor() == 0 && e.getDevMinor() == 0) {
        // An overlay-style whiteout: the store keeps the OCI form, .wh.NAME.
        writeWhiteout(rawName, name);
        return;
      }
      if (!asRoot) {
        throw BadInputException.entry(layer, rawName,
            "device node " + e.getDevMajor() + ":" + e.getDevMinor()
                + " can only be imported as root");
      }
      int type = e.isCharacterDevice() ? Posix.S_IFCHR : Posix.S_IFBLK;
      Posix.mknod(target, type | 0600, e.getDevMajor(), e.getDevMinor());
      finishNode(target, e, rawName, name);
      return;
    }
    if (e.isFIFO()) {
      Posix.mknod(target, Posix.S_IFIFO | 0600, 0, 0);
      finishNode(target, e, rawName, name);
      return;
    }
    if (e.isFile()) {
      if (e.getRealSize() < 0) {
        throw BadInputException.entry(layer, rawName, "negative size");
      }
      if (e.getRealSize() > freeBytesLimit) {
        throw BadInputException.entry(layer, rawName, "size " + e.getRealSize()
            + " bytes exceeds the free space of the store (" + freeBytesLimit + " bytes)");
      }
      writeFile(in, e, target);
      finishNode(target, e, rawName, name);
      return;
    }
    throw BadInputException.entry(layer, rawName,
        "unsupported entry type '" + (char) e.getLinkFlag() + "'");
  }

  private void extractHardLink(TarArchiveEntry e, String rawName, String name, Path target)
      throws IOException {
    String rawTarget = e.getLinkName();
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

  private void finishNode(Path target, TarArchiveEntry e, String rawName, String name)
      throws IOException {
    seen.put(name, e.isFile() ? Kind.FILE : Kind.OTHER);
    chown(target, e);
    // chown clears setuid and setgid, so the mode comes after it.
    Posix.chmod(target, (int) e.getMode());
    applyXattrs(target, e, rawName);
    Posix.lutimes(target, -1, mtimeNanos(e));
  }

  private void writeFile(TarArchiveInputStream in, TarArchiveEntry e, Path target)
      throws IOException {
    long size = e.getRealSize();
    boolean sparse = e.isSparse();
    try (FileChannel out = FileChannel.open(target,
        StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
      long pos = 0;
      int n;
      while ((n = in.read(buffer, 0, buffer.length)) > 0) {
        if (sparse) {
          writeSkippingZeroBlocks(out, pos, n);
        } else {
          ByteBuffer bb = ByteBuffer.wrap(buffer, 0, n);
          while (bb.hasRemaining()) {
            out.write(bb);
          }
        }
        pos += n;
      }
      if (pos != size) {
        throw new IOException("expected " + size + " bytes of content, got " + pos);
      }
      if (sparse && out.size() < size) {
        // Trailing holes: extend the file without writing zeros.
        out.write(ByteBuffer.wrap(new byte[1]), size - 1);
      }
    }
    diskBytes += size;
  }

  /** Leaves all-zero blocks of a sparse entry as holes, as {@code tar --sparse} does. */
  private void writeSkippingZeroBlocks(FileChannel out, long pos, int n) throws IOException {
    byte[] zero = new byte[BLOCK];
    int off = 0;
    while (off < n) {
      int len = Math.min(BLOCK, n - off);
      if (Arrays.mismatch(buffer, off, off + len, zero, 0, len) >= 0) {
        ByteBuffer bb = ByteBuffer.wrap(buffer, off, len);
        long at = pos + off;
        while (bb.hasRemaining()) {
          at += out.write(bb, at);
        }
      }
      off += len;
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

  private void chown(Path target, TarArchiveEntry e) throws IOException {
    if (asRoot) {
      Posix.lchown(target, (int) e.getLongUserId(), (int) e.getLongGroupId());
    }
  }

  private void applyXattrs(Path target, TarArchiveEntry e, String rawName) throws IOException {
    Map<String, String> pax = e.getExtraPaxHeaders();
    if (pax.isEmpty()) {
      return;
    }
    for (Map.Entry<String, String> h : pax.entrySet()) {
      String key = h.getKey();
      String attr;
      byte[] value;
      if (key.startsWith("SCHILY.xattr.")) {
        attr = key.substring("SCHILY.xattr.".length());
        value = h.getValue().getBytes(StandardCharsets.UTF_8);
      } else if (key.startsWith("LIBARCHIVE.xattr.")) {
        attr = java.net.URLDecoder.decode(key.substring("LIBARCHIVE.xattr.".length()),
            StandardCharsets.UTF_8);
        try {
          value = Base64.getDecoder().decode(h.getValue());
        } catch (IllegalArgumentException bad) {
          throw BadInputException.entry(layer, rawName, "xattr " + attr + " is not base64");
        }
      } else {
        continue;
      }
      if (attr.equals("trusted.overlay.opaque") || attr.equals("user.overlay.opaque")) {
        // Overlay-style opaque marker: the store keeps the OCI form.
        if (Files.isDirectory(target, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
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
        Posix.lsetxattr(target, attr, value);
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

  private static long mtimeNanos(TarArchiveEntry e) {
    java.nio.file.attribute.FileTime t = e.getLastModifiedTime();
    if (t == null) {
      return 0;
    }
    java.time.Instant i = t.toInstant();
    return Math.addExact(Math.multiplyExact(i.getEpochSecond(), 1_000_000_000L), i.getNano());
  }

  private static String abbreviate(String s) {
    return s.length() <= 80 ? s : s.substring(0, 60) + "…(" + s.length() + " chars)";
  }
}
