package io.strata.layers.cli;

import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Parameters;

/** {@code strata tag}: gives a stored image more names. */
@Command(name = "tag", mixinStandardHelpOptions = true,
    description = "Give an image more names (a name in use moves to this image).")
public final class TagCommand implements Callable<Integer> {
  @Mixin StoreOptions store;

  @Parameters(index = "0", paramLabel = "IMAGE", description = "Name or id of a stored image.")
  String image;

  @Parameters(index = "1..*", arity = "1..*", paramLabel = "NAME[:TAG]", description = "New names.")
  List<String> names;

  @Override
  public Integer call() {
    names.forEach(io.strata.layers.LayerStore::normalizeName);
    var s = store.open();
    for (String n : names) {
      Output.note("tagged " + s.tag(image, n));
    }
    return 0;
  }
}
