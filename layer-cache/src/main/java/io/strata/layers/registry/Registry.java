package io.strata.layers.registry;

import io.strata.layers.archive.MediaTypes;
import io.strata.layers.base.BadInputException;
import io.strata.layers.base.Digest;
import io.strata.layers.base.Json;
import io.strata.layers.base.Log;
import io.strata.layers.base.NotFoundException;
import io.strata.layers.base.Text;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.LongConsumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLException;

/**
 * One registry, spoken to with the OCI distribution API over the JDK's HTTP client: the
 * {@code /v2/} ping that tells how to authenticate (nothing, Basic, or a Bearer token from the
 * realm the {@code WWW-Authenticate} challenge names), manifests by tag or digest, blobs read
 * with resume ({@code Range}) and checked while they stream, and blob and manifest uploads.
 * Redirects are followed by hand so that credentials never leave the registry's host.
 * Credentials appear in no message and no log line.
 */
final class Registry implements AutoCloseable {
  static final String ACCEPT = String.join(", ", MediaTypes.OCI_INDEX, MediaTypes.OCI_MANIFEST, MediaTypes.DOCKER_LIST,
      MediaTypes.DOCKER_MANIFEST);
  /** Manifests and indexes larger than this are refused (containerd caps them alike). */
  static final int MAX_MANIFEST = 4 * 1024 * 1024;
  private static final int MAX_TOKEN_RESPONSE = 1024 * 1024;
  private static final int MAX_REDIRECTS = 5;
  private static final int MAX_ATTEMPTS = 5;

  /** How to reach registries: TLS checks, extra CAs, credentials, how long a stall may last. */
  record Options(boolean tlsVerify, Path certDir, Path authFile, Credentials.Login login,
      Duration stall, Consumer<String> log) {}

  /** A manifest or index as the registry sent it. */
  record Manifest(byte[] bytes, String mediaType, Digest digest) {}

  private final String host;
  private final Options options;
  private final HttpClient http;
  private final ScheduledExecutorService watchdog;
  private final Map<String, String> authByScope = new ConcurrentHashMap<>();
  private volatile URI base;
  private volatile Challenge challenge;

  /** What the ping answered: how this registry wants to be authenticated. */
  private record Challenge(String scheme, Map<String, String> params) {}

