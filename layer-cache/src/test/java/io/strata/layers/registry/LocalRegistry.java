package io.strata.layers.registry;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A real registry for tests: Debian's docker-registry (distribution) on 127.0.0.1 with a free
 * port and its own storage, plain or with TLS (a CA and a certificate for 127.0.0.1 made with
 * openssl) and htpasswd auth. Stopped by close, which the tests call in finally blocks.
 */
final class LocalRegistry implements AutoCloseable {
  final int port;
  final Path dir;
  final Path caDir;
  final String user;
  final String password;
  private final Process process;

  private LocalRegistry(int port, Path dir, Path caDir, String user, String password,
      Process process) {
    this.port = port;
    this.dir = dir;
    this.caDir = caDir;
    this.user = user;
    this.password = password;
    this.process = process;
  }

  String host() {
    return "127.0.0.1:" + port;
  }

  static LocalRegistry plain(Path dir) throws Exception {
    return start(dir, false, null, null);
  }

  /** TLS with a test CA (its certificate in {@link #caDir}) and one htpasswd user. */
  static LocalRegistry tlsWithAuth(Path dir, String user, String password) throws Exception {
    return start(dir, true, user, password);
  }

  private static LocalRegistry start(Path dir, boolean tls, String user, String password)
      throws Exception {
    Files.createDirectories(dir);
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    StringBuilder cfg = new StringBuilder("version: 0.1\nlog:\n  level: warn\n"
        + "storage:\n  filesystem:\n    rootdirectory: " + dir.resolve("data") + "\n"
        + "  delete:\n    enabled: true\n"
        + "http:\n  addr: 127.0.0.1:" + port + "\n");
    Path caDir = null;
    if (tls) {
      caDir = Files.createDirectories(dir.resolve("ca"));
      Path ca = caDir.resolve("ca.crt");
      Path caKey = dir.resolve("ca.key");
      Path key = dir.resolve("server.key");
      Path csr = dir.resolve("server.csr");
      Path crt = dir.resolve("server.crt");
      Path ext = Files.writeString(dir.resolve("ext.cnf"),
          "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
      run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
          caKey.toString(), "-out", ca.toString(), "-days", "2", "-subj", "/CN=strata test CA");
      run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.toString(), "-out",
          csr.toString(), "-subj", "/CN=127.0.0.1");
      run("openssl", "x509", "-req", "-in", csr.toString(), "-CA", ca.toString(), "-CAkey",
          caKey.toString(), "-CAcreateserial", "-out", crt.toString(), "-days", "2",
          "-extfile", ext.toString());
      cfg.append("  tls:\n    certificate: ").append(crt).append("\n    key: ").append(key)
          .append('\n');
    }
    if (user != null) {
      String line = run("htpasswd", "-Bbn", user, password).trim();
      Path htpasswd = Files.writeString(dir.resolve("htpasswd"), line + "\n");
      cfg.append("auth:\n  htpasswd:\n    realm: strata-test\n    path: ").append(htpasswd)
          .append('\n');
    }
    Path config = Files.writeString(dir.resolve("config.yml"), cfg.toString());
    Process p = new ProcessBuilder("docker-registry", "serve", config.toString())
        .redirectErrorStream(true).redirectOutput(dir.resolve("registry.log").toFile()).start();
    LocalRegistry r = new LocalRegistry(port, dir, caDir, user, password, p);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        return r;
      } catch (IOException notYet) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          r.close();
          throw new IllegalStateException("docker-registry did not start: "
              + Files.readString(dir.resolve("registry.log")));
        }
        Thread.sleep(50);
      }
    }
  }

  /** skopeo copy with this registry's TLS and credentials settings on the docker:// side. */
  void skopeoCopy(String from, String to) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("skopeo", "copy", "--quiet"));
    boolean toRegistry = to.startsWith("docker://");
    String side = toRegistry ? "--dest" : "--src";
    if (caDir != null) {
      cmd.add(side + "-cert-dir=" + caDir);
    } else {
      cmd.add(side + "-tls-verify=false");
    }
    if (user != null) {
      cmd.add(side + "-creds=" + user + ":" + password);
    }
    cmd.add(from);
    cmd.add(to);
    run(cmd.toArray(String[]::new));
  }

  String skopeoDigest(String ref) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("skopeo", "inspect", "--format", "{{.Digest}}"));
    if (caDir != null) {
      cmd.add("--cert-dir=" + caDir);
    } else {
      cmd.add("--tls-verify=false");
    }
    if (user != null) {
      cmd.add("--creds=" + user + ":" + password);
    }
    cmd.add("docker://" + host() + "/" + ref);
    return run(cmd.toArray(String[]::new)).trim();
  }

  static String run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (p.waitFor() != 0) {
      throw new IllegalStateException(String.join(" ", cmd) + " failed:\n" + out);
    }
    return out;
  }

  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
