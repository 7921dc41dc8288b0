package io.strata.layers.archive;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** Reads what the store needs from an OCI image config, and writes one for a bare layer. */
public final class ImageConfig {
  private ImageConfig() {}

  /** The config's rootfs.diff_ids, bottom layer first, each a well-formed sha256 digest. */
  public static List<Digest> diffIds(byte[] config, String what) {
    JsonNode root = Json.parse(config, what);
    JsonNode rootfs = root.get("rootfs");
    if (rootfs == null || !rootfs.isObject()) {
      throw new BadInputException(what + ": no rootfs");
    }
    if (!"layers".equals(rootfs.path("type").asText())) {
      throw new BadInputException(what + ": rootfs.type is not \"layers\"");
    }
    JsonNode ids = rootfs.get("diff_ids");
    if (ids == null || !ids.isArray()) {
      throw new BadInputException(what + ": no rootfs.diff_ids");
    }
    List<Digest> out = new ArrayList<>();
    for (JsonNode id : ids) {
      try {
        out.add(Digest.parse(id.asText()));
      } catch (IllegalArgumentException e) {
        throw new BadInputException(what + ": rootfs.diff_ids[" + out.size() + "]: " + e.getMessage());
      }
    }
    return out;
  }

  /**
   * A minimal config for an image made of bare layers, so every image has one. It has no
   * timestamp, so importing the same layers twice gives the same image id.
   */
  public static byte[] forLayers(List<Digest> diffIds) throws IOException {
    ObjectNode c = Json.MAPPER.createObjectNode();
    c.put("architecture", goArch());
    c.put("os", "linux");
    ObjectNode cfg = c.putObject("config");
    cfg.putArray("Env").add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    cfg.putArray("Cmd").add("/bin/sh");
    ObjectNode rootfs = c.putObject("rootfs");
    rootfs.put("type", "layers");
    ArrayNode ids = rootfs.putArray("diff_ids");
    diffIds.forEach(d -> ids.add(d.toString()));
    return Json.MAPPER.writer().withoutFeatures(
        com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(c);
  }

  /**
   * The config of a committed image: the base's (or a minimal one) with the new DiffIDs, a
   * history entry, the creation time and the requested changes.
   */
  public static byte[] committed(byte[] base, List<Digest> diffIds, String comment, String author,
      java.util.Map<String, Object> changes) throws IOException {
    ObjectNode c = base != null
        ? (ObjectNode) Json.parse(base, "the base image's config")
        : (ObjectNode) Json.MAPPER.readTree(forLayers(List.of()));
    String now = java.time.Instant.now().toString();
    c.put("created", now);
    if (author != null) {
      c.put("author", author);
    }
    ObjectNode rootfs = c.putObject("rootfs");
    rootfs.put("type", "layers");
    ArrayNode ids = rootfs.putArray("diff_ids");
    diffIds.forEach(d -> ids.add(d.toString()));
    JsonNode oldHistory = c.get("history");
    ArrayNode history = c.putArray("history");
    if (oldHistory != null && oldHistory.isArray()) {
      history.addAll((ArrayNode) oldHistory);
    }
    ObjectNode h = history.addObject();
    h.put("created", now);
    h.put("created_by", "strata commit");
    if (comment != null) {
      h.put("comment", comment);
    }
    if (author != null) {
      h.put("author", author);
    }
    ObjectNode cfg = c.has("config") && c.get("config").isObject()
        ? (ObjectNode) c.get("config") : c.putObject("config");
    if (changes != null) {
      changes.forEach((k, v) -> {
        if (k.equals("Env+")) {
          ArrayNode env = cfg.has("Env") && cfg.get("Env").isArray()
              ? (ArrayNode) cfg.get("Env") : cfg.putArray("Env");
          for (Object o : (List<?>) v) {
            String kv = o.toString();
            String key = kv.substring(0, kv.indexOf('=') + 1);
            for (int i = env.size() - 1; i >= 0; i--) {
              if (env.get(i).asText().startsWith(key)) {
                env.remove(i);
              }
            }
            env.add(kv);
          }
        } else if (k.equals("Labels+")) {
          ObjectNode labels = cfg.has("Labels") && cfg.get("Labels").isObject()
              ? (ObjectNode) cfg.get("Labels") : cfg.putObject("Labels");
          ((java.util.Map<?, ?>) v).forEach((lk, lv) -> labels.put(lk.toString(), lv.toString()));
        } else {
          cfg.set(k, Json.MAPPER.valueToTree(v));
        }
      });
    }
    return Json.MAPPER.writer().withoutFeatures(
        com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(c);
  }

  /** This machine's architecture in the Go spelling that OCI platforms use. */
  public static String goArch() {
    String arch = System.getProperty("os.arch");
    switch (arch) {
      case "amd64":
      case "x86_64":
        return "amd64";
      case "aarch64":
        return "arm64";
      default:
        return arch;
    }
  }
}
