package io.strata.layers.archive;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Json;
import io.strata.layers.base.Text;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarFile;

/**
 * The files of an image source, read by relative path: an OCI layout directory, or a tar
 * (docker-archive, oci-archive) read with random access. Paths are checked so that no name in
 * a manifest can reach outside the source.
 */
public abstract class Archive implements Closeable {
  /** Documents (manifests, configs, indexes) larger than this are refused. */
  static final int MAX_DOCUMENT = Json.MAX_DOCUMENT_BYTES;

  abstract boolean exists(String path);

  /** The size in bytes, or an error naming the missing path. */
  abstract long size(String path) throws IOException;

  abstract InputStream open(String path) throws IOException;

  abstract String describe();

  byte[] readDocument(String path, String what) throws IOException {
    long size = size(path);
    if (size > MAX_DOCUMENT) {
      throw new BadInputException(describe() + ": " + what + " '" + path + "' is " + size
          + " bytes, too large for a JSON document");
    }
    try (InputStream in = open(path)) {
      return in.readNBytes(MAX_DOCUMENT + 1);
    }
  }

  BadInputException missing(String path) {
    return new BadInputException(describe() + ": missing '" + Text.clip(path) + "'");
  }

  /** Normalises a path named inside the source, refusing one that would leave it. */
  String clean(String path) {
    if (path == null || path.isEmpty() || path.startsWith("/") || path.indexOf('\0') >= 0) {
      throw new BadInputException(describe() + ": bad path '" + Text.clip(path) + "'");
    }
    java.util.ArrayDeque<String> parts = new java.util.ArrayDeque<>();
    for (String part : path.split("/")) {
      if (part.isEmpty() || part.equals(".")) {
        continue;
      }
      if (part.equals("..")) {
        if (parts.isEmpty()) {
          throw new BadInputException(describe() + ": path '" + Text.clip(path)
              + "' leaves the image");
        }
        parts.removeLast();
        continue;
      }
      parts.addLast(part);
    }
    return String.join("/", parts);
  }

  /** An OCI image layout on disk. */
  public static final class Directory extends Archive {
    private final Path dir;

    public Directory(Path dir) {
      this.dir = dir;
    }

    private Path resolve(String path) throws IOException {
      Path p = dir.resolve(clean(path));
      if (!Files.exists(p)) {
        throw missing(path);
      }
      if (!p.toRealPath().startsWith(dir.toRealPath())) {
        throw new BadInputException(describe() + ": '" + path + "' links outside the layout");
      }
      if (!Files.isRegularFile(p)) {
        throw new BadInputException(describe() + ": '" + path + "' is not a regular file");
      }
      return p;
    }

    @Override
    boolean exists(String path) {
      return Files.exists(dir.resolve(clean(path)), LinkOption.NOFOLLOW_LINKS);
    }

    @Override
    long size(String path) throws IOException {
      return Files.size(resolve(path));
    }

    @Override
    InputStream open(String path) throws IOException {
      return Files.newInputStream(resolve(path));
    }

    @Override
    String describe() {
      return dir.toString();
    }

    @Override
    public void close() {}
  }

  /** The members of a tar by clean name, with docker save's links between them followed. */
  abstract static class TarMembers extends Archive {
    private static final int MAX_LINK_HOPS = 8;
    final String label;
    final Map<String, TarArchiveEntry> entries = new HashMap<>();

    TarMembers(String label) {
      this.label = label;
    }

    void add(TarArchiveEntry e) {
      String name = clean(e.getName());
      if (entries.put(name, e) != null && !e.isDirectory()) {
        throw new BadInputException(label + ": duplicate member '" + Text.clip(name) + "'");
      }
    }

    /** The regular member a path names, after links. */
    TarArchiveEntry entry(String path) {
      String name = clean(path);
      for (int hop = 0; hop <= MAX_LINK_HOPS; hop++) {
        TarArchiveEntry e = entries.get(name);
        if (e == null) {
          throw missing(path);
        }
        if (e.isSymbolicLink()) {
          // docker save links repeated layers: <id>/layer.tar -> ../<other>/layer.tar
          int slash = name.lastIndexOf('/');
          String base = slash < 0 ? "" : name.substring(0, slash + 1);
          name = clean(base + e.getLinkName());
        } else if (e.isLink()) {
          name = clean(e.getLinkName());
        } else if (e.isFile()) {
          return e;
        } else {
          throw new BadInputException(label + ": member '" + Text.clip(path) + "' is not a file");
        }
      }
      throw new BadInputException(label + ": member '" + Text.clip(path) + "': too many links");
    }

