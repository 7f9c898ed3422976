/*
 * lenet_int.c -- C99 reference of seed 002's integer LeNet forward pass, built on the header that
 * `qexport cheader --bits 8 lenet.pth` emits (identifier prefix "lenet", the default for LeNet).
 *
 * Every layer (README "Numerics", qexport.quantize.reference.lenet_forward_int):
 *     acc = sum x * (w_q - Z) + b_q                      (int64)
 *     y   = (acc * m) >> s                               (64-bit product, floor shift)
 * then ReLU and a 2x2 average pool (sum + 2) >> 2 after c1 and c3; no ReLU after c5, f6, output.
 * Per-tensor or per-channel parameters and the OIHW or OHWI weight layout are taken from the
 * header's macros.  No dynamic allocation.
 *
 * Build:  cc -std=c99 -I<dir of header> -DQEXPORT_HEADER='"lenet.h"' lenet_int.c -o lenet_int
 * Input:  stdin, any number of 28x28 uint8 images (784 bytes each, row-major).
 * Output: per image one line per stage "<stage> v v v ..." (c1 s2 c3 s4 c5 f6 output, every value
 *         of the stage in C, H, W order), then "pred <argmax of output>".
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#ifndef QEXPORT_HEADER
#define QEXPORT_HEADER "lenet.h"
#endif
#include QEXPORT_HEADER

/* >> on a negative signed value is implementation-defined in C99: floor division by 2^s, portably. */
static int64_t floor_shift(int64_t v, int32_t s)
{
    if (v >= 0)
        return v >> s;
    return -(int64_t)((uint64_t)(-(v + 1)) >> s) - 1; /* floor(v / 2^s) = -(((-v - 1) >> s) + 1) */
}

typedef struct {
    const uint8_t *w;          /* codes, OIHW or OHWI (linear: OI) */
    const int32_t *b;          /* int32 bias b_q */
    int out_c, in_c, kh, kw;   /* linear layers: kh = kw = 1 */
    int stride, pad, ohwi;
    const int32_t *zp_c, *m_c, *s_c; /* per-channel arrays, or NULL for per-tensor values below */
    int32_t zp, m, s;
} qlayer;

#define PER_TENSOR(L) NULL, NULL, NULL, LENET_##L##_ZERO_POINT, LENET_##L##_MULTIPLIER, LENET_##L##_SHIFT
#define PER_CHANNEL(l) lenet_##l##_zero_point, lenet_##l##_multiplier, lenet_##l##_shift, 0, 0, 0

#if LENET_C1_PER_CHANNEL
#define C1_Q PER_CHANNEL(c1)
#else
#define C1_Q PER_TENSOR(C1)
#endif
#if LENET_C3_PER_CHANNEL
#define C3_Q PER_CHANNEL(c3)
#else
#define C3_Q PER_TENSOR(C3)
#endif
#if LENET_C5_PER_CHANNEL
#define C5_Q PER_CHANNEL(c5)
#else
#define C5_Q PER_TENSOR(C5)
#endif
#if LENET_F6_PER_CHANNEL
#define F6_Q PER_CHANNEL(f6)
#else
#define F6_Q PER_TENSOR(F6)
#endif
#if LENET_OUTPUT_PER_CHANNEL
#define OUT_Q PER_CHANNEL(output)
#else
#define OUT_Q PER_TENSOR(OUTPUT)
#endif

#define CONV(L, l) { lenet_##l##_weight, lenet_##l##_bias, LENET_##L##_OUT_CHANNELS, LENET_##L##_IN_CHANNELS, \
    LENET_##L##_KERNEL_H, LENET_##L##_KERNEL_W, LENET_##L##_STRIDE_H, LENET_##L##_PADDING_H, \
    LENET_##L##_WEIGHT_LAYOUT_OHWI, L##_Q }
#define LINEAR(L, l, Q) { lenet_##l##_weight, lenet_##l##_bias, LENET_##L##_OUT_FEATURES, \
    LENET_##L##_IN_FEATURES, 1, 1, 1, 0, 0, Q }

static const qlayer C1 = CONV(C1, c1);
static const qlayer C3 = CONV(C3, c3);
static const qlayer C5 = CONV(C5, c5);
static const qlayer F6 = LINEAR(F6, f6, F6_Q);
static const qlayer OUT = LINEAR(OUTPUT, output, OUT_Q);

/* requantize one accumulator of output channel o */
static int64_t requant(const qlayer *L, int o, int64_t acc)
{
    int64_t m = L->m_c ? L->m_c[o] : L->m;
    int32_t s = L->s_c ? L->s_c[o] : L->s;
    return floor_shift(acc * m, s);
}

