package io.strata.cli;

import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.MultiThreadIoEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollIoHandler;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerDomainSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.unix.DomainSocketAddress;
import io.strata.layers.LayerStore;
import io.strata.runtime.snapshots.SnapshotService;
import io.strata.runtime.snapshots.SnapshotStore;
import io.strata.runtime.snapshots.StoreLayers;
import io.strata.layers.registry.Distribution;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code strata snapshotter}: containerd's snapshots API on a unix socket, as a proxy plugin. */
@Command(name = "snapshotter", mixinStandardHelpOptions = true,
    description = {"Serve containerd's snapshots API (a proxy plugin of type \"snapshot\") on a"
        + " unix socket until SIGTERM or SIGINT.",
        "",
        "Layers that containerd's CRI pulls are taken from strata's store (or pulled into it)"
            + " and stored once for both (the store: strata --root DIR snapshotter, else the"
            + " default store); see --own-layers.",
        "",
        "Active snapshots over parents are strata unions,"
            + " served by this process and handed to containerd as bind mounts (with"
            + " --mount-helper, containerd mounts them itself through mount.fuse3 and"
            + " strata-overlay, which must then be on its PATH); the others are bind mounts."
            + " In containerd's config:",
        "  [proxy_plugins.strata]",
        "    type = \"snapshot\"",
        "    address = \"/run/strata/snapshotter.sock\"",
        "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]   # Kubernetes",
        "    snapshotter = \"strata\"",
        "    disable_snapshot_annotations = false"})
public final class SnapshotterCommand implements Callable<Integer> {
  @Option(names = "--address", paramLabel = "SOCKET",
      description = "The unix socket (default: /run/strata/snapshotter.sock).")
  Path address = Path.of("/run/strata/snapshotter.sock");

  @Option(names = "--root", paramLabel = "DIR",
      description = "Where snapshots live (default: STORE/snapshotter).")
  Path root;

  @Option(names = "--mount-helper",
      description = "Have containerd mount each union through mount.fuse3 and strata-overlay"
          + " (a process per mount, which outlives the snapshotter) instead of serving all"
          + " unions in this process and handing out bind mounts (the default: faster, but"
          + " containers' roots end with the snapshotter).")
  boolean mountHelper;

  @Option(names = "--own-layers",
      description = "Keep every layer in the snapshotter's directory as containerd unpacks it."
          + " By default a layer that containerd's CRI pulls (its snapshots labelled with the"
          + " layer's blob: disable_snapshot_annotations = false) is taken from strata's store,"
          + " or pulled into it, and stored once for strata and containerd.")
  boolean ownLayers;

  @Option(names = "--store", paramLabel = "DIR", hidden = true,
      description = "The strata store (default: $STRATA_ROOT, else /var/lib/strata as root, else"
          + " $XDG_DATA_HOME/strata or ~/.local/share/strata).")
  Path store;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  /** The strata store: --store, else the top command's --root ({@code strata --root DIR …}). */
  private Path storeRoot() {
    Path chosen = store;
    if (chosen == null && spec != null) {
      picocli.CommandLine.Model.OptionSpec top = spec.root().findOption("--root");
      if (top != null && top.getValue() != null) {
        chosen = top.getValue();
      }
    }
    return LayerStore.rootFrom(chosen);
  }

  static void log(String line) {
    System.err.println(Instant.now() + " strata snapshotter: "
        + io.strata.layers.base.Text.printable(line));
  }

