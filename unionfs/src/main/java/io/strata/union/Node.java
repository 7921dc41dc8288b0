package io.strata.union;

/**
 * What a path of the view resolves to: its upper file (if any) and its topmost lower entry
 * (if any), and whether a lower directory shows through it. Made by {@link UnionView}'s lookup,
 * used by every operation; the path is relative to the root ("" is the root).
 */
record Node(String path, Loc upper, Attr upperAttr, LowerTree.Entry lower,
    boolean lowerDirVisible) {
  boolean isDir() {
    return upperAttr != null ? upperAttr.isDirectory() : lower.isDir();
  }

  Loc real() {
    return upper != null ? upper : lower.path();
  }

  /** The path of this node's merged lower directory, or null if no lower directory shows. */
  String lowerDirPath() {
    return lowerDirVisible ? path : null;
  }
}
