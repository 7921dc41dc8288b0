package io.strata.layers.archive;

import io.strata.layers.base.Digest;
import io.strata.layers.fs.RawFs;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;

/**
 * A layer's tar, byte for byte, without its file contents: every header, padding block and
 * trailer as read, and for each regular file only a reference to the extracted file. With the
 * layer's tree it gives back the exact tar the layer was imported from, so the layer keeps its
 * DiffID when it is pushed or saved although the store keeps no tar (containers/storage's
 * tar-split does the same). A rebuilt tar is hashed as it streams and fails at its end if it
 * is not the layer's DiffID, so a changed tree is never passed on as the original layer.
 *
 * <p>The file ({@code tar-split.gz} beside the layer's {@code diff/}) is gzip of records:
 * {@code 'R' int n, n bytes} raw stream bytes; {@code 'F' int n, n name bytes, long size} the
 * first {@code size} bytes of file NAME below the tree; {@code 'E'} the end.
 */
public final class TarSplit {
  public static final String FILE = "tar-split.gz";

  private TarSplit() {}

  /**
   * Sits below the tar reader during an import and records what passes, except the contents
   * the extractor announces with {@link #payload}.
   */
  static final class Recorder extends ChunkInputStream {
    private final InputStream in;
    private final DataOutputStream out;
    private final ByteArrayOutputStream raw = new ByteArrayOutputStream(8192);
    private long payloadLeft;

    Recorder(InputStream in, OutputStream split) {
      this.in = in;
      this.out = new DataOutputStream(split);
    }

    /** The next {@code size} bytes read are the content of the file {@code name} (raw). */
    void payload(String name, long size) throws IOException {
      if (payloadLeft != 0) {
        throw new IllegalStateException("a payload is already being read");
      }
      flushRaw();
      byte[] n = RawFs.bytes(name);
      out.writeByte('F');
      out.writeInt(n.length);
      out.write(n);
      out.writeLong(size);
      payloadLeft = size;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (payloadLeft > 0) {
        int n = in.read(b, off, (int) Math.min(len, payloadLeft));
        if (n > 0) {
          payloadLeft -= n;
        }
        return n;
      }
      int n = in.read(b, off, len);
      if (n > 0) {
        raw.write(b, off, n);
        if (raw.size() >= 1 << 20) {
          flushRaw();
        }
      }
      return n;
    }

    /** Ends the record; the caller closes the stream it was given. */
    void finish() throws IOException {
      if (payloadLeft != 0) {
        throw new IOException("tar ended inside a file's content");
      }
      flushRaw();
      out.writeByte('E');
      out.flush();
    }

    private void flushRaw() throws IOException {
      if (raw.size() > 0) {
        out.writeByte('R');
        out.writeInt(raw.size());
        raw.writeTo(out);
        raw.reset();
      }
    }
  }

  /** Opens a gzip stream to write a split into. */
  public static OutputStream create(Path file) throws IOException {
    return new GZIPOutputStream(Files.newOutputStream(file), 1 << 16);
  }

  /** Whether the layer at {@code layerDir} can give back its tar. */
  public static boolean exists(Path layerDir) {
    return Files.isRegularFile(layerDir.resolve(FILE));
  }

  /**
   * The layer's original tar, rebuilt from its split and its tree. The stream throws an
   * IOException at its end if what it produced does not hash to {@code diffId}.
   */
  public static InputStream open(Path layerDir, Digest diffId) throws IOException {
    Path tree = layerDir.resolve("diff");
    int rootFd = RawFs.open(RawFs.AT_FDCWD, RawFs.raw(tree), RawFs.O_PATH | RawFs.O_DIRECTORY, 0);
    try {
      return new Rebuild(new DataInputStream(new GZIPInputStream(
          Files.newInputStream(layerDir.resolve(FILE)), 1 << 16)), rootFd, diffId);
    } catch (IOException | RuntimeException e) {
      RawFs.close(rootFd);
      throw e;
    }
  }

  private static final class Rebuild extends ChunkInputStream {
    private final DataInputStream split;
    private final int rootFd;
    private final Digest expected;
    private final MessageDigest sha = Digest.newSha256();
    private InputStream current;
    private long left; // bytes of the current record still to give
    private String currentFile;
    private boolean ended;
    private boolean closed;

    Rebuild(DataInputStream split, int rootFd, Digest expected) {
      this.split = split;
      this.rootFd = rootFd;
      this.expected = expected;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      while (left == 0) {
        if (ended || !nextRecord()) {
          return -1;
        }
      }
      InputStream src = current != null ? current : split;
      int n = src.read(b, off, (int) Math.min(len, left));
      if (n < 0) {
        throw new EOFException(currentFile != null
            ? "layer " + expected + ": file '" + RawFs.display(currentFile)
                + "' is shorter than when it was imported"
            : "layer " + expected + ": its tar-split record is truncated");
      }
      sha.update(b, off, n);
      left -= n;
      return n;
    }

    private boolean nextRecord() throws IOException {
      closeCurrent();
      int kind = split.readUnsignedByte();
      switch (kind) {
        case 'R':
          left = split.readInt();
          return true;
        case 'F': {
          byte[] name = new byte[split.readInt()];
          split.readFully(name);
          left = split.readLong();
          currentFile = RawFs.raw(name);
          int fd = RawFs.open(rootFd, currentFile, RawFs.O_RDONLY, 0);
          try {
            current = Files.newInputStream(Path.of("/proc/self/fd/" + fd));
          } finally {
            RawFs.close(fd);
          }
          return true;
        }
        case 'E':
          ended = true;
          Digest got = Digest.fromBytes(sha.digest());
          if (!got.equals(expected)) {
            throw new IOException("layer " + expected + " does not rebuild to its own tar (it"
                + " gives " + got + "): its tree was changed after import");
          }
          return false;
        default:
          throw new IOException("layer " + expected + ": its tar-split record is damaged");
      }
    }

    private void closeCurrent() throws IOException {
      if (current != null) {
        current.close();
        current = null;
        currentFile = null;
      }
    }

    @Override
    public void close() throws IOException {
      if (!closed) {
        closed = true;
        closeCurrent();
        split.close();
        RawFs.close(rootFd);
      }
    }
  }
}
