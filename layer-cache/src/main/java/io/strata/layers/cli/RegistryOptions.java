package io.strata.layers.cli;

import io.strata.layers.registry.Credentials;
import io.strata.layers.registry.Distribution;
import java.nio.file.Path;
import java.time.Duration;
import picocli.CommandLine.Option;

/** The options every command that talks to a registry takes, spelled as podman and skopeo spell them. */
public final class RegistryOptions {
  @Option(names = "--tls-verify", arity = "0..1", fallbackValue = "true", paramLabel = "BOOL",
      description = "Check the registry's TLS certificate (default: true). With false, plain"
          + " http is tried too; plain http is always allowed for localhost and 127.0.0.1.")
  boolean tlsVerify = true;

  @Option(names = "--cert-dir", paramLabel = "DIR",
      description = "Also trust the CA certificates (*.crt) in DIR (beside the system's and"
          + " /etc/containers/certs.d/HOST/).")
  Path certDir;

  @Option(names = "--authfile", paramLabel = "FILE",
      description = "Credentials file (default: $REGISTRY_AUTH_FILE, then"
          + " $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,"
          + " ~/.docker/config.json).")
  Path authFile;

  @Option(names = "--creds", paramLabel = "USER[:PASSWORD]",
      description = "Credentials for this command; without :PASSWORD it is read from stdin.")
  String creds;

  @Option(names = "--stall-timeout", paramLabel = "SECONDS",
      description = "Give up on a connection that sends nothing for this long, then resume"
          + " (default: 60).")
  int stallSeconds = 60;

  public Distribution.Options toOptions() {
    if (stallSeconds < 1) {
      throw new IllegalArgumentException("--stall-timeout must be at least 1 second");
    }
    return new Distribution.Options(tlsVerify, certDir, authFile, login(),
        Duration.ofSeconds(stallSeconds));
  }

  private Credentials.Login login() {
    if (creds == null) {
      return null;
    }
    int colon = creds.indexOf(':');
    if (colon == 0) {
      throw new IllegalArgumentException("--creds needs a user name before ':'");
    }
    if (colon > 0) {
      return new Credentials.Login(creds.substring(0, colon), creds.substring(colon + 1));
    }
    return new Credentials.Login(creds, LoginCommand.readPassword());
  }
}
