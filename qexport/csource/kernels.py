"""The C kernels of the generated .c (qexport.csource): one static function per op kind and, for
the weighted ops, per (weight type, bias type, accumulator type) actually used; the requantizing
and the sign-mode conv share one accumulation function per (weight type, accumulator type).
Packed binary layers: qexport/csource/binary.py.  Each is a
literal transcription of the arithmetic contract in qexport/integer/ir.py on one image (N = 1,
C x H x W in C order).  C99 and C++11 alike: every narrowing is an explicit cast."""

from __future__ import annotations

RSHIFT = r"""
/* rshift(v, s) = (v + 2^(s-1)) >> s with an arithmetic (flooring) shift; s = 0 leaves v.
   A right shift of a negative signed value is implementation-defined in C, so a negative sum is
   shifted as its complement in uint64_t: floor(t / 2^s) = -(((-t - 1) >> s) + 1) for t < 0,
   which is exact floor division on every compiler.  |v| < 2^62 (checked by the lowering). */
static int64_t qx_rshift(int64_t v, unsigned s)
{
    int64_t t;
    if (s == 0u)
        return v;
    t = v + ((int64_t)1 << (s - 1u));
    if (t >= 0)
        return (int64_t)((uint64_t)t >> s);
    return -(int64_t)(((uint64_t)(-(t + 1))) >> s) - 1;
}
"""

CLAMP = r"""
static uint8_t qx_clamp(int64_t v, int32_t lo, int32_t hi)
{
    return (uint8_t)(v < lo ? lo : (v > hi ? hi : v));
}
"""

GEOMETRY = r"""
/* conv2d / linear geometry; linear is a conv with a 1 x 1 plane and a 1 x 1 kernel */
typedef struct {
    int32_t cin, h, w, cout, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int32_t zin, zout, lo, hi;
} qx_conv_geom;

typedef struct {
    int32_t c, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, pad;
} qx_pool_geom;
"""

WINDOW = r"""
/* the kernel rows ky0..ky1-1 and columns kx0..kx1-1 that land inside the plane at conv position
   (oy, ox) (padding holds Z_x: the others contribute 0), and the input row / column of ky = kx = 0 */
typedef struct {
    int32_t ky0, ky1, kx0, kx1, iy, ix;
} qx_window;

static qx_window qx_window_at(const qx_conv_geom *g, int32_t oy, int32_t ox)
{
    qx_window v;
    v.iy = oy * g->sh - g->ph;
    v.ix = ox * g->sw - g->pw;
    v.ky0 = 0;
    v.ky1 = g->kh;
    v.kx0 = 0;
    v.kx1 = g->kw;
    while (v.ky0 < v.ky1 && v.iy + v.ky0 * g->dh < 0)
        v.ky0++;
    while (v.ky1 > v.ky0 && v.iy + (v.ky1 - 1) * g->dh >= g->h)
        v.ky1--;
    while (v.kx0 < v.kx1 && v.ix + v.kx0 * g->dw < 0)
        v.kx0++;
    while (v.kx1 > v.kx0 && v.ix + (v.kx1 - 1) * g->dw >= g->w)
        v.kx1--;
    return v;
}
"""

ACC = r"""
/* acc = sum (x - Z_x)(w - Z_w) over one output channel's window at conv position (oy, ox): xg its
   group's cg input planes, wo its cg x kh x kw weights; only the plane's positions are visited */
static {acc} qx_acc_{tag}(const qx_conv_geom *g, int32_t cg,{zinparam} const {wt} *wo,{zparam} const uint8_t *xg,
                       int32_t oy, int32_t ox)
{
    int32_t c, ky, kx;
    const qx_window v = qx_window_at(g, oy, ox);
    {acc} acc = 0;
    for (c = 0; c < cg; c++) {
        const uint8_t *xc = xg + c * g->h * g->w;
        const {wt} *wc = wo + c * g->kh * g->kw;
        for (ky = v.ky0; ky < v.ky1; ky++) {
            const uint8_t *row = xc + (v.iy + ky * g->dh) * g->w;
            for (kx = v.kx0; kx < v.kx1; kx++)
                acc += ({acc})((int32_t)row[v.ix + kx * g->dw] - {zin}) * ({acc}){wexpr};
        }
    }
    return acc;
}
"""

