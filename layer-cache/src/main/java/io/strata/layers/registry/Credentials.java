package io.strata.layers.registry;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Json;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * Registry credentials from the files podman, skopeo and docker keep them in ({@code
 * auth.json}, {@code ~/.docker/config.json}: {@code {"auths": {HOST: {"auth": base64(USER:PASS)}}}}).
 * Credential helpers ({@code credsStore}) are not run; a login that lives only in one is not
 * seen.
 */
public final class Credentials {
  /** A user and password; toString never shows the password. */
  public record Login(String user, String password) {
    public String basic() {
      return "Basic " + Base64.getEncoder().encodeToString(
          (user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public String toString() {
      return "Login[" + user + "]";
    }
  }

  private Credentials() {}

  /** The files read, first match wins: an explicit file, then podman's, then docker's. */
  private static List<Path> files(Path authFile) {
    List<Path> out = new ArrayList<>();
    if (authFile != null) {
      out.add(authFile);
      return out;
    }
    String env = io.strata.layers.base.Invocation.current().getenv("REGISTRY_AUTH_FILE");
    if (env != null && !env.isBlank()) {
      out.add(Path.of(env));
    }
    String xdg = io.strata.layers.base.Invocation.current().getenv("XDG_RUNTIME_DIR");
    if (xdg != null && !xdg.isBlank()) {
      out.add(Path.of(xdg, "containers", "auth.json"));
    }
    String home = home();
    out.add(Path.of(home, ".config", "containers", "auth.json"));
    String docker = io.strata.layers.base.Invocation.current().getenv("DOCKER_CONFIG");
    out.add(docker != null && !docker.isBlank() ? Path.of(docker, "config.json")
        : Path.of(home, ".docker", "config.json"));
    return out;
  }

  /** The login for {@code registry} (as written in references), or null. */
  public static Login find(String registry, Path authFile) {
    for (Path f : files(authFile)) {
      Login l = read(f, registry);
      if (l != null) {
        return l;
      }
    }
    return null;
  }

  private static Login read(Path file, String registry) {
    if (!Files.isRegularFile(file)) {
      return null;
    }
    JsonNode auths;
    try {
      auths = Json.MAPPER.readTree(file.toFile()).path("auths");
    } catch (IOException e) {
      throw new BadInputException("credentials file " + file + " is not JSON (it was not"
          + " used; fix or remove it)");
    }
    List<String> keys = new ArrayList<>(List.of(registry, "https://" + registry,
        "http://" + registry));
    if (registry.equals(Reference.DOCKER_HUB)) {
      keys.add("https://index.docker.io/v1/");
      keys.add("index.docker.io");
    }
    for (String k : keys) {
      JsonNode entry = auths.path(k);
      String auth = entry.path("auth").asText("");
      if (!auth.isEmpty()) {
        String decoded;
        try {
          decoded = new String(Base64.getDecoder().decode(auth), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
          throw new BadInputException("credentials file " + file + ": the entry for " + k
              + " is not base64");
        }
        int colon = decoded.indexOf(':');
        if (colon <= 0) {
          throw new BadInputException("credentials file " + file + ": the entry for " + k
              + " is not USER:PASSWORD");
        }
        return new Login(decoded.substring(0, colon), decoded.substring(colon + 1));
      }
    }
    return null;
  }

  /** Where {@code strata login} writes: the explicit file, else $REGISTRY_AUTH_FILE, else podman's. */
  public static Path writeTarget(Path authFile) {
    if (authFile != null) {
      return authFile;
    }
    String env = io.strata.layers.base.Invocation.current().getenv("REGISTRY_AUTH_FILE");
    if (env != null && !env.isBlank()) {
      return Path.of(env);
    }
    String xdg = io.strata.layers.base.Invocation.current().getenv("XDG_RUNTIME_DIR");
    if (xdg != null && !xdg.isBlank()) {
      return Path.of(xdg, "containers", "auth.json");
    }
    return Path.of(home(), ".config", "containers", "auth.json");
  }

  /** Stores (or with a null login removes) the entry for {@code registry}; the file is 0600. */
  public static Path store(String registry, Login login, Path authFile) throws IOException {
    Path f = writeTarget(authFile);
    ObjectNode root = Files.isRegularFile(f)
        ? (ObjectNode) Json.MAPPER.readTree(f.toFile()) : Json.MAPPER.createObjectNode();
    ObjectNode auths = root.has("auths") && root.get("auths").isObject()
        ? (ObjectNode) root.get("auths") : root.putObject("auths");
    if (login == null) {
      auths.remove(registry);
    } else {
      auths.putObject(registry).put("auth", login.basic().substring("Basic ".length()));
    }
    Files.createDirectories(f.toAbsolutePath().getParent());
    Path tmp = f.resolveSibling("." + f.getFileName() + ".tmp-" + ProcessHandle.current().pid());
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(
        PosixFilePermissions.fromString("rw-------")));
    Files.write(tmp, Json.MAPPER.writeValueAsBytes(root));
    Files.move(tmp, f, java.nio.file.StandardCopyOption.ATOMIC_MOVE,
        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    return f;
  }

  /** The home directory of the person who ran the command ($HOME), else this process's. */
  private static String home() {
    String h = io.strata.layers.base.Invocation.current().getenv("HOME");
    return h != null && !h.isBlank() ? h : System.getProperty("user.home");
  }
}
