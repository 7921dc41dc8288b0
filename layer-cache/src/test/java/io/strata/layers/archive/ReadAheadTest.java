package io.strata.layers.archive;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Random;
import org.junit.jupiter.api.Test;

class ReadAheadTest {
  private static byte[] random(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  private static boolean threadAlive(String name) {
    return Thread.getAllStackTraces().keySet().stream()
        .anyMatch(t -> t.getName().equals(name) && t.isAlive());
  }

  @Test
  void theReaderGetsEveryByteInOrderWhateverTheSizeOfItsReads() throws Exception {
    byte[] data = random(3 << 20 | 12345, 1);
    ByteArrayOutputStream got = new ByteArrayOutputStream();
    Random sizes = new Random(2);
    try (ReadAhead in = ReadAhead.of(new ByteArrayInputStream(data), "ra-bytes")) {
      while (true) {
        if (sizes.nextInt(10) == 0) {
          int b = in.read();
          if (b < 0) {
            break;
          }
          got.write(b);
          continue;
        }
        byte[] buf = new byte[1 + sizes.nextInt(700_000)];
        int n = in.read(buf, 0, buf.length);
        if (n < 0) {
          break;
        }
        got.write(buf, 0, n);
      }
      assertThat(in.read()).isEqualTo(-1);
    }
    assertThat(got.toByteArray()).isEqualTo(data);
  }

  @Test
  void atTheEndItsThreadHasStoppedAndWhatFollowsInTheSourceIsTheCallers() throws Exception {
    byte[] data = random(1 << 20, 3);
    ByteArrayInputStream under = new ByteArrayInputStream(data);
    int first = 700_001;
    // a source that ends before what lies under it, as a gzip stream ends before its blob
    InputStream limited = new FilterInputStream(under) {
      int left = first;

      @Override
      public int read(byte[] b, int off, int len) throws IOException {
        if (left == 0) {
          return -1;
        }
        int n = super.read(b, off, Math.min(len, left));
        left -= Math.max(n, 0);
        return n;
      }
    };
    ReadAhead in = ReadAhead.of(limited, "ra-end");
    assertThat(in.readAllBytes()).hasSize(first);
    assertThat(threadAlive("ra-end")).isFalse();
    assertThat(under.readAllBytes()).isEqualTo(java.util.Arrays.copyOfRange(data, first,
        data.length));
    in.close();
  }

  @Test
  void theSourcesFailureIsThrownAtTheReadThatReachesItAndAfter() throws Exception {
    byte[] data = random(600_000, 4);
    IOException corrupt = new IOException("corrupt gzip stream");
    InputStream failing = new InputStream() {
      int pos;

      @Override
      public int read() {
        throw new UnsupportedOperationException();
      }

      @Override
      public int read(byte[] b, int off, int len) throws IOException {
        if (pos == data.length) {
          throw corrupt;
        }
        int n = Math.min(len, data.length - pos);
        System.arraycopy(data, pos, b, off, n);
        pos += n;
        return n;
      }
    };
    try (ReadAhead in = ReadAhead.of(failing, "ra-fail")) {
      byte[] got = in.readNBytes(data.length);
      assertThat(got).isEqualTo(data);
      assertThatThrownBy(in::read).isSameAs(corrupt);
      assertThatThrownBy(() -> in.read(new byte[10], 0, 10)).isSameAs(corrupt);
    }
  }

  @Test
  void closingStopsItsThreadAndLeavesTheSourceOpen() throws Exception {
    boolean[] closed = {false};
    // an endless source: the thread would fill its chunks and wait for the reader
    InputStream endless = new InputStream() {
      @Override
      public int read() {
        return 7;
      }

      @Override
      public int read(byte[] b, int off, int len) {
        java.util.Arrays.fill(b, off, off + len, (byte) 7);
        return len;
      }

      @Override
      public void close() {
        closed[0] = true;
      }
    };
    ReadAhead in = ReadAhead.of(endless, "ra-close");
    assertThat(in.readNBytes(1000)).containsOnly(7);
    in.close();
    assertThat(threadAlive("ra-close")).isFalse();
    assertThat(closed[0]).isFalse();
    assertThatThrownBy(in::read).isInstanceOf(IOException.class).hasMessageContaining("closed");
  }
}
