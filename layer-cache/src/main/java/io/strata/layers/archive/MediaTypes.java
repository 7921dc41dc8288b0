package io.strata.layers.archive;

import java.util.Set;

/** The media types of the OCI image spec and of Docker's schema 2 that strata reads or writes. */
public final class MediaTypes {
  private MediaTypes() {}

  public static final String OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
  public static final String OCI_INDEX = "application/vnd.oci.image.index.v1+json";
  public static final String OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
  public static final String OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
  public static final String OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
  public static final String OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
  public static final String DOCKER_MANIFEST =
      "application/vnd.docker.distribution.manifest.v2+json";
  public static final String DOCKER_LIST =
      "application/vnd.docker.distribution.manifest.list.v2+json";
  public static final String DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
  public static final String DOCKER_LAYER_GZIP =
      "application/vnd.docker.image.rootfs.diff.tar.gzip";
  public static final String DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";

  /** Layer types strata can read (foreign and nondistributable ones are not among them). */
  public static final Set<String> LAYERS = Set.of(OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
      DOCKER_LAYER_GZIP, DOCKER_LAYER);

  /** Config types of an image (not of an artifact). */
  public static final Set<String> CONFIGS = Set.of(OCI_CONFIG, DOCKER_CONFIG);

  /** The OCI type of a layer blob known by its Docker type (the same bytes). */
  public static String ociLayerType(String mediaType) {
    return switch (mediaType) {
      case DOCKER_LAYER_GZIP -> OCI_LAYER_GZIP;
      case DOCKER_LAYER -> OCI_LAYER;
      default -> mediaType;
    };
  }
}