static int64_t weight(const qlayer *L, int o, int c, int i, int j)
{
    int64_t z = L->zp_c ? L->zp_c[o] : L->zp;
    long idx = L->ohwi ? (((long)o * L->kh + i) * L->kw + j) * L->in_c + c
                       : (((long)o * L->in_c + c) * L->kh + i) * L->kw + j;
    return (int64_t)L->w[idx] - z;
}

/* x: in_c x h x w; y: out_c x oh x ow; returns oh (square images) */
static int conv(const qlayer *L, const int64_t *x, int h, int w, int64_t *y)
{
    int oh = (h + 2 * L->pad - L->kh) / L->stride + 1;
    int ow = (w + 2 * L->pad - L->kw) / L->stride + 1;
    int o, oy, ox, c, i, j;
    for (o = 0; o < L->out_c; o++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++) {
                int64_t acc = L->b[o];
                for (c = 0; c < L->in_c; c++)
                    for (i = 0; i < L->kh; i++)
                        for (j = 0; j < L->kw; j++) {
                            int iy = oy * L->stride + i - L->pad, ix = ox * L->stride + j - L->pad;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                continue; /* zero padding */
                            acc += x[((long)c * h + iy) * w + ix] * weight(L, o, c, i, j);
                        }
                y[((long)o * oh + oy) * ow + ox] = requant(L, o, acc);
            }
    return oh;
}

static void linear(const qlayer *L, const int64_t *x, int64_t *y)
{
    int o, i;
    for (o = 0; o < L->out_c; o++) {
        int64_t acc = L->b[o];
        for (i = 0; i < L->in_c; i++)
            acc += x[i] * weight(L, o, i, 0, 0);
        y[o] = requant(L, o, acc);
    }
}

/* ReLU then 2x2 stride-2 average pool, rounded half up: (a + b + c + d + 2) >> 2 */
static int relu_pool(const int64_t *x, int ch, int h, int w, int64_t *y)
{
    int c, i, j, oh = h / 2, ow = w / 2;
    for (c = 0; c < ch; c++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++) {
                int64_t sum = 0;
                int di, dj;
                for (di = 0; di < 2; di++)
                    for (dj = 0; dj < 2; dj++) {
                        int64_t v = x[((long)c * h + 2 * i + di) * w + 2 * j + dj];
                        sum += v > 0 ? v : 0;
                    }
                y[((long)c * oh + i) * ow + j] = floor_shift(sum + 2, 2);
            }
    return oh;
}

static void print_stage(const char *name, const int64_t *v, long n)
{
    long k;
    fputs(name, stdout);
    for (k = 0; k < n; k++)
        printf(" %" PRId64, v[k]);
    putchar('\n');
}

#define IMG 28
static int64_t in0[1 * IMG * IMG];
static int64_t a1[LENET_C1_OUT_CHANNELS * IMG * IMG], p2[LENET_C1_OUT_CHANNELS * 14 * 14];
static int64_t a3[LENET_C3_OUT_CHANNELS * 10 * 10], p4[LENET_C3_OUT_CHANNELS * 5 * 5];
static int64_t a5[LENET_C5_OUT_CHANNELS], a6[LENET_F6_OUT_FEATURES], a7[LENET_OUTPUT_OUT_FEATURES];

int main(void)
{
    unsigned char img[IMG * IMG];
    while (fread(img, 1, sizeof img, stdin) == sizeof img) {
        int k, best = 0, h;
        for (k = 0; k < IMG * IMG; k++)
            in0[k] = img[k];
        h = conv(&C1, in0, IMG, IMG, a1);
        print_stage("c1", a1, (long)C1.out_c * h * h);
        h = relu_pool(a1, C1.out_c, h, h, p2);
        print_stage("s2", p2, (long)C1.out_c * h * h);
        h = conv(&C3, p2, h, h, a3);
        print_stage("c3", a3, (long)C3.out_c * h * h);
        h = relu_pool(a3, C3.out_c, h, h, p4);
        print_stage("s4", p4, (long)C3.out_c * h * h);
        h = conv(&C5, p4, h, h, a5); /* 1x1 output: flatten is the identity */
        print_stage("c5", a5, (long)C5.out_c * h * h);
        linear(&F6, a5, a6);
        print_stage("f6", a6, F6.out_c);
        linear(&OUT, a6, a7);
        print_stage("output", a7, OUT.out_c);
        for (k = 1; k < OUT.out_c; k++)
            if (a7[k] > a7[best])
                best = k;
        printf("pred %d\n", best);
    }
    return ferror(stdin) ? 1 : 0;
}
