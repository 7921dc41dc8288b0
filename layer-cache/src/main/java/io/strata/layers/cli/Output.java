package io.strata.layers.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import io.strata.layers.base.Json;
import java.util.List;

/** Shared helpers for what commands print: notes, sizes, tables and JSON. */
public final class Output {
  private Output() {}

  /** The output formats of listings. */
  public enum Format { table, json }

  /** A line for people on stderr, so that stdout stays parseable; input in it stays on it. */
  public static void note(String line) {
    System.err.println("strata: " + io.strata.layers.base.Text.printable(line));
  }

  public static void json(Object value) {
    try {
      System.out.println(Json.MAPPER.writeValueAsString(value));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot write JSON", e);
    }
  }

  /** Prints rows as left-aligned columns, the first row being the header. */
  public static void table(List<String[]> rows) {
    if (rows.isEmpty()) {
      return;
    }
    int[] width = new int[rows.get(0).length];
    for (String[] r : rows) {
      for (int i = 0; i < r.length; i++) {
        width[i] = Math.max(width[i], r[i].length());
      }
    }
    StringBuilder sb = new StringBuilder();
    for (String[] r : rows) {
      for (int i = 0; i < r.length; i++) {
        sb.append(r[i]);
        if (i < r.length - 1) {
          sb.append(" ".repeat(width[i] - r[i].length() + 3));
        }
      }
      sb.append('\n');
    }
    System.out.print(sb);
  }

  /** Bytes in binary units with one decimal, as people read sizes. */
  public static String size(long bytes) {
    return io.strata.layers.base.Text.size(bytes);
  }

}
