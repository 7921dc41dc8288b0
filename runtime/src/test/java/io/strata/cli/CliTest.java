package io.strata.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.strata.layers.Json;
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
    PrintStream oldOut = System.out;
    PrintStream oldErr = System.err;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    try {
      System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
      System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
      var cl = Main.commandLine();
      cl.setOut(new java.io.PrintWriter(System.out, true));
      cl.setErr(new java.io.PrintWriter(System.err, true));
      String[] withRoot = new String[args.length + 1];
      withRoot[0] = args[0];
      withRoot[1] = "--root=" + tmp.resolve("store");
      System.arraycopy(args, 1, withRoot, 2, args.length - 1);
      int code = cl.execute(args[0].startsWith("-") ? args : withRoot);
      return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    } finally {
      System.setOut(oldOut);
      System.setErr(oldErr);
    }
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
  void imagesInAndOutSayWhatIsWrongWithExitCodes() throws Exception {
    assertThat(strata("import", layer("x", "y").toString(), "--name", "x:1").code()).isZero();
    Result badRef = strata("pull", "127.0.0.1:1/UPPER:v1");
    assertThat(badRef.code()).isEqualTo(Main.USAGE);
    assertThat(badRef.err()).contains("invalid image reference");
    Result closed = strata("pull", "127.0.0.1:1/app:v1", "--stall-timeout", "2");
    assertThat(closed.code()).isEqualTo(Main.FAILED);
    assertThat(closed.err()).contains("cannot reach the registry 127.0.0.1:1");
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
}
