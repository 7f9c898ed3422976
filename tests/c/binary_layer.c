/*
 * binary_layer.c -- a binary layer computed by XNOR and popcount on the packed words of a header
 * emitted by `qexport cheader` (seed 000, formulas (a) and (b)):
 *
 *     sum_k a_k * w_k = 2 * popcount(XNOR(a, w) & mask) - N      (a)
 *                     = N - 2 * popcount((a XOR w) & mask)         (b)
 *
 * with bit 1 <-> +1, bit 0 <-> -1, LSB-first words, and `mask` keeping the N valid bits (the last
 * word's padding bits are 0 in the weights, and XNOR would count them).  C99, no allocation.
 *
 * Build (QX_WORDS: the packed array; QX_M: its macro base, e.g. VGG_FEATURES_0_WEIGHT_PACKED):
 *     cc -std=c99 -I<dir> -DQEXPORT_HEADER='"vgg.h"' -DQX_WORDS=vgg_features_0_weight_packed \
 *        -DQX_M=VGG_FEATURES_0_WEIGHT_PACKED binary_layer.c -o binary_layer
 * Input:  stdin, rows of N signed bytes (+1 or -1), the activations in the weights' element order.
 * Output: one line per row: the O dot products; exit status 2 if (a) and (b) ever disagree,
 *         3 on an activation that is not +-1.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include QEXPORT_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define QX_ROWS CAT(QX_M, _DIM0)
#define QX_NW CAT(QX_M, _WORDS_PER_ROW)
#define QX_N CAT(QX_M, _N)
#define QX_WORD_BITS CAT(QX_M, _WORD_BITS)

#if !CAT(QX_M, _LSB_FIRST)
#error "binary_layer.c expects LSB-first packing"
#endif

#if QX_WORD_BITS == 8
typedef uint8_t word_t;
#elif QX_WORD_BITS == 16
typedef uint16_t word_t;
#elif QX_WORD_BITS == 32
typedef uint32_t word_t;
#elif QX_WORD_BITS == 64
typedef uint64_t word_t;
#else
#error "unsupported word size"
#endif

/* portable popcount (SWAR), no compiler builtins */
static unsigned popcount64(uint64_t v)
{
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (unsigned)((v * 0x0101010101010101ULL) >> 56);
}

static word_t act[QX_NW];
static word_t mask[QX_NW];
static signed char row[QX_N];

int main(void)
{
    int k, o, bad = 0;
    for (k = 0; k < QX_N; k++)
        mask[k / QX_WORD_BITS] |= (word_t)((word_t)1 << (k % QX_WORD_BITS));
    while (fread(row, 1, sizeof row, stdin) == sizeof row) {
        for (k = 0; k < QX_NW; k++)
            act[k] = 0;
        for (k = 0; k < QX_N; k++) {
            if (row[k] != 1 && row[k] != -1)
                return 3;
            if (row[k] == 1) /* pack the activations: bit k % W of word k / W, 1 <-> +1 */
                act[k / QX_WORD_BITS] |= (word_t)((word_t)1 << (k % QX_WORD_BITS));
        }
        for (o = 0; o < QX_ROWS; o++) {
            const word_t *w = &QX_WORDS[(long)o * QX_NW];
            long xnor = 0, xor_ = 0, a, b;
            for (k = 0; k < QX_NW; k++) {
                xnor += popcount64((word_t)(~(act[k] ^ w[k]) & mask[k]));
                xor_ += popcount64((word_t)((act[k] ^ w[k]) & mask[k]));
            }
            a = 2 * xnor - QX_N;
            b = QX_N - 2 * xor_;
            if (a != b)
                bad = 1;
            printf(o ? " %ld" : "%ld", a);
        }
        putchar('\n');
    }
    return bad ? 2 : 0;
}
