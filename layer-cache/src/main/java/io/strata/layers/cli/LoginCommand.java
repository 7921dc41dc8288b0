package io.strata.layers.cli;

import io.strata.layers.registry.Credentials;
import io.strata.layers.registry.Distribution;
import io.strata.layers.registry.Reference;
import java.io.BufferedReader;
import java.io.Console;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata login}: checks a login against a registry and stores it where podman does. */
@Command(name = "login", mixinStandardHelpOptions = true,
    description = {"Log in to a registry and store the login where podman reads it.", "",
        "The login is checked, then stored in the credentials file podman and skopeo read"
            + " (see --authfile)."})
public final class LoginCommand implements Callable<Integer> {
  @Mixin StoreOptions store;
  @Mixin RegistryOptions registry;

  @Parameters(paramLabel = "HOST[:PORT]", description = "The registry.")
  String host;

  @Option(names = {"-u", "--username"}, paramLabel = "USER", description = "User name.")
  String user;

  @Option(names = "--password-stdin", description = "Read the password from stdin.")
  boolean passwordStdin;

  @Option(names = "--logout", description = "Remove the stored login instead.")
  boolean logout;

  @Override
  public Integer call() throws IOException {
    Reference.parse(host + "/x", Reference.DOCKER_HUB); // refuses a bad host name
    if (logout) {
      Path f = Credentials.store(host, null, registry.authFile);
      Output.note("removed the login for " + host + " from " + f);
      return 0;
    }
    if (user == null) {
      throw new IllegalArgumentException("give the user with -u USER");
    }
    String password = passwordStdin ? readLine() : readPassword();
    Credentials.Login login = new Credentials.Login(user, password);
    Distribution.Options o = registry.toOptions();
    Distribution.checkLogin(host, new Distribution.Options(o.tlsVerify(), o.certDir(),
        o.authFile(), login, o.stall()), Output::note);
    Path f = Credentials.store(host, login, registry.authFile);
    System.out.println("Login Succeeded (stored in " + f + ")");
    return 0;
  }

  static String readPassword() {
    Console c = System.console();
    if (c != null) {
      char[] p = c.readPassword("Password: ");
      if (p == null) {
        throw new IllegalArgumentException("no password given");
      }
      return new String(p);
    }
    return readLine();
  }

  private static String readLine() {
    try {
      String line = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))
          .readLine();
      if (line == null || line.isEmpty()) {
        throw new IllegalArgumentException("no password on stdin");
      }
      return line;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
