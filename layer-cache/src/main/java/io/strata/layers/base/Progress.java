package io.strata.layers.base;

/** Receives progress of long store work; the command line draws it on a terminal. */
public interface Progress {
  Progress NONE = new Progress() {};

  /** Layer {@code index} (1-based) of {@code count} starts; {@code label} names it for people. */
  default void layerStarted(int index, int count, String label, long expectedBytes) {}

  /** {@code bytes} more input bytes of the current layer were read. */
  default void bytesRead(long bytes) {}

  default void layerDone(int index, int count, String label, boolean alreadyStored) {}

  default void message(String text) {}

  /** {@code bytes} more of a blob labelled {@code label} of {@code total} bytes came from a registry (any thread). */
  default void bytesFetched(String label, long bytes, long total) {}

  /** {@code bytes} more of a blob were sent to a registry (any thread). */
  default void bytesSent(String label, long bytes, long total) {}

  /**
   * Work of another kind on a stored layer begins: {@code verb} names it ("compressing",
   * "writing", "reading the changes"); {@link #bytesRead} then counts it, of
   * {@code expectedBytes} (-1: not known).
   */
  default void layerWork(String verb, int index, int count, String label, long expectedBytes) {}

  /** The work {@link #layerWork} announced is done, after {@code bytes}. */
  default void layerWorkDone(String verb, int index, int count, String label, long bytes) {}
}
