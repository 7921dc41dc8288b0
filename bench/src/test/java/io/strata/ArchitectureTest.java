package io.strata;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The packages of every module, in the order DESIGN.md gives them, checked on the compiled
 * classes: a class may use its own package and the packages of the layers below its own,
 * nothing above it and no other package of its own layer, so no cycle can form. What a class
 * uses is read from its constant pool (the classes it names, and the types in its
 * descriptors and signatures), so a use that the compiler kept is caught wherever it is. A new
 * package must be placed in {@link #LAYERS} before it can be built.
 */
class ArchitectureTest {
  /** Top first; packages on one line are side by side and may not use each other. */
  static final List<List<String>> LAYERS = List.of(
      List.of("io.strata.bench", "io.strata.bench.side"),
      List.of("io.strata.cli"),
      List.of("io.strata.runtime.daemon"),
      List.of("io.strata.runtime.container", "io.strata.runtime.snapshots"),
      List.of("io.strata.union.cli"),
      List.of("io.strata.union.mount"),
      List.of("io.strata.union.kernel", "io.strata.union.jnr"),
      List.of("io.strata.union.view"),
      List.of("io.strata.layers.cli"),
      List.of("io.strata.layers.registry"),
      List.of("io.strata.layers"),
      List.of("io.strata.layers.archive"),
      List.of("io.strata.layers.fs"),
      List.of("io.strata.layers.base"));

  /** Generated code (protoc, grpc; JMH's harness), placed by the build, not by us. */
  static final Pattern GENERATED =
      Pattern.compile("io\\.strata\\.containerd\\..*|.*\\.jmh_generated\\..*");

  /**
   * Benchmarks that live in the package they measure, to reach what it keeps package-private:
   * they belong to the bench layer, whatever their package.
   */
  static final Map<String, String> BENCH_ELSEWHERE = Map.of(
      "io.strata.union.kernel.DispatchBenchmark",
      "measures the transport's package-private Dispatcher");

  @Test
  void everyPackageUsesOnlyThoseBelowIt() throws Exception {
    Map<String, Set<String>> uses = new TreeMap<>();
    for (Class<?> anchor : List.of(io.strata.layers.LayerStore.class,
        io.strata.union.view.UnionView.class, io.strata.cli.Main.class,
        io.strata.bench.side.SideBySide.class)) {
      Map<String, Set<String>> module = read(location(anchor));
      assertThat(module).as("classes read beside " + anchor.getName()).hasSizeGreaterThan(10);
      uses.putAll(module);
    }
    assertThat(violations(uses)).isEmpty();
  }

  /** The check itself finds a use upward, sideways, and an unplaced package. */
  @Test
  void theCheckCatchesWhatItIsFor() {
    assertThat(violations(Map.of("io.strata.layers.base.Text",
        Set.of("io.strata.layers.LayerStore")))).hasSize(1).first().asString()
        .contains("io.strata.layers.base uses io.strata.layers");
    assertThat(violations(Map.of("io.strata.union.kernel.Dispatcher",
        Set.of("io.strata.union.jnr.UnionFuse")))).hasSize(1);
    assertThat(violations(Map.of("io.strata.newthing.X", Set.of()))).hasSize(1).first()
        .asString().contains("not placed");
    assertThat(violations(Map.of("io.strata.union.mount.FuseMount",
        Set.of("io.strata.union.view.UnionView", "io.strata.layers.fs.Mounts")))).isEmpty();
  }

  static int layerOf(String pkg) {
    for (int i = 0; i < LAYERS.size(); i++) {
      if (LAYERS.get(i).contains(pkg)) {
        return i;
      }
    }
    return -1;
  }

  static String packageOf(String className) {
    int dot = className.lastIndexOf('.');
    return dot < 0 ? "" : className.substring(0, dot);
  }

  static List<String> violations(Map<String, Set<String>> uses) {
    List<String> out = new ArrayList<>();
    Set<String> unplaced = new TreeSet<>();
    for (Map.Entry<String, Set<String>> e : uses.entrySet()) {
      String from = BENCH_ELSEWHERE.containsKey(e.getKey()) ? "io.strata.bench"
          : packageOf(e.getKey());
      int fromLayer = layerOf(from);
      if (fromLayer < 0) {
        unplaced.add(from);
        continue;
      }
      for (String used : e.getValue()) {
        String to = packageOf(used);
        if (to.equals(from) || GENERATED.matcher(used).matches()) {
          continue;
        }
        int toLayer = layerOf(to);
        if (toLayer < 0) {
          unplaced.add(to);
        } else if (toLayer <= fromLayer) {
          out.add(from + " uses " + to + " (" + e.getKey() + " -> " + used + "): "
              + (toLayer == fromLayer ? "side by side" : "above it"));
        }
      }
    }
    for (String p : unplaced) {
      out.add(p + " is not placed in ArchitectureTest.LAYERS");
    }
    return out;
  }

  static Path location(Class<?> c) throws URISyntaxException {
    return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
  }

  /** Every strata class under a classes directory or in a jar, with the strata classes it names. */
  static Map<String, Set<String>> read(Path where) throws IOException {
    Map<String, Set<String>> out = new TreeMap<>();
    if (Files.isDirectory(where)) {
      try (Stream<Path> s = Files.walk(where)) {
        for (Path p : (Iterable<Path>) s::iterator) {
          if (p.toString().endsWith(".class")) {
            try (InputStream in = Files.newInputStream(p)) {
              add(out, in);
            }
          }
        }
      }
    } else {
      try (JarFile jar = new JarFile(where.toFile())) {
        for (JarEntry e : java.util.Collections.list(jar.entries())) {
          if (e.getName().endsWith(".class")) {
            try (InputStream in = jar.getInputStream(e)) {
              add(out, in);
            }
          }
        }
      }
    }
    return out;
  }

  private static final Pattern STRATA = Pattern.compile("L?(io/strata/[\\w/$]+)");

  private static void add(Map<String, Set<String>> out, InputStream in) throws IOException {
    ClassRefs r = ClassRefs.read(in);
    String name = outer(r.name());
    if (!name.startsWith("io.strata.") || GENERATED.matcher(name).matches()) {
      return;
    }
    Set<String> used = out.computeIfAbsent(name, k -> new TreeSet<>());
    for (String s : r.strings()) {
      Matcher m = STRATA.matcher(s);
      while (m.find()) {
        used.add(outer(m.group(1)));
      }
    }
  }

  /** A class's top-level class, dotted: io/strata/a/B$C becomes io.strata.a.B. */
  private static String outer(String internal) {
    String n = internal.replace('/', '.');
    int dollar = n.indexOf('$');
    return dollar < 0 ? n : n.substring(0, dollar);
  }

  /** The name of a class and every string of its constant pool (class names, descriptors). */
  record ClassRefs(String name, List<String> strings) {
    static ClassRefs read(InputStream raw) throws IOException {
      DataInputStream in = new DataInputStream(new java.io.BufferedInputStream(raw));
      if (in.readInt() != 0xCAFEBABE) {
        throw new IOException("not a class file");
      }
      in.readUnsignedShort();
      in.readUnsignedShort();
      int count = in.readUnsignedShort();
      String[] utf8 = new String[count];
      int[] classIndex = new int[count];
      for (int i = 1; i < count; i++) {
        int tag = in.readUnsignedByte();
        switch (tag) {
          case 1 -> utf8[i] = in.readUTF();
          case 7 -> classIndex[i] = in.readUnsignedShort();
          case 8, 16, 19, 20 -> in.readUnsignedShort();
          case 3, 4, 9, 10, 11, 12, 17, 18 -> in.readInt();
          case 15 -> {
            in.readUnsignedByte();
            in.readUnsignedShort();
          }
          case 5, 6 -> {
            in.readLong();
            i++; // takes two slots
          }
          default -> throw new IOException("constant pool tag " + tag);
        }
      }
      in.readUnsignedShort(); // access
      int self = in.readUnsignedShort();
      List<String> strings = new ArrayList<>();
      for (String s : utf8) {
        if (s != null) {
          strings.add(s);
        }
      }
      return new ClassRefs(utf8[classIndex[self]], strings);
    }
  }
}
