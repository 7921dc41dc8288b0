package io.strata.union.view;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import jnr.ffi.Memory;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A handle belongs to its file, not to the name it was opened by: renames of the file or of a
 * directory above it, exchanges, and a rename that replaces it must leave the view answering
 * for the handle with that file. The view once remembered the opening name only, so an fstat
 * of a renamed and then unlinked file answered with whatever had the old name then (a
 * directory: the kernel took that for a corrupt inode and said EIO), a file replaced by a
 * rename reported the new file's attributes, and a copy-up under a new name left a reader
 * opened before the rename reading the lower file. transport-cases.py shows the same through
 * a mount against kernel overlayfs.
 */
class OpenHandleRenameTest {
  @TempDir Path tmp;
  private UnionView view;

  @BeforeEach
  void open() throws Exception {
    Path lower = Files.createDirectories(tmp.resolve("lower/etc"));
    Files.writeString(lower.resolve("conf"), "old conf");
    view = UnionView.open(List.of(tmp.resolve("lower")), Files.createDirectories(
        tmp.resolve("upper")), Files.createDirectories(tmp.resolve("work")),
        UnionView.Options.defaults());
  }

  private String read(long fh) throws Exception {
    Pointer buf = Memory.allocateDirect(Runtime.getSystemRuntime(), 64);
    int n = view.read(fh, buf, 64, 0);
    byte[] b = new byte[n];
    buf.get(0, b, 0, n);
    return new String(b, StandardCharsets.UTF_8);
  }

  private void write(String path, String text) throws Exception {
    long fh = view.open(path, Io.O_WRONLY | Io.O_TRUNC);
    try {
      byte[] b = text.getBytes(StandardCharsets.UTF_8);
      Pointer buf = Memory.allocateDirect(Runtime.getSystemRuntime(), b.length);
      buf.put(0, b, 0, b.length);
      view.write(fh, buf, b.length, 0);
    } finally {
      view.release(fh);
    }
  }

  @Test
  void aReaderOpenedBeforeItsDirectoryMovedReadsTheCopyUpMadeUnderTheNewName() throws Exception {
    long fh = view.open("/etc/conf", Io.O_RDONLY); // reads the lower file
    try {
      view.rename("/etc", "/moved"); // a lower directory: moves with a redirect
      write("/moved/conf", "new conf"); // copied up under its new name
      assertThat(read(fh)).isEqualTo("new conf");
    } finally {
      view.release(fh);
    }
  }

  @Test
  void anFstatAfterRenameAndUnlinkAnswersForTheFileNotForItsOldName() throws Exception {
    long fh = view.open("/etc/conf", Io.O_RDONLY);
    try {
      view.rename("/etc/conf", "/c2");
      view.mkdir("/etc/conf", 0755, 0, 0); // a directory takes the old name
      view.unlink("/c2");
      Attr a = view.fgetattr(null, fh);
      assertThat(a.isDirectory()).isFalse();
      assertThat(a.nlink()).isZero();
      assertThat(a.size()).isEqualTo(8);
      assertThat(read(fh)).isEqualTo("old conf");
    } finally {
      view.release(fh);
    }
  }

  @Test
  void aFileARenameReplacedReportsItsOwnAttributes() throws Exception {
    long fh = view.open("/etc/conf", Io.O_RDONLY);
    try {
      long w = view.create("/etc/new", 0644, Io.O_WRONLY, 0, 0);
      view.release(w);
      write("/etc/new", "a longer file that replaces");
      view.rename("/etc/new", "/etc/conf");
      Attr a = view.fgetattr(null, fh);
      // the lower file it still reads keeps its link there: kernel overlayfs says 1 too
      assertThat(a.nlink()).isEqualTo(1);
      assertThat(a.size()).isEqualTo(8);
      assertThat(view.getattr("/etc/conf").size()).isEqualTo(27);
    } finally {
      view.release(fh);
    }
  }

  @Test
  void exchangedDirectoriesTakeTheirOpenFilesAlong() throws Exception {
    view.mkdir("/other", 0755, 0, 0);
    long fh = view.open("/etc/conf", Io.O_RDONLY);
    try {
      view.rename("/etc", "/other", UnionView.RENAME_EXCHANGE);
      write("/other/conf", "changed"); // now the file's name: copied up there
      view.unlink("/other/conf");
      Attr a = view.fgetattr(null, fh);
      assertThat(a.nlink()).isZero();
      assertThat(read(fh)).isEqualTo("changed");
    } finally {
      view.release(fh);
    }
  }
}
