/*
 * Fused CPU kernels for the hot layers of spatial networks.
 *
 * Compiled on first use by neural_kernels._native (plain C, no Python or torch
 * headers) and called through ctypes on contiguous buffers. Every function has an
 * eager PyTorch twin in the package; the tests compare the two.
 *
 * 1. nk_abrelu_dual_{f64,f32}: the dual of phi(x) = a min(x, 0) + b max(x, 0)
 *    (ReLU: a = 0, b = 1) on n entries, with c = k / norm (norm = sqrt(q1 q2)):
 *        nngp' = norm ((a-b)^2 / (2 pi) (sin(theta) - theta c) + (a^2+b^2)/2 c)
 *        ntk'  = ntk ((a^2+b^2)/2 - (a-b)^2 / (2 pi) theta),   theta = arccos(c).
 *    Correlations within `snap - 1` of +-1 are snapped to +-1, zero norms give c = 0.
 *
 * 2. nk_conv_pairs_{f64,f32}: the convolution of a full-layout covariance. Input
 *    (batch, n0, n0, n1, n1, n2, n2) (interleaved position pairs, absent axes of size
 *    one first), output (batch, m0, m0, m1, m1, m2, m2), each tap t of axis i shifting
 *    both positions of the pair alike:
 *        S[o, o'] = sum_t K[s o + d t - p, s o' + d t - p]   (zero outside the input)
 *        nngp' = a_nn S(nngp) + b_nn,   ntk' = a_tt S(ntk) + a_tn S(nngp) + c_t.
 *
 * 3. nk_chain_{f64,f32}: a whole chain of such layers (and pooling, Flatten, Dense after
 *    a collapse) on a block of example pairs, one pair at a time, from the inputs' Gram
 *    product to the output entries (see 3. below and neural_kernels._native.chain).
 *
 * The typed functions are written once below (NK_TYPED) and instantiated for double
 * and float by including this file into itself.
 */
#ifndef NK_TYPED

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* glibc's vector math library (libmvec) has SIMD arc-cosines; declaring them lets the
   compiler vectorise the dual loops (NK_LIBMVEC is set by the loader when present). */
#if defined(NK_LIBMVEC)
#pragma omp declare simd notinbranch
extern double acos(double);
#pragma omp declare simd notinbranch
extern float acosf(float);
#endif

#define NK_NOINLINE __attribute__((noinline))

#if defined(__GNUC__) && !defined(__clang__)
#define NK_IVDEP _Pragma("GCC ivdep")
#else
#define NK_IVDEP
#endif

#define NK_INV_2PI 0.15915494309189533577

typedef struct {
    int64_t n[3], m[3], taps[3], stride[3], dil[3], before[3];
    int64_t w;     /* padded row length of the last axis (general path) */
    int64_t reach; /* largest shift of a last-axis tap (flat path) */
    int flat;      /* stride one and same size on the last axis: the flat path */
} nk_geom;

static nk_geom nk_geometry(const int64_t *n, const int64_t *m, const int64_t *taps,
                           const int64_t *stride, const int64_t *dil, const int64_t *before) {
    nk_geom g;
    for (int i = 0; i < 3; i++) {
        g.n[i] = n[i];
        g.m[i] = m[i];
        g.taps[i] = taps[i];
        g.stride[i] = stride[i];
        g.dil[i] = dil[i];
        g.before[i] = before[i];
    }
    g.w = (m[2] - 1) * stride[2] + (taps[2] - 1) * dil[2] + 1;
    if (g.w < before[2] + n[2]) g.w = before[2] + n[2];
    g.reach = 0;
    for (int64_t t = 0; t < taps[2]; t++) {
        int64_t off = t * dil[2] - before[2];
        if (off < 0) off = -off;
        if (off > g.reach) g.reach = off;
    }
    g.flat = stride[2] == 1 && m[2] == n[2];
    return g;
}

/* Scratch entries nk_conv_pairs needs: copies of both kernels (and masks). */
int64_t nk_conv_scratch(const int64_t *n, const int64_t *m, const int64_t *taps,
                        const int64_t *stride, const int64_t *dil, const int64_t *before) {
    nk_geom g = nk_geometry(n, m, taps, stride, dil, before);
    int64_t pair = n[0] * n[0] * n[1] * n[1] * n[2] * n[2];
    /* four output planes (window sums of both kernels, norms and their reciprocals) live
       here too: on the
       heap, as a plane of a long sequence (L x L) is too large for a thread's stack */
    int64_t planes = 4 * m[2] * m[2];
    if (g.flat) return planes + taps[2] * n[2] * n[2] + 4 * pair + 4 * g.reach * (n[2] + 1);
    return planes + 2 * n[0] * n[0] * n[1] * n[1] * n[2] * g.w;
}

/* 3. The layer chain of a block of example pairs (nk_chain_*), one op after another on
   one pair at a time, so that every op reads the previous one's output from cache. An
   op is NK_OPI integers and NK_OPD doubles:
       ints:    kind, fused dual (conv), n[3], m[3], taps[3], stride[3], dil[3], before[3],
                positions M of a row of the square-root variances of the dual's input
       doubles: a_nn, b_nn, a_tn, a_tt, c_t, slope a, slope b, scale
   kinds: NK_CONV   the convolution of 2. (then the dual, if fused);
          NK_ACT    the dual alone: norm[p, p'] = sq1[p] sq2[p'];
          NK_POOL   window sums on each axis of a pair separately (AvgPool / SumPool),
                    times scale: both kernels alike;
          NK_GLOBAL scale times the sum of all entries (global pooling);
          NK_DIAG   scale times the sum of the same-position entries (Flatten);
          NK_AFFINE nngp' = a_nn nngp + b_nn, ntk' = a_tt ntk + a_tn nngp + c_t, entrywise
                    (Dense on the collapsed kernel).
   Each op has four pointers, set where it has a dual: the square-root variances of all
   first and all second inputs, (N1, M) and (N2, M), then their reciprocals (the first
   times the snap factor); the chunk's rows start at r0, its columns at s0. */
enum { NK_CONV = 0, NK_ACT = 1, NK_POOL = 2, NK_GLOBAL = 3, NK_DIAG = 4, NK_AFFINE = 5 };
#define NK_OPI 21
#define NK_OPD 8

