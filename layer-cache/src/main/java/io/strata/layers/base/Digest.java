package io.strata.layers.base;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A content digest in the OCI form {@code sha256:HEX}: a layer's DiffID, a blob's digest, an
 * image id or a ChainID.
 */
public record Digest(String hex) implements Comparable<Digest> {

  private static final Pattern SHA256_HEX = Pattern.compile("[0-9a-f]{64}");

  public Digest {
    if (!SHA256_HEX.matcher(hex).matches()) {
      throw new IllegalArgumentException("not a sha256 digest: " + Text.clip(hex));
    }
  }

  /** Parses {@code sha256:HEX}; any other algorithm or form is refused with a message. */
  public static Digest parse(String text) {
    if (text == null || !text.startsWith("sha256:")) {
      throw new IllegalArgumentException(
          "not a sha256 digest: " + Text.clip(text)
              + " (expected sha256: and 64 lowercase hex digits)");
    }
    return new Digest(text.substring("sha256:".length()));
  }

  /** True when the text is a well-formed {@code sha256:HEX}. */
  public static boolean isDigest(String text) {
    return text != null && text.startsWith("sha256:") && SHA256_HEX.matcher(text.substring(7)).matches();
  }

  public static Digest of(byte[] bytes) {
    return fromBytes(newSha256().digest(bytes));
  }

  public static Digest fromBytes(byte[] sha256) {
    return new Digest(HexFormat.of().formatHex(sha256));
  }

  public static MessageDigest newSha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new AssertionError("every JVM has SHA-256", e);
    }
  }

  /**
   * The ChainID of a stack of layers, bottom first, as the OCI image spec defines it:
   * ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
   */
  public static Digest chainId(List<Digest> diffIds) {
    if (diffIds.isEmpty()) {
      throw new IllegalArgumentException("an empty stack has no ChainID");
    }
    Digest chain = diffIds.get(0);
    for (int i = 1; i < diffIds.size(); i++) {
      chain = of((chain + " " + diffIds.get(i)).getBytes(StandardCharsets.US_ASCII));
    }
    return chain;
  }

  /** The first twelve hex digits, as people read ids in listings. */
  public String shortHex() {
    return hex.substring(0, 12);
  }

  @Override
  public String toString() {
    return "sha256:" + hex;
  }

  @Override
  public int compareTo(Digest o) {
    return hex.compareTo(o.hex);
  }
}
