package io.strata.layers.registry;

import io.strata.layers.base.BadInputException;
import io.strata.layers.base.StoreException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

/**
 * The TLS trust of registry connections: the JDK's trust store (on Debian, built from the
 * system's CA certificates) plus the CAs of {@code --cert-dir} and of
 * {@code /etc/containers/certs.d/HOST/} and {@code /etc/docker/certs.d/HOST/} (every
 * {@code *.crt}), as podman and docker read them. With verification off every certificate is
 * taken, and the host name check is off too.
 */
final class Tls {
  private Tls() {}

  static SSLContext context(String host, boolean verify, Path certDir) {
    try {
      SSLContext ctx = SSLContext.getInstance("TLS");
      if (!verify) {
        System.setProperty("jdk.internal.httpclient.disableHostnameVerification", "true");
        ctx.init(null, new TrustManager[] {new TrustAll()}, null);
        return ctx;
      }
      List<X509Certificate> extra = new ArrayList<>();
      List<Path> dirs = new ArrayList<>();
      if (certDir != null) {
        if (!Files.isDirectory(certDir)) {
          throw new IllegalArgumentException("--cert-dir " + certDir + " is not a directory");
        }
        dirs.add(certDir);
      }
      String dirName = host.replace("[", "").replace("]", "");
      dirs.add(Path.of("/etc/containers/certs.d", dirName));
      dirs.add(Path.of("/etc/docker/certs.d", dirName));
      for (Path d : dirs) {
        extra.addAll(certificates(d));
      }
      if (extra.isEmpty()) {
        ctx.init(null, null, null);
        return ctx;
      }
      ctx.init(null, new TrustManager[] {new Both(defaultManager(null), defaultManager(extra))},
          null);
      return ctx;
    } catch (GeneralSecurityException | IOException e) {
      throw new StoreException("cannot set up TLS for " + host + ": " + e.getMessage(), e);
    }
  }

  private static List<X509Certificate> certificates(Path dir) throws IOException {
    List<X509Certificate> out = new ArrayList<>();
    if (!Files.isDirectory(dir)) {
      return out;
    }
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "*.crt")) {
      for (Path p : ds) {
        try (InputStream in = Files.newInputStream(p)) {
          for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
            out.add((X509Certificate) c);
          }
        } catch (CertificateException e) {
          throw new BadInputException("certificate file " + p + " is not PEM or DER X.509: "
              + e.getMessage());
        }
      }
    }
    return out;
  }

  private static X509TrustManager defaultManager(List<X509Certificate> only)
      throws GeneralSecurityException, IOException {
    TrustManagerFactory f = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    if (only == null) {
      f.init((KeyStore) null);
    } else {
      KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
      ks.load(null, null);
      for (int i = 0; i < only.size(); i++) {
        ks.setCertificateEntry("ca-" + i, only.get(i));
      }
      f.init(ks);
    }
    for (TrustManager tm : f.getTrustManagers()) {
      if (tm instanceof X509TrustManager x) {
        return x;
      }
    }
    throw new GeneralSecurityException("no X.509 trust manager");
  }

  /** Trusts what either the system or the extra CAs trust. */
  private record Both(X509TrustManager system, X509TrustManager extra) implements X509TrustManager {
    @Override
    public void checkClientTrusted(X509Certificate[] chain, String auth) throws CertificateException {
      system.checkClientTrusted(chain, auth);
    }

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String auth) throws CertificateException {
      try {
        extra.checkServerTrusted(chain, auth);
      } catch (CertificateException e) {
        system.checkServerTrusted(chain, auth);
      }
    }

    @Override
    public X509Certificate[] getAcceptedIssuers() {
      X509Certificate[] a = system.getAcceptedIssuers();
      X509Certificate[] b = extra.getAcceptedIssuers();
      X509Certificate[] out = java.util.Arrays.copyOf(a, a.length + b.length);
      System.arraycopy(b, 0, out, a.length, b.length);
      return out;
    }
  }

  /** --tls-verify=false. */
  private static final class TrustAll implements X509TrustManager {
    @Override
    public void checkClientTrusted(X509Certificate[] chain, String auth) {}

    @Override
    public void checkServerTrusted(X509Certificate[] chain, String auth) {}

    @Override
    public X509Certificate[] getAcceptedIssuers() {
      return new X509Certificate[0];
    }
  }
}