static int64_t nk_pair_entries(const int64_t *s) { return s[0] * s[0] * s[1] * s[1] * s[2] * s[2]; }

#define NK_TYPED
#define T double
#define NK_NAME(x) x##_f64
#define NK_ACOS acos
#define NK_SQRT sqrt
#include __FILE__
#undef T
#undef NK_NAME
#undef NK_ACOS
#undef NK_SQRT
#define T float
#define NK_NAME(x) x##_f32
#define NK_ACOS acosf
#define NK_SQRT sqrtf
#include __FILE__

#else /* NK_TYPED: the functions for one floating type T */

/* The arc-cosine dual of n entries (see the top of the file), from k_in and t_in (the
   NTK, may be 0) to k_out and t_out; in and out may be the same buffers. */
static void NK_NAME(nk_dual)(int64_t n, const T *k_in, const T *t_in, const T *norm, T *k_out,
                             T *t_out, T d2, T s2, T sn) {
    /* two copies of the loop: a test of t_in inside it would stop its vectorisation */
    if (t_in) {
        NK_IVDEP
        for (int64_t x = 0; x < n; x++) {
            T q = norm[x];
            T c = q > (T)0 ? k_in[x] / q * sn : (T)0;
            c = c > (T)1 ? (T)1 : (c < (T)-1 ? (T)-1 : c);
            T th = NK_ACOS(c);
            T s = (T)1 - c * c;
            s = NK_SQRT(s > (T)0 ? s : (T)0);
            k_out[x] = (d2 * (s - th * c) + s2 * c) * q;
            t_out[x] = t_in[x] * (s2 - d2 * th);
        }
        return;
    }
    NK_IVDEP
    for (int64_t x = 0; x < n; x++) {
        T q = norm[x];
        T c = q > (T)0 ? k_in[x] / q * sn : (T)0;
        c = c > (T)1 ? (T)1 : (c < (T)-1 ? (T)-1 : c);
        T th = NK_ACOS(c);
        T s = (T)1 - c * c;
        s = NK_SQRT(s > (T)0 ? s : (T)0);
        k_out[x] = (d2 * (s - th * c) + s2 * c) * q;
    }
}

void NK_NAME(nk_abrelu_dual)(int64_t n, const T *k, const T *norm, const T *ntk, T *out_nngp,
                             T *out_ntk, double a, double b, double snap) {
    NK_NAME(nk_dual)(n, k, ntk, norm, out_nngp, out_ntk, (T)((a - b) * (a - b) * NK_INV_2PI),
                     (T)(0.5 * (a * a + b * b)), (T)snap);
}

/* nk_dual with the reciprocal norms given (rnorm: 1 / norm times the snap factor, as
   the eager path's rsqrt; zero norms give any finite c, times a zero norm): a product
   instead of a division and a test per entry. */
static void NK_NAME(nk_dual_r)(int64_t n, const T *k_in, const T *t_in, const T *norm,
                               const T *rnorm, T *k_out, T *t_out, T d2, T s2) {
    if (t_in) {
        NK_IVDEP
        for (int64_t x = 0; x < n; x++) {
            T c = k_in[x] * rnorm[x];
            c = c > (T)1 ? (T)1 : (c < (T)-1 ? (T)-1 : c);
            T th = NK_ACOS(c);
            T s = (T)1 - c * c;
            s = NK_SQRT(s > (T)0 ? s : (T)0);
            k_out[x] = (d2 * (s - th * c) + s2 * c) * norm[x];
            t_out[x] = t_in[x] * (s2 - d2 * th);
        }
        return;
    }
    NK_IVDEP
    for (int64_t x = 0; x < n; x++) {
        T c = k_in[x] * rnorm[x];
        c = c > (T)1 ? (T)1 : (c < (T)-1 ? (T)-1 : c);
        T th = NK_ACOS(c);
        T s = (T)1 - c * c;
        s = NK_SQRT(s > (T)0 ? s : (T)0);
        k_out[x] = (d2 * (s - th * c) + s2 * c) * norm[x];
    }
}

/* Everything one call needs: geometry, affine coefficients, optional activation. */
typedef struct {
    nk_geom g;
    T ann, bnn, atn, att, ct;
    int act;   /* apply the arc-cosine dual after the convolution */
    T d2, s2, sn;
    int64_t cols;             /* example pairs are (i, j), batch index i * cols + j */
    const T *sq1, *sq2;       /* sqrt of the variances after the convolution */
    const T *rs1, *rs2;       /* with them (or null): rsqrt of the variances, rs1 times snap */
} NK_NAME(nk_job);

/* Affine maps (and the dual) of one output plane, from its window sums, to the output. */
/* Vectors of 64 bytes (GCC/clang vector types; unaligned, may alias): loops written in
   them have no scalar prologue or epilogue and no alias checks, which on rows of a few
   entries cost more than the rows. */
typedef T NK_NAME(nk_vec) __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));

/* out[o, p] = a[o] c[p] for o, p < m: the norms of one plane of a dual. */
static void NK_NAME(nk_outer)(int64_t m, const T *a, const T *c, T *restrict out) {
    typedef NK_NAME(nk_vec) V;
    const int64_t L = (int64_t)(sizeof(V) / sizeof(T));
    if (m % L == 0) {
        for (int64_t o = 0; o < m; o++, out += m)
            for (int64_t p = 0; p < m; p += L) *(V *)(out + p) = a[o] * *(const V *)(c + p);
        return;
    }
    for (int64_t o = 0; o < m; o++, out += m)
        for (int64_t p = 0; p < m; p++) out[p] = a[o] * c[p];
}

/* The dual of one output plane (o0, p0, o1, p1), in place on rn and rt (rt null: no
   NTK), when the job has one. */