CONV = r"""
/* conv2d / linear, requantized: y = clamp(Z_y + rshift((acc + b_q) m, s), lo, hi) */
static void qx_conv_{tag}(const qx_conv_geom *g,{zinparam} const {wt} *wq,{zparam} const {bt} *bq, const int32_t *m,
                         const uint8_t *s, const uint8_t *x, uint8_t *y)
{
    int32_t o, oy, ox;
    const int32_t cg = g->cin / g->groups, og = g->cout / g->groups;
    for (o = 0; o < g->cout; o++) {
        const int32_t c0 = (o / og) * cg;
        const {wt} *wo = wq + o * cg * g->kh * g->kw;
        for (oy = 0; oy < g->ho; oy++)
            for (ox = 0; ox < g->wo; ox++) {
                const {acc} acc = ({acc})bq[o] + qx_acc_{atag}(g, cg,{zinarg} wo,{zarg} x + c0 * g->h * g->w, oy, ox);
                y[(o * g->ho + oy) * g->wo + ox] =
                    qx_clamp(g->zout + qx_rshift((int64_t)acc * (int64_t)m[o], s[o]), g->lo, g->hi);
            }
    }
}
"""

CONV_SIGN = r"""
/* conv2d / linear + BN + sign as thresholds on the accumulator (no bias, no requantization):
   code 2 where (flip[o] ? acc <= tau[o] : acc >= tau[o]), else 0; then pooled over a window of
   conv positions (pw: kernel h, w, stride h, w, pooled h, w; a 1 x 1 window when unpooled, no
   padding): the max of the codes, the min where flip[o] (a max pool before a negative BN) */
static void qx_conv_{tag}(const qx_conv_geom *g,{zinparam} const int32_t *pw, const {wt} *wq,{zparam} const {tt} *tau,
                         const uint8_t *flip, const uint8_t *x, uint8_t *y)
{
    int32_t o, py, px, i, j;
    const int32_t cg = g->cin / g->groups, og = g->cout / g->groups;
    for (o = 0; o < g->cout; o++) {
        const int64_t t = (int64_t)tau[o];
        const int32_t c0 = (o / og) * cg;
        const {wt} *wo = wq + o * cg * g->kh * g->kw;
        for (py = 0; py < pw[4]; py++) {
            for (px = 0; px < pw[5]; px++) {
                uint8_t code = (uint8_t)(flip[o] ? 2 : 0); /* the identity of min / max on {0, 2} */
                for (i = 0; i < pw[0]; i++) {
                    for (j = 0; j < pw[1]; j++) {
                        const int64_t acc = (int64_t)qx_acc_{atag}(g, cg,{zinarg} wo,{zarg} x + c0 * g->h * g->w,
                                                                py * pw[2] + i, px * pw[3] + j);
                        const uint8_t bit = (uint8_t)((flip[o] ? acc <= t : acc >= t) ? 2 : 0);
                        if (flip[o] ? bit < code : bit > code)
                            code = bit;
                    }
                }
                y[(o * pw[4] + py) * pw[5] + px] = code;
            }
        }
    }
}
"""

THRESHOLD = r"""
/* BN + sign on codes: per channel (c channels of hw codes), 2 where (flip ? q <= tau : q >= tau),
   else 0 */
static void qx_threshold_{tag}(int32_t c, int32_t hw, const {tt} *tau, const uint8_t *flip, const uint8_t *x,
                              uint8_t *y)
{
    int32_t i, j;
    for (i = 0; i < c; i++) {
        const int64_t t = (int64_t)tau[i];
        for (j = 0; j < hw; j++) {
            const int64_t q = (int64_t)x[i * hw + j];
            y[i * hw + j] = (uint8_t)((flip[i] ? q <= t : q >= t) ? 2 : 0);
        }
    }
}
"""

