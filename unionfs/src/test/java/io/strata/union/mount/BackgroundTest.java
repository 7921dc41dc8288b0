package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The JVM options of a relaunched mount server: the class archive the build made, or none. */
class BackgroundTest {
  @TempDir
  Path dir;

  private static final Path JDK25 = Path.of("/opt/jdk-25/bin/java");

  @Test
  void theAotCacheServesTheJdkThatMadeIt() throws Exception {
    String jar = build(true, true);
    Files.writeString(dir.resolve("strata.aot.java"), JDK25 + "\n");
    assertThat(Background.archiveOptions(jar, 25, JDK25))
        .containsExactly("-XX:AOTCache=" + dir.resolve("strata.aot"), "-Xlog:aot*=off,cds*=off");
  }

  @Test
  void anotherJdkTakesTheClassDataArchive() throws Exception {
    String jar = build(true, true);
    Files.writeString(dir.resolve("strata.aot.java"), JDK25 + "\n");
    List<String> jsa = List.of("-Xshare:auto", "-XX:SharedArchiveFile=" + dir.resolve("strata.jsa"),
        "-Xlog:cds*=off");
    assertThat(Background.archiveOptions(jar, 26, Path.of("/opt/jdk-26/bin/java")))
        .isEqualTo(jsa);
    assertThat(Background.archiveOptions(jar, 17, Path.of("/usr/bin/java"))).isEqualTo(jsa);
    Files.delete(dir.resolve("strata.aot.java")); // a cache whose JDK is not named is not used
    assertThat(Background.archiveOptions(jar, 25, JDK25)).isEqualTo(jsa);
  }

  @Test
  void noArchiveOrNoSingleJarMeansNoOptions() throws Exception {
    String jar = build(false, false);
    assertThat(Background.archiveOptions(jar, 17, Path.of("/usr/bin/java"))).isEmpty();
    String both = build(true, true);
    assertThat(Background.archiveOptions(both + ":" + dir.resolve("other.jar"), 17,
        Path.of("/usr/bin/java"))).isEmpty();
    assertThat(Background.archiveOptions(dir.resolve("classes").toString(), 17,
        Path.of("/usr/bin/java"))).isEmpty();
    assertThat(Background.archiveOptions(null, 17, Path.of("/usr/bin/java"))).isEmpty();
  }

  private String build(boolean jsa, boolean aot) throws Exception {
    Path jar = Files.write(dir.resolve("strata.jar"), new byte[] {1});
    if (jsa) {
      Files.write(dir.resolve("strata.jsa"), new byte[] {1});
    }
    if (aot) {
      Files.write(dir.resolve("strata.aot"), new byte[] {1});
    }
    return jar.toString();
  }
}