static void NK_NAME(nk_finish_dual)(const NK_NAME(nk_job) *job, int64_t b, int64_t o0,
                                    int64_t p0, int64_t o1, int64_t p1, T *normbuf, T *rn,
                                    T *rt) {
    const int64_t m1 = job->g.m[1], m2 = job->g.m[2], P = m2 * m2;
    if (job->act) {
        const int64_t M = job->g.m[0] * m1 * m2;
        const int64_t at1 = (b / job->cols) * M + (o0 * m1 + o1) * m2;
        const int64_t at2 = (b % job->cols) * M + (p0 * m1 + p1) * m2;
        NK_NAME(nk_outer)(m2, job->sq1 + at1, job->sq2 + at2, normbuf);
        if (job->rs1) {
            T *rnorm = normbuf + P;
            NK_NAME(nk_outer)(m2, job->rs1 + at1, job->rs2 + at2, rnorm);
            NK_NAME(nk_dual_r)(P, rn, rt, normbuf, rnorm, rn, rt, job->d2, job->s2);
        } else {
            NK_NAME(nk_dual)(P, rn, rt, normbuf, rn, rt, job->d2, job->s2, job->sn);
        }
    }
}

static void NK_NAME(nk_finish)(const NK_NAME(nk_job) *job, int64_t b, int64_t o0, int64_t p0,
                               int64_t o1, int64_t p1, T *sn, T *st, T *normbuf, T *rn,
                               T *rt) {
    const int64_t P = job->g.m[2] * job->g.m[2];
    /* st is given exactly when rt is (the NTK is computed) */
    if (st) {
        NK_IVDEP
        for (int64_t x = 0; x < P; x++) rt[x] = job->att * st[x] + job->atn * sn[x] + job->ct;
    }
    NK_IVDEP
    for (int64_t x = 0; x < P; x++) rn[x] = job->ann * sn[x] + job->bnn;
    NK_NAME(nk_finish_dual)(job, b, o0, p0, o1, p1, normbuf, rn, st ? rt : 0);
}

/* Sum of `count` rows (each at base + offsets[u], times the mask row at mask_offsets[u]
   where that offset is not negative) into out, and when base2 is not null the same rows
   of base2 into out2 (the NTK beside the NNGP: one pass reads the offsets and the mask
   once for both): the flat path's sums along the last axis. Running sums are held in
   registers across all rows as vectors (no scalar epilogue, which a compiler makes of an
   array of running sums). */
static void NK_NAME(nk_sum_rows)(int64_t n, const T *base, const T *base2,
                                 const int64_t *offsets, const T *mask,
                                 const int64_t *mask_offsets, int64_t count, T *out, T *out2) {
    typedef NK_NAME(nk_vec) V;
    const int64_t L = (int64_t)(sizeof(V) / sizeof(T));
    int64_t x = 0;
    if (base2) {
        for (; x + L <= n; x += L) {
            V a = {0}, b = {0};
            for (int64_t u = 0; u < count; u++) {
                V va = *(const V *)(base + offsets[u] + x);
                V vb = *(const V *)(base2 + offsets[u] + x);
                if (mask_offsets[u] >= 0) {
                    V mk = *(const V *)(mask + mask_offsets[u] + x);
                    va *= mk;
                    vb *= mk;
                }
                a += va;
                b += vb;
            }
            *(V *)(out + x) = a;
            *(V *)(out2 + x) = b;
        }
    } else {
        for (; x + 2 * L <= n; x += 2 * L) {
            V a0 = {0}, a1 = {0};
            for (int64_t u = 0; u < count; u++) {
                const T *src = base + offsets[u] + x;
                V v0 = *(const V *)src, v1 = *(const V *)(src + L);
                if (mask_offsets[u] >= 0) {
                    const T *mk = mask + mask_offsets[u] + x;
                    v0 *= *(const V *)mk;
                    v1 *= *(const V *)(mk + L);
                }
                a0 += v0;
                a1 += v1;
            }
            *(V *)(out + x) = a0;
            *(V *)(out + x + L) = a1;
        }
    }
    for (; x < n; x++) {
        T acc = 0, acc2 = 0;
        for (int64_t u = 0; u < count; u++) {
            const T mk = mask_offsets[u] >= 0 ? mask[mask_offsets[u] + x] : (T)1;
            acc += mk * base[offsets[u] + x];
            if (base2) acc2 += mk * base2[offsets[u] + x];
        }
        out[x] = acc;
        if (base2) out2[x] = acc2;
    }
}

/* The plane pass of the flat path with the layer's affine maps as its epilogue, straight
   into the output plane: out_n = ann S(yn) + bnn and, when out_t is not null,
   out_t = att S(yt) + atn S(yn) + c_t, S the sum of the `count` rows at offsets (yt
   null: S(yt) = 0, the input NTK of a first layer). */
static void NK_NAME(nk_sum_affine)(int64_t n, const T *yn, const T *yt, const int64_t *offsets,
                                   int64_t count, const NK_NAME(nk_job) *job, T *out_n,
                                   T *out_t) {
    typedef NK_NAME(nk_vec) V;
    const int64_t L = (int64_t)(sizeof(V) / sizeof(T));
    const T ann = job->ann, bnn = job->bnn, att = job->att, atn = job->atn, ct = job->ct;
    int64_t x = 0;
    for (; x + L <= n; x += L) {
        V a = {0}, b = {0};
        for (int64_t u = 0; u < count; u++) {
            a += *(const V *)(yn + offsets[u] + x);
            if (yt) b += *(const V *)(yt + offsets[u] + x);
        }
        if (out_t) *(V *)(out_t + x) = att * b + atn * a + ct;
        *(V *)(out_n + x) = ann * a + bnn;
    }
    for (; x < n; x++) {
        T a = 0, b = 0;
        for (int64_t u = 0; u < count; u++) {
            a += yn[offsets[u] + x];
            if (yt) b += yt[offsets[u] + x];
        }
        if (out_t) out_t[x] = att * b + atn * a + ct;
        out_n[x] = ann * a + bnn;
    }
}

/* Flat path, one example pair. Stride one and output size = input size on the last
   axis: each tap of that axis is one constant shift of the flattened (n2 x n2) plane,
   masked where a position falls into the padding. The filter is separable: first every
   input plane is summed over the last axis's taps (Y), then each output plane over the
   planes the other axes' taps select. The taps read up to `reach (n2 + 1)` entries
   beyond the pair (bn, bt), where the mask zeroes them: those entries must be finite. */
