package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.base.Json;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The command line end to end: output formats, exit codes and messages people can act on. */
class CliTest {
  @TempDir Path tmp;

  record Result(int code, String out, String err) {}

  Result strata(String... args) {
    String[] withRoot = new String[args.length + 1];
    withRoot[0] = args[0];
    withRoot[1] = "--root=" + tmp.resolve("store");
    System.arraycopy(args, 1, withRoot, 2, args.length - 1);
    TestDaemon.Output o = TestDaemon.run(args[0].startsWith("-") ? args : withRoot);
    return new Result(o.code(), o.out(), o.err());
  }

  Path layer(String name, String content) throws Exception {
    Path f = tmp.resolve(name + ".tar");
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(Files.newOutputStream(f))) {
      byte[] b = content.getBytes(StandardCharsets.UTF_8);
      TarArchiveEntry e = new TarArchiveEntry(name);
      e.setSize(b.length);
      tar.putArchiveEntry(e);
      tar.write(b);
      tar.closeArchiveEntry();
    }
    return f;
  }

  @Test
  void helpListsEveryCommand() {
    Result r = strata("--help");
    assertThat(r.code()).isZero();
    assertThat(r.out()).contains("import", "images", "layers", "inspect", "rmi", "gc", "Exit codes",
        "pull", "push", "save", "tag", "login", "commit", "diff");
  }

  @Test
  void aCommandLineHoldsTheSubcommandsItsArgumentsName() {
    // the daemon keeps a spare command line per kind: the kind must not depend on options
    assertThat(Main.kind(new String[] {"--root", "/s", "overlay", "-o", "lowerdir=/l", "/m"}))
        .isEqualTo(Main.kind(new String[] {"overlay", "-f", "-o", "x", "src", "/n"}))
        .containsExactly("overlay");
    assertThat(Main.kind(new String[] {"run", "--rm", "images", "true"}))
        .containsExactly("images", "run");
    assertThat(Main.commandLine(new String[] {"overlay", "-o", "x", "/m"}).getSubcommands())
        .containsOnlyKeys("overlay");
    assertThat(Main.commandLine(new String[] {"--help"}).getSubcommands())
        .containsKeys("overlay", "run", "images", "daemon");
  }

  @Test
  void imagesInAndOutSayWhatIsWrongWithExitCodes() throws Exception {
    assertThat(strata("import", layer("x", "y").toString(), "--name", "x:1").code()).isZero();
    Result badRef = strata("pull", "127.0.0.1:1/UPPER:v1");
    assertThat(badRef.code()).isEqualTo(Main.USAGE);
    assertThat(badRef.err()).contains("invalid image reference");
    Result closed = strata("pull", "127.0.0.1:1/app:v1", "--stall-timeout", "2");
    assertThat(closed.code()).isEqualTo(Main.FAILED);
    assertThat(closed.err()).contains("cannot reach the registry 127.0.0.1:1")
        .contains("connection refused").doesNotContain("Exception"); // issue 16, item 14
    assertThat(strata("push", "nope:1", "127.0.0.1:1/x:1").code()).isEqualTo(Main.NOT_FOUND);
    assertThat(strata("save", "x:1", "-o", tmp.resolve("o.tar").toString(), "--format", "zip")
        .code()).isEqualTo(Main.USAGE);
    assertThat(strata("save", "nope:1", "-o", tmp.resolve("o.tar").toString()).code())
        .isEqualTo(Main.NOT_FOUND);
    assertThat(tmp.resolve("o.tar")).doesNotExist();
    assertThat(strata("tag", "x:1", "Bad Name").code()).isEqualTo(Main.USAGE);
    assertThat(strata("tag", "nope:1", "y:1").code()).isEqualTo(Main.NOT_FOUND);
    Result tagged = strata("tag", "x:1", "y:2");
    assertThat(tagged.code()).isZero();
    assertThat(strata("inspect", "y:2").code()).isZero();
    assertThat(strata("login", "127.0.0.1:1").code()).isEqualTo(Main.USAGE);
    Result saved = strata("save", "x:1", "y:2", "-o", tmp.resolve("two.tar").toString());
    assertThat(saved.code()).as(saved.err()).isZero();
    assertThat(tmp.resolve("two.tar")).exists();
  }

  @Test
  void importListInspectRmiGcAsJson() throws Exception {
    Result imp = strata("import", layer("hello", "world").toString(), "--name", "hello:1");
    assertThat(imp.code()).as(imp.err()).isZero();
    assertThat(imp.out()).contains("as hello:1");

    JsonNode images = Json.MAPPER.readTree(strata("images", "--format", "json").out());
    assertThat(images).hasSize(1);
    assertThat(images.get(0).get("names").get(0).asText()).isEqualTo("hello:1");

    JsonNode layers = Json.MAPPER.readTree(strata("layers", "--format", "json").out());
    assertThat(layers.get(0).get("usedBy").get(0).asText()).isEqualTo("hello:1");

    JsonNode inspect = Json.MAPPER.readTree(strata("inspect", "hello:1").out());
    assertThat(inspect.get("config").get("rootfs").get("diff_ids")).hasSize(1);
    assertThat(inspect.get("layers").get(0).get("path").asText()).endsWith("/diff");

    assertThat(strata("rmi", "hello:1").out()).contains("untagged: hello:1", "deleted: sha256:");
    assertThat(strata("gc").out()).contains("removed 1 layers");
    assertThat(Json.MAPPER.readTree(strata("images", "--format", "json").out())).isEmpty();
  }

  @Test
  void rootMayComeBeforeTheSubcommand() throws Exception {
    Path other = tmp.resolve("other");
    var cl = Main.commandLine();
    assertThat(cl.execute("--root", other.toString(), "import", layer("x", "y").toString()))
        .isZero();
    assertThat(other.resolve("repositories.json")).exists();
  }

  @Test
  void exitCodesMeanSomething() throws Exception {
    Result missing = strata("inspect", "nope:1");
    assertThat(missing.code()).isEqualTo(Main.NOT_FOUND);
    assertThat(missing.err()).contains("no image nope:1");

    Path bad = Files.writeString(tmp.resolve("bad.tar"), "definitely not a tar");
    Result hostile = strata("import", bad.toString());
    assertThat(hostile.code()).isEqualTo(Main.BAD_INPUT);
    assertThat(hostile.err()).contains("not a tar, gzip or zstd stream");

    Result badName = strata("import", bad.toString(), "--name", "Not A Name");
    assertThat(badName.code()).isEqualTo(Main.USAGE);
    assertThat(badName.err()).contains("invalid image name");

    Result badOption = strata("images", "--format", "xml");
    assertThat(badOption.code()).isEqualTo(Main.USAGE);
  }

  /** Issue 16, item 13: help that says what is optional, and versions everywhere. */
  @Test
  void versionsAndHelpSayWhatTheyShould() {
    Result v = strata("--root=" + tmp.resolve("store"), "version");
    assertThat(v.code()).isZero();
    assertThat(v.out()).startsWith("strata: version ").contains("java ");
    for (String sub : new String[] {"pull", "run", "snapshotter"}) {
      Result r = strata(sub, "-V");
      assertThat(r.code()).isZero();
      assertThat(r.out()).as(sub).startsWith("strata: version ");
    }
    // podman's info reads the mount program's version from its first line
    assertThat(strata("overlay", "--version").out()).startsWith("strata-overlay: version ");
    Result kill = strata("kill");
    assertThat(kill.code()).isEqualTo(Main.USAGE);
    assertThat(kill.err()).contains("'NAME'").doesNotContain("'SIGNAL'").contains("[SIGNAL]");
    Result help = strata("--help");
    for (String line : help.out().split("\n")) {
      if (line.startsWith("  login") || line.startsWith("  diff")) {
        assertThat(line.trim()).as("a whole sentence in the list").endsWith(".");
      }
    }
    assertThat(strata("snapshotter", "--help").out()).contains("--mount-helper, containerd");
  }

  /** Issue 16, item 11: Ctrl-C during a pull left 41 MB of staging, silently. */
  @Test
  void anInterruptedPullRemovesItsStagingAndSaysSo() throws Exception {
    System.setProperty(io.strata.union.mount.Background.MAIN_PROPERTY, Main.class.getName());
    try (SlowRegistry reg = new SlowRegistry(32 << 20)) {
      Path store = tmp.resolve("interrupted");
      java.util.List<String> cmd = TestDaemon.command(
          java.util.List.of("--root", store.toString(), "pull", reg.ref()));
      Path err = tmp.resolve("pull.err");
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(err.toFile())
          .redirectOutput(ProcessBuilder.Redirect.DISCARD);
      TestDaemon.environment(pb.environment());
      Process p = pb.start();
      try {
        Path staging = store.resolve("tmp");
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (reg.sent() < (4 << 20)) { // well into the download
          assertThat(p.isAlive()).as("the pull ended early: " + Files.readString(err)).isTrue();
          assertThat(System.nanoTime()).isLessThan(deadline);
          Thread.sleep(50);
        }
        try (var in = Files.list(staging)) {
          assertThat(in.toList()).as("a staging area while it runs").isNotEmpty();
        }
        new ProcessBuilder("kill", "-INT", String.valueOf(p.pid())).start().waitFor();
        assertThat(p.waitFor(60, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).isEqualTo(130);
        assertThat(Files.readString(err)).contains("interrupted: the pull of")
            .contains("removed its staging area").contains("nothing was stored");
        try (var in = Files.list(staging)) {
          assertThat(in.toList()).isEmpty();
        }
      } finally {
        p.destroyForcibly().waitFor();
      }
    }
  }

  /** `daemon --socket PATH` starts one: PATH is not a subcommand (it was taken for one). */
  @Test
  void whatStartsADaemon() {
    assertThat(Main.startsADaemon("daemon")).isTrue();
    assertThat(Main.startsADaemon("daemon", "--socket", "/run/x.sock")).isTrue();
    assertThat(Main.startsADaemon("--log-level", "info", "daemon", "--socket", "status")).isTrue();
    assertThat(Main.startsADaemon("daemon", "status")).isFalse();
    assertThat(Main.startsADaemon("daemon", "--socket", "/x", "status", "--format", "json"))
        .isFalse();
    assertThat(Main.startsADaemon("images")).isFalse();
  }

  /** Issue 16, item 15: ps printed whole commands (rows over 200 columns). */
  @Test
  void psCutsLongCommands() {
    java.util.List<String> argv = java.util.List.of("/bin/sh", "-c", "x".repeat(300));
    assertThat(PsCommand.command(argv, false)).hasSize(40).endsWith("…");
    assertThat(PsCommand.command(argv, true)).hasSize(311);
    assertThat(PsCommand.command(java.util.List.of("echo", "a\nb"), false)).isEqualTo("echo a\\nb");
  }

  /** Issue 16, item 12: a run says nothing on stderr unless asked to. */
  @Test
  void aRunIsQuietUnlessAskedToSayMore() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("bb/bin"));
    Files.copy(Path.of("/bin/busybox"), root.resolve("busybox"));
    Files.createSymbolicLink(root.resolve("true"), Path.of("busybox"));
    assertThat(new ProcessBuilder("tar", "-C", tmp.resolve("bb").toString(), "-cf",
        tmp.resolve("bb.tar").toString(), ".").start().waitFor()).isZero();
    assertThat(strata("import", tmp.resolve("bb.tar").toString(), "--name", "bb:1").code())
        .isZero();
    Result quiet = strata("run", "--rm", "bb:1", "/bin/true");
    assertThat(quiet.code()).isZero();
    assertThat(quiet.err()).isEmpty();
    Result debug = strata("run", "--log-level=debug", "--rm", "bb:1", "/bin/true");
    assertThat(debug.code()).isZero();
    assertThat(debug.err()).contains("FUSE protocol 7.");
    io.strata.layers.base.Log.setLevel(io.strata.layers.base.Log.Level.WARN);
  }

  /** A registry that serves one image whose layer comes at about 4 MiB/s. */
  static final class SlowRegistry implements AutoCloseable {
    private final com.sun.net.httpserver.HttpServer server;
    private final java.util.concurrent.atomic.AtomicLong sent =
        new java.util.concurrent.atomic.AtomicLong();

    SlowRegistry(int layerBytes) throws Exception {
      byte[] data = new byte[layerBytes];
      new java.util.Random(7).nextBytes(data);
      java.io.ByteArrayOutputStream tarBytes = new java.io.ByteArrayOutputStream();
      try (TarArchiveOutputStream tar = new TarArchiveOutputStream(tarBytes)) {
        TarArchiveEntry e = new TarArchiveEntry("blob");
        e.setSize(data.length);
        tar.putArchiveEntry(e);
        tar.write(data);
        tar.closeArchiveEntry();
      }
      byte[] layer = tarBytes.toByteArray();
      String diffId = io.strata.layers.base.Digest.of(layer).toString();
      byte[] config = ("{\"architecture\":\"" + (System.getProperty("os.arch").equals("aarch64") ? "arm64" : "amd64")
          + "\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\""
          + diffId + "\"]}}").getBytes(StandardCharsets.UTF_8);
      String cfg = io.strata.layers.base.Digest.of(config).toString();
      byte[] manifest = ("{\"schemaVersion\":2,\"mediaType\":"
          + "\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":"
          + "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" + cfg
          + "\",\"size\":" + config.length + "},\"layers\":[{\"mediaType\":"
          + "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" + diffId
          + "\",\"size\":" + layer.length + "}]}").getBytes(StandardCharsets.UTF_8);
      server = com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress(
          java.net.InetAddress.getLoopbackAddress(), 0), 8);
      server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
      server.createContext("/", ex -> {
        String path = ex.getRequestURI().getPath();
        byte[] body = path.equals("/v2/") ? "{}".getBytes(StandardCharsets.UTF_8)
            : path.contains("/manifests/") ? manifest
            : path.endsWith(cfg) ? config : path.endsWith(diffId) ? layer : null;
        if (body == null) {
          ex.sendResponseHeaders(404, -1);
          ex.close();
          return;
        }
        ex.getResponseHeaders().add("Content-Type", path.contains("/manifests/")
            ? "application/vnd.oci.image.manifest.v1+json" : "application/octet-stream");
        ex.sendResponseHeaders(200, body.length);
        try (java.io.OutputStream out = ex.getResponseBody()) {
          boolean slow = body == layer;
          for (int off = 0; off < body.length; off += 64 << 10) {
            int n = Math.min(64 << 10, body.length - off);
            out.write(body, off, n);
            out.flush();
            if (slow) {
              sent.addAndGet(n);
              Thread.sleep(15);
            }
          }
        } catch (InterruptedException | java.io.IOException e) {
          // the client went away
        }
        ex.close();
      });
      server.start();
    }

    String ref() {
      return "127.0.0.1:" + server.getAddress().getPort() + "/slow:v1";
    }

    long sent() {
      return sent.get();
    }

    @Override
    public void close() {
      server.stop(0);
    }
  }
}
