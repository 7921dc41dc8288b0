/**
 * Containers: the plan of a run, cgroups v1 and v2 behind one interface, the device policy, users,
 * signals, the container helper and the containers of a store. Uses unionfs and layer-cache.
 */
package io.strata.runtime.container;