static void NK_NAME(nk_flat_pair)(const NK_NAME(nk_job) *job, int64_t b, const T *bn,
                                  const T *bt, T *rn, T *rt, T *scratch) {
    const nk_geom *g = &job->g;
    const int64_t n0 = g->n[0], n1 = g->n[1], n2 = g->n[2], P = n2 * n2;
    const int64_t planes = n0 * n0 * n1 * n1, in_pair = planes * P;
    T *normbuf = scratch + 2 * P; /* after two planes the general path uses */
    T *mask = normbuf + 2 * P; /* normbuf: norms, then reciprocal norms */
    T *yn = mask + g->taps[2] * P, *yt = yn + in_pair;
    const int64_t taps2 = g->taps[2];
    int64_t shift[taps2], mask_at[taps2];
    for (int64_t t = 0; t < taps2; t++) {
        int64_t off = t * g->dil[2] - g->before[2];
        shift[t] = off * (n2 + 1);
        mask_at[t] = off == 0 ? -1 : t * P; /* the unshifted tap is never masked */
        for (int64_t o = 0; o < n2; o++)
            for (int64_t p = 0; p < n2; p++)
                mask[t * P + o * n2 + p] =
                    (o + off >= 0 && o + off < n2 && p + off >= 0 && p + off < n2) ? (T)1
                                                                                   : (T)0;
    }
    const int64_t ntaps = g->taps[0] * g->taps[1];
    int64_t tap_at[ntaps];
    for (int64_t r = 0; r < planes; r++) {
        NK_NAME(nk_sum_rows)(P, bn + r * P, bt ? bt + r * P : 0, shift, mask, mask_at, taps2,
                             yn + r * P, yt + r * P);
    }
    int64_t row = 0;
    for (int64_t o0 = 0; o0 < g->m[0]; o0++)
        for (int64_t p0 = 0; p0 < g->m[0]; p0++)
            for (int64_t o1 = 0; o1 < g->m[1]; o1++)
                for (int64_t p1 = 0; p1 < g->m[1]; p1++, row += P) {
                    /* the planes of Y the other axes' taps select */
                    int64_t nt = 0;
                    for (int64_t t0 = 0; t0 < g->taps[0]; t0++) {
                        int64_t off0 = t0 * g->dil[0] - g->before[0];
                        int64_t i0 = o0 * g->stride[0] + off0;
                        int64_t j0 = p0 * g->stride[0] + off0;
                        if (i0 < 0 || i0 >= n0 || j0 < 0 || j0 >= n0) continue;
                        for (int64_t t1 = 0; t1 < g->taps[1]; t1++) {
                            int64_t off1 = t1 * g->dil[1] - g->before[1];
                            int64_t i1 = o1 * g->stride[1] + off1;
                            int64_t j1 = p1 * g->stride[1] + off1;
                            if (i1 < 0 || i1 >= n1 || j1 < 0 || j1 >= n1) continue;
                            tap_at[nt++] = (((i0 * n0 + j0) * n1 + i1) * n1 + j1) * P;
                        }
                    }
                    T *on = rn + row, *ot = rt ? rt + row : 0;
                    NK_NAME(nk_sum_affine)(P, yn, bt ? yt : 0, tap_at, nt, job, on, ot);
                    NK_NAME(nk_finish_dual)(job, b, o0, p0, o1, p1, normbuf, on, ot);
                }
}

/* Flat path over a batch of pairs: all but the first and last pair read their margins
   inside the input buffer; those two are copied between zero margins. */
static void NK_NAME(nk_conv_flat)(const NK_NAME(nk_job) *job, int64_t batch, const T *kn,
                                  const T *kt, T *on, T *ot, T *scratch) {
    const nk_geom *g = &job->g;
    const int64_t n2 = g->n[2], P = n2 * n2;
    const int64_t in_pair = g->n[0] * g->n[0] * g->n[1] * g->n[1] * P;
    const int64_t out_pair = g->m[0] * g->m[0] * g->m[1] * g->m[1] * P;
    const int64_t margin = g->reach * (n2 + 1);
    T *pn = scratch + 4 * P + g->taps[2] * P + 2 * in_pair;
    T *pt = pn + in_pair + 2 * margin;
    for (int64_t q = 0; q < margin; q++) {
        pn[q] = pn[margin + in_pair + q] = 0;
        pt[q] = pt[margin + in_pair + q] = 0;
    }
    for (int64_t b = 0; b < batch; b++) {
        const T *bn = kn + b * in_pair, *bt = kt ? kt + b * in_pair : 0;
        if (b == 0 || b == batch - 1) {
            memcpy(pn + margin, bn, sizeof(T) * in_pair);
            bn = pn + margin;
            if (kt) {
                memcpy(pt + margin, bt, sizeof(T) * in_pair);
                bt = pt + margin;
            }
        }
        NK_NAME(nk_flat_pair)(job, b, bn, bt, on + b * out_pair, ot ? ot + b * out_pair : 0,
                              scratch);
    }
}

/* One output plane (o0, p0, o1, p1) of the general path: acc (m2 x m2) = sum over taps of
   the padded input P (rows of length g->w, zero-padded on the last axis). */
static void NK_NAME(nk_plane)(const nk_geom *g, const T *P, T *acc, int64_t o0, int64_t p0,
                              int64_t o1, int64_t p1) {
    const int64_t n0 = g->n[0], n1 = g->n[1], n2 = g->n[2], m2 = g->m[2];
    const int64_t s2 = g->stride[2], w = g->w, lpad = g->before[2];
    for (int64_t q = 0; q < m2 * m2; q++) acc[q] = 0;
    for (int64_t t0 = 0; t0 < g->taps[0]; t0++) {
        int64_t off0 = t0 * g->dil[0] - g->before[0];
        int64_t i0 = o0 * g->stride[0] + off0, j0 = p0 * g->stride[0] + off0;
        if (i0 < 0 || i0 >= n0 || j0 < 0 || j0 >= n0) continue;
        for (int64_t t1 = 0; t1 < g->taps[1]; t1++) {
            int64_t off1 = t1 * g->dil[1] - g->before[1];
            int64_t i1 = o1 * g->stride[1] + off1, j1 = p1 * g->stride[1] + off1;
            if (i1 < 0 || i1 >= n1 || j1 < 0 || j1 >= n1) continue;
            const T *plane = P + (((i0 * n0 + j0) * n1 + i1) * n1 + j1) * n2 * w;
            for (int64_t t2 = 0; t2 < g->taps[2]; t2++) {
                int64_t off2 = t2 * g->dil[2] - g->before[2];
                for (int64_t o2 = 0; o2 < m2; o2++) {
                    int64_t i2 = o2 * s2 + off2;
                    if (i2 < 0 || i2 >= n2) continue;
                    const T *src = plane + i2 * w + off2 + lpad;
                    T *a = acc + o2 * m2;
                    NK_IVDEP
                    for (int64_t q = 0; q < m2; q++) a[q] += src[q * s2];
                }
            }
        }
    }
}

