package io.strata.runtime.snapshots;

import com.google.protobuf.Empty;
import com.google.protobuf.Timestamp;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.strata.containerd.snapshots.CleanupRequest;
import io.strata.containerd.snapshots.CommitSnapshotRequest;
import io.strata.containerd.snapshots.Info;
import io.strata.containerd.snapshots.Kind;
import io.strata.containerd.snapshots.ListSnapshotsRequest;
import io.strata.containerd.snapshots.ListSnapshotsResponse;
import io.strata.containerd.snapshots.MountsRequest;
import io.strata.containerd.snapshots.MountsResponse;
import io.strata.containerd.snapshots.PrepareSnapshotRequest;
import io.strata.containerd.snapshots.PrepareSnapshotResponse;
import io.strata.containerd.snapshots.RemoveSnapshotRequest;
import io.strata.containerd.snapshots.SnapshotsGrpc;
import io.strata.containerd.snapshots.StatSnapshotRequest;
import io.strata.containerd.snapshots.StatSnapshotResponse;
import io.strata.containerd.snapshots.UpdateSnapshotRequest;
import io.strata.containerd.snapshots.UpdateSnapshotResponse;
import io.strata.containerd.snapshots.UsageRequest;
import io.strata.containerd.snapshots.UsageResponse;
import io.strata.containerd.snapshots.ViewSnapshotRequest;
import io.strata.containerd.snapshots.ViewSnapshotResponse;
import io.strata.containerd.types.Mount;
import java.time.Instant;
import java.util.List;
import java.util.function.Consumer;

/**
 * containerd's {@code containerd.services.snapshots.v1.Snapshots} gRPC service over a {@link
 * SnapshotStore}: each call mapped onto the store, each refusal onto the status code containerd
 * expects (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument), anything else
 * Internal with its message. List filters are not evaluated: every snapshot is listed.
 */
public final class SnapshotService extends SnapshotsGrpc.SnapshotsImplBase {
  private final SnapshotStore store;
  private final Consumer<String> log;

  public SnapshotService(SnapshotStore store, Consumer<String> log) {
    this.store = store;
    this.log = log;
  }

  @FunctionalInterface
  private interface Call<T> {
    T run() throws Exception;
  }

  private <T> void answer(String what, StreamObserver<T> out, Call<T> call) {
    T result;
    long start = System.nanoTime();
    try {
      result = call.run();
      if (io.strata.layers.base.Log.enabled(io.strata.layers.base.Log.Level.DEBUG)) {
        io.strata.layers.base.Log.debug(what + ": " + (System.nanoTime() - start) / 1000 + " µs");
      }
    } catch (SnapshotStore.Refused r) {
      Status s = switch (r.why) {
        case NOT_FOUND -> Status.NOT_FOUND;
        case ALREADY_EXISTS -> Status.ALREADY_EXISTS;
        case FAILED_PRECONDITION -> Status.FAILED_PRECONDITION;
        case INVALID_ARGUMENT -> Status.INVALID_ARGUMENT;
      };
      out.onError(s.withDescription(r.getMessage()).asRuntimeException());
      return;
    } catch (Exception | Error e) {
      log.accept(what + " failed: " + e);
      out.onError(Status.INTERNAL.withDescription(what + ": " + e.getMessage())
          .asRuntimeException());
      return;
    }
    out.onNext(result);
    out.onCompleted();
  }

  private static List<Mount> toProto(List<SnapshotStore.Mount> mounts) {
    return mounts.stream().map(m -> Mount.newBuilder().setType(m.type()).setSource(m.source())
        .addAllOptions(m.options()).build()).toList();
  }

  @Override
  public void prepare(PrepareSnapshotRequest r, StreamObserver<PrepareSnapshotResponse> out) {
    answer("prepare " + r.getKey(), out, () -> {
      long start = System.nanoTime();
      List<Mount> m = toProto(store.prepare(r.getKey(), r.getParent(), r.getLabelsMap()));
      io.strata.layers.base.Log.info("prepared " + r.getKey() + (r.getParent().isEmpty() ? ""
          : " on " + r.getParent()) + " in " + (System.nanoTime() - start) / 1_000_000 + " ms");
      return PrepareSnapshotResponse.newBuilder().addAllMounts(m).build();
    });
  }

