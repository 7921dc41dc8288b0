package io.strata.union.mount;

import io.strata.layers.fs.Mounts;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.strata.layers.fs.Posix;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * strata's own transport mounted by a user (nobody), through fusermount3's fd-passing
 * protocol: the mount is the user's, serves reads and writes, and the user unmounts it.
 */
class UserMountTest {
  private static final String NOBODY = "65534";

  private static List<String> asNobody(String... cmd) {
    List<String> c = new ArrayList<>(List.of("setpriv", "--reuid=" + NOBODY, "--regid=" + NOBODY,
        "--clear-groups", "--"));
    c.addAll(List.of(cmd));
    return c;
  }

  @Test
  void aUserMountsThroughFusermount3AndUnmounts() throws Exception {
    assumeTrue(Posix.isRoot() && Files.isExecutable(Path.of("/usr/bin/fusermount3"))
        && Files.isExecutable(Path.of("/usr/bin/setpriv")), "root, fusermount3 and setpriv");
    assumeTrue(Mounted.settings().transport() == FuseMount.Transport.KERNEL,
        "strata's own transport");
    // A place nobody can read: the test's own temporary directory and ~/.m2 are root's only.
    Path base = Files.createTempDirectory(Path.of("/tmp"), "strata-user-");
    Path mp = base.resolve("mnt");
    Process daemon = null;
    // Distributions make /dev/fuse 0666; this sandbox has it 0600. Restored below.
    String devMode = Mounted.run("stat", "-c", "%a", "/dev/fuse").trim();
    try {
      Mounted.run("chmod", "666", "/dev/fuse");
      Mounted.run("chmod", "755", base.toString());
      Path cp = Files.createDirectories(base.resolve("cp"));
      List<String> entries = new ArrayList<>();
      int i = 0;
      for (String e : System.getProperty("java.class.path").split(":")) {
        Path to = cp.resolve(i++ + "-" + Path.of(e).getFileName());
        Mounted.run("cp", "-a", e, to.toString());
        entries.add(to.toString());
      }
      Path lower = Files.createDirectories(base.resolve("lower"));
      Files.writeString(lower.resolve("file"), "lower data\n");
      for (String d : List.of("upper", "work", "mnt")) {
        Files.createDirectories(base.resolve(d));
      }
      Mounted.run("chown", "-R", NOBODY + ":" + NOBODY, base.toString());
      String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
      // -XX:-UsePerfData: no /tmp/hsperfdata_nobody left behind (it ignores java.io.tmpdir)
      List<String> cmd = asNobody(java, "-XX:-UsePerfData", "-Dstrata.transport=kernel",
          "-Djava.io.tmpdir=" + base,
          "-cp", String.join(":", entries), MountProcess.class.getName(), lower.toString(),
          base.resolve("upper").toString(), base.resolve("work").toString(), mp.toString());
      daemon = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      BufferedReader out = new BufferedReader(new InputStreamReader(daemon.getInputStream(),
          StandardCharsets.UTF_8));
      StringBuilder said = new StringBuilder();
      String line;
      while ((line = out.readLine()) != null && !line.equals("ready")) {
        said.append(line).append('\n');
      }
      assertThat(line).as("the daemon said:\n%s", said).isEqualTo("ready");
      String entry = Files.readAllLines(Path.of("/proc/self/mounts")).stream()
          .filter(l -> l.split(" ")[1].equals(mp.toString())).findFirst().orElseThrow();
      assertThat(entry).contains("fuse.strata").contains("user_id=" + NOBODY);
      assertThat(run(asNobody("cat", mp.resolve("file").toString()))).isEqualTo("lower data\n");
      run(asNobody("sh", "-c", "echo new > " + mp.resolve("made")));
      assertThat(Files.readString(base.resolve("upper/made"))).isEqualTo("new\n");
      assertThat(Files.getAttribute(base.resolve("upper/made"), "unix:uid")).isEqualTo(65534);
      run(asNobody("fusermount3", "-u", mp.toString()));
      assertThat(daemon.waitFor(30, TimeUnit.SECONDS)).isTrue();
      assertThat(Mounts.isMountpoint(mp)).isFalse();
    } finally {
      Mounted.run("chmod", devMode, "/dev/fuse");
      if (Mounts.isMountpoint(mp)) {
        Mounts.unmount(mp, true);
      }
      if (daemon != null) {
        daemon.destroyForcibly();
      }
      Mounted.run("rm", "-rf", base.toString());
    }
  }

  private static String run(List<String> cmd) throws Exception {
    return Mounted.run(cmd.toArray(new String[0]));
  }
}
