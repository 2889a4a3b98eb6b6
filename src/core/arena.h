/*
 * arena.h -- bump allocator for per-batch memory.
 *
 * A batch's strings (device ids, tags, unknown fields) live in one arena that is reset, not freed,
 * once the batch is durable: no malloc per reading on the hot path. The arena grows by whole blocks
 * up to a hard cap (the caller's bound on batch memory); past the cap tc_arena_alloc returns NULL
 * and the caller flushes the batch first. That cap is what keeps memory bounded under load.
 */
#ifndef TC_CORE_ARENA_H
#define TC_CORE_ARENA_H

#include <stddef.h>

typedef struct tc_arena_block tc_arena_block;

typedef struct tc_arena {
    tc_arena_block *head;  /* current block (newest) */
    tc_arena_block *spare; /* blocks kept across resets, reused before allocating */
    size_t block_size;     /* default size of a new block */
    size_t used;           /* bytes handed out since the last reset */
    size_t reserved;       /* bytes held in blocks (head chain + spare) */
    size_t cap;            /* hard limit on reserved; 0 = no limit */
} tc_arena;

/* Initialise an empty arena; nothing is allocated until the first tc_arena_alloc. */
void tc_arena_init(tc_arena *a, size_t block_size, size_t cap);

/* Return n bytes aligned to 8, or NULL when out of memory or past the cap. */
void *tc_arena_alloc(tc_arena *a, size_t n);

/* Copy n bytes into the arena and NUL-terminate them; NULL on failure. */
char *tc_arena_strndup(tc_arena *a, const char *s, size_t n);

/* Forget every allocation, keep the blocks for reuse. */
void tc_arena_reset(tc_arena *a);

/* Free all blocks. The arena may be initialised again afterwards. */
void tc_arena_free(tc_arena *a);

#endif