OPS = {
    "clamp": r"""
static void qx_clamp_codes(int32_t n, int32_t lo, int32_t hi, const uint8_t *x, uint8_t *y)
{
    int32_t i;
    for (i = 0; i < n; i++)
        y[i] = qx_clamp(x[i], lo, hi);
}
""",
    "max_pool2d": r"""
/* on codes; padding (0) never wins over a code, so only the plane's positions are visited */
static void qx_max_pool(const qx_pool_geom *g, const uint8_t *x, uint8_t *y)
{
    int32_t c, oy, ox, ky, kx;
    for (c = 0; c < g->c; c++)
        for (oy = 0; oy < g->ho; oy++)
            for (ox = 0; ox < g->wo; ox++) {
                uint8_t best = 0;
                for (ky = 0; ky < g->kh; ky++) {
                    const int32_t iy = oy * g->sh - g->ph + ky * g->dh;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    for (kx = 0; kx < g->kw; kx++) {
                        const int32_t ix = ox * g->sw - g->pw + kx * g->dw;
                        if (ix >= 0 && ix < g->w && x[(c * g->h + iy) * g->w + ix] > best)
                            best = x[(c * g->h + iy) * g->w + ix];
                    }
                }
                y[(c * g->ho + oy) * g->wo + ox] = best;
            }
}
""",
    "avg_pool2d": r"""
/* (sum + k / 2) / k on codes over k = kh * kw positions, padding holding the zero point */
static void qx_avg_pool(const qx_pool_geom *g, const uint8_t *x, uint8_t *y)
{
    int32_t c, oy, ox, ky, kx;
    const uint32_t k = (uint32_t)(g->kh * g->kw);
    for (c = 0; c < g->c; c++)
        for (oy = 0; oy < g->ho; oy++)
            for (ox = 0; ox < g->wo; ox++) {
                uint32_t sum = 0;
                for (ky = 0; ky < g->kh; ky++)
                    for (kx = 0; kx < g->kw; kx++) {
                        const int32_t iy = oy * g->sh - g->ph + ky * g->dh;
                        const int32_t ix = ox * g->sw - g->pw + kx * g->dw;
                        if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                            sum += (uint32_t)g->pad;
                        else
                            sum += x[(c * g->h + iy) * g->w + ix];
                    }
                y[(c * g->ho + oy) * g->wo + ox] = (uint8_t)((sum + k / 2u) / k);
            }
}
""",
    "global_avg_pool2d": r"""
static void qx_global_avg(int32_t c, int32_t hw, const uint8_t *x, uint8_t *y)
{
    int32_t i, j;
    for (i = 0; i < c; i++) {
        uint32_t sum = 0;
        for (j = 0; j < hw; j++)
            sum += x[i * hw + j];
        y[i] = (uint8_t)((sum + (uint32_t)hw / 2u) / (uint32_t)hw);
    }
}
""",
    "reshape": r"""
static void qx_copy(int32_t n, const uint8_t *x, uint8_t *y)
{
    int32_t i;
    for (i = 0; i < n; i++)
        y[i] = x[i];
}
""",
    "channel_shuffle": r"""
/* output channel a * groups + b is input channel b * (c / groups) + a */
static void qx_shuffle(int32_t c, int32_t hw, int32_t groups, const uint8_t *x, uint8_t *y)
{
    int32_t a, b, j;
    const int32_t per = c / groups;
    for (a = 0; a < per; a++)
        for (b = 0; b < groups; b++)
            for (j = 0; j < hw; j++)
                y[(a * groups + b) * hw + j] = x[(b * per + a) * hw + j];
}
""",
    "table": r"""
static void qx_table(int32_t n, const uint8_t *table, const uint8_t *x, uint8_t *y)
{
    int32_t i;
    for (i = 0; i < n; i++)
        y[i] = table[x[i]];
}
""",
    "prelu": r"""
/* v = q - zero_in; y = clamp(zero_out + (v >= 0 ? rshift(v m_pos, s_pos) : rshift(v m_neg[c], s_neg[c])),
   0, 255) over c channels of hw codes; p: zero_in, zero_out, m_pos; m_neg may be negative */
static void qx_prelu(int32_t c, int32_t hw, const int32_t *p, uint8_t s_pos, const int32_t *m_neg,
                     const uint8_t *s_neg, const uint8_t *x, uint8_t *y)
{
    int32_t i, j;
    for (i = 0; i < c; i++)
        for (j = 0; j < hw; j++) {
            const int64_t v = (int64_t)x[i * hw + j] - (int64_t)p[0];
            const int64_t r = v >= 0 ? qx_rshift(v * (int64_t)p[2], s_pos) : qx_rshift(v * (int64_t)m_neg[i], s_neg[i]);
            y[i * hw + j] = qx_clamp((int64_t)p[1] + r, 0, 255);
        }
}
""",
    "cat": r"""
/* one input of a channel cat, requantized: y = clamp(zero_out + rshift((q - zero_in) m, s), 0, 255);
   p: zero_in, zero_out, m */
static void qx_requantize(int32_t n, const int32_t *p, uint8_t s, const uint8_t *x, uint8_t *y)
{
    int32_t i;
    for (i = 0; i < n; i++)
        y[i] = qx_clamp((int64_t)p[1] + qx_rshift((int64_t)((int32_t)x[i] - p[0]) * (int64_t)p[2], s), 0, 255);
}
""",
    "add": r"""
static void qx_add(int32_t n, const int32_t *p, const uint8_t *s, const uint8_t *a, const uint8_t *b, uint8_t *y)
{   /* p: zero_a, zero_b, zero_out, m_a, m_b */
    int32_t i;
    for (i = 0; i < n; i++)
        y[i] = qx_clamp((int64_t)p[2] + qx_rshift((int64_t)((int32_t)a[i] - p[0]) * (int64_t)p[3], s[0])
                        + qx_rshift((int64_t)((int32_t)b[i] - p[1]) * (int64_t)p[4], s[1]), 0, 255);
}
""",
}


