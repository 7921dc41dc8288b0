package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.strata.union.kernel.Holder;
import io.strata.union.kernel.KernelSession;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The record a stopping daemon leaves with a mount it hands over: the next daemon reads the
 * flags the connection's INIT agreed to, and reads the record of the build before this one
 * (version 2, which said only whether passthrough was agreed), so that an upgrade across the
 * change keeps its mounts.
 */
class HandoverRecordTest {
  private static final long PASSTHROUGH = 1L << 37;
  private static final long KILLPRIV_V2 = 1L << 28;
  private static final long DONT_MASK = 1L << 6;

  @Test
  void theAgreedFlagsComeBackAsWritten() throws IOException {
    long agreed = PASSTHROUGH | KILLPRIV_V2 | DONT_MASK | 1;
    byte[] record = Handover.encode(List.of("overlay", "-o", "x", "/mnt"), true,
        new KernelSession.Resumed(3, agreed, 45), 1, new byte[] {7, 8});
    Handover.Takeover t = Handover.decode(new Holder.Entry(9, new int[] {10, 11}, record));
    assertThat(t.resumed()).isEqualTo(new KernelSession.Resumed(3, agreed, 45));
    assertThat(t.recipe()).containsExactly("overlay", "-o", "x", "/mnt");
    assertThat(t.elsewhere()).isTrue();
    assertThat(t.clones()).isEqualTo(1);
    assertThat(t.state()).containsExactly(7, 8);
  }

  /**
   * A running daemon's checkpoint, streamed into a file: it says nothing of how many clones
   * it has (more may reach the holder after it), so every descriptor after the connection's
   * is one, and no open file comes with it (they are opened again by name).
   */
  @Test
  void aCheckpointTakesEveryOtherDescriptorForAClone() throws IOException {
    java.nio.file.Path f = java.nio.file.Files.createTempFile("checkpoint", ".rec");
    try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(f,
        java.nio.file.StandardOpenOption.WRITE)) {
      Handover.writeCheckpoint(ch, List.of("mount", "img", "/mnt"), false,
          new KernelSession.Resumed(1, PASSTHROUGH, 45), out -> out.write(new byte[] {1, 2, 3}));
    }
    byte[] record = java.nio.file.Files.readAllBytes(f);
    java.nio.file.Files.delete(f);
    Handover.Takeover t = Handover.decode(new Holder.Entry(9, new int[] {10, 11, 12}, record));
    assertThat(t.checkpoint()).isTrue();
    assertThat(t.clones()).isEqualTo(2);
    assertThat(t.clonesOf()).containsExactly(11, 12);
    assertThat(t.files()).isNull();
    assertThat(t.state()).containsExactly(1, 2, 3);
    assertThat(t.recipe()).containsExactly("mount", "img", "/mnt");
    assertThat(t.resumed()).isEqualTo(new KernelSession.Resumed(1, PASSTHROUGH, 45));
    // a hand-over at a stop says how many are clones; the rest are the view's open files
    Handover.Takeover stop = Handover.decode(new Holder.Entry(9, new int[] {10, 11, 12},
        Handover.encode(List.of("/mnt"), false, new KernelSession.Resumed(1, 0, 45), 1,
            new byte[0])));
    assertThat(stop.checkpoint()).isFalse();
    assertThat(stop.files()).containsExactly(12);
  }

  @Test
  void aRecordOfTheBuildBeforeIsTakenWithKillprivAgreed() throws IOException {
    for (boolean passthrough : new boolean[] {true, false}) {
      Handover.Takeover t = Handover.decode(new Holder.Entry(9, new int[] {10},
          version2(passthrough)));
      assertThat(t.resumed().agreed())
          .isEqualTo((passthrough ? PASSTHROUGH : 0) | KILLPRIV_V2); // DONT_MASK was not asked
      assertThat(t.resumed().generation()).isEqualTo(2);
      assertThat(t.recipe()).containsExactly("overlay", "/mnt");
      assertThat(t.state()).containsExactly(5);
    }
  }

  @Test
  void anotherVersionIsRefused() {
    byte[] record = version2(true);
    record[7] = 1; // version 1
    assertThatThrownBy(() -> Handover.decode(new Holder.Entry(9, new int[] {10}, record)))
        .hasMessageContaining("not a record of this strata version");
  }

  /** A record as the builds before 2026-12-07 wrote it. */
  private static byte[] version2(boolean passthrough) {
    try {
      ByteArrayOutputStream b = new ByteArrayOutputStream();
      DataOutputStream out = new DataOutputStream(b);
      out.writeInt(0x53545248);
      out.writeInt(2);
      out.writeLong(2); // generation
      out.writeBoolean(passthrough);
      out.writeInt(45); // minor
      out.writeBoolean(false); // elsewhere
      out.writeInt(0); // clones
      out.writeInt(2);
      for (String a : List.of("overlay", "/mnt")) {
        byte[] s = a.getBytes(StandardCharsets.UTF_8);
        out.writeInt(s.length);
        out.write(s);
      }
      out.writeInt(1);
      out.write(5);
      out.flush();
      return b.toByteArray();
    } catch (IOException e) {
      throw new AssertionError(e);
    }
  }
}
