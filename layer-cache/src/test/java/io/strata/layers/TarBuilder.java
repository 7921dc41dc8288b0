package io.strata.layers;

import com.github.luben.zstd.ZstdOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;

/**
 * Writes layer tars for tests with commons-compress, including the hostile ones a real tool
 * would refuse to write: absolute names, '..', links that leave, duplicates.
 */
public final class TarBuilder {
  static final Instant MTIME = Instant.parse("2021-03-04T05:06:07.1234567Z");

  private record Item(TarArchiveEntry entry, byte[] data) {}

  private final List<Item> items = new ArrayList<>();

  public static TarBuilder layer() {
    return new TarBuilder();
  }

  private static TarArchiveEntry entry(String name, byte type) {
    TarArchiveEntry e = new TarArchiveEntry(name, type, true); // true: keep a leading '/'
    e.setModTime(FileTime.from(MTIME));
    e.setUserId(0);
    e.setGroupId(0);
    return e;
  }

  public TarBuilder dir(String name, int mode) {
    TarArchiveEntry e = entry(name.endsWith("/") ? name : name + "/", TarConstants.LF_DIR);
    e.setMode(mode);
    return add(e, null);
  }

  public TarBuilder dir(String name) {
    return dir(name, 0755);
  }

  public TarBuilder file(String name, String content) {
    return file(name, content.getBytes(StandardCharsets.UTF_8), 0644, e -> {});
  }

  public TarBuilder file(String name, byte[] content, int mode, Consumer<TarArchiveEntry> tweak) {
    TarArchiveEntry e = entry(name, TarConstants.LF_NORMAL);
    e.setMode(mode);
    e.setSize(content.length);
    tweak.accept(e);
    return add(e, content);
  }

  public TarBuilder symlink(String name, String target) {
    TarArchiveEntry e = entry(name, TarConstants.LF_SYMLINK);
    e.setLinkName(target);
    e.setMode(0777);
    return add(e, null);
  }

  public TarBuilder hardlink(String name, String target) {
    TarArchiveEntry e = entry(name, TarConstants.LF_LINK);
    e.setLinkName(target);
    return add(e, null);
  }

  TarBuilder fifo(String name) {
    TarArchiveEntry e = entry(name, TarConstants.LF_FIFO);
    e.setMode(0644);
    return add(e, null);
  }

  TarBuilder device(String name, boolean character, int major, int minor) {
    TarArchiveEntry e = entry(name, character ? TarConstants.LF_CHR : TarConstants.LF_BLK);
    e.setMode(0600);
    e.setDevMajor(major);
    e.setDevMinor(minor);
    return add(e, null);
  }

  /** Adds a raw entry the caller shaped; {@code data} may be null for entries without content. */
  TarBuilder add(TarArchiveEntry e, byte[] data) {
    items.add(new Item(e, data));
    return this;
  }

  public byte[] bytes() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    writeTo(out);
    return out.toByteArray();
  }

  public void writeTo(OutputStream sink) {
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(sink, "UTF-8")) {
      tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
      tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
      tar.setAddPaxHeadersForNonAsciiNames(true);
      for (Item i : items) {
        tar.putArchiveEntry(i.entry());
        if (i.data() != null) {
          tar.write(i.data());
        }
        tar.closeArchiveEntry();
      }
      tar.finish();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public Path writeTo(Path file) throws IOException {
    Files.write(file, bytes());
    return file;
  }

  public static byte[] gzip(byte[] plain) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
      gz.write(plain);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  public static byte[] zstd(byte[] plain) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    try (ZstdOutputStream z = new ZstdOutputStream(out)) {
      z.write(plain);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }
}