/* Copy one example pair (rows of the last axis) into the zero-padded scratch. */
static void NK_NAME(nk_pad)(const nk_geom *g, const T *src, T *P) {
    const int64_t rows = g->n[0] * g->n[0] * g->n[1] * g->n[1] * g->n[2];
    const int64_t n2 = g->n[2], w = g->w, lpad = g->before[2];
    for (int64_t r = 0; r < rows; r++) {
        T *d = P + r * w;
        for (int64_t q = 0; q < w; q++) d[q] = 0;
        for (int64_t q = 0; q < n2; q++) d[lpad + q] = src[r * n2 + q];
    }
}

static void NK_NAME(nk_conv_run)(const NK_NAME(nk_job) *job, int64_t batch, const T *kn,
                                 const T *kt, T *on, T *ot, T *scratch) {
    const nk_geom *g = &job->g;
    if (g->flat) {
        NK_NAME(nk_conv_flat)(job, batch, kn, kt, on, ot, scratch);
        return;
    }
    const int64_t *n = g->n, *m = g->m;
    const int64_t in_pair = n[0] * n[0] * n[1] * n[1] * n[2] * n[2];
    const int64_t plane = m[2] * m[2];
    const int64_t out_pair = m[0] * m[0] * m[1] * m[1] * plane;
    const int64_t rows = n[0] * n[0] * n[1] * n[1] * n[2];
    T *acc_n = scratch, *acc_t = acc_n + plane, *normbuf = acc_t + plane;
    T *pn = normbuf + 2 * plane, *pt = pn + rows * g->w;
    for (int64_t b = 0; b < batch; b++) {
        NK_NAME(nk_pad)(g, kn + b * in_pair, pn);
        if (kt) NK_NAME(nk_pad)(g, kt + b * in_pair, pt);
        T *rn = on + b * out_pair;
        T *rt = ot ? ot + b * out_pair : 0;
        int64_t row = 0;
        for (int64_t o0 = 0; o0 < m[0]; o0++)
            for (int64_t p0 = 0; p0 < m[0]; p0++)
                for (int64_t o1 = 0; o1 < m[1]; o1++)
                    for (int64_t p1 = 0; p1 < m[1]; p1++, row += plane) {
                        NK_NAME(nk_plane)(g, pn, acc_n, o0, p0, o1, p1);
                        if (kt) NK_NAME(nk_plane)(g, pt, acc_t, o0, p0, o1, p1);
                        else
                            for (int64_t q = 0; q < plane; q++) acc_t[q] = 0;
                        NK_NAME(nk_finish)(job, b, o0, p0, o1, p1, acc_n, ot ? acc_t : 0,
                                           normbuf, rn + row, rt ? rt + row : 0);
                    }
    }
}

void NK_NAME(nk_conv_pairs)(int64_t batch, const int64_t *n, const int64_t *m,
                            const int64_t *taps, const int64_t *stride, const int64_t *dil,
                            const int64_t *before, const T *kn, const T *kt, T *on, T *ot,
                            T *scratch, double a_nn, double b_nn, double a_tn, double a_tt,
                            double c_t) {
    NK_NAME(nk_job) job;
    job.g = nk_geometry(n, m, taps, stride, dil, before);
    job.ann = (T)a_nn, job.bnn = (T)b_nn, job.atn = (T)a_tn, job.att = (T)a_tt;
    job.ct = (T)c_t;
    job.act = 0;
    job.cols = 1;
    job.sq1 = job.sq2 = 0;
    job.rs1 = job.rs2 = 0;
    NK_NAME(nk_conv_run)(&job, batch, kn, kt, on, ot, scratch);
}

/* The convolution followed by the arc-cosine dual, for a block of rows x cols example
   pairs; sq1 (rows, M) and sq2 (cols, M) are the square roots of the variances after
   the convolution, M its output positions. */
void NK_NAME(nk_conv_abrelu)(int64_t rows, int64_t cols, const int64_t *n, const int64_t *m,
                             const int64_t *taps, const int64_t *stride, const int64_t *dil,
                             const int64_t *before, const T *kn, const T *kt, const T *sq1,
                             const T *sq2, T *on, T *ot, T *scratch, double a_nn,
                             double b_nn, double a_tn, double a_tt, double c_t, double a,
                             double b, double snap) {
    NK_NAME(nk_job) job;
    job.g = nk_geometry(n, m, taps, stride, dil, before);
    job.ann = (T)a_nn, job.bnn = (T)b_nn, job.atn = (T)a_tn, job.att = (T)a_tt;
    job.ct = (T)c_t;
    job.act = 1;
    job.d2 = (T)((a - b) * (a - b) * NK_INV_2PI);
    job.s2 = (T)(0.5 * (a * a + b * b));
    job.sn = (T)snap;
    job.cols = cols;
    job.sq1 = sq1;
    job.sq2 = sq2;
    job.rs1 = job.rs2 = 0;
    NK_NAME(nk_conv_run)(&job, rows * cols, kn, kt, on, ot, scratch);
}


/* Window sums along one axis of a (outer, n, inner) array: (outer, m, inner), zero
   outside the input. The first tap in range is copied and the others added (no zeroing
   pass); rows of one entry (inner == 1, the last axis) sum in a register. */
