package io.strata.union;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Runs one op sequence on both mounts and prints the outcomes side by side (debugging aid). */
public final class Probe {
  public static void main(String[] args) throws Exception {
    Path tmp = Files.createTempDirectory("probe");
    List<LayerSpec> specs = DifferentialTest.stack();
    List<FsOp> ops = args.length > 0 && args[0].startsWith("seed=")
        ? FsOp.random(Long.parseLong(args[0].substring(5)), 60)
        : List.of(FsOp.truncate("x/a", 3), FsOp.delete("x/a"), FsOp.delete("x"),
            FsOp.delete("opq/c"), FsOp.delete("opq/c"));
    for (String side : List.of("k", "s")) {
      List<Path> lowers = new java.util.ArrayList<>();
      for (int i = 0; i < specs.size(); i++) {
        lowers.add(specs.get(i).writeTo(tmp.resolve(side + "/l" + i),
            side.equals("k") ? LayerSpec.Form.KERNEL : LayerSpec.Form.OCI));
      }
      try (Mounted m = side.equals("k")
          ? Mounted.kernel(lowers, tmp.resolve(side + "/u"), tmp.resolve(side + "/w"), tmp.resolve(side + "/m"))
          : Mounted.strata(lowers, tmp.resolve(side + "/u"), tmp.resolve(side + "/w"), tmp.resolve(side + "/m"))) {
        for (FsOp op : ops) {
          System.out.println(side + ": " + op + " => " + op.outcome(m.mountpoint));
        }
        if (args.length > 1) {
          System.out.println(Mounted.run("sh", "-c", "ls -la " + m.mountpoint.resolve(args[1]) + " " +
              tmp.resolve(side + "/u/" + args[1]) + " 2>&1; true"));
        }
      }
    }
  }
}
