package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import io.strata.union.view.UnionView;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** A kernel overlay or strata mount for a test; closing always unmounts. */
final class Mounted implements AutoCloseable {
  final Path mountpoint;
  private final FuseMount fuse; // null for a kernel mount

  private Mounted(Path mountpoint, FuseMount fuse) {
    this.mountpoint = mountpoint;
    this.fuse = fuse;
  }

  /** Kernel overlayfs with the features strata mirrors: redirect_dir, and no index or metacopy. */
  static Mounted kernel(List<Path> lowers, Path upper, Path work, Path mp) throws Exception {
    Files.createDirectories(mp);
    StringBuilder o = new StringBuilder("lowerdir=");
    for (int i = 0; i < lowers.size(); i++) {
      o.append(i == 0 ? "" : ":").append(lowers.get(i));
    }
    if (upper != null) {
      Files.createDirectories(upper);
      Files.createDirectories(work);
      o.append(",upperdir=").append(upper).append(",workdir=").append(work);
    }
    o.append(",redirect_dir=on,index=off,metacopy=off,xino=off");
    run("mount", "-t", "overlay", "overlay", "-o", o.toString(), mp.toString());
    return new Mounted(mp, null);
  }

  static Mounted strata(List<Path> lowers, Path upper, Path work, Path mp,
      UnionView.Options options) throws Exception {
    Files.createDirectories(mp);
    if (upper != null) {
      Files.createDirectories(upper);
      Files.createDirectories(work);
    }
    UnionView view = UnionView.open(lowers, upper, work, options);
    FuseMount m = FuseMount.mount(view, mp, settings(), line -> System.err.println("fuse: " + line),
        Duration.ofSeconds(30));
    return new Mounted(mp, m);
  }

  /** A strata mount the caller made with settings of its own. */
  static Mounted of(FuseMount m) {
    return new Mounted(m.mountpoint(), m);
  }

  static Mounted strata(List<Path> lowers, Path upper, Path work, Path mp) throws Exception {
    return strata(lowers, upper, work, mp, UnionView.Options.defaults());
  }

  /**
   * The transport under test ({@code -Dstrata.transport}, else the preferred one) as a user gets
   * it: strata's own with its kernel caches on, which is what must match the oracle; jnr-fuse
   * without kernel caching, its only safe setting.
   */
  static FuseMount.Settings settings() {
    FuseMount.Settings s = FuseMount.Settings.defaults("strata-test");
    return s.transport() == FuseMount.Transport.JNR ? s.withTimeout(0) : s;
  }

  FuseMount fuse() {
    return fuse;
  }

  UnionView view() {
    return fuse.view();
  }

  @Override
  public void close() throws Exception {
    if (fuse != null) {
      fuse.close();
    } else if (Mounts.isMountpoint(mountpoint)) {
      run("umount", mountpoint.toString());
    }
  }

  static String run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IOException(String.join(" ", cmd) + " failed: " + out);
    }
    return out;
  }

  static List<String> list(String... items) {
    return new ArrayList<>(List.of(items));
  }
}
