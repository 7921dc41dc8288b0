package io.strata.cli;

import io.strata.layers.cli.Output;
import io.strata.layers.cli.StoreOptions;
import io.strata.runtime.container.Containers;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

/** {@code strata rm}: removes stopped containers, state and upper layer. */
@Command(name = "rm", mixinStandardHelpOptions = true,
    description = "Remove stopped containers: their state and upper layer.")
public final class RmCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(arity = "1..*", paramLabel = "NAME") List<String> names;

  @Override
  public Integer call() throws Exception {
    Containers c = new Containers(store.rootPath(), Output::note);
    for (String n : names) {
      c.remove(n);
      System.out.println(n);
    }
    return 0;
  }
}
