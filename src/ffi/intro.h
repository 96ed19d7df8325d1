/*
 * sluice: an embedded, lock-free, exact sliding-window rate limiter (see README.md).
 *
 * Conventions. Every symbol starts with sluice_. A limiter is an opaque `struct sluice *`,
 * made by sluice_open / sluice_open_with and freed by sluice_close (NULL is fine there).
 * Functions return SLUICE_OK (0) or a negative SLUICE_ERR_* code; codes are grouped by tens
 * and never renumbered. Out-parameters come last and are written only on success. A NULL
 * argument is an error code, not a crash; no panic crosses into C (a caught one is
 * SLUICE_ERR_PANIC). There is no thread-local "last error": detail goes into a buffer the
 * caller passes. Every pointer argument is borrowed for the call only, unless its comment
 * says who owns what. One handle may be shared by any number of threads.
 *
 * Structs that grow. sluice_decision, sluice_table_stats, sluice_rule_counts,
 * sluice_request, sluice_packed_request and sluice_open_options begin with `size_t size`,
 * which the caller sets to sizeof the struct as its header declares it:
 *
 *     struct sluice_decision d;
 *     d.size = sizeof d;
 *
 * New fields are only ever appended after a struct's last byte (never in padding; no struct
 * has tail padding), so each version of a struct is larger than the one before and `size`
 * tells the library which version the caller was compiled with:
 *   - a struct the library writes (decisions, stats) gets the fields that fit in the
 *     caller's `size`, and `size` is set to the bytes written: a caller compiled against a
 *     newer header, running on an older library, finds `size` smaller than its sizeof and
 *     knows the fields past it were not written (they keep what the caller put there);
 *   - a struct the library reads (options, batch requests) is read up to the caller's
 *     `size`: fields an older caller lacks take their defaults (every field's zero is its
 *     default); from a newer caller, bytes past what this library knows must be zero (else
 *     SLUICE_ERR_UNSUPPORTED: an option this library cannot honour is refused, never
 *     silently dropped);
 *   - a decision handed back to sluice_headers is read up to this library's fields; what
 *     lies past them is ignored;
 *   - in an array (a batch), every request carries the same `size`, and the first
 *     decision's `size` is the size of every element of the decisions array.
 * A `size` smaller than the struct's first version (this header's, 0.2), 0, or not a
 * multiple of the struct's alignment is SLUICE_ERR_SIZE, and nothing is done. The check
 * costs a load and two compares per call; see the comment of sluice_decision for why a
 * size field rather than reserved words.
 *
 * Versions. SLUICE_VERSION is the header's, sluice_version() the library's. Before 1.0 a
 * minor version may change the ABI (0.2 added the size fields): use a library of the same
 * major.minor as the header. From 0.2 on, a struct that grows is no longer a reason to
 * change the ABI.
 */
