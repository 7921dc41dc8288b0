package io.strata.bench.side;

import io.strata.layers.fs.Posix;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The benchmark's layers, built once and reused: a base of many small files (tree/), a large
 * directory, a git repository and a large file, a layer that deletes (kernel whiteouts, which
 * every backend reads) and one that changes and adds. Also stacks of N layers for scaling.
 */
record Images(Path root, List<Path> lowers, Path tarball) {

  static Images build(Path root, Sizes sz) throws IOException {
    Path base = root.resolve("base");
    Path deletes = root.resolve("deletes");
    Path changes = root.resolve("changes");
    Path big = root.resolve("big");
    Path tar = root.resolve("tree.tar");
    Path done = root.resolve(".complete");
    if (!Files.exists(done)) {
      io.strata.layers.fs.Trees.deleteRecursively(root);
      System.err.println("building benchmark images in " + root);
      byte[] small = new byte[100];
      for (int i = 0; i < sz.treeFiles(); i++) {
        Path d = Files.createDirectories(base.resolve(String.format("tree/d%03d", i / 1000)));
        Files.write(d.resolve(String.format("f%04d", i % 1000)), small);
      }
      Path bigdir = Files.createDirectories(base.resolve("bigdir"));
      for (int i = 0; i < sz.bigDirEntries(); i++) {
        Files.write(bigdir.resolve("e" + i), small);
      }
      Path repo = Files.createDirectories(base.resolve("repo"));
      for (int i = 0; i < sz.repoFiles(); i++) {
        Path d = Files.createDirectories(repo.resolve("src/m" + (i / 500)));
        Files.writeString(d.resolve("F" + i + ".java"), "class F" + i + " {}\n");
      }
      Sh.sh("cd " + repo + " && git init -q -b main . && git add -A && HOME=/tmp"
          + " git -c user.name=b -c user.email=b@b commit -q -m base");
      Files.createDirectories(big);
      try (RandomAccessFile f = new RandomAccessFile(Files.createDirectories(big.resolve("big"))
          .resolve("file").toFile(), "rw")) {
        byte[] chunk = new byte[1 << 20];
        new Random(1).nextBytes(chunk);
        for (long n = 0; n < sz.bigFileBytes(); n += chunk.length) {
          f.write(chunk, 0, (int) Math.min(chunk.length, sz.bigFileBytes() - n));
        }
      }
      for (int i = 0; i < sz.treeFiles(); i += 100) {
        Path d = Files.createDirectories(deletes.resolve(String.format("tree/d%03d", i / 1000)));
        Posix.mknod(d.resolve(String.format("f%04d", i % 1000)), Posix.S_IFCHR, 0, 0);
      }
      for (int i = 1; i < sz.treeFiles(); i += 100) {
        Path d = Files.createDirectories(changes.resolve(String.format("tree/d%03d", i / 1000)));
        Files.writeString(d.resolve(String.format("f%04d", i % 1000)), "changed");
        Files.writeString(d.resolve(String.format("new%04d", i % 1000)), "added");
      }
      Path src = Files.createDirectories(root.resolve("tar-src"));
      for (int i = 0; i < sz.tarFiles(); i++) {
        Path d = Files.createDirectories(src.resolve("t" + (i / 1000)));
        Files.write(d.resolve("f" + i), small);
      }
      Sh.run(List.of("tar", "-C", src.toString(), "-cf", tar.toString(), "."));
      Files.createFile(done);
    }
    return new Images(root, List.of(changes, deletes, base, big), tar);
  }

  /** N layers, top first: the bottom one holds {@code scaleFiles} files in bottom/. */
  List<Path> stack(int n, Sizes sz) throws IOException {
    Path dir = root.resolve("stack-" + n);
    List<Path> layers = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      layers.add(dir.resolve("l" + i));
    }
    if (!Files.exists(dir.resolve(".complete"))) {
      for (int i = 0; i < n; i++) {
        Path b = Files.createDirectories(layers.get(i).resolve("bottom"));
        if (i == n - 1) {
          for (int f = 0; f < sz.scaleFiles(); f++) {
            Files.writeString(b.resolve("f" + f), "x");
          }
        } else {
          Files.writeString(b.resolve("layer" + i), "y");
        }
      }
      Files.createFile(dir.resolve(".complete"));
    }
    return layers;
  }
}