  @Override
  public Integer call() throws Exception {
    Path storeRoot = storeRoot();
    Path dir = root != null ? root : storeRoot.resolve("snapshotter");
    io.strata.runtime.snapshots.ServedUnions served = mountHelper ? null
        : new io.strata.runtime.snapshots.ServedUnions(SnapshotterCommand::log);
    SnapshotStore.Layers layers = ownLayers ? null : new StoreLayers(
        LayerStore.open(storeRoot, SnapshotterCommand::log),
        new Distribution.Options(true, null, null, null, null),
        StoreLayers.ownerFor(dir), SnapshotterCommand::log);
    SnapshotStore snapshots = new SnapshotStore(dir, "fuse3.strata-overlay", served, layers,
        SnapshotterCommand::log);
    if (served != null) {
      served.naming(snapshots::keyOfId);
    }
    Files.createDirectories(address.toAbsolutePath().getParent());
    if (Files.exists(address)) {
      // a snapshotter that is stopping (in the daemon, one whose client was just killed)
      // still answers for a moment: give it a few seconds to go
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (answers(address) && System.nanoTime() < deadline) {
        Thread.sleep(50);
      }
      if (answers(address)) {
        throw new IllegalStateException(address + " is served by another snapshotter");
      }
      Files.delete(address); // left by a snapshotter that was killed
    }
    // containerd's calls run on threads of this invocation: in the daemon, grpc's shared
    // executor has threads of earlier (finished, cancelled) invocations, whose cancellation
    // stopped the store's pulls and whose stderr took this snapshotter's messages
    io.strata.layers.base.Invocation invocation = io.strata.layers.base.Invocation.current();
    java.util.concurrent.ExecutorService calls = java.util.concurrent.Executors
        .newCachedThreadPool(r -> {
          Thread t = new Thread(r, "snapshotter-call");
          t.setDaemon(true);
          return t;
        });
    java.util.concurrent.Executor inInvocation = r -> calls.execute(() -> {
      try {
        io.strata.layers.base.Invocation.run(invocation, () -> {
          r.run();
          return null;
        });
      } catch (RuntimeException | Error e) {
        throw e;
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
    EventLoopGroup boss = new MultiThreadIoEventLoopGroup(1, EpollIoHandler.newFactory());
    EventLoopGroup workers = new MultiThreadIoEventLoopGroup(2, EpollIoHandler.newFactory());
    Server server = NettyServerBuilder.forAddress(new DomainSocketAddress(address.toString()))
        .channelType(EpollServerDomainSocketChannel.class)
        .bossEventLoopGroup(boss).workerEventLoopGroup(workers)
        // a unix socket has no keepalive: without this, netty warns on every connection
        .withChildOption(io.grpc.netty.shaded.io.netty.channel.ChannelOption.SO_KEEPALIVE, null)
        .executor(inInvocation)
        .addService(new SnapshotService(snapshots, SnapshotterCommand::log))
        .build().start();
    Files.setPosixFilePermissions(address,
        java.nio.file.attribute.PosixFilePermissions.fromString("rw-------"));
    Object ours = Files.readAttributes(address,
        java.nio.file.attribute.BasicFileAttributes.class).fileKey();
    Thread stop = new Thread(() -> {
      log("stopping");
      server.shutdown();
      try {
        server.awaitTermination(5, TimeUnit.SECONDS);
        // a snapshotter started since (this one's client was killed) has its own socket there
        try {
          if (ours.equals(Files.readAttributes(address,
              java.nio.file.attribute.BasicFileAttributes.class).fileKey())) {
            Files.deleteIfExists(address);
          }
        } catch (java.nio.file.NoSuchFileException gone) {
          // removed already
        }
      } catch (Exception e) {
        log("stop: " + e);
      }
      boss.shutdownGracefully();
      workers.shutdownGracefully();
      calls.shutdown();
      if (served != null) {
        served.close();
      }
    }, "snapshotter-stop");
    Runtime.getRuntime().addShutdownHook(stop);
    // In the daemon the client's SIGTERM/SIGINT (or its going away) stops this snapshotter.
    AutoCloseable signals = io.strata.layers.base.Invocation.current().onSignal(n -> {
      if (n == 1 || n == 2 || n == 15) {
        server.shutdown();
      }
    });
    if (served != null) {
      // a snapshotter in a JVM of its own: its first container root is its first mount
      DaemonCommand.warmUp(Path.of(System.getProperty("java.io.tmpdir")));
    }
    log("serving " + dir + (layers != null ? " (layers from the store " + storeRoot + ")"
        : "") + " on " + address + (mountHelper ? " (unions mounted by containerd through"
        + " mount.fuse3)" : " (unions served in this process)"));
    try {
      server.awaitTermination();
    } finally {
      signals.close();
    }
    try {
      Runtime.getRuntime().removeShutdownHook(stop);
    } catch (IllegalStateException shuttingDown) {
      return 0; // the hook is running and does the rest
    }
    stop.run();
    return 0;
  }

  private static boolean answers(Path socket) {
    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      ch.connect(UnixDomainSocketAddress.of(socket));
      return true;
    } catch (java.io.IOException e) {
      return false;
    }
  }
}
