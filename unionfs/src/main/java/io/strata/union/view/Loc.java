package io.strata.union.view;

/**
 * A real file of the union: a raw path (one char per byte, see {@link io.strata.layers.fs.RawFs})
 * relative to one layer's root directory, held open as {@code dirfd}. Every system call of the
 * view goes through one, so no name is decoded and the layer's own location does not count
 * against PATH_MAX. {@code rel} is "" for the layer's root.
 */
record Loc(int dirfd, String rel) {
  Loc child(String name) {
    return new Loc(dirfd, rel.isEmpty() ? name : rel + "/" + name);
  }

  Loc parent() {
    int slash = rel.lastIndexOf('/');
    return new Loc(dirfd, slash < 0 ? "" : rel.substring(0, slash));
  }

  String name() {
    return rel.substring(rel.lastIndexOf('/') + 1);
  }

  @Override
  public String toString() {
    return "/" + io.strata.layers.fs.RawFs.display(rel);
  }
}
