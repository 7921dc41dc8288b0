package io.strata.runtime.container;

import java.util.List;

/**
 * The devices a container may use, as data: runc's default allow-list for Docker
 * ({@code libcontainer/specconv.AllowedDevices}), less the tun device (strata gives a container
 * no network device of its own). Anything may be made with mknod, as in Docker, but only these
 * may be read or written. Applied through the devices cgroup where the kernel has it (v1);
 * where it does not (a pure cgroup v2 machine, which would need a BPF program), the container
 * gets no CAP_MKNOD instead, and /dev and the FUSE rootfs are nodev either way.
 */
public final class DevicePolicy {
  private DevicePolicy() {}

  /** One rule in the devices cgroup's own syntax: type, major:minor (or *), access. */
  public record Rule(char type, String major, String minor, String access, String what) {
    public String line() {
      return type + " " + major + ":" + minor + " " + access;
    }
  }

  /** Every rule, in the order they are written after "a" is denied. */
  public static final List<Rule> ALLOWED = List.of(
      new Rule('c', "*", "*", "m", "make any character device (opening it is another matter)"),
      new Rule('b', "*", "*", "m", "make any block device (opening it is another matter)"),
      new Rule('c', "1", "3", "rwm", "/dev/null"),
      new Rule('c', "1", "5", "rwm", "/dev/zero"),
      new Rule('c', "1", "7", "rwm", "/dev/full"),
      new Rule('c', "1", "8", "rwm", "/dev/random"),
      new Rule('c', "1", "9", "rwm", "/dev/urandom"),
      new Rule('c', "5", "0", "rwm", "/dev/tty"),
      new Rule('c', "5", "2", "rwm", "/dev/ptmx"),
      new Rule('c', "136", "*", "rwm", "/dev/pts/*"));
}
