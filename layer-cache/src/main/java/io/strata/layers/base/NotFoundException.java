package io.strata.layers.base;

/** A name, id or layer that the store does not hold. */
public final class NotFoundException extends StoreException {
  public NotFoundException(String message) {
    super(message);
  }
}
