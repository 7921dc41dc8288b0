package io.strata.union.mount;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real programs on a strata mount and on kernel overlayfs over the same layers: their output
 * and the trees they leave must match.
 */
class RealProgramsTest {
  @TempDir Path tmp;
  /** Shared by the tests, which copy it: each copy of it took 1-2 s in CI. */
  @TempDir static Path shared;
  static Path source;

  @org.junit.jupiter.api.BeforeAll
  static void setUp() throws Exception {
    // A real tree that nobody here wrote: documentation shipped by Debian packages.
    source = Files.createDirectories(shared.resolve("src"));
    Mounted.run("sh", "-c", "cp -a /usr/share/doc/. " + source + "/ 2>/dev/null || true");
    Mounted.run("sh", "-c", "cp -a /usr/share/perl5 " + source + "/perl5 2>/dev/null || true");
  }

  /** Runs the same shell script on both mounts (as $M) and returns both outputs and trees. */
  private void compare(String script) throws Exception {
    compare(script, null);
  }

  /**
   * As {@link #compare(String)}; {@code diagnose}, when not null, runs on both mounts after the
   * script, and the lines in which its outputs differ are shown if the trees differ.
   */
  private void compare(String script, String diagnose) throws Exception {
    Map<String, String> diagnosis = new LinkedHashMap<>();
    Map<String, String> out = new LinkedHashMap<>();
    Map<String, Map<String, String>> trees = new LinkedHashMap<>();
    String requests = "";
    Path lower = tmp.resolve("lower");
    Mounted.run("cp", "-a", source.toString(), lower.toString());
    for (String side : List.of("kernel", "strata")) {
      Path base = tmp.resolve(side);
      Path mp = base.resolve("mnt");
      try (Mounted m = side.equals("kernel")
          ? Mounted.kernel(List.of(lower), base.resolve("upper"), base.resolve("work"), mp)
          : Mounted.strata(List.of(lower), base.resolve("upper"), base.resolve("work"), mp)) {
        out.put(side, Mounted.run("sh", "-ec", "M=" + mp + "; cd $M; " + script)
            .replace(mp.toString(), "$M"));
        trees.put(side, TreeSnapshot.of(mp));
        if (diagnose != null) {
          diagnosis.put(side, Mounted.run("sh", "-c", "cd " + mp + "; " + diagnose));
        }
        if (m.fuse() != null) {
          // requests and errors by opcode: if the outputs differ, what strata answered
          requests = m.fuse().stats() + "; " + m.view().cacheReport();
        }
      }
    }
    assertThat(out.get("strata")).as("output on strata (requests: %s)", requests)
        .isEqualTo(out.get("kernel"));
    // only what differs: a whole tree is too long for a message
    Map<String, String> differs = new java.util.TreeMap<>();
    for (String k : new java.util.TreeSet<>(union(trees.get("kernel"), trees.get("strata")))) {
      String a = trees.get("kernel").get(k);
      String b = trees.get("strata").get(k);
      if (!java.util.Objects.equals(a, b)) {
        differs.put(k, "kernel: " + a + " / strata: " + b);
      }
    }
    String diag = "";
    if (!differs.isEmpty() && diagnose != null) {
      List<String> k = List.of(diagnosis.get("kernel").split("\n"));
      List<String> st = List.of(diagnosis.get("strata").split("\n"));
      StringBuilder sb = new StringBuilder("; where `" + diagnose + "` differs:");
      for (int i = 0, shown = 0; i < Math.max(k.size(), st.size()) && shown < 20; i++) {
        String a = i < k.size() ? k.get(i) : "(none)";
        String b = i < st.size() ? st.get(i) : "(none)";
        if (!a.equals(b)) {
          sb.append("\n  line ").append(i + 1).append(": kernel ").append(a).append(" | strata ")
              .append(b);
          shown++;
        }
      }
      diag = sb.toString();
    }
    assertThat(differs).as("entries that differ from kernel overlayfs (requests: %s)%s",
        requests, diag).isEmpty();
  }