static void NK_NAME(nk_pool_axis)(const T *in, T *out, int64_t outer, int64_t n, int64_t m,
                                  int64_t inner, int64_t w, int64_t s, int64_t before) {
    if (inner == 1) {
        for (int64_t a = 0; a < outer; a++) {
            const T *src = in + a * n;
            T *d = out + a * m;
            for (int64_t o = 0; o < m; o++) {
                T acc = 0;
                for (int64_t t = 0; t < w; t++) {
                    int64_t i = s * o + t - before;
                    if (i >= 0 && i < n) acc += src[i];
                }
                d[o] = acc;
            }
        }
        return;
    }
    for (int64_t a = 0; a < outer; a++)
        for (int64_t o = 0; o < m; o++) {
            T *d = out + (a * m + o) * inner;
            int first = 1;
            for (int64_t t = 0; t < w; t++) {
                int64_t i = s * o + t - before;
                if (i < 0 || i >= n) continue;
                const T *src = in + (a * n + i) * inner;
                if (first) {
                    memcpy(d, src, sizeof(T) * (size_t)inner);
                    first = 0;
                    continue;
                }
                NK_IVDEP
                for (int64_t c = 0; c < inner; c++) d[c] += src[c];
            }
            if (first)
                for (int64_t c = 0; c < inner; c++) d[c] = 0;
        }
}

/* Pooling of one pair: window sums on each of its six axes in turn, then the scale. */
static void NK_NAME(nk_pool_pair)(const int64_t *op, T scale, const T *in, T *out, T *tmp1,
                                  T *tmp2) {
    int64_t dims[6];
    for (int i = 0; i < 3; i++) dims[2 * i] = dims[2 * i + 1] = op[2 + i];
    const T *src = in;
    T *bufs[2] = {tmp1, tmp2};
    int which = 0;
    for (int k = 0; k < 6; k++) {
        int i = k / 2;
        int64_t n = dims[k], m = op[5 + i], w = op[8 + i], s = op[11 + i], before = op[17 + i];
        if (n == m && w == 1 && s == 1 && before == 0) continue;
        int64_t outer = 1, inner = 1;
        for (int j = 0; j < k; j++) outer *= dims[j];
        for (int j = k + 1; j < 6; j++) inner *= dims[j];
        NK_NAME(nk_pool_axis)(src, bufs[which], outer, n, m, inner, w, s, before);
        dims[k] = m;
        src = bufs[which];
        which ^= 1;
    }
    int64_t size = dims[0] * dims[1] * dims[2] * dims[3] * dims[4] * dims[5];
    for (int64_t x = 0; x < size; x++) out[x] = scale * src[x];
}

/* Sum of n entries with eight running sums (a shorter rounding chain than one). */
static T NK_NAME(nk_sum)(const T *x, int64_t n, int64_t step) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int v = 0; v < 8; v++) acc[v] += x[(i + v) * step];
    for (; i < n; i++) acc[0] += x[i * step];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* norm[p, p'] = sq1[p] sq2[p'] in the interleaved pair layout of sizes s[3]. */
static void NK_NAME(nk_outer_norm)(const int64_t *s, const T *sq1, const T *sq2, T *norm) {
    const int64_t n0 = s[0], n1 = s[1], n2 = s[2];
    for (int64_t p0 = 0; p0 < n0; p0++)
        for (int64_t q0 = 0; q0 < n0; q0++)
            for (int64_t p1 = 0; p1 < n1; p1++)
                for (int64_t q1 = 0; q1 < n1; q1++)
                    for (int64_t p2 = 0; p2 < n2; p2++) {
                        T a = sq1[(p0 * n1 + p1) * n2 + p2];
                        const T *c = sq2 + (q0 * n1 + q1) * n2;
                        for (int64_t q2 = 0; q2 < n2; q2++) *norm++ = a * c[q2];
                    }
}

/* Same-position entries of a pair of sizes s[3] (interleaved layout): d[p] = k[p, p]. */
static void NK_NAME(nk_diag)(const int64_t *s, const T *k, T *d) {
    const int64_t n0 = s[0], n1 = s[1], n2 = s[2];
    for (int64_t p0 = 0; p0 < n0; p0++)
        for (int64_t p1 = 0; p1 < n1; p1++) {
            const T *row = k + (((p0 * n0 + p0) * n1 + p1) * n1 + p1) * n2 * n2;
            for (int64_t p2 = 0; p2 < n2; p2++) *d++ = row[p2 * n2 + p2];
        }
}

/* Self mode: the square roots of the M variances v (the eager dual's: sq = sqrt(max(v,
   0)), r1 = snap / sqrt(max(v, tiny)), r2 = 1 / sqrt(max(v, tiny))). */
static void NK_NAME(nk_self_roots)(int64_t M, const T *v, T *sq, T *r1, T *r2, T snap, T tiny) {
    for (int64_t p = 0; p < M; p++) {
        T q = v[p];
        sq[p] = NK_SQRT(q > (T)0 ? q : (T)0);
        T r = (T)1 / NK_SQRT(q > tiny ? q : tiny);
        r1[p] = r * snap;
        r2[p] = r;
    }
}

/* The input pair (interleaved layout) from its rows of the Gram product g (row stride
   g_ld): entry (p, q) at g[p g_ld + q]. Kept out of line: inlined, it slowed the chain's
   loops by a few per cent (their registers and code layout). */
NK_NOINLINE static void NK_NAME(nk_copy_pair)(const int64_t *in, const T *g, int64_t g_ld, T *d) {
    typedef NK_NAME(nk_vec) V;
    const int64_t L = (int64_t)(sizeof(V) / sizeof(T)), n2 = in[2];
    for (int64_t p0 = 0; p0 < in[0]; p0++)
        for (int64_t q0 = 0; q0 < in[0]; q0++)
            for (int64_t p1 = 0; p1 < in[1]; p1++)
                for (int64_t q1 = 0; q1 < in[1]; q1++)
                    for (int64_t p2 = 0; p2 < n2; p2++, d += n2) {
                        const T *src = g + ((p0 * in[1] + p1) * n2 + p2) * g_ld +
                                       (q0 * in[1] + q1) * n2;
                        int64_t x = 0;
                        for (; x + L <= n2; x += L) *(V *)(d + x) = *(const V *)(src + x);
                        for (; x < n2; x++) d[x] = src[x];
                    }
}

/* The input pair (interleaved layout) as the product of two examples' features, each
   (channels, P) with its positions contiguous (a already divided by the channels):
   K[p, q] = sum_c a[c, p] b[c, q], written straight into d, one row of the last axis
   (n2 entries) at a time in vectors: no Gram product of the chunk in memory. */
