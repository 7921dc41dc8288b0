package io.strata.union.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A node table written at a daemon's stop and restored by the next one (the hand-over of a
 * mount): every node the kernel holds keeps its id, number, names, lookups and kind, so the
 * kernel's later requests, forgets and lookups find the same nodes; new ids start above the
 * base.
 */
class NodeTableHandoverTest {
  @Test
  void aRestoredTableAnswersAsTheOneWritten() throws Exception {
    NodeTable t = new NodeTable(100);
    NodeTable.Node root = t.get(Fuse.ROOT_ID);
    NodeTable.Node dir = t.lookedUp(root, "d", 200, true, false);
    NodeTable.Node f = t.lookedUp(dir, "f", 300, false, false);
    t.lookedUp(dir, "f", 300, false, false); // two lookups
    NodeTable.Node moved = t.lookedUp(dir, "old", 301, false, false);
    t.renamed(dir.id, "old", root.id, "new");
    NodeTable.Node linkA = t.lookedUp(dir, "a", 400, false, true); // a lower hard link's names
    NodeTable.Node linkB = t.lookedUp(dir, "b", 400, false, true);
    NodeTable.Node gone = t.lookedUp(dir, "gone", 500, false, false);
    t.removed(dir.id, "gone"); // unlinked, still held open
    NodeTable.Node tmp = t.unnamed(600); // O_TMPFILE
    NodeTable.Node old = t.lookedUp(dir, "r", 700, false, false);
    t.retire(old, 701); // copied up while a passthrough reader held it
    NodeTable.Node fresh = t.lookedUp(dir, "r", 701, false, false);

    ByteArrayOutputStream b = new ByteArrayOutputStream();
    t.writeTo(new DataOutputStream(b));
    NodeTable r = new NodeTable(100);
    long base = 1L << 40;
    r.restore(new DataInputStream(new ByteArrayInputStream(b.toByteArray())), base);

    assertThat(r.counts()).isEqualTo(t.counts());
    for (NodeTable.Node n : List.of(dir, f, moved, linkA, linkB, gone, tmp, old, fresh)) {
      NodeTable.Node got = r.get(n.id);
      assertThat(got).as("node " + n.id).isNotNull();
      assertThat(got.ino).isEqualTo(n.ino);
      assertThat(got.dir).isEqualTo(n.dir);
      assertThat(got.perName).isEqualTo(n.perName);
      assertThat(got.retired).isEqualTo(n.retired);
      assertThat(r.path(got)).isEqualTo(t.path(n));
    }
    assertThat(r.path(r.get(moved.id))).isEqualTo("/new");
    assertThat(r.path(r.get(gone.id))).isNull();
    // names lead to the same nodes; the retired node's name is the fresh node's
    assertThat(r.named(dir.id, "f").id).isEqualTo(f.id);
    assertThat(r.named(root.id, "new").id).isEqualTo(moved.id);
    assertThat(r.named(dir.id, "r").id).isEqualTo(fresh.id);
    assertThat(r.named(dir.id, "gone")).isNull();
    // numbers lead to the same nodes (an invalidation by number, a lookup of another name)
    assertThat(r.byIno(300)).extracting(n -> n.id).containsExactly(f.id);
    assertThat(r.byIno(400)).extracting(n -> n.id).containsExactlyInAnyOrder(linkA.id, linkB.id);
    assertThat(r.byIno(600)).extracting(n -> n.id).containsExactly(tmp.id);
    assertThat(r.byIno(500)).isEmpty();
    assertThat(r.sameFile(r.get(fresh.id))).extracting(n -> n.id).containsExactly(old.id);
    // a lookup counts on the restored node; forgets drop it as the kernel's would
    assertThat(r.lookedUp(r.get(dir.id), "f", 300, false, false).id).isEqualTo(f.id);
    r.forget(f.id, 3);
    assertThat(r.get(f.id)).isNull();
    // new nodes get ids above the base, none the kernel may hold from the server before
    assertThat(r.lookedUp(r.get(dir.id), "brand-new", 800, false, false).id)
        .isGreaterThanOrEqualTo(base);
  }
}
