package io.strata.union.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** NodeTable's open-addressed indexes against a HashMap, through puts, removes and rehashes. */
class NodeIndexTest {
  @Test
  void agreesWithAHashMapThroughRandomChanges() {
    for (boolean byIno : new boolean[] {false, true}) {
      NodeTable.NodeIndex index = new NodeTable.NodeIndex(byIno);
      Map<Long, NodeTable.Node> oracle = new HashMap<>();
      List<Long> keys = new ArrayList<>(); // the oracle's, for picking one at random
      Random r = new Random(7);
      long nextId = 2;
      for (int step = 0; step < 200_000; step++) {
        int op = r.nextInt(10);
        // inode numbers from a small range, so replacing and removing by number happen often
        long ino = r.nextInt(5_000);
        if (op < 5) {
          NodeTable.Node n = new NodeTable.Node(nextId++, ino, false, false);
          index.put(n);
          if (oracle.put(byIno ? n.ino : n.id, n) == null) {
            keys.add(byIno ? n.ino : n.id);
          }
        } else if (op < 8 && !oracle.isEmpty()) {
          int at = r.nextInt(keys.size());
          long k = keys.get(at);
          keys.set(at, keys.get(keys.size() - 1));
          keys.remove(keys.size() - 1);
          NodeTable.Node n = oracle.get(k);
          // removing a mapping to another node leaves it
          NodeTable.Node other = new NodeTable.Node(-5, k, false, false);
          assertThat(index.remove(k, other)).isFalse();
          assertThat(index.remove(k, n)).isTrue();
          oracle.remove(k);
        } else {
          long k = byIno ? ino : 2 + r.nextInt((int) Math.max(1, nextId));
          assertThat(index.get(k)).isSameAs(oracle.get(k));
        }
      }
      assertThat(index.size()).isEqualTo(oracle.size());
      assertThat(index.values()).containsExactlyInAnyOrderElementsOf(oracle.values());
      for (Map.Entry<Long, NodeTable.Node> e : oracle.entrySet()) {
        assertThat(index.get(e.getKey())).isSameAs(e.getValue());
      }
    }
  }

  /**
   * Names keyed by parent and name spread over the hash space as a stat walk makes them: a
   * hundred directories with ids in order, each with f0000 to f0999. The record's own hash gave
   * these 3,880 values.
   */
  @Test
  void namesOfNumberedFilesInNumberedDirectoriesDoNotCollide() {
    java.util.Set<Integer> hashes = new java.util.HashSet<>();
    for (long parent = 2; parent < 102; parent++) {
      for (int i = 0; i < 1000; i++) {
        hashes.add(new NodeTable.Name(parent, String.format("f%04d", i)).hashCode());
      }
    }
    assertThat(hashes.size()).isGreaterThan(99_000);
  }
}
