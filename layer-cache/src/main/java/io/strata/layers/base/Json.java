package io.strata.layers.base;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.ser.std.ToStringSerializer;
import com.fasterxml.jackson.databind.deser.std.FromStringDeserializer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** The one JSON mapper of the store: digests as strings, pretty output, strict input limits. */
public final class Json {
  /** Manifests, indexes and configs larger than this are refused as hostile. */
  public static final int MAX_DOCUMENT_BYTES = 8 * 1024 * 1024;

  public static final ObjectMapper MAPPER = create();

  private Json() {}

  private static ObjectMapper create() {
    ObjectMapper m = new ObjectMapper();
    m.getFactory().setStreamReadConstraints(StreamReadConstraints.builder()
        .maxNestingDepth(64).maxStringLength(MAX_DOCUMENT_BYTES).build());
    m.enable(SerializationFeature.INDENT_OUTPUT);
    m.disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);
    SimpleModule digests = new SimpleModule("digests");
    digests.addSerializer(Digest.class, ToStringSerializer.instance);
    digests.addDeserializer(Digest.class, new FromStringDeserializer<>(Digest.class) {
      @Override
      protected Digest _deserialize(String value, com.fasterxml.jackson.databind.DeserializationContext ctxt) {
        return Digest.parse(value);
      }
    });
    m.registerModule(digests);
    return m;
  }

  /** Parses an untrusted document; a syntax error names what was being read. */
  public static JsonNode parse(byte[] bytes, String what) {
    if (bytes.length > MAX_DOCUMENT_BYTES) {
      throw new BadInputException(what + ": " + bytes.length + " bytes is too large for a JSON document");
    }
    try {
      JsonNode node = MAPPER.readTree(bytes);
      if (node == null || node.isMissingNode()) {
        throw new BadInputException(what + ": empty JSON document");
      }
      return node;
    } catch (JsonProcessingException e) {
      throw new BadInputException(what + ": invalid JSON: " + Text.clip(e.getOriginalMessage()));
    } catch (IOException e) {
      throw new BadInputException(what + ": unreadable JSON: " + e.getMessage());
    }
  }

  public static <T> T read(Path file, Class<T> type) throws IOException {
    return MAPPER.readValue(file.toFile(), type);
  }

  /** Writes a document so that readers see the old or the new file, never a part of one. */
  public static void writeAtomically(Path file, Object value) throws IOException {
    writeAtomically(file, MAPPER.writeValueAsBytes(value));
  }

  public static void writeAtomically(Path file, byte[] bytes) throws IOException {
    Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp-" + ProcessHandle.current().pid()
        + "-" + Thread.currentThread().getId());
    Files.write(tmp, bytes, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
        StandardOpenOption.WRITE);
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /** A required text field, or an error naming the document and the field. */
  public static String text(JsonNode node, String field, String what) {
    JsonNode v = node.get(field);
    if (v == null || !v.isTextual()) {
      throw new BadInputException(what + ": missing or non-text field '" + field + "'");
    }
    return v.asText();
  }

  /** A descriptor's size: present, a whole number, not negative. */
  public static long size(JsonNode descriptor, String what) {
    JsonNode n = descriptor.get("size");
    if (n == null || !n.isIntegralNumber() || !n.canConvertToLong() || n.asLong() < 0) {
      throw new BadInputException(what + ": the descriptor's size is "
          + (n == null ? "missing" : "'" + Text.clip(n.toString()) + "'")
          + " (a byte count of 0 or more is required)");
    }
    if (n.asLong() > MAX_BLOB_BYTES) {
      throw new BadInputException(what + ": the descriptor's size is " + n.asLong()
          + " bytes, more than the " + MAX_BLOB_BYTES + " (1 TiB) strata accepts for one blob");
    }
    return n.asLong();
  }

  /**
   * The largest blob a descriptor may declare: no image layer comes near it, and a larger
   * number is a lie that would otherwise pass unseen for a layer the store already has.
   */
  static final long MAX_BLOB_BYTES = 1L << 40;

  /** A required digest field, or an error naming the document and the field. */
  public static Digest digest(JsonNode node, String field, String what) {
    String s = text(node, field, what);
    try {
      return Digest.parse(s);
    } catch (IllegalArgumentException e) {
      throw new BadInputException(what + ": field '" + field + "': " + e.getMessage());
    }
  }
}
