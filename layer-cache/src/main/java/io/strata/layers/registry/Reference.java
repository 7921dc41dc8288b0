package io.strata.layers.registry;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Text;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An image reference as the distribution project's grammar reads it: {@code
 * [HOST[:PORT]/]PATH[:TAG][@sha256:HEX]}. A name whose first component is not a host (no '.',
 * no ':', not {@code localhost}) is short: {@link #candidates} qualifies it as podman does.
 *
 * @param registry the host as written ({@code docker.io} for Docker Hub)
 * @param repository the path inside the registry ({@code library/busybox})
 * @param tag the tag, or null when only a digest is given
 * @param digest the manifest digest, or null
 */
public record Reference(String registry, String repository, String tag, Digest digest) {
  public static final String DOCKER_HUB = "docker.io";

  private static final String COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
  private static final Pattern PATH = Pattern.compile(COMPONENT + "(?:/" + COMPONENT + ")*");
  private static final Pattern HOST = Pattern.compile(
      "(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
          + "[a-zA-Z0-9])?)*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?");
  private static final Pattern TAG = Pattern.compile("[\\w][\\w.-]{0,127}");
  private static final Pattern FULL = Pattern.compile("([^@]+?)(?::([^:/@]+))?(?:@(.+))?");

  /** Parses a reference; a short name is qualified with {@code defaultRegistry}. */
  public static Reference parse(String text, String defaultRegistry) {
    if (text == null || text.isEmpty() || text.length() > 4096) {
      throw new IllegalArgumentException("invalid image reference '" + Text.clip(text) + "'");
    }
    Matcher m = FULL.matcher(text);
    if (!m.matches()) {
      throw bad(text, "expected [HOST[:PORT]/]NAME[:TAG][@sha256:HEX]");
    }
    String name = m.group(1);
    String tag = m.group(2);
    Digest digest = null;
    if (m.group(3) != null) {
      if (!m.group(3).startsWith("sha256:")) {
        throw bad(text, "only sha256 digests are supported, not '" + Text.clip(m.group(3)) + "'");
      }
      try {
        digest = Digest.parse(m.group(3));
      } catch (IllegalArgumentException e) {
        throw bad(text, e.getMessage());
      }
    }
    if (tag != null && !TAG.matcher(tag).matches()) {
      throw bad(text, "the tag '" + Text.clip(tag) + "' is not 1-128 letters, digits, '_', '.',"
          + " '-' (not starting with '.' or '-')");
    }
    String registry;
    String path;
    int slash = name.indexOf('/');
    String first = slash < 0 ? null : name.substring(0, slash);
    if (first != null && (first.contains(".") || first.contains(":") || first.equals("localhost")
        || first.startsWith("["))) {
      if (!HOST.matcher(first).matches()) {
        throw bad(text, "'" + Text.clip(first) + "' is not a registry host[:port]");
      }
      registry = first;
      path = name.substring(slash + 1);
    } else {
      registry = defaultRegistry;
      path = name;
    }
    if (!PATH.matcher(path).matches()) {
      throw bad(text, "the repository '" + Text.clip(path) + "' must be lowercase letters,"
          + " digits and separators ('.', '_', '__', '-') in components joined by '/'");
    }
    if (registry.equals(DOCKER_HUB) && !path.contains("/")) {
      path = "library/" + path;
    }
    if (registry.length() + path.length() > 255) {
      throw bad(text, "the name is longer than 255 characters");
    }
    if (tag == null && digest == null) {
      tag = "latest";
    }
    return new Reference(registry, path, tag, digest);
  }

  /** Whether the text names no registry, so {@link #candidates} decides which. */
  public static boolean isShort(String text) {
    return LayerStore.isShortName(text);
  }

  /**
   * The references a name may mean: itself when it names a registry, else one per registry of
   * registries.conf's {@code unqualified-search-registries}, else Docker Hub.
   */
  public static List<Reference> candidates(String text, Path registriesConf) {
    if (!isShort(text)) {
      return List.of(parse(text, DOCKER_HUB));
    }
    List<String> search = searchRegistries(registriesConf);
    if (search.isEmpty()) {
      search = List.of(DOCKER_HUB);
    }
    List<Reference> out = new ArrayList<>();
    for (String r : search) {
      out.add(parse(text, r));
    }
    return out;
  }

  private static final Pattern SEARCH = Pattern.compile(
      "(?m)^\\s*unqualified-search-registries\\s*=\\s*\\[([^\\]]*)\\]");
  private static final Pattern QUOTED = Pattern.compile("\"([^\"]+)\"|'([^']+)'");

  /** The list from registries.conf (v2 TOML: one array; the file's other tables are ignored). */
  static List<String> searchRegistries(Path conf) {
    List<String> out = new ArrayList<>();
    if (conf == null || !Files.isRegularFile(conf)) {
      return out;
    }
    try {
      Matcher m = SEARCH.matcher(Files.readString(conf));
      if (m.find()) {
        Matcher q = QUOTED.matcher(m.group(1));
        while (q.find()) {
          String host = q.group(1) != null ? q.group(1) : q.group(2);
          if (HOST.matcher(host).matches()) {
            out.add(host);
          }
        }
      }
    } catch (IOException | RuntimeException e) {
      // an unreadable registries.conf is as no list: Docker Hub
    }
    return out;
  }

  /** The name the store gives a pulled image: {@code HOST/PATH:TAG}, or {@code HOST/PATH:latest}. */
  public String storeName() {
    return registry + "/" + repository + ":" + (tag != null ? tag : "latest");
  }

  /** The tag or digest the manifest is asked for by. */
  public String manifestRef() {
    return digest != null ? digest.toString() : tag;
  }

  @Override
  public String toString() {
    return registry + "/" + repository + (tag != null ? ":" + tag : "")
        + (digest != null ? "@" + digest : "");
  }

  private static IllegalArgumentException bad(String text, String why) {
    return new IllegalArgumentException("invalid image reference '" + Text.clip(text) + "': " + why);
  }
}
