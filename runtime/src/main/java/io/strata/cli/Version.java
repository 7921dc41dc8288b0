package io.strata.cli;

import picocli.CommandLine;

/**
 * What {@code strata version}, {@code -V} on any command and {@code strata-overlay --version}
 * print: strata's version (the jar's Implementation-Version, which Maven writes), the Java
 * runtime and the machine. The overlay command answers as fuse-overlayfs does
 * ({@code NAME: version X} first), since podman's {@code info} reads a mount program's version
 * from that line.
 */
final class Version implements CommandLine.IVersionProvider {
  private final String program;

  Version(String program) {
    this.program = program;
  }

  /** strata's version: the build's, or "development build" for classes run from a checkout. */
  static String number() {
    String v = Version.class.getPackage().getImplementationVersion();
    return v != null ? v : "0.1.0-SNAPSHOT (development build)";
  }

  @Override
  public String[] getVersion() {
    return new String[] {
      program + ": version " + number(),
      "java " + System.getProperty("java.version") + " (" + System.getProperty("java.vm.name")
          + ")",
      "os " + System.getProperty("os.name").toLowerCase(java.util.Locale.ROOT) + " "
          + System.getProperty("os.arch")
    };
  }

  /** Gives every command of {@code cl} its version text (strata-overlay's for overlay). */
  static void apply(CommandLine cl) {
    cl.getCommandSpec().versionProvider(new Version("strata"));
    for (CommandLine sub : cl.getSubcommands().values()) {
      sub.getCommandSpec().versionProvider(new Version(sub.getCommandName().equals("overlay")
          ? "strata-overlay" : "strata"));
    }
  }

  /** {@code strata version}. */
  @CommandLine.Command(name = "version", mixinStandardHelpOptions = true,
      description = "Print strata's version, and the Java runtime's and the machine's.")
  static final class Command implements Runnable {
    @Override
    public void run() {
      for (String line : new Version("strata").getVersion()) {
        System.out.println(line);
      }
    }
  }
}