NK_NOINLINE static void NK_NAME(nk_input_pair)(const int64_t *in, const T *a, const T *b,
                                               int64_t channels, T *restrict d) {
    typedef NK_NAME(nk_vec) V;
    const int64_t L = (int64_t)(sizeof(V) / sizeof(T));
    const int64_t P = in[0] * in[1] * in[2], n2 = in[2];
    for (int64_t p0 = 0; p0 < in[0]; p0++)
        for (int64_t q0 = 0; q0 < in[0]; q0++)
            for (int64_t p1 = 0; p1 < in[1]; p1++)
                for (int64_t q1 = 0; q1 < in[1]; q1++) {
                    const T *bq = b + (q0 * in[1] + q1) * n2;
                    for (int64_t p2 = 0; p2 < n2; p2++, d += n2) {
                        const T *ap = a + (p0 * in[1] + p1) * n2 + p2;
                        int64_t x = 0;
                        for (; x + L <= n2; x += L) {
                            V acc = ap[0] * *(const V *)(bq + x);
                            for (int64_t c = 1; c < channels; c++)
                                acc += ap[c * P] * *(const V *)(bq + c * P + x);
                            *(V *)(d + x) = acc;
                        }
                        for (; x < n2; x++) {
                            T acc = ap[0] * bq[x];
                            for (int64_t c = 1; c < channels; c++) acc += ap[c * P] * bq[c * P + x];
                            d[x] = acc;
                        }
                    }
                }
}

/* The whole chain on a block of rows x cols example pairs; see 3. at the top. The input
   is the Gram product g (rows P, cols P) with row stride g_ld (P positions of sizes
   in[3], example i's position p at row i P + p); the output pair (i, j) goes to
   on + i out_row + j out_col (and ot alike, when not null: the NTK, whose input is zero).
   Self mode (self_mode != 0, cols = 1, g the examples' own covariances (rows, P, P)
   with g_ld = P): the pairs (x_i, x_i), whose duals take their norms from the pair's own
   same-position entries (a fused convolution's dual then runs after the whole
   convolution), and recs (two per op, each null or (rows, M) for the op's M output
   positions) receive the same-position entries of every pair: recs[2k] after op k's
   convolution, before its fused dual; recs[2k + 1] after op k.
   upper != 0: the pairs with r0 + i >= s0 + j are skipped (their outputs left as they
   are: the mirror and the self pass give them). With xa given (not in self mode), the
   input pairs come from the features instead of g (nk_input_pair): xa all first inputs
   (N1, channels, P), divided by the channels, xb all second inputs (N2, channels, P),
   examples r0 + i and s0 + j.
   Returns 0, or 1 when the scratch could not be allocated. */
