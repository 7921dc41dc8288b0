package io.strata.bench.side;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.union.mount.Background;
import io.strata.layers.fs.Mounts;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * `strata bench --quick` end to end on this machine: every backend mounts, every workload
 * runs, the report comes out in all three forms, and no mount is left behind.
 */
class SideBySideTest {
  @TempDir Path tmp;

  @Test
  void quickRunProducesTheReportAndLeavesNoMount() throws Exception {
    System.setProperty(Background.MAIN_PROPERTY, "io.strata.cli.Main");
    Path out = tmp.resolve("out");
    int code = new CommandLine(new SideBySide()).execute("--quick", "--runs", "1",
        "--scaling", "1,2", "--work", tmp.resolve("work").toString(), "--out", out.toString());
    assertThat(code).isZero();
    List<String> csv = Files.readAllLines(out.resolve("results.csv"));
    assertThat(csv.get(0)).isEqualTo("backend,workload,run,seconds");
    for (String b : List.of("plain", "kernel", "fuse-overlayfs", "strata")) {
      for (String w : SideBySide.WORKLOADS) {
        assertThat(csv).anyMatch(l -> l.startsWith(b + "," + w + ",1,"));
      }
    }
    assertThat(csv).anyMatch(l -> l.startsWith("strata,lookup-2-layers,"));
    assertThat(Files.readString(out.resolve("results.md"))).contains("| stat-walk-cold |");
    BufferedImage png = ImageIO.read(out.resolve("results.png").toFile());
    assertThat(png.getWidth()).isEqualTo(1000);
    assertThat(Mounts.table()).noneMatch(e -> e.mountpoint().startsWith(tmp));
  }
}
