/* The lightning indexer's scores for one decode query, fused: attnlab.fused compiles this file.
 *
 *     I_s = sum_j w_j ReLU(q_j . k_s),   s = 0 .. n-1,   j = 0 .. H^I - 1          (DeepSeek-V3.2, eq. 1)
 *
 * (the softmax scale (d^I)^-1/2 is already folded into w). PyTorch computes this as a matmul (n, d^I) x
 * (d^I, H^I), a ReLU and a second matmul, writing the (n, H^I) logits in between; a matmul only H^I = 4
 * columns wide runs far below the CPU's matmul rate. This loop reads each key once and writes one score:
 * for every key, H^I dot products of d^I numbers, the ReLU, the weighted sum. DeepSeek's own indexer is one
 * fused kernel for the same reason (fp8_index_kernel in DeepSeek-V3.2-Exp's inference/kernel.py).
 *
 * Layout: k (b, n, d) rows of d contiguous floats, batch stride k_batch_stride; q (b, h, d); w (b, h);
 * out (b, n). The caller guarantees d % 16 == 0 and h % 4 == 0 (it pads the heads with zero weights).
 * Vectors are GCC/Clang vector extensions, so the same source compiles for AVX-512, AVX2, SSE or NEON;
 * on x86-64 Linux, target_clones builds an AVX-512 and an AVX2 version and picks one when the library loads.
 */

typedef float v16 __attribute__((vector_size(64)));  /* 16 floats: one 512-bit register, or 2 x 256, 4 x 128 */
typedef float v4 __attribute__((vector_size(16)));
typedef int i4 __attribute__((vector_size(16)));

#if defined(__x86_64__) && defined(__linux__) && !defined(ATTNLAB_NO_CLONES)
#define DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DISPATCH
#endif

/* SHUFFLE(a, b, i0, ..., i15): lane i of the result is lane i_i of the 32 lanes of a then b. Clang and
   GCC 12+ have __builtin_shufflevector; older GCC has __builtin_shuffle with the indices as a vector. */
#if (defined(__clang__) || __GNUC__ >= 12) && !defined(ATTNLAB_GNU_SHUFFLE)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int i16 __attribute__((vector_size(64)));
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (i16){__VA_ARGS__})
#endif

static inline v16 load16(const float *p) {  /* unaligned load of 16 floats */
    v16 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

/* The four lane sums of a, b, c, e at once, as (sum a, sum b, sum c, sum e): 16 -> 8 -> 4 -> 2 -> 1 lanes. */
static inline v4 sum4x16(v16 a, v16 b, v16 c, v16 e) {
    v16 ab = SHUFFLE(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
           + SHUFFLE(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);  /* a: 8 | b: 8 */
    v16 ce = SHUFFLE(c, e, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
           + SHUFFLE(c, e, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);  /* c: 8 | e: 8 */
    v16 y = SHUFFLE(ab, ce, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27)
          + SHUFFLE(ab, ce, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);  /* 4 lanes each */
    y += SHUFFLE(y, y, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);  /* 2 lanes each */
    y += SHUFFLE(y, y, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);  /* 1 lane each */
    return (v4){y[0], y[4], y[8], y[12]};
}

typedef long long index_t;  /* 64-bit on every platform, as ctypes.c_longlong */

static inline __attribute__((always_inline)) void score_keys(const float *restrict k, index_t n, index_t d,
                                                             const float *restrict q, const float *restrict w,
                                                             index_t h, float *restrict out) {
    for (index_t s = 0; s < n; ++s) {
        const float *k_s = k + s * d;
        v4 total = {0};
        for (index_t j = 0; j < h; j += 4) {  /* four heads at a time: q_j . k_s for j .. j + 3 */
            const float *q_j = q + j * d;
            v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (index_t i = 0; i < d; i += 16) {
                v16 key = load16(k_s + i);
                a0 += load16(q_j + i) * key;
                a1 += load16(q_j + d + i) * key;
                a2 += load16(q_j + 2 * d + i) * key;
                a3 += load16(q_j + 3 * d + i) * key;
            }
            v4 dots = sum4x16(a0, a1, a2, a3);
            v4 relu = (v4)((i4)dots & ((dots > (v4){0}) | (dots != dots)));  /* ReLU(q_j . k_s); NaN stays NaN */
            v4 w_j;
            __builtin_memcpy(&w_j, w + j, sizeof w_j);
            total += w_j * relu;
        }
        out[s] = (total[0] + total[1]) + (total[2] + total[3]);  /* sum over the heads */
    }
}  /* score_keys */

DISPATCH
void index_scores_f32(const float *k, index_t k_batch_stride, index_t batch, index_t n, index_t d, const float *q,
                      const float *w, index_t h, float *out) {
    for (index_t b = 0; b < batch; ++b) {
        const float *k_b = k + b * k_batch_stride, *q_b = q + b * h * d, *w_b = w + b * h;
        float *out_b = out + b * n;
        if (d == 64 && h == 4)  /* the common shape, with every loop bound known to the compiler */
            score_keys(k_b, n, 64, q_b, w_b, 4, out_b);
        else
            score_keys(k_b, n, d, q_b, w_b, h, out_b);
    }
}

/* Which version the loader picked, for the benchmark's report. */
const char *index_scores_target(void) {
#if defined(__x86_64__) && defined(__linux__) && !defined(ATTNLAB_NO_CLONES)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2)";
    return "x86-64 (SSE2)";
#elif defined(__aarch64__)
    return "arm64 (NEON)";
#else
    return "the compiler's default target";
#endif
}