int NK_NAME(nk_chain)(int64_t nops, const int64_t *ops, const double *vals,
                      const void *const *ptrs, int64_t rows, int64_t cols, int64_t r0,
                      int64_t s0, const int64_t *in, const T *g, int64_t g_ld, T *on, T *ot,
                      int64_t out_row, int64_t out_col, double snap, int64_t self_mode,
                      void *const *recs, int64_t upper, const T *xa, const T *xb,
                      int64_t channels) {
    /* buffer sizes: the largest pair (and its positions), the largest flat-path margin,
       the conv scratch */
    int64_t big = nk_pair_entries(in), maxpos = in[0] * in[1] * in[2], margin = 0, conv = 0;
    for (int64_t k = 0; k < nops; k++) {
        const int64_t *op = ops + k * NK_OPI;
        int64_t a = nk_pair_entries(op + 2), b = nk_pair_entries(op + 5);
        int64_t pa = op[2] * op[3] * op[4], pb = op[5] * op[6] * op[7];
        if (a > big) big = a;
        if (b > big) big = b;
        if (pa > maxpos) maxpos = pa;
        if (pb > maxpos) maxpos = pb;
        if (op[0] == NK_CONV) {
            nk_geom g0 = nk_geometry(op + 2, op + 5, op + 8, op + 11, op + 14, op + 17);
            int64_t need = nk_conv_scratch(op + 2, op + 5, op + 8, op + 11, op + 14, op + 17);
            if (need > conv) conv = need;
            if (g0.flat && g0.reach * (g0.n[2] + 1) > margin) margin = g0.reach * (g0.n[2] + 1);
        }
    }
    const int64_t slot = big + 2 * margin;
    T *mem = (T *)malloc(sizeof(T) * (size_t)(4 * slot + 3 * big + conv + 4 * maxpos));
    if (!mem) return 1;
    /* the flat path reads (and masks) `margin` entries around a pair: they must be
       finite, so the margin before each slot is zeroed here, the one after each pair
       as the pair is written */
    for (int s = 0; s < 4; s++)
        for (int64_t q = 0; q < margin; q++) mem[s * slot + q] = 0;
    T *kn[2] = {mem + margin, mem + slot + margin};
    T *kt[2] = {mem + 2 * slot + margin, mem + 3 * slot + margin};
    T *tmp1 = mem + 4 * slot, *tmp2 = tmp1 + big, *norm = tmp2 + big, *scratch = norm + big;
    T *dg = scratch + conv, *sq = dg + maxpos, *ra = sq + maxpos, *rb = ra + maxpos;
    const T tiny = sizeof(T) == sizeof(double) ? (T)DBL_MIN : (T)FLT_MIN; /* finfo.tiny */
    const int64_t P = in[0] * in[1] * in[2];
    const int want_t = ot != 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            if (upper && r0 + i >= s0 + j) continue; /* left to the mirror and self pass */
            /* the input pair, interleaved: (p0, q0, p1, q1, p2, q2) */
            int cur = 0, zero_t = 1; /* the input NTK is zero */
            if (xa) NK_NAME(nk_input_pair)(in, xa + (r0 + i) * channels * P,
                                           xb + (s0 + j) * channels * P, channels, kn[0]);
            else NK_NAME(nk_copy_pair)(in, g + i * P * g_ld + j * P, g_ld, kn[0]);
            int64_t size = nk_pair_entries(in);
            for (int64_t q = 0; q < margin; q++) kn[0][size + q] = kt[0][size + q] = 0;
            for (int64_t k = 0; k < nops; k++) {
                const int64_t *op = ops + k * NK_OPI;
                const double *v = vals + k * NK_OPD;
                const T *cn = kn[cur], *ct = zero_t ? 0 : kt[cur];
                T *nn = kn[cur ^ 1], *nt = want_t ? kt[cur ^ 1] : 0;
                const void *const *ps = ptrs + 4 * k;
                const T *sq1 = ps[0] ? (const T *)ps[0] + (r0 + i) * op[20] : 0;
                const T *sq2 = ps[1] ? (const T *)ps[1] + (s0 + j) * op[20] : 0;
                const T *rs1 = ps[2] ? (const T *)ps[2] + (r0 + i) * op[20] : 0;
                const T *rs2 = ps[3] ? (const T *)ps[3] + (s0 + j) * op[20] : 0;
                const T d2 = (T)((v[5] - v[6]) * (v[5] - v[6]) * NK_INV_2PI);
                const T s2 = (T)(0.5 * (v[5] * v[5] + v[6] * v[6]));
                int64_t out_size = nk_pair_entries(op + 5);
                if (op[0] == NK_CONV) {
                    NK_NAME(nk_job) job;
                    job.g = nk_geometry(op + 2, op + 5, op + 8, op + 11, op + 14, op + 17);
                    job.ann = (T)v[0], job.bnn = (T)v[1], job.atn = (T)v[2];
                    job.att = (T)v[3], job.ct = (T)v[4];
                    job.act = (int)op[1];
                    job.d2 = d2, job.s2 = s2, job.sn = (T)snap;
                    job.cols = 1;
                    job.sq1 = sq1, job.sq2 = sq2;
                    job.rs1 = rs1, job.rs2 = rs2;
                    if (self_mode) job.act = 0; /* the dual after the whole convolution */
                    if (job.g.flat) NK_NAME(nk_flat_pair)(&job, 0, cn, ct, nn, nt, scratch);
                    else NK_NAME(nk_conv_run)(&job, 1, cn, ct, nn, nt, scratch);
                    zero_t = !want_t;
                    if (self_mode && (recs[2 * k] || op[1])) {
                        const int64_t M = op[5] * op[6] * op[7];
                        NK_NAME(nk_diag)(op + 5, nn, dg);
                        if (recs[2 * k]) memcpy((T *)recs[2 * k] + i * M, dg, sizeof(T) * M);
                        if (op[1]) {
                            NK_NAME(nk_self_roots)(M, dg, sq, ra, rb, (T)snap, tiny);
                            NK_NAME(nk_outer_norm)(op + 5, sq, sq, norm);
                            NK_NAME(nk_outer_norm)(op + 5, ra, rb, tmp1);
                            NK_NAME(nk_dual_r)(out_size, nn, nt, norm, tmp1, nn, nt, d2, s2);
                        }
                    }
                } else if (op[0] == NK_ACT) {
                    if (self_mode) {
                        NK_NAME(nk_diag)(op + 2, cn, dg);
                        NK_NAME(nk_self_roots)(op[2] * op[3] * op[4], dg, sq, ra, rb, (T)snap,
                                               tiny);
                        sq1 = sq2 = sq, rs1 = ra, rs2 = rb;
                    }
                    NK_NAME(nk_outer_norm)(op + 2, sq1, sq2, norm);
                    NK_NAME(nk_outer_norm)(op + 2, rs1, rs2, tmp1);
                    /* a zero NTK stays zero */
                    NK_NAME(nk_dual_r)(size, cn, ct, norm, tmp1, nn, ct ? nt : 0, d2, s2);
                } else if (op[0] == NK_POOL) {
                    NK_NAME(nk_pool_pair)(op, (T)v[7], cn, nn, tmp1, tmp2);
                    if (ct) NK_NAME(nk_pool_pair)(op, (T)v[7], ct, nt, tmp1, tmp2);
                } else if (op[0] == NK_GLOBAL || op[0] == NK_DIAG) {
                    /* NK_DIAG: entry (p0, p0, p1, p1, p2, p2); along the last axis
                       the same-position entries are a2 + 1 apart */
                    if (op[0] == NK_GLOBAL) {
                        nn[0] = (T)v[7] * NK_NAME(nk_sum)(cn, size, 1);
                        if (ct) nt[0] = (T)v[7] * NK_NAME(nk_sum)(ct, size, 1);
                    } else {
                        const int64_t a0 = op[2], a1 = op[3], a2 = op[4];
                        T sn = 0, st = 0;
                        for (int64_t p0 = 0; p0 < a0; p0++)
                            for (int64_t p1 = 0; p1 < a1; p1++) {
                                int64_t at = ((p0 * a0 + p0) * a1 + p1) * a1 + p1;
                                sn += NK_NAME(nk_sum)(cn + at * a2 * a2, a2, a2 + 1);
                                if (ct) st += NK_NAME(nk_sum)(ct + at * a2 * a2, a2, a2 + 1);
                            }
                        nn[0] = (T)v[7] * sn;
                        if (ct) nt[0] = (T)v[7] * st;
                    }
                } else { /* NK_AFFINE */
                    const T ann = (T)v[0], bnn = (T)v[1], atn = (T)v[2], att = (T)v[3];
                    const T c_t = (T)v[4];
                    if (nt) {
                        if (ct)
                            for (int64_t x = 0; x < size; x++)
                                nt[x] = att * ct[x] + atn * cn[x] + c_t;
                        else
                            for (int64_t x = 0; x < size; x++) nt[x] = atn * cn[x] + c_t;
                        zero_t = 0;
                    }
                    for (int64_t x = 0; x < size; x++) nn[x] = ann * cn[x] + bnn;
                }
                cur ^= 1;
                size = out_size;
                if (self_mode && recs[2 * k + 1]) {
                    const int64_t M = op[5] * op[6] * op[7]; /* output sizes (act: = input) */
                    NK_NAME(nk_diag)(op + 5, kn[cur], (T *)recs[2 * k + 1] + i * M);
                }
                for (int64_t q = 0; q < margin; q++) kn[cur][size + q] = kt[cur][size + q] = 0;
            }
            T *dn = on + i * out_row + j * out_col;
            memcpy(dn, kn[cur], sizeof(T) * size);
            if (ot) {
                T *dt = ot + i * out_row + j * out_col;
                if (zero_t)
                    for (int64_t x = 0; x < size; x++) dt[x] = 0;
                else
                    memcpy(dt, kt[cur], sizeof(T) * size);
            }
        }
    free(mem);
    return 0;
}

#endif /* NK_TYPED */
