/**
 * strata's own transport: the kernel's FUSE protocol on /dev/fuse in Java (opcode table, frame
 * codec, node table, dispatch onto the view, device and session, FUSE over io_uring's queues
 * where the kernel offers them, fusermount3, a descriptor
 * handed over by a client that mounted it in its own namespaces, a session's state and
 * descriptors handed to strata-holder for the next daemon ({@code Holder}). Uses {@code view};
 * nothing of the other transport.
 */
package io.strata.union.kernel;