  Registry(String host, Options options) {
    this.host = host;
    this.options = options;
    this.http = HttpClient.newBuilder()
        .followRedirects(HttpClient.Redirect.NEVER)
        .connectTimeout(Duration.ofSeconds(30))
        .sslContext(Tls.context(host, options.tlsVerify(), options.certDir()))
        .build();
    this.watchdog = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "registry-watchdog");
      t.setDaemon(true);
      return t;
    });
  }

  /** The API endpoint of a registry as references name it (Docker Hub's differs). */
  private String endpointHost() {
    return host.equals(Reference.DOCKER_HUB) ? "registry-1.docker.io" : host;
  }

  private static boolean isLoopback(String host) {
    String h = host.replaceFirst(":[0-9]+$", "");
    return h.equals("localhost") || h.startsWith("127.") || h.equals("[::1]");
  }

  // ---------------------------------------------------------------- connecting

  /**
   * Finds the scheme and the authentication the registry asks for. https, and plain http only
   * for loopback (tried first there, as a TLS handshake with a plain server may hang) or with
   * TLS checks off (after https). Called once, before the first request.
   */
  private synchronized void ping() throws IOException {
    if (base != null) {
      return;
    }
    List<String> schemes = isLoopback(host) ? List.of("http", "https")
        : options.tlsVerify() ? List.of("https") : List.of("https", "http");
    List<String> failures = new java.util.ArrayList<>();
    for (String scheme : schemes) {
      URI uri = URI.create(scheme + "://" + endpointHost() + "/v2/");
      HttpResponse<InputStream> r;
      try {
        r = sendOnce(HttpRequest.newBuilder(uri).GET().timeout(options.stall()), null);
      } catch (SSLException | ConnectException | HttpTimeoutException e) {
        if (isCertificateProblem(e)) {
          throw new IOException("https://" + endpointHost() + ": its certificate is not trusted ("
              + message(rootCause(e)) + "); give the registry's CA with --cert-dir, or"
              + " --tls-verify=false to skip the check", e);
        }
        failures.add(scheme + ": " + message(e));
        continue;
      } catch (IOException e) {
        failures.add(scheme + ": " + message(e));
        continue;
      }
      drain(r);
      if (r.statusCode() != 200 && r.statusCode() != 401) {
        failures.add(scheme + ": answered " + r.statusCode() + " to /v2/");
        continue;
      }
      base = URI.create(scheme + "://" + endpointHost());
      if (scheme.equals("http")) {
        Log.debug("registry " + host + " is reached over plain http");
      }
      if (r.statusCode() == 401) {
        challenge = parseChallenge(r.headers().firstValue("WWW-Authenticate").orElse(""));
      }
      return;
    }
    throw new IOException("cannot reach the registry " + host + " (" + String.join("; ", failures)
        + ")" + (schemes.size() == 1 ? "; if it speaks plain http, --tls-verify=false" : ""));
  }

  /** Whether TLS failed because the server's certificate is not trusted (it does speak TLS). */
  private static boolean isCertificateProblem(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof java.security.cert.CertificateException) {
        return true;
      }
    }
    return false;
  }

  private static Throwable rootCause(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t;
  }

  private static final Pattern PARAM = Pattern.compile("(\\w+)=\"([^\"]*)\"|(\\w+)=([^,\\s]*)");

  static Challenge parseChallenge(String header) {
    String h = header.trim();
    int sp = h.indexOf(' ');
    String scheme = (sp < 0 ? h : h.substring(0, sp)).toLowerCase(java.util.Locale.ROOT);
    Map<String, String> params = new java.util.HashMap<>();
    if (sp >= 0) {
      Matcher m = PARAM.matcher(h.substring(sp + 1));
      while (m.find()) {
        if (m.group(1) != null) {
          params.put(m.group(1).toLowerCase(java.util.Locale.ROOT), m.group(2));
        } else {
          params.put(m.group(3).toLowerCase(java.util.Locale.ROOT), m.group(4));
        }
      }
    }
    return new Challenge(scheme, params);
  }

  /** The Authorization header for {@code repo} and {@code actions} ("pull" or "pull,push"). */
  private String authorization(String repo, String actions, boolean refresh) throws IOException {
    ping();
    Challenge c = challenge;
    if (c == null) {
      return null;
    }
    String scope = "repository:" + repo + ":" + actions;
    if (!refresh) {
      String cached = authByScope.get(scope);
      if (cached != null) {
        return cached;
      }
    }
    Credentials.Login login = login();
    String header;
    if (c.scheme().equals("basic")) {
      if (login == null) {
        throw new NotFoundException("registry " + host + " asks for a login: `strata login "
            + host + "`, --creds or --authfile");
      }
      header = login.basic();
    } else if (c.scheme().equals("bearer")) {
      header = "Bearer " + token(c, scope, login);
    } else {
      throw new IOException("registry " + host + " asks for authentication scheme '"
          + Text.clip(c.scheme()) + "', which strata does not speak");
    }
    authByScope.put(scope, header);
    return header;
  }

  private Credentials.Login login() {
    return options.login() != null ? options.login()
        : Credentials.find(host, options.authFile());
  }

  /** Fetches a Bearer token from the challenge's realm (anonymous unless there is a login). */
  private String token(Challenge c, String scope, Credentials.Login login) throws IOException {
    String realm = c.params().get("realm");
    if (realm == null || realm.isEmpty()) {
      throw new IOException("registry " + host + " asks for a token but names no realm");
    }
    URI realmUri;
    try {
      realmUri = URI.create(realm);
    } catch (IllegalArgumentException e) {
      throw new IOException("registry " + host + ": token realm '" + Text.clip(realm)
          + "' is not a URL");
    }
    if (!"https".equals(realmUri.getScheme())
        && !("http".equals(realmUri.getScheme()) && (isLoopback(realmUri.getHost())
            || !options.tlsVerify() || base.getScheme().equals("http")))) {
      throw new IOException("registry " + host + ": token realm " + Text.clip(realm)
          + " is not https; refusing to send credentials there");
    }
    StringBuilder q = new StringBuilder(realm).append(realm.contains("?") ? '&' : '?');
    if (c.params().containsKey("service")) {
      q.append("service=").append(enc(c.params().get("service"))).append('&');
    }
    q.append("scope=").append(enc(scope));
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(q.toString())).GET()
        .timeout(Duration.ofSeconds(60));
    if (login != null) {
      b.header("Authorization", login.basic());
    }
    HttpResponse<InputStream> r = sendOnce(b, null);
    byte[] body;
    try (InputStream in = r.body()) {
      body = in.readNBytes(MAX_TOKEN_RESPONSE + 1);
    }
    if (r.statusCode() == 401 || r.statusCode() == 403) {
      throw new NotFoundException("registry " + host + " refused the "
          + (login != null ? "login of user " + login.user() : "anonymous token request")
          + " for " + scope + " (" + r.statusCode() + ")");
    }
    if (r.statusCode() != 200) {
      throw new IOException("registry " + host + ": the token endpoint answered "
          + r.statusCode());
    }
    if (body.length > MAX_TOKEN_RESPONSE) {
      throw new BadInputException("registry " + host + ": the token response is larger than "
          + MAX_TOKEN_RESPONSE + " bytes");
    }
    JsonNode json;
    try {
      json = Json.MAPPER.readTree(body);
    } catch (IOException e) {
      throw new BadInputException("registry " + host + ": the token endpoint returned something"
          + " that is not JSON");
    }
    String token = json == null ? "" : json.path("token").asText(json.path("access_token").asText(""));
    if (token.isEmpty() || !token.matches("[\\x21-\\x7e]+")) {
      throw new BadInputException("registry " + host + ": the token endpoint returned no usable"
          + " token");
    }
    return token;
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }

  /** Checks that the login works against the registry (for {@code strata login}). */
  void checkLogin(String repo) throws IOException {
    ping();
    if (challenge == null) {
      options.log().accept("registry " + host + " asks for no login; stored anyway");
      return;
    }
    String auth = authorization(repo, "pull", true);
    HttpResponse<InputStream> r = send("GET", URI.create(base + "/v2/"), auth, null, null);
    drain(r);
    if (r.statusCode() == 401 || r.statusCode() == 403) {
      throw new NotFoundException("registry " + host + " refused the login ("
          + r.statusCode() + ")");
    }
  }

  // ---------------------------------------------------------------- requests

  private HttpResponse<InputStream> sendOnce(HttpRequest.Builder b, String auth)
      throws IOException {
    if (auth != null) {
      b.header("Authorization", auth);
    }
    b.header("User-Agent", "strata/0.1");
    try {
      return http.send(b.build(), HttpResponse.BodyHandlers.ofInputStream());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
  }

  /**
   * Sends a request to this registry with the repository's authorization, once more with a
   * fresh token after a 401, and follows redirects (without the credentials when they leave the
   * registry's host).
   */
  private HttpResponse<InputStream> request(String method, String path, String repo,
      String actions, Map<String, String> headers, HttpRequest.BodyPublisher body)
      throws IOException {
    ping();
    URI uri = path.startsWith("http") ? URI.create(path) : URI.create(base + path);
    String auth = authorization(repo, actions, false);
    HttpResponse<InputStream> r = send(method, uri, auth, headers, body);
    if (r.statusCode() == 401 && challenge != null) {
      drain(r);
      auth = authorization(repo, actions, true);
      r = send(method, uri, auth, headers, body);
    }
    return r;
  }

  private HttpResponse<InputStream> send(String method, URI uri, String auth,
      Map<String, String> headers, HttpRequest.BodyPublisher body) throws IOException {
    for (int hop = 0; ; hop++) {
      HttpRequest.Builder b = HttpRequest.newBuilder(uri)
          .method(method, body != null ? body : HttpRequest.BodyPublishers.noBody());
      if (body == null || body.contentLength() == 0) {
        // the answer's headers must come within the stall limit; an upload's come only after
        // its body, however long that takes
        b.timeout(options.stall());
      }
      if (headers != null) {
        headers.forEach(b::header);
      }
      boolean sameHost = uri.getHost() != null && (uri.getHost() + portPart(uri))
          .equalsIgnoreCase(base.getHost() + portPart(base));
      HttpResponse<InputStream> r;
      try {
        r = sendOnce(b, sameHost ? auth : null);
      } catch (HttpTimeoutException e) {
        throw new IOException(method + " " + uri.getPath() + " at " + host + ": no answer in "
            + options.stall().toSeconds() + " s", e);
      }
      int s = r.statusCode();
      if ((s == 301 || s == 302 || s == 303 || s == 307 || s == 308)
          && (method.equals("GET") || method.equals("HEAD"))) {
        drain(r);
        Optional<String> loc = r.headers().firstValue("Location");
        if (loc.isEmpty() || hop >= MAX_REDIRECTS) {
          throw new IOException(method + " " + uri.getPath() + " at " + host + ": "
              + (loc.isEmpty() ? "redirect without a Location" : "too many redirects"));
        }
        URI next = uri.resolve(loc.get());
        if (!"https".equals(next.getScheme()) && !"http".equals(next.getScheme())) {
          throw new IOException(host + " redirected to a non-HTTP location");
        }
        uri = next;
        continue;
      }
      return r;
    }
  }

  private static String portPart(URI u) {
    return u.getPort() < 0 ? "" : ":" + u.getPort();
  }

  private static void drain(HttpResponse<InputStream> r) throws IOException {
    try (InputStream in = r.body()) {
      in.readNBytes(64 * 1024);
    }
  }

  /** The error for an unexpected answer; a 404 or a refusal is thrown as not found. */
  private IOException failure(String what, HttpResponse<InputStream> r) throws IOException {
    byte[] body;
    try (InputStream in = r.body()) {
      body = in.readNBytes(4096);
    }
    String detail = new String(body, StandardCharsets.UTF_8).replaceAll("\\s+", " ").trim();
    String msg = what + ": registry " + host + " answered " + r.statusCode()
        + (detail.isEmpty() ? "" : " " + Text.clip(detail));
    if (r.statusCode() == 404) {
      throw new NotFoundException(msg);
    }
    if (r.statusCode() == 401 || r.statusCode() == 403) {
      throw new NotFoundException(msg + " (not allowed; `strata login " + host + "`?)");
    }
    return new IOException(msg);
  }

  // ---------------------------------------------------------------- pull

  /** A manifest or index by tag or digest; a digest reference is checked. */
  Manifest manifest(String repo, String ref) throws IOException {
    HttpResponse<InputStream> r = request("GET", "/v2/" + repo + "/manifests/" + ref, repo,
        "pull", Map.of("Accept", ACCEPT), null);
    if (r.statusCode() != 200) {
      throw failure("manifest " + repo + ":" + Text.clip(ref), r);
    }
    long declared = r.headers().firstValueAsLong("Content-Length").orElse(-1);
    if (declared > MAX_MANIFEST) {
      drain(r);
      throw new BadInputException("manifest " + repo + ":" + Text.clip(ref) + " is " + declared
          + " bytes; strata reads at most " + MAX_MANIFEST);
    }
    byte[] bytes;
    try (InputStream in = r.body()) {
      bytes = in.readNBytes(MAX_MANIFEST + 1);
    }
    if (bytes.length > MAX_MANIFEST) {
      throw new BadInputException("manifest " + repo + ":" + Text.clip(ref) + " is larger than "
          + MAX_MANIFEST + " bytes");
    }
    Digest digest = Digest.of(bytes);
    if (Digest.isDigest(ref) && !digest.equals(Digest.parse(ref))) {
      throw new BadInputException("manifest " + repo + "@" + ref + ": the registry sent a"
          + " document whose digest is " + digest);
    }
    String type = r.headers().firstValue("Content-Type").orElse("").replaceFirst(";.*", "").trim();
    return new Manifest(bytes, type, digest);
  }

  /** A small blob (a config) read whole and checked. */
  byte[] smallBlob(String repo, Digest d, long size, String what) throws IOException {
    if (size > Json.MAX_DOCUMENT_BYTES) {
      throw new BadInputException(what + " " + d + " is " + size + " bytes; strata reads at most "
          + Json.MAX_DOCUMENT_BYTES);
    }
    HttpResponse<InputStream> r = request("GET", "/v2/" + repo + "/blobs/" + d, repo, "pull",
        null, null);
    if (r.statusCode() != 200) {
      throw failure(what + " " + d, r);
    }
    byte[] bytes;
    try (InputStream in = r.body()) {
      bytes = in.readNBytes((int) size + 1);
    }
    if (bytes.length != size) {
      throw new BadInputException(what + " " + d + ": the registry sent " + (bytes.length > size
          ? "more than" : bytes.length + " bytes, not") + " the " + size + " bytes declared");
    }
    Digest got = Digest.of(bytes);
    if (!got.equals(d)) {
      throw new BadInputException(what + " " + d + ": the registry sent bytes whose digest is "
          + got);
    }
    return bytes;
  }

  /**
   * Downloads a blob into {@code dest}, checking size and digest as it streams. A broken or
   * stalled connection is resumed where it stopped with a {@code Range} request (from the start
   * if the registry ignores ranges), up to {@value #MAX_ATTEMPTS} attempts. On a mismatch the
   * file is deleted.
   */
  void blob(String repo, Digest d, long size, Path dest, LongConsumer progress)
      throws IOException {
    MessageDigest sha = Digest.newSha256();
    long have = 0;
    Files.deleteIfExists(dest);
    Files.createFile(dest);
    for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      Map<String, String> headers = have > 0 ? Map.of("Range", "bytes=" + have + "-") : null;
      try {
        HttpResponse<InputStream> r = request("GET", "/v2/" + repo + "/blobs/" + d, repo, "pull",
            headers, null);
        InputStream body = r.body();
        if (r.statusCode() == 200 && have > 0) {
          // The file only grows (a reader may follow it): skip what it has, hashing it again.
          options.log().accept("blob " + d.shortHex() + ": the registry ignored the range;"
              + " reading the first " + have + " bytes again");
          sha.reset();
          byte[] skip = new byte[1 << 16];
          long left = have;
          while (left > 0) {
            int n = body.read(skip, 0, (int) Math.min(skip.length, left));
            if (n < 0) {
              throw new PartialRead(have, new IOException("connection closed"));
            }
            sha.update(skip, 0, n);
            left -= n;
          }
        } else if (r.statusCode() != 200 && r.statusCode() != 206) {
          body.close();
          throw failure("blob " + d, r);
        }
        // A length that is not the descriptor's is refused now, not after waiting for bytes
        // that never come (a registry that sends the declared bytes and then holds the line).
        long declared = r.headers().firstValueAsLong("Content-Length").orElse(-1);
        long expected = r.statusCode() == 206 ? size - have : size;
        if (declared >= 0 && declared != expected) {
          body.close();
          throw new BadInputException("blob " + d + ": the registry announces " + declared
              + " bytes" + (r.statusCode() == 206 ? " from byte " + have : "")
              + ", the manifest says " + size + "; nothing was stored");
        }
        try (InputStream in = body;
            OutputStream out = Files.newOutputStream(dest, StandardOpenOption.CREATE,
                StandardOpenOption.WRITE, StandardOpenOption.APPEND)) {
          have = copyWatched(in, out, sha, have, size, d, progress);
        }
        break;
      } catch (BadInputException | NotFoundException e) {
        Files.deleteIfExists(dest);
        throw e;
      } catch (IOException e) {
        if (e instanceof PartialRead p) {
          have = p.have;
        }
        if (attempt == MAX_ATTEMPTS) {
          Files.deleteIfExists(dest);
          throw new IOException("blob " + d + " from " + host + ": " + message(e) + " (gave up"
              + " after " + MAX_ATTEMPTS + " attempts at " + have + " of " + size + " bytes)", e);
        }
        options.log().accept("blob " + d.shortHex() + ": " + message(e) + "; resuming at byte "
            + have + " of " + size);
        sleep(200L * attempt);
      }
    }
    if (have != size) {
      Files.deleteIfExists(dest);
      throw new BadInputException("blob " + d + ": the registry sent " + have + " bytes, the"
          + " manifest says " + size);
    }
    Digest got = Digest.fromBytes(sha.digest());
    if (!got.equals(d)) {
      Files.deleteIfExists(dest);
      throw new BadInputException("blob " + d + " from " + host + ": the bytes sent have digest "
          + got + "; nothing was stored");
    }
  }

  /** Copies until the end, closing the stream if no byte arrives within the stall limit. */
  private long copyWatched(InputStream in, OutputStream out, MessageDigest sha, long have,
      long size, Digest d, LongConsumer progress) throws IOException {
    AtomicLong lastByte = new AtomicLong(System.nanoTime());
    long stallNanos = options.stall().toNanos();
    boolean[] stalled = {false};
    ScheduledFuture<?> check = watchdog.scheduleAtFixedRate(() -> {
      if (System.nanoTime() - lastByte.get() > stallNanos) {
        stalled[0] = true;
        try {
          in.close();
        } catch (IOException ignored) {
          // closing is all that is wanted
        }
      }
    }, 250, 250, TimeUnit.MILLISECONDS);
    byte[] buf = new byte[1 << 16];
    long n = have;
    try {
      int r;
      // stop at the declared size: the digest says whether those are the blob's bytes, and
      // nothing that may follow them is waited for
      while (n < size && (r = in.read(buf, 0, (int) Math.min(buf.length, size - n))) >= 0) {
        lastByte.set(System.nanoTime());
        io.strata.layers.base.Invocation.checkCancelled();
        out.write(buf, 0, r);
        sha.update(buf, 0, r);
        n += r;
        progress.accept(r);
      }
    } catch (IOException e) {
      if (stalled[0]) {
        // the bytes so far are good; the caller resumes after them
        throw new IOStalled(n, options.stall());
      }
      throw new PartialRead(n, e);
    } finally {
      check.cancel(false);
    }
    if (stalled[0] && n < size) {
      throw new IOStalled(n, options.stall());
    }
    if (n < size) {
      throw new PartialRead(n, new IOException("connection closed"));
    }
    return n;
  }

  /** A read that broke after {@code have} good bytes. */
  private static class PartialRead extends IOException {
    final long have;

    PartialRead(long have, IOException cause) {
      super("connection broke after " + have + " bytes (" + message(cause) + ")", cause);
      this.have = have;
    }
  }

  private static final class IOStalled extends PartialRead {
    IOStalled(long have, Duration stall) {
      super(have, new IOException("no data for " + stall.toSeconds() + " s"));
    }
  }

  /**
   * What went wrong, in words: the exception's message, or for the JDK's network exceptions
   * that carry none, what they mean (never a Java class name).
   */
  static String message(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      String m = t.getMessage();
      if (m != null && !m.isBlank()) {
        return t instanceof java.net.UnknownHostException ? "unknown host " + m : m;
      }
      // the JDK's HTTP client wraps causes without a message of its own: name what they mean
      if (t instanceof ConnectException) {
        return "connection refused";
      }
      if (t instanceof HttpTimeoutException || t instanceof java.net.SocketTimeoutException) {
        return "timed out";
      }
      if (t instanceof java.net.UnknownHostException) {
        return "unknown host";
      }
      if (t instanceof SSLException) {
        return "TLS failed";
      }
    }
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof java.nio.channels.ClosedChannelException
          || t instanceof java.io.EOFException) {
        return "connection closed";
      }
    }
    return "I/O error";
  }


  private static void sleep(long ms) throws IOException {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
  }

  // ---------------------------------------------------------------- push

  /** Whether the repository has the blob (HEAD). */
  boolean hasBlob(String repo, Digest d) throws IOException {
    HttpResponse<InputStream> r = request("HEAD", "/v2/" + repo + "/blobs/" + d, repo,
        "pull,push", null, null);
    drain(r);
    if (r.statusCode() == 200) {
      return true;
    }
    if (r.statusCode() == 404) {
      return false;
    }
    throw failure("HEAD blob " + d, r);
  }

  /**
   * Asks the registry to mount a blob from another repository it holds; true when it did.
   * A registry that does not offer it answers with an upload session, which is cancelled.
   */
  boolean mountBlob(String repo, Digest d, String fromRepo) throws IOException {
    HttpResponse<InputStream> r = request("POST", "/v2/" + repo + "/blobs/uploads/?mount="
        + enc(d.toString()) + "&from=" + enc(fromRepo), repo, "pull,push", null,
        HttpRequest.BodyPublishers.noBody());
    drain(r);
    if (r.statusCode() == 201) {
      return true;
    }
    if (r.statusCode() == 202) {
      Optional<String> loc = r.headers().firstValue("Location");
      if (loc.isPresent()) {
        HttpResponse<InputStream> del = request("DELETE", uploadUri(loc.get()).toString(), repo,
            "pull,push", null, null);
        drain(del);
      }
      return false;
    }
    return false;
  }

  private URI uploadUri(String location) {
    return base.resolve(location);
  }

  /**
   * Uploads a blob from a file: a session (POST), the bytes in chunks of {@code chunk} bytes
   * (PATCH; one chunk when {@code chunk} is 0 or the file is smaller), then the digest (PUT).
   */
  void uploadBlob(String repo, Digest d, Path file, long chunk, LongConsumer progress)
      throws IOException {
    HttpResponse<InputStream> r = request("POST", "/v2/" + repo + "/blobs/uploads/", repo,
        "pull,push", null, HttpRequest.BodyPublishers.noBody());
    if (r.statusCode() != 202) {
      throw failure("starting the upload of " + d, r);
    }
    drain(r);
    String location = r.headers().firstValue("Location").orElseThrow(() ->
        new IOException("registry " + host + " started an upload without a Location"));
    long size = Files.size(file);
    long step = chunk <= 0 || chunk >= size ? Math.max(size, 1) : chunk;
    for (long at = 0; at < size; at += step) {
      long len = Math.min(step, size - at);
      final long from = at;
      HttpRequest.BodyPublisher part = HttpRequest.BodyPublishers.fromPublisher(
          HttpRequest.BodyPublishers.ofInputStream(() -> slice(file, from, len)), len);
      r = request("PATCH", uploadUri(location).toString(), repo, "pull,push",
          Map.of("Content-Type", "application/octet-stream",
              "Content-Range", from + "-" + (from + len - 1)), part);
      if (r.statusCode() != 202) {
        throw failure("uploading " + d + " (bytes " + from + "-" + (from + len - 1) + ")", r);
      }
      drain(r);
      location = r.headers().firstValue("Location").orElse(location);
      progress.accept(len);
    }
    URI put = uploadUri(location);
    String sep = put.getRawQuery() == null ? "?" : "&";
    r = request("PUT", put + sep + "digest=" + enc(d.toString()), repo, "pull,push",
        Map.of("Content-Type", "application/octet-stream"), HttpRequest.BodyPublishers.noBody());
    if (r.statusCode() != 201) {
      throw failure("finishing the upload of " + d, r);
    }
    drain(r);
  }

  private static InputStream slice(Path file, long from, long len) {
    try {
      InputStream in = Files.newInputStream(file);
      in.skipNBytes(from);
      return new java.io.BufferedInputStream(new BoundedInput(in, len), 1 << 16);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /** At most {@code left} bytes of a stream. */
  private static final class BoundedInput extends java.io.FilterInputStream {
    private long left;

    BoundedInput(InputStream in, long left) {
      super(in);
      this.left = left;
    }

    @Override
    public int read() throws IOException {
      if (left <= 0) {
        return -1;
      }
      int b = in.read();
      left--;
      return b;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (left <= 0) {
        return -1;
      }
      int n = in.read(b, off, (int) Math.min(len, left));
      if (n > 0) {
        left -= n;
      }
      return n;
    }
  }

  /** Puts a manifest under a tag (or its digest); returns the digest the registry names. */
  Digest putManifest(String repo, String ref, byte[] manifest, String mediaType)
      throws IOException {
    HttpResponse<InputStream> r = request("PUT", "/v2/" + repo + "/manifests/" + ref, repo,
        "pull,push", Map.of("Content-Type", mediaType),
        HttpRequest.BodyPublishers.ofByteArray(manifest));
    if (r.statusCode() != 201 && r.statusCode() != 200) {
      throw failure("putting the manifest " + repo + ":" + ref, r);
    }
    drain(r);
    Digest mine = Digest.of(manifest);
    String said = r.headers().firstValue("Docker-Content-Digest").orElse(null);
    if (said != null && Digest.isDigest(said) && !Digest.parse(said).equals(mine)) {
      throw new IOException("registry " + host + " stored the manifest under " + said
          + ", not " + mine);
    }
    return mine;
  }

  @Override
  public void close() {
    watchdog.shutdownNow();
  }
}
