package io.strata.layers;

/** A name, id or layer that the store does not hold. */
public final class NotFoundException extends StoreException {
  public NotFoundException(String message) {
    super(message);
  }
}
