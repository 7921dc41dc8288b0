package io.strata.union.mount;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A lower layer described once and written in either whiteout form: the kernel's (char device
 * 0/0, trusted.overlay.opaque), which kernel overlayfs reads, or the OCI form (.wh. files) that
 * the store keeps. The same spec in both forms must give the same union.
 */
final class LayerSpec {
  /** How a spec is written to disk. */
  enum Form { KERNEL, OCI }

  private interface Item {
    void write(Path root, Form form) throws IOException;
  }

  private final List<Item> items = new ArrayList<>();

  static LayerSpec layer() {
    return new LayerSpec();
  }

  LayerSpec dir(String path) {
    return dir(path, 0755);
  }

  LayerSpec dir(String path, int mode) {
    items.add((root, form) -> {
      Path p = root.resolve(path);
      Files.createDirectories(p);
      Posix.chmod(p, mode);
    });
    return this;
  }

  LayerSpec file(String path, String content) {
    return file(path, content, 0644);
  }

  LayerSpec file(String path, String content, int mode) {
    items.add((root, form) -> {
      Path p = root.resolve(path);
      Files.createDirectories(p.getParent());
      Files.write(p, content.getBytes(StandardCharsets.UTF_8));
      Posix.chmod(p, mode);
    });
    return this;
  }

  LayerSpec symlink(String path, String target) {
    items.add((root, form) -> {
      Path p = root.resolve(path);
      Files.createDirectories(p.getParent());
      Files.createSymbolicLink(p, Path.of(target));
    });
    return this;
  }

  LayerSpec hardlink(String path, String existing) {
    items.add((root, form) -> Files.createLink(root.resolve(path), root.resolve(existing)));
    return this;
  }

  LayerSpec owner(String path, int uid, int gid) {
    items.add((root, form) -> Posix.lchown(root.resolve(path), uid, gid));
    return this;
  }

  LayerSpec xattr(String path, String name, String value) {
    items.add((root, form) -> Posix.lsetxattr(root.resolve(path), name,
        value.getBytes(StandardCharsets.UTF_8)));
    return this;
  }

  LayerSpec whiteout(String path) {
    items.add((root, form) -> {
      Path p = root.resolve(path);
      Files.createDirectories(p.getParent());
      if (form == Form.KERNEL) {
        Posix.mknod(p, Posix.S_IFCHR, 0, 0);
      } else {
        Files.createFile(p.resolveSibling(".wh." + p.getFileName()));
      }
    });
    return this;
  }

  LayerSpec opaque(String dir) {
    items.add((root, form) -> {
      Path p = root.resolve(dir);
      Files.createDirectories(p);
      if (form == Form.KERNEL) {
        Posix.lsetxattr(p, "trusted.overlay.opaque", new byte[] {'y'});
      } else {
        Files.createFile(p.resolve(".wh..wh..opq"));
      }
    });
    return this;
  }

  Path writeTo(Path root, Form form) throws IOException {
    Files.createDirectories(root);
    for (Item i : items) {
      i.write(root, form);
    }
    return root;
  }
}
