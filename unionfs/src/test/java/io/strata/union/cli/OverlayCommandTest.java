package io.strata.union.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * The daemon's parse of podman's strata-overlay command lines without picocli: what it takes
 * it reads as picocli does, and it leaves everything else to picocli.
 */
class OverlayCommandTest {
  private static final String OPTS = "lowerdir=/l1:/l2,upperdir=/u,workdir=/w";

  @Test
  void takesTheShapesPodmanAndMountFuse3Give() {
    OverlayCommand c = OverlayCommand.simple(args("overlay", "-o", OPTS, "/m"));
    assertThat(c.options).containsExactly(OPTS);
    assertThat(c.positional).containsExactly("/m");
    c = OverlayCommand.simple(args("overlay", "overlay", "/m", "-o", "rw", "-o", OPTS));
    assertThat(c.options).containsExactly("rw", OPTS);
    assertThat(c.positional).containsExactly("overlay", "/m");
  }

  @Test
  void leavesEverythingElseToPicocli() {
    for (String[] a : List.of(args("overlay", "-o", OPTS, "-f", "/m"),
        args("overlay", "-d", "-o", OPTS, "/m"), args("overlay", "--help"),
        args("overlay", "-o" + OPTS, "/m", "/n"), args("overlay", "-o=" + OPTS, "/m", "/n"),
        args("overlay", "/m", "/n", "/p"), args("overlay", "/m", "/n", "/p", "/q"),
        args("overlay", "-o", OPTS, "/m", "/n", "/p"), args("overlay", "-o", "-f", "/m"),
        args("overlay", "-o", "", "/m"), args("overlay", "-o", OPTS, ""),
        args("overlay", "/m", "/n", "/p", "-o"), args("mount", "-o", OPTS, "/m"),
        args("overlay", "-o", OPTS, "--", "/m"), args("overlay", "-o", OPTS, "-"))) {
      assertThat(OverlayCommand.simple(a)).as(String.join(" ", a)).isNull();
    }
  }

  /** Random command lines of podman's words and others: where simple() answers, so does picocli, alike. */
  @Test
  void readsWhatItTakesAsPicocliDoes() {
    // pieces of command lines: mostly podman's, some of what picocli alone should read
    List<List<String>> pieces = List.of(List.of("-o", OPTS), List.of("-o", "rw"),
        List.of("-o", "overlay"), List.of("/m"), List.of("src"), List.of("overlay"),
        List.of("-o", OPTS), List.of("/m"), List.of("-f"), List.of("-d"), List.of(""),
        List.of("-"), List.of("--"), List.of("-oX"), List.of("-o"), List.of("-h"));
    Random r = new Random(18);
    int taken = 0;
    for (int n = 0; n < 5000; n++) {
      List<String> a = new ArrayList<>(List.of("overlay"));
      int len = 1 + r.nextInt(5);
      for (int i = 0; i < len; i++) {
        a.addAll(pieces.get(r.nextInt(r.nextInt(4) == 0 ? pieces.size() : 8)));
      }
      String[] argv = a.toArray(String[]::new);
      OverlayCommand fast = OverlayCommand.simple(argv);
      if (fast == null) {
        continue;
      }
      taken++;
      OverlayCommand parsed = new OverlayCommand();
      new CommandLine(parsed).parseArgs(Arrays.copyOfRange(argv, 1, argv.length));
      assertThat(fast.options).as(a.toString()).isEqualTo(parsed.options);
      assertThat(fast.positional).as(a.toString()).isEqualTo(parsed.positional);
      assertThat(parsed.foreground || parsed.debug).isFalse();
    }
    assertThat(taken).as("command lines taken").isGreaterThan(100);
  }

  private static String[] args(String... a) {
    return a;
  }
}
