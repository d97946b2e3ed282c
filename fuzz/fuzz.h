/* Shared by the libFuzzer harnesses: reading an input as a stream of
 * operations, and failing loudly when a harness's model disagrees. */
#ifndef AIO_FUZZ_H
#define AIO_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fuzz_in {
  const uint8_t *p;
  size_t n;
} fuzz_in;

/* the next byte, 0 once the input is used up */
static inline uint8_t fuzz_byte(fuzz_in *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

static inline uint16_t fuzz_u16(fuzz_in *in) {
  uint16_t lo = fuzz_byte(in);
  return (uint16_t)(lo | (uint16_t)fuzz_byte(in) << 8);
}

/* up to want bytes taken from the input; *got says how many */
static inline const uint8_t *fuzz_bytes(fuzz_in *in, size_t want, size_t *got) {
  const uint8_t *p = in->p;
  *got = want < in->n ? want : in->n;
  in->p += *got;
  in->n -= *got;
  return p;
}

#define FUZZ_CHECK(cond, what)                                                                     \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, what, #cond);                        \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#endif
