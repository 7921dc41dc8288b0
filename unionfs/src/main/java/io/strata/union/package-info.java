/** The union view over stored layers (see issue 3); this module holds only its frame so far. */
package io.strata.union;