  private static java.util.Set<String> union(Map<String, String> a, Map<String, String> b) {
    java.util.Set<String> all = new java.util.HashSet<>(a.keySet());
    all.addAll(b.keySet());
    return all;
  }

  @Test
  void tarExtractOfALargeTree() throws Exception {
    Path tar = tmp.resolve("t.tar");
    Mounted.run("tar", "-C", source.toString(), "-cf", tar.toString(), ".");
    compare("mkdir x; tar -C x -xf " + tar + "; tar -C x -cf - . | md5sum; find x | wc -l");
  }

  @Test
  void cpArchiveCopiesUpAndDuplicates() throws Exception {
    compare("cp -a perl5 perl5-copy; cp -a . ../dummy 2>/dev/null || true; "
        + "find perl5-copy -type f | sort | xargs md5sum | md5sum; du -s --apparent-size perl5-copy");
  }

  @Test
  void gitInitAddCommitStatus() throws Exception {
    compare("export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'"
        + " GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t"
        + " HOME=/tmp; git init -q -b main .; git add -A; git commit -q -m one; "
        + "echo change >> perl5/strict.pm 2>/dev/null || echo new > newfile; rm -rf perl5/Debian; "
        + "git status --porcelain | sort; git rev-parse HEAD; git fsck >/dev/null 2>&1 && echo fsck-ok; "
        // failed twice on strata in CI without the untracked file (2026-12-06 and 12-07; not
        // reproduced in 200 runs of this test, nor in 60 rounds of this script through a
        // daemon): the second time the plain listing and the second status below did see it,
        // so the first status missed a file that the listing had a moment later
        + "ls -f perl5 | grep -c '^strict.pm$'; git status --porcelain | grep -c '^??'",
        // the index holds each file's stat data: once it differed in CI with the same size
        "git ls-files --debug; stat -c '%n %s %Y %y %Z' .git/index");
  }

  @Test
  void sqliteWithFsync() throws Exception {
    compare("sqlite3 db.sqlite 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
        + " CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);' >/dev/null; "
        + "for i in 1 2 3 4 5; do sqlite3 db.sqlite \"BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION"
        + " ALL SELECT x+1 FROM c WHERE x<200) INSERT INTO t(b) SELECT 'row'||x FROM c; COMMIT;\";"
        + " done; sqlite3 db.sqlite 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null; "
        + "sqlite3 db.sqlite 'PRAGMA integrity_check; SELECT count(*), sum(length(b)) FROM t;'");
  }

  @Test
  void birthTimesAreTheRealFilesAsOnKernelOverlayfs() throws Exception {
    // stat(1) asks statx for the birth time: a lower file shows its own (the same file on
    // both sides), a copied-up file or directory and a new one the upper's, made after $t
    // (at different moments on the two sides: shown as "new"); "0" would be a birth time
    // not told (FUSE without STATX, as with jnr-fuse: libfuse2's getattr has no birth time)
    org.junit.jupiter.api.Assumptions.assumeTrue(
        Mounted.settings().transport() == FuseMount.Transport.KERNEL,
        "strata's own transport (jnr-fuse tells no birth time)");
    compare("f=$(find . -type f | sort | head -1); d=$(dirname $f); t=$(date +%s); sleep 1; "
        + "echo x >> $f; mkdir newdir; echo y > newdir/file; "
        + "for p in $(find . -maxdepth 2 ! -name . | sort | head -40) $f $d newdir newdir/file; "
        + "do stat -c '%W %s %n' \"$p\"; done | awk -v t=$t "
        + "'{ if ($1 > t) print \"new\", $3; else print $1, $3 }'");
  }

  @Test
  void findLsDu() throws Exception {
    compare("rm -rf perl5/Debian; echo x > perl5/new; chmod 600 perl5/strict.pm 2>/dev/null || true; "
        // "total" lines sum st_blocks, which differ by design: strata's metadata-only copy-up
        // allocates no data blocks, and the kernel's copied-up directories carry bigger xattrs.
        + "find . | sort | md5sum; ls -lRn --time-style=+ . | grep -v '^total ' | md5sum; "
        + "du -s --apparent-size -b . ; find . -type f | wc -l");
  }
}