  @Override
  public void view(ViewSnapshotRequest r, StreamObserver<ViewSnapshotResponse> out) {
    answer("view " + r.getKey(), out, () -> ViewSnapshotResponse.newBuilder()
        .addAllMounts(toProto(store.view(r.getKey(), r.getParent(), r.getLabelsMap()))).build());
  }

  @Override
  public void mounts(MountsRequest r, StreamObserver<MountsResponse> out) {
    answer("mounts " + r.getKey(), out, () -> MountsResponse.newBuilder()
        .addAllMounts(toProto(store.mounts(r.getKey()))).build());
  }

  @Override
  public void commit(CommitSnapshotRequest r, StreamObserver<Empty> out) {
    answer("commit " + r.getKey(), out, () -> {
      store.commit(r.getName(), r.getKey(), r.getLabelsMap());
      io.strata.layers.base.Log.info("committed " + r.getKey() + " as " + r.getName());
      return Empty.getDefaultInstance();
    });
  }

  @Override
  public void remove(RemoveSnapshotRequest r, StreamObserver<Empty> out) {
    answer("remove " + r.getKey(), out, () -> {
      store.remove(r.getKey());
      io.strata.layers.base.Log.info("removed " + r.getKey());
      return Empty.getDefaultInstance();
    });
  }

  @Override
  public void stat(StatSnapshotRequest r, StreamObserver<StatSnapshotResponse> out) {
    answer("stat " + r.getKey(), out, () -> StatSnapshotResponse.newBuilder()
        .setInfo(info(store.stat(r.getKey()))).build());
  }

  @Override
  public void update(UpdateSnapshotRequest r, StreamObserver<UpdateSnapshotResponse> out) {
    answer("update " + r.getInfo().getName(), out, () -> {
      List<String> paths = r.hasUpdateMask() ? r.getUpdateMask().getPathsList() : List.of();
      SnapshotStore.Snapshot s = store.updateLabels(r.getInfo().getName(),
          r.getInfo().getLabelsMap(), paths.isEmpty(), paths);
      return UpdateSnapshotResponse.newBuilder().setInfo(info(s)).build();
    });
  }

  @Override
  public void list(ListSnapshotsRequest r, StreamObserver<ListSnapshotsResponse> out) {
    try {
      List<SnapshotStore.Snapshot> all = store.list();
      for (int i = 0; i < all.size(); i += 100) {
        ListSnapshotsResponse.Builder b = ListSnapshotsResponse.newBuilder();
        for (SnapshotStore.Snapshot s : all.subList(i, Math.min(all.size(), i + 100))) {
          b.addInfo(info(s));
        }
        out.onNext(b.build());
      }
      out.onCompleted();
    } catch (RuntimeException e) {
      out.onError(Status.INTERNAL.withDescription("list: " + e.getMessage()).asRuntimeException());
    }
  }

  @Override
  public void usage(UsageRequest r, StreamObserver<UsageResponse> out) {
    answer("usage " + r.getKey(), out, () -> {
      long[] u = store.usage(r.getKey());
      return UsageResponse.newBuilder().setSize(u[0]).setInodes(u[1]).build();
    });
  }

  @Override
  public void cleanup(CleanupRequest r, StreamObserver<Empty> out) {
    answer("cleanup", out, () -> {
      store.cleanup();
      return Empty.getDefaultInstance();
    });
  }

  static Info info(SnapshotStore.Snapshot s) {
    return Info.newBuilder().setName(s.key()).setParent(s.parent() == null ? "" : s.parent())
        .setKind(switch (s.kind()) {
          case VIEW -> Kind.VIEW;
          case ACTIVE -> Kind.ACTIVE;
          case COMMITTED -> Kind.COMMITTED;
        })
        .setCreatedAt(ts(s.created())).setUpdatedAt(ts(s.updated()))
        .putAllLabels(s.labels()).build();
  }

  private static Timestamp ts(String iso) {
    Instant i = Instant.parse(iso);
    return Timestamp.newBuilder().setSeconds(i.getEpochSecond()).setNanos(i.getNano()).build();
  }
}
