package io.strata.layers;

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
abstract class Archive implements Closeable {
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
    return new BadInputException(describe() + ": missing '" + path + "'");
  }

  /** Normalises a path named inside the source, refusing one that would leave it. */
  String clean(String path) {
    if (path == null || path.isEmpty() || path.startsWith("/") || path.indexOf('\0') >= 0) {
      throw new BadInputException(describe() + ": bad path '" + path + "'");
    }
    java.util.ArrayDeque<String> parts = new java.util.ArrayDeque<>();
    for (String part : path.split("/")) {
      if (part.isEmpty() || part.equals(".")) {
        continue;
      }
      if (part.equals("..")) {
        if (parts.isEmpty()) {
          throw new BadInputException(describe() + ": path '" + path + "' leaves the image");
        }
        parts.removeLast();
        continue;
      }
      parts.addLast(part);
    }
    return String.join("/", parts);
  }

  /** An OCI image layout on disk. */
  static final class Directory extends Archive {
    private final Path dir;

    Directory(Path dir) {
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

  /** A tar read through {@link TarFile}, which seeks straight to each member. */
  static final class Tar extends Archive {
    private static final int MAX_LINK_HOPS = 8;
    private final TarFile tar;
    private final String label;
    private final Map<String, TarArchiveEntry> entries = new HashMap<>();

    Tar(Path file, String label) throws IOException {
      this.label = label;
      try {
        this.tar = new TarFile(file);
      } catch (IOException | RuntimeException e) {
        throw new BadInputException(label + ": corrupt or truncated tar: " + e.getMessage(), e);
      }
      for (TarArchiveEntry e : tar.getEntries()) {
        String name = clean(e.getName());
        if (entries.put(name, e) != null && !e.isDirectory()) {
          throw new BadInputException(label + ": duplicate member '" + name + "'");
        }
      }
    }

    private TarArchiveEntry entry(String path) {
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
          throw new BadInputException(label + ": member '" + path + "' is not a file");
        }
      }
      throw new BadInputException(label + ": member '" + path + "': too many links");
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
    InputStream open(String path) throws IOException {
      return tar.getInputStream(entry(path));
    }

    @Override
    String describe() {
      return label;
    }

    @Override
    public void close() throws IOException {
      tar.close();
    }
  }
}
