package io.strata.union.mount;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.platform.launcher.LauncherSession;
import org.junit.platform.launcher.LauncherSessionListener;

/**
 * For the test run over FUSE io_uring ({@code -Dstrata.transport=uring}): turns the fuse
 * module's {@code enable_uring} on for the run and back to what it was afterwards, as a host's
 * administrator would (the kernel leaves it off). Other runs leave it alone.
 */
public final class UringParameter implements LauncherSessionListener {
  static final Path PARAMETER = Path.of("/sys/module/fuse/parameters/enable_uring");
  private String before;

  @Override
  public void launcherSessionOpened(LauncherSession session) {
    if (!"uring".equals(System.getProperty("strata.transport"))) {
      return;
    }
    before = set("Y");
  }

  @Override
  public void launcherSessionClosed(LauncherSession session) {
    if (before != null) {
      set(before);
      before = null;
    }
  }

  /** Sets the parameter; what it was (null if this kernel has none, and then a test fails). */
  static String set(String value) {
    try {
      if (!Files.exists(PARAMETER)) {
        return null;
      }
      String was = Files.readString(PARAMETER).trim();
      Files.writeString(PARAMETER, value);
      return was;
    } catch (IOException e) {
      throw new IllegalStateException("cannot set " + PARAMETER + " (root is needed): " + e, e);
    }
  }
}
