package io.strata.runtime.container;

/**
 * Resource limits of a container; -1 means no limit. {@code memorySwap} is memory plus swap,
 * as docker's --memory-swap.
 */
public record Limits(long memory, long memorySwap, long cpuQuotaMicros, long cpuPeriodMicros,
    long pids) {
  public static final Limits NONE = new Limits(-1, -1, -1, 100_000, -1);
  /** Docker's floor: below it not even the helper starts. */
  public static final long MIN_MEMORY = 6L << 20;
  /** The kernel's most processes (PID_MAX_LIMIT). */
  public static final long MAX_PIDS = 4L << 20;
  /** 0.01 CPU, Docker's least quota, in a 100 ms period. */
  public static final long MIN_CPU_QUOTA = 1_000;

  /** Refuses limits that the kernel would refuse or that cannot start a container. */
  public void check() {
    if (memory != -1 && memory < MIN_MEMORY) {
      throw new IllegalArgumentException("--memory " + memory + ": the least is 6m");
    }
    if (memorySwap >= 0 && memorySwap < memory) {
      throw new IllegalArgumentException("--memory-swap must be at least --memory");
    }
    if (pids != -1 && (pids < 1 || pids > MAX_PIDS)) {
      throw new IllegalArgumentException("--pids-limit " + pids + ": expected 1 to " + MAX_PIDS);
    }
    if (cpuQuotaMicros != -1 && cpuQuotaMicros < MIN_CPU_QUOTA) {
      throw new IllegalArgumentException("--cpus: the least is 0.01");
    }
  }

  /** Parses sizes such as 64m, 1g, 512k or plain bytes. */
  public static long parseSize(String s, String option) {
    String t = s.trim().toLowerCase(java.util.Locale.ROOT);
    long mult = 1;
    char last = t.isEmpty() ? ' ' : t.charAt(t.length() - 1);
    if (last == 'b') {
      t = t.substring(0, t.length() - 1);
      last = t.isEmpty() ? ' ' : t.charAt(t.length() - 1);
    }
    switch (last) {
      case 'k' -> mult = 1L << 10;
      case 'm' -> mult = 1L << 20;
      case 'g' -> mult = 1L << 30;
      default -> mult = 1;
    }
    if (mult != 1) {
      t = t.substring(0, t.length() - 1);
    }
    try {
      long v = Long.parseLong(t);
      if (v <= 0) {
        throw new NumberFormatException();
      }
      return Math.multiplyExact(v, mult);
    } catch (NumberFormatException | ArithmeticException e) {
      throw new IllegalArgumentException(option + " " + s + ": expected a size such as 64m or 1g");
    }
  }
}
