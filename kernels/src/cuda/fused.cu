// Fused kernels for the shardlab engine: CUDA twins of kernels/src/cpu/{norm,swiglu,rope,
// attention}.rs, which are their references in tests. Compiled to PTX by kernels/build.rs and
// loaded through candle's custom-module cache. Arithmetic is in f32 for every element type.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to every thread.
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    __shared__ float total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? partial[lane] : 0.f;
        v = warp_sum(v);
        if (lane == 0) total = v;
    }
    __syncthreads();
    return total;
}

// One block per row: sum = x + delta (stored rounded to T), normed = sum / sqrt(mean(sum^2) + eps) * weight.
// out holds the rows of sum, then the rows of normed.
template <typename T>
__device__ void add_rms_norm(const T* x, const T* delta, const T* weight, T* out, int dim, float eps) {
    const size_t base = (size_t)blockIdx.x * dim;
    T* sum = out;
    T* normed = out + (size_t)gridDim.x * dim;
    float squares = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const T s = from_f<T>(to_f(x[base + i]) + to_f(delta[base + i]));
        sum[base + i] = s;
        const float v = to_f(s);
        squares += v * v;
    }
    const float rms = sqrtf(block_sum(squares) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        normed[base + i] = from_f<T>(to_f(sum[base + i]) / rms * to_f(weight[i]));
}

// out = silu(gate) * up, element-wise.
template <typename T>
__device__ void swiglu(const T* gate, const T* up, T* out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = to_f(gate[i]);
        out[i] = from_f<T>(g / (1.f + __expf(-g)) * to_f(up[i]));
    }
}

// x: (tokens, heads, head_dim) rotated in place, rotate-half layout; cos/sin: (tokens, head_dim/2).
template <typename T>
__device__ void rope_in_place(T* x, const T* cos, const T* sin, int tokens, int heads, int head_dim) {
    const int half = head_dim / 2;
    const size_t n = (size_t)tokens * heads * half;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t token = idx / ((size_t)heads * half);
        const int head = (int)((idx / half) % heads);
        const int i = (int)(idx % half);
        T* h = x + (token * heads + head) * head_dim;
        const float c = to_f(cos[token * half + i]), s = to_f(sin[token * half + i]);
        const float a = to_f(h[i]), b = to_f(h[i + half]);
        h[i] = from_f<T>(a * c - b * s);
        h[i + half] = from_f<T>(b * c + a * s);
    }
}

// Decode attention, split over the keys (flash-decoding): block (head, split) runs an online
// softmax over its keys, one warp per key at a time, each lane holding head_dim/32 dimensions;
// grouped-query heads read their KV head in place (no repeated K/V). Writes the split's
// unnormalised output, running max and denominator; decode_attention_combine merges the splits.
// q: (heads, head_dim); keys/values: (kv_heads, capacity, head_dim), the first len rows used.
#define ATTN_WARPS 4
#define ATTN_MAX_DIM 256
template <typename T>
__device__ void decode_attention_split(const T* q, const T* keys, const T* values, float* part_out,
                                       float* part_max, float* part_sum, int heads, int kv_heads,
                                       int capacity, int head_dim, int len, int keys_per_split, float scale) {
    constexpr int PER_LANE = ATTN_MAX_DIM / 32;
    const int head = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    const int kv = head / (heads / kv_heads);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int dims = head_dim / 32;
    const int begin = split * keys_per_split;
    const int end = min(len, begin + keys_per_split);
    const T* k = keys + (size_t)kv * capacity * head_dim;
    const T* v = values + (size_t)kv * capacity * head_dim;

    float qr[PER_LANE], acc[PER_LANE];
    for (int d = 0; d < PER_LANE; d++) {
        qr[d] = d < dims ? to_f(q[(size_t)head * head_dim + d * 32 + lane]) * scale : 0.f;
        acc[d] = 0.f;
    }
    float running_max = -INFINITY, running_sum = 0.f;
    for (int j = begin + warp; j < end; j += ATTN_WARPS) {
        const T* kj = k + (size_t)j * head_dim;
        float dot = 0.f;
        for (int d = 0; d < dims; d++) dot += qr[d] * to_f(kj[d * 32 + lane]);
        const float score = warp_sum(dot);
        const float new_max = fmaxf(running_max, score);
        const float correction = __expf(running_max - new_max);
        const float p = __expf(score - new_max);
        running_sum = running_sum * correction + p;
        const T* vj = v + (size_t)j * head_dim;
        for (int d = 0; d < dims; d++) acc[d] = acc[d] * correction + p * to_f(vj[d * 32 + lane]);
        running_max = new_max;
    }

    // Merge the warps of the block.
    __shared__ float warp_max[ATTN_WARPS], warp_total[ATTN_WARPS];
    __shared__ float warp_acc[ATTN_WARPS][ATTN_MAX_DIM];
    if (lane == 0) { warp_max[warp] = running_max; warp_total[warp] = running_sum; }
    for (int d = 0; d < dims; d++) warp_acc[warp][d * 32 + lane] = acc[d];
    __syncthreads();
    float block_max = -INFINITY;
    for (int w = 0; w < ATTN_WARPS; w++) block_max = fmaxf(block_max, warp_max[w]);
    const size_t part = (size_t)head * splits + split;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float total = 0.f;
        for (int w = 0; w < ATTN_WARPS; w++)
            if (warp_max[w] > -INFINITY) total += warp_acc[w][i] * __expf(warp_max[w] - block_max);
        part_out[part * head_dim + i] = total;
    }
    if (threadIdx.x == 0) {
        float total = 0.f;
        for (int w = 0; w < ATTN_WARPS; w++)
            if (warp_max[w] > -INFINITY) total += warp_total[w] * __expf(warp_max[w] - block_max);
        part_max[part] = block_max;
        part_sum[part] = total;
    }
}

