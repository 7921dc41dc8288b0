package io.strata.layers.base;

/**
 * An import that would not fit on the store's filesystem (not a fault of the input, exit 1);
 * it stopped before the disk filled and nothing was stored.
 */
public final class DiskFullException extends StoreException {
  public DiskFullException(String message) {
    super(message);
  }
}
