package io.strata.cli;

import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.runtime.container.ContainerState;
import io.strata.runtime.container.Containers;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

/** {@code strata kill}: sends a signal to a running container. */
@Command(name = "kill", mixinStandardHelpOptions = true,
    description = "Send a signal (default KILL) to a running container's main process.")
public final class KillCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(index = "0", paramLabel = "NAME") String name;

  @Parameters(index = "1", arity = "0..1", paramLabel = "SIGNAL", defaultValue = "KILL",
      description = "Name (TERM, SIGTERM) or number; default ${DEFAULT-VALUE}.")
  String signal;

  @Override
  public Integer call() throws Exception {
    Containers c = new Containers(store.rootPath(), Output::note);
    ContainerState s = c.reap(c.read(name));
    if (!ContainerState.RUNNING.equals(s.status())) {
      throw new IllegalStateException("container " + name + " is not running");
    }
    String sig = signal.toUpperCase().replaceFirst("^SIG", "");
    if (!sig.matches("[A-Z0-9]+")) {
      throw new IllegalArgumentException("bad signal " + signal);
    }
    // The helper is the container's monitor: it passes the signal on to PID 1 inside.
    // SIGKILL cannot be passed on: the helper dies, and PID 1 with it (the pid namespace goes).
    Process p = new ProcessBuilder("kill", "-s", sig, String.valueOf(s.helperPid()))
        .inheritIO().start();
    return p.waitFor() == 0 ? 0 : Main.FAILED;
  }
}
