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
    r.restore(new DataInputStream(new ByteArrayInputStream(b.toByteArray())), base, false);

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

  /**
   * A checkpoint of a server that died may be older than its last changes: a name it records
   * may now be another file's. Such a name does not lend its node to the other file (the
   * kernel's descriptors of the old node would reach it); a name that still leads to the same
   * number keeps its node, now checked.
   */
  @Test
  void aCheckpointsNamesAreCheckedBeforeTheyKeepTheirNodes() throws Exception {
    NodeTable t = new NodeTable(100);
    NodeTable.Node root = t.get(Fuse.ROOT_ID);
    NodeTable.Node same = t.lookedUp(root, "same", 300, false, false);
    NodeTable.Node replaced = t.lookedUp(root, "replaced", 301, false, false);
    NodeTable.Node dir = t.lookedUp(root, "d", 200, true, false);
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    t.writeTo(new DataOutputStream(b));
    NodeTable r = new NodeTable(100);
    r.restore(new DataInputStream(new ByteArrayInputStream(b.toByteArray())), 1L << 40, true);

    assertThat(r.get(same.id).unsure).isTrue();
    assertThat(r.get(dir.id).unsure).isTrue();
    assertThat(r.get(Fuse.ROOT_ID).unsure).isFalse();
    // the same file under its name: the same node, checked
    NodeTable.Node got = r.lookedUp(r.get(Fuse.ROOT_ID), "same", 300, false, false);
    assertThat(got.id).isEqualTo(same.id);
    assertThat(got.unsure).isFalse();
    // another file under the name now (removed and made again after the checkpoint)
    NodeTable.Node other = r.lookedUp(r.get(Fuse.ROOT_ID), "replaced", 999, false, false);
    assertThat(other.id).isNotEqualTo(replaced.id);
    assertThat(other.unsure).isFalse();
    assertThat(r.get(replaced.id).unsure).isTrue(); // still unchecked: its requests verify it
    assertThat(r.named(Fuse.ROOT_ID, "replaced").id).isEqualTo(other.id);
    // the file under a new name (renamed after the checkpoint), found by its number: the
    // checkpoint's name goes, so that the node's path is the new one, not what is there now
    NodeTable.Node moved = t.lookedUp(root, "moved", 302, false, false);
    ByteArrayOutputStream b2 = new ByteArrayOutputStream();
    t.writeTo(new DataOutputStream(b2));
    NodeTable r2 = new NodeTable(100);
    r2.restore(new DataInputStream(new ByteArrayInputStream(b2.toByteArray())), 1L << 40, true);
    NodeTable.Node again = r2.lookedUp(r2.get(Fuse.ROOT_ID), "elsewhere", 302, false, false);
    assertThat(again.id).isEqualTo(moved.id);
    assertThat(r2.path(again)).isEqualTo("/elsewhere");
    assertThat(r2.named(Fuse.ROOT_ID, "moved")).isNull();
    // a directory found by its number is the same directory
    assertThat(r.lookedUp(r.get(Fuse.ROOT_ID), "d", 200, true, false).id).isEqualTo(dir.id);
    assertThat(r.get(dir.id).unsure).isFalse();
  }
}
