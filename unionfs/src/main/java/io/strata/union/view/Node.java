package io.strata.union.view;

/**
 * What a path of the view resolves to: its upper file (if any), the topmost lower entry at its
 * own path (if any: removing or renaming the name must then leave a whiteout), and the path of
 * the merged lower directory whose entries show through it (null if none). The two lower
 * paths differ for a directory that was renamed: its contents still come from where it was
 * (its redirect), while its own name may hide something else below. Made by {@link Lookup},
 * used by every operation; the path is relative to the root ("" is the root).
 */
record Node(String path, Loc upper, Attr upperAttr, LowerTree.Entry lower, String lowerDir) {
  boolean isDir() {
    return upperAttr != null ? upperAttr.isDirectory() : lower.isDir();
  }

  Loc real() {
    return upper != null ? upper : lower.path();
  }

  /** Whether a merged lower directory shows through this node. */
  boolean lowerDirVisible() {
    return lowerDir != null;
  }

  /** The path of this node's merged lower directory, or null if no lower directory shows. */
  String lowerDirPath() {
    return lowerDir;
  }
}