def _fill(template: str, wt: str, acc: str, zoned: bool, per_channel_zin: bool, one_channel: bool = False) -> str:
    """Weights as stored: w - Z_w itself, or (zoned) uint8 codes and a per-output-channel zero
    point zw[o] subtracted in the kernel: the product is the same integer, so bit-exactness holds
    with padding too (folding Z_w into the bias would need the receptive field's sum of x - Z_x,
    which padding changes at the borders).  per_channel_zin: the input's zero point is zin[c], one
    per channel (the network's input with per-channel --mean), instead of the geometry's one.
    one_channel: the accumulation's text, which takes one output channel's zw and its group's zin."""
    atag = acc_tag(wt, acc, zoned, per_channel_zin)
    param = "" if not zoned else " int32_t zw," if one_channel else " const int32_t *zw,"
    return (template.replace("{zparam}", param).replace("{zarg}", " zw[o]," if zoned else "")
            .replace("{zinparam}", " const int32_t *zin," if per_channel_zin else "")
            .replace("{zinarg}", " zin + c0," if per_channel_zin else "")
            .replace("{zin}", "zin[c]" if per_channel_zin else "g->zin")
            .replace("{wexpr}", "((int32_t)wc[ky * g->kw + kx] - zw)" if zoned else "wc[ky * g->kw + kx]")
            .replace("{atag}", atag).replace("{wt}", wt).replace("{acc}", acc))  # fmt: skip


def _wtag(wt: str, zoned: bool) -> str:
    return wt[:-2].replace("int", "w") + ("z" if zoned else "")


def _zc(per_channel_zin: bool) -> str:
    return "_zc" if per_channel_zin else ""


def acc_tag(wt: str, acc: str, zoned: bool = False, per_channel_zin: bool = False) -> str:
    return f"{_wtag(wt, zoned)}_{acc[:-2].replace('int', 'a')}{_zc(per_channel_zin)}"


def acc_kernel(wt: str, acc: str, zoned: bool = False, per_channel_zin: bool = False) -> tuple[str, str]:
    """(function name, C text) of the accumulation both epilogues below call."""
    tag = acc_tag(wt, acc, zoned, per_channel_zin)
    return f"qx_acc_{tag}", _fill(ACC.replace("{tag}", tag), wt, acc, zoned, per_channel_zin, one_channel=True)


def conv_kernel(wt: str, bt: str, acc: str, zoned: bool = False, per_channel_zin: bool = False) -> tuple[str, str]:
    """(function name, C text) of the requantizing byte kernel."""
    tag = f"{_wtag(wt, zoned)}_{bt[:-2].replace('int', 'b')}_{acc[:-2].replace('int', 'a')}{_zc(per_channel_zin)}"
    return f"qx_conv_{tag}", _fill(CONV.replace("{tag}", tag).replace("{bt}", bt), wt, acc, zoned, per_channel_zin)


def sign_kernel(wt: str, tt: str, acc: str, zoned: bool = False, per_channel_zin: bool = False) -> tuple[str, str]:
    """(function name, C text) of the sign-mode byte kernel."""
    tag = f"sign_{_wtag(wt, zoned)}_{tt[:-2].replace('int', 't')}_{acc[:-2].replace('int', 'a')}{_zc(per_channel_zin)}"
    return f"qx_conv_{tag}", _fill(CONV_SIGN.replace("{tag}", tag).replace("{tt}", tt), wt, acc, zoned, per_channel_zin)


def threshold_tag(tt: str) -> str:
    return tt[:-2].replace("int", "t")


def threshold_kernel(tt: str) -> str:
    return THRESHOLD.replace("{tag}", threshold_tag(tt)).replace("{tt}", tt)
