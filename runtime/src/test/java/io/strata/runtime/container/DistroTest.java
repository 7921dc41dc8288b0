package io.strata.runtime.container;

import static org.assertj.core.api.Assertions.assertThat;

import io.strata.layers.LayerStore;
import io.strata.layers.base.Progress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real distribution userland: a Debian minbase made by debootstrap (from Debian's package
 * mirror, which this machine reaches), imported as an image, runs its own tools: dpkg installs
 * a .deb that the test builds, and a shell script works the filesystem.
 */
class DistroTest {
  @TempDir static Path tmp;
  static LayerStore store;

  static String run(String... cmd) throws Exception {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(15, TimeUnit.MINUTES)).isTrue();
    assertThat(p.exitValue()).as(String.join(" ", cmd) + ":\n" + out).isZero();
    return out;
  }

  @BeforeAll
  static void debootstrap() throws Exception {
    Path rootfs = tmp.resolve("minbase");
    run("debootstrap", "--variant=minbase", "bookworm", rootfs.toString(),
        "http://deb.debian.org/debian");
    Path tar = tmp.resolve("minbase.tar");
    run("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", rootfs.toString(),
        "-cf", tar.toString(), ".");
    store = LayerStore.open(tmp.resolve("store"), System.err::println);
    store.importImage(tar, "debian:minbase", null, Progress.NONE);
  }

  @Test
  void dpkgInstallsADebAndAShellScriptWorksTheFilesystem() throws Exception {
    Path pkg = tmp.resolve("pkg");
    Files.createDirectories(pkg.resolve("DEBIAN"));
    Files.createDirectories(pkg.resolve("usr/bin"));
    Files.writeString(pkg.resolve("DEBIAN/control"), "Package: strata-hello\nVersion: 1.0\n"
        + "Architecture: all\nMaintainer: strata tests <t@example.invalid>\n"
        + "Description: installed inside a strata container\n");
    Path bin = Files.writeString(pkg.resolve("usr/bin/strata-hello"),
        "#!/bin/sh\necho \"hello from $(cat /etc/debian_version)\"\n");
    bin.toFile().setExecutable(true, false);
    Path share = Files.createDirectories(tmp.resolve("share"));
    run("dpkg-deb", "--root-owner-group", "--build", pkg.toString(),
        share.resolve("hello.deb").toString());
    Files.writeString(share.resolve("fs.sh"), String.join("\n",
        "set -e",
        "cd /tmp",
        "mkdir -p a/b/c && echo one > a/b/c/f && cp -a a a2 && mv a2 a3",
        "ln -s a3/b/c/f sym && ln a3/b/c/f hard && [ \"$(stat -c %h a3/b/c/f)\" = 2 ]",
        "chmod 640 hard && [ \"$(stat -c %a a3/b/c/f)\" = 640 ]",
        "tar -cf t.tar a a3 && mkdir x && tar -C x -xf t.tar && diff -r a x/a",
        "seq 1 100000 > big && sha256sum big > big.sum && sha256sum -c big.sum >/dev/null",
        "rm -rf a x && [ ! -e a ] && find /tmp -type f | sort > /share/files",
        "echo '# changed' >> /etc/hosts && grep -q changed /etc/hosts",
        "rm /etc/motd 2>/dev/null || true; [ ! -e /etc/motd ]",
        "echo fs-ok"));
    ContainerRunner.Spec spec = new ContainerRunner.Spec("deb", "debian:minbase",
        List.of("/bin/sh", "-c", "dpkg -i /share/hello.deb > /share/dpkg.log 2>&1;"
            + " echo $? > /share/rc; strata-hello > /share/hello 2>&1; echo $? >> /share/rc;"
            + " dpkg -s strata-hello > /share/status 2>&1; echo $? >> /share/rc;"
            + " sh /share/fs.sh > /share/fs.log 2>&1; echo $? >> /share/rc"),
        List.of(), null, null, null, "none", List.of(share + ":/share"), false, false, false,
        Limits.NONE, null, true);
    int code = new ContainerRunner(store, System.err::println).run(spec);
    String fsLog = Files.exists(share.resolve("fs.log")) ? Files.readString(share.resolve("fs.log")) : "";
    String dpkgLog = Files.exists(share.resolve("dpkg.log")) ? Files.readString(share.resolve("dpkg.log")) : "";
    String rc = Files.readString(share.resolve("rc")).replace('\n', ' ').trim();
    assertThat(code).isZero();
    assertThat(rc).as("exit codes of dpkg, the tool, dpkg -s, the script; dpkg:\n" + dpkgLog
        + "\nhello: " + Files.readString(share.resolve("hello")) + "\nfs:\n" + fsLog)
        .isEqualTo("0 0 0 0");
    assertThat(share.resolve("hello")).content().startsWith("hello from 12.");
    assertThat(share.resolve("status")).content().contains("install ok installed");
    assertThat(fsLog).contains("fs-ok");
    Containers c = new Containers(store.root(), s -> { });
    assertThat(c.upperOf("deb").resolve("usr/bin/strata-hello")).exists();
    assertThat(c.upperOf("deb").resolve("var/lib/dpkg/status")).exists();
    c.remove("deb");
  }
}
