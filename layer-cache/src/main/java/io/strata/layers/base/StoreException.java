package io.strata.layers.base;

/** A store operation that could not be done; the message says what and what to do about it. */
public class StoreException extends RuntimeException {
  public StoreException(String message) {
    super(message);
  }

  public StoreException(String message, Throwable cause) {
    super(message, cause);
  }
}