// One block per head, one thread per dimension: out = sum_s out_s e^(m_s - M) / sum_s l_s e^(m_s - M).
template <typename T>
__device__ void decode_attention_combine(const float* part_out, const float* part_max, const float* part_sum,
                                         T* out, int splits, int head_dim) {
    const int head = blockIdx.x;
    float global_max = -INFINITY;
    for (int s = 0; s < splits; s++) global_max = fmaxf(global_max, part_max[head * splits + s]);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float numerator = 0.f, denominator = 0.f;
        for (int s = 0; s < splits; s++) {
            const int p = head * splits + s;
            if (part_max[p] == -INFINITY) continue;
            const float w = __expf(part_max[p] - global_max);
            numerator += part_out[(size_t)p * head_dim + i] * w;
            denominator += part_sum[p] * w;
        }
        out[(size_t)head * head_dim + i] = from_f<T>(numerator / denominator);
    }
}

#define INSTANTIATE(T, SUFFIX)                                                                           \
    extern "C" __global__ void add_rms_norm_##SUFFIX(const T* x, const T* delta, const T* weight, T* out, \
                                                     int dim, float eps) {                             \
        add_rms_norm<T>(x, delta, weight, out, dim, eps);                                              \
    }                                                                                                   \
    extern "C" __global__ void swiglu_##SUFFIX(const T* gate, const T* up, T* out, size_t n) {           \
        swiglu<T>(gate, up, out, n);                                                                    \
    }                                                                                                   \
    extern "C" __global__ void rope_in_place_##SUFFIX(T* x, const T* cos, const T* sin, int tokens,      \
                                                      int heads, int head_dim) {                        \
        rope_in_place<T>(x, cos, sin, tokens, heads, head_dim);                                         \
    }                                                                                                   \
    extern "C" __global__ void decode_attention_split_##SUFFIX(                                         \
        const T* q, const T* keys, const T* values, float* part_out, float* part_max, float* part_sum,  \
        int heads, int kv_heads, int capacity, int head_dim, int len, int keys_per_split, float scale) { \
        decode_attention_split<T>(q, keys, values, part_out, part_max, part_sum, heads, kv_heads,       \
                                  capacity, head_dim, len, keys_per_split, scale);                      \
    }                                                                                                   \
    extern "C" __global__ void decode_attention_combine_##SUFFIX(const float* part_out,                  \
                                                                 const float* part_max,                 \
                                                                 const float* part_sum, T* out,         \
                                                                 int splits, int head_dim) {            \
        decode_attention_combine<T>(part_out, part_max, part_sum, out, splits, head_dim);               \
    }

INSTANTIATE(float, f32)
INSTANTIATE(__nv_bfloat16, bf16)
INSTANTIATE(__half, f16)
