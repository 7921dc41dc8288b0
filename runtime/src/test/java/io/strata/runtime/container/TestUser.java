package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * A real unprivileged user for one test class: made with useradd (a group of its own, no home),
 * and removed with its processes when closed. Commands run as it through setpriv with its own
 * uid, gid and groups only, as a person logged in as that user would.
 */
public final class TestUser implements AutoCloseable {
  public final String name;
  public final int uid;
  public final int gid;

  private TestUser(String name, int uid, int gid) {
    this.name = name;
    this.uid = uid;
    this.gid = gid;
  }

  /** What a command printed (stdout and stderr together) and how it ended. */
  public record Result(int code, String output) {}

  public static TestUser create() throws Exception {
    String name = "strata-t" + ThreadLocalRandom.current().nextInt(100_000, 1_000_000);
    Result r = root(List.of("useradd", "-M", "-U", "-s", "/bin/sh", name));
    assertThat(r.code()).as("useradd: " + r.output()).isZero();
    int uid = Integer.parseInt(root(List.of("id", "-u", name)).output().trim());
    int gid = Integer.parseInt(root(List.of("id", "-g", name)).output().trim());
    return new TestUser(name, uid, gid);
  }

  /**
   * A user with a home directory ({@code home}, which must not exist) and subordinate uid and
   * gid ranges in /etc/subuid and /etc/subgid, as useradd gives a person's account; userdel
   * takes them away again.
   */
  public static TestUser createWithHome(Path home) throws Exception {
    String name = "strata-r" + ThreadLocalRandom.current().nextInt(100_000, 1_000_000);
    Result r = root(List.of("useradd", "-m", "-d", home.toString(), "-U", "-s", "/bin/sh",
        name));
    assertThat(r.code()).as("useradd: " + r.output()).isZero();
    int uid = Integer.parseInt(root(List.of("id", "-u", name)).output().trim());
    int gid = Integer.parseInt(root(List.of("id", "-g", name)).output().trim());
    TestUser u = new TestUser(name, uid, gid);
    if (u.subordinate("/etc/subuid") < 0 || u.subordinate("/etc/subgid") < 0) {
      // useradd gives ranges where login.defs asks for them (Debian's does); else add one
      long start = 1_000_000L + 65536L * ThreadLocalRandom.current().nextInt(1, 1000);
      String range = start + "-" + (start + 65535);
      r = root(List.of("usermod", "--add-subuids", range, "--add-subgids", range, name));
      assertThat(r.code()).as("usermod: " + r.output()).isZero();
    }
    return u;
  }

  /** The first host uid and gid of this user's subordinate ranges. */
  public long[] subordinateIds() throws Exception {
    return new long[] {subordinate("/etc/subuid"), subordinate("/etc/subgid")};
  }

  private long subordinate(String file) throws Exception {
    for (String line : java.nio.file.Files.readAllLines(Path.of(file))) {
      String[] f = line.split(":");
      if (f.length == 3 && (f[0].equals(name) || f[0].equals(String.valueOf(uid)))) {
        return Long.parseLong(f[1]);
      }
    }
    return -1;
  }

  /**
   * A copy of this test JVM's class path under {@code dir} that every user can read (root's
   * Maven repository is not), joined with ':'.
   */
  public static String readableClasspath(Path dir) throws Exception {
    Path cp = java.nio.file.Files.createDirectories(dir);
    List<String> entries = new ArrayList<>();
    int i = 0;
    for (String e : System.getProperty("java.class.path").split(":")) {
      if (e.isEmpty() || !java.nio.file.Files.exists(Path.of(e))) {
        continue;
      }
      Path to = cp.resolve(i++ + "-" + Path.of(e).getFileName());
      Result r = root(List.of("cp", "-a", e, to.toString()));
      assertThat(r.code()).as("cp " + e + ": " + r.output()).isZero();
      entries.add(to.toString());
    }
    assertThat(root(List.of("chmod", "-R", "a+rX", cp.toString())).code()).isZero();
    return String.join(":", entries);
  }

  /**
   * The strata client and what it runs for a user, in {@code bin} (readable by every user):
   * {@code bin/strata} and {@code bin/strata-overlay} (the C client), {@code bin/strata-init}
   * (the container helper), and {@code bin/java}, a java for $STRATA_JAVA that runs strata's
   * Main from a readable copy of this test's class path in place of the jar that only the
   * package phase makes (the client's JVM options are dropped). Its temporary files go to the
   * user's home: this machine's /tmp is 0755.
   */
  public static Path clientFor(Path bin) throws Exception {
    java.nio.file.Files.createDirectories(bin);
    Path client = bin.resolve("strata");
    java.nio.file.Files.copy(Path.of("target/native/strata-client"), client);
    java.nio.file.Files.createSymbolicLink(bin.resolve("strata-overlay"), Path.of("strata"));
    java.nio.file.Files.copy(Path.of("target/native/strata-init"), bin.resolve("strata-init"));
    String cp = readableClasspath(bin.getParent().resolve("cp"));
    java.nio.file.Files.writeString(bin.resolve("java"), "#!/bin/sh\n"
        + "while [ $# -gt 0 ]; do case \"$1\" in -jar) shift 2; break;; *) shift;; esac; done\n"
        + "exec " + java() + " -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
        + " -Djava.io.tmpdir=\"$HOME\" -Dstrata.helper=" + bin.resolve("strata-init")
        + " -Dstrata.main=io.strata.cli.Main -cp " + cp + " io.strata.cli.Main \"$@\"\n");
    assertThat(root(List.of("chmod", "-R", "a+rX", bin.toString())).code()).isZero();
    assertThat(root(List.of("chmod", "755", client.toString(), bin.resolve("java").toString(),
        bin.resolve("strata-init").toString())).code()).isZero();
    return client;
  }

  /** Skips the test class unless each tool is installed in one of the usual places. */
  public static void assumeInstalled(String... tools) {
    for (String tool : tools) {
      org.junit.jupiter.api.Assumptions.assumeTrue(
          java.util.stream.Stream.of("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")
              .anyMatch(d -> java.nio.file.Files.isExecutable(Path.of(d + tool))),
          tool + " is not installed");
    }
  }

  /** The java of this test JVM. */
  public static String java() {
    return Path.of(System.getProperty("java.home"), "bin", "java").toString();
  }

  /** Runs {@code sh -c script} as this user. */
  public Result sh(String script) throws Exception {
    return root(List.of("setpriv", "--reuid=" + uid, "--regid=" + gid, "--init-groups",
        "--reset-env", "sh", "-c", script));
  }

  private static Result root(List<String> cmd) throws Exception {
    Process p = new ProcessBuilder(new ArrayList<>(cmd)).redirectErrorStream(true).start();
    byte[] out = p.getInputStream().readAllBytes();
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError(cmd + " did not end");
    }
    return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
  }

  @Override
  public void close() throws Exception {
    for (int i = 0; i < 100; i++) {
      root(List.of("pkill", "-KILL", "-u", String.valueOf(uid)));
      if (root(List.of("pgrep", "-u", String.valueOf(uid))).code() != 0) {
        break;
      }
      Thread.sleep(50);
    }
    Result r = root(List.of("userdel", name));
    assertThat(r.code()).as("userdel " + name + ": " + r.output()).isZero();
    // what the user's programs left in /tmp outlives the user: each JVM's perf-data directory,
    // and rootless podman's run root where no XDG_RUNTIME_DIR is set (83 of them had piled up)
    root(List.of("rm", "-rf", "/tmp/hsperfdata_" + name, "/tmp/podman-run-" + uid));
  }
}
