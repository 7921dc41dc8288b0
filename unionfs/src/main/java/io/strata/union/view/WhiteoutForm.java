package io.strata.union.view;

/** How the view writes whiteouts and opaque markers into its upper layer. */
public enum WhiteoutForm {
  /** Char device 0/0 and the trusted.overlay.opaque xattr, as the kernel writes (needs root). */
  DEVICE,
  /** {@code .wh.NAME} and {@code .wh..wh..opq} files, as OCI layers hold (no privilege). */
  FILE
}
