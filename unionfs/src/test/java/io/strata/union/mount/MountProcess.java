package io.strata.union.mount;

import io.strata.union.view.UnionView;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/** A separate JVM serving one strata mount, for tests that kill the daemon. */
public final class MountProcess {
  private MountProcess() {}

  /** Arguments: LOWER UPPER WORK MOUNTPOINT. */
  public static void main(String[] args) throws Exception {
    UnionView view = UnionView.open(List.of(Path.of(args[0])), Path.of(args[1]), Path.of(args[2]),
        UnionView.Options.defaults());
    FuseMount m = FuseMount.mount(view, Path.of(args[3]),
        FuseMount.Settings.defaults("strata-crash-test"), System.err::println,
        Duration.ofSeconds(30));
    System.out.println("ready");
    System.out.flush();
    m.awaitUnmount();
  }

  static Process start(Path lower, Path upper, Path work, Path mp) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    // the transport under test as it was named (uring and dev are strata's own, so the name
    // and not the enum goes on)
    String transport = System.getProperty("strata.transport",
        FuseMount.Settings.defaults("probe").transport().name().toLowerCase());
    return new ProcessBuilder(java, "-Dstrata.transport=" + transport,
        "-cp", System.getProperty("java.class.path"), MountProcess.class.getName(), lower.toString(), upper.toString(), work.toString(),
        mp.toString()).redirectErrorStream(true).start();
  }
}