    @Override
    boolean exists(String path) {
      return entries.containsKey(clean(path));
    }

    @Override
    long size(String path) {
      return entry(path).getSize();
    }

    @Override
    String describe() {
      return label;
    }
  }

  /** A tar read through {@link TarFile}, which seeks straight to each member. */
  public static final class Tar extends TarMembers {
    private final TarFile tar;

    public Tar(Path file, String label) throws IOException {
      super(label);
      try {
        this.tar = new TarFile(file);
      } catch (IOException | RuntimeException e) {
        throw new BadInputException(label + ": corrupt or truncated tar: " + e.getMessage(), e);
      }
      for (TarArchiveEntry e : tar.getEntries()) {
        add(e);
      }
    }

    @Override
    InputStream open(String path) throws IOException {
      return tar.getInputStream(entry(path));
    }

    @Override
    public void close() throws IOException {
      tar.close();
    }
  }

  /**
   * A compressed tar (a docker-archive or oci-archive as .tar.gz or .tar.zst), which cannot be
   * seeked: a first pass lists the members and keeps the small ones (manifests, configs,
   * indexes) in memory; the first time a large member is opened, a second pass writes out the
   * members the manifest reading asked for (and no others: a blob nothing references is never
   * unpacked), each charged to the import's space budget first.
   */
  public static final class Streamed extends TarMembers {
    /** Small members kept in memory, at most this many bytes in all. */
    private static final long MAX_KEPT = 64L << 20;
    private final Path source;
    private final Compression compression;
    private final Path staging;
    private final SpaceBudget budget;
    private final Map<String, byte[]> small = new HashMap<>();
    private final java.util.Set<String> wanted = new java.util.LinkedHashSet<>();
    private Map<String, Path> staged;

    public Streamed(Path source, Compression compression, String label, Path staging, SpaceBudget budget)
        throws IOException {
      super(label);
      this.source = source;
      this.compression = compression;
      this.staging = staging;
      this.budget = budget;
      long kept = 0;
      try (InputStream raw = new java.io.BufferedInputStream(Files.newInputStream(source), 1 << 16);
          org.apache.commons.compress.archivers.tar.TarArchiveInputStream tar =
              new org.apache.commons.compress.archivers.tar.TarArchiveInputStream(
                  compression.decompress(raw))) {
        TarArchiveEntry e;
        while ((e = tar.getNextEntry()) != null) {
          add(e);
          if (e.isFile() && e.getSize() <= MAX_DOCUMENT && kept + e.getSize() <= MAX_KEPT) {
            small.put(clean(e.getName()), tar.readNBytes((int) e.getSize()));
            kept += e.getSize();
          }
        }
      } catch (BadInputException e) {
        throw e;
      } catch (IOException | RuntimeException e) {
        throw new BadInputException(label + ": corrupt or truncated archive: " + e.getMessage(), e);
      }
    }

    /** Notes a large member that the manifest reading named: the second pass writes it out. */
    private void want(String path) {
      try {
        String name = clean(entry(path).getName());
        if (!small.containsKey(name)) {
          wanted.add(name);
        }
      } catch (BadInputException notAFile) {
        // missing or not a file: the reader reports it
      }
    }

    @Override
    boolean exists(String path) {
      want(path);
      return super.exists(path);
    }

    @Override
    long size(String path) {
      want(path);
      return super.size(path);
    }

    @Override
    InputStream open(String path) throws IOException {
      String name = clean(entry(path).getName());
      byte[] b = small.get(name);
      if (b != null) {
        return new java.io.ByteArrayInputStream(b);
      }
      want(path);
      if (staged == null || !staged.containsKey(name)) {
        stage();
      }
      return Files.newInputStream(staged.get(name));
    }

    private void stage() throws IOException {
      staged = new HashMap<>();
      Path dir = Files.createDirectories(staging.resolve("members"));
      try (InputStream raw = new java.io.BufferedInputStream(Files.newInputStream(source), 1 << 16);
          org.apache.commons.compress.archivers.tar.TarArchiveInputStream tar =
              new org.apache.commons.compress.archivers.tar.TarArchiveInputStream(
                  compression.decompress(raw))) {
        TarArchiveEntry e;
        while ((e = tar.getNextEntry()) != null && staged.size() < wanted.size()) {
          String name = clean(e.getName());
          if (e.isFile() && wanted.contains(name) && !staged.containsKey(name)) {
            budget.charge(e.getSize(), label + ": member '" + Text.clip(name) + "'");
            Path out = dir.resolve("m" + staged.size());
            Files.copy(tar, out);
            staged.put(name, out);
          }
        }
      }
    }

    @Override
    public void close() {}
  }
}
