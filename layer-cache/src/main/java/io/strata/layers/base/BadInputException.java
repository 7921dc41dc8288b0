package io.strata.layers.base;

/**
 * An image or layer that is malformed, hostile or does not match its declared digests. The
 * message names the layer (and the tar entry, where there is one); nothing was stored.
 */
public final class BadInputException extends StoreException {
  public BadInputException(String message) {
    super(message);
  }

  public BadInputException(String message, Throwable cause) {
    super(message, cause);
  }

  /** An error about one entry of one layer. */
  public static BadInputException entry(String layer, String entry, String what) {
    return new BadInputException("layer " + layer + ": entry '" + Text.display(entry) + "': "
        + what);
  }
}
