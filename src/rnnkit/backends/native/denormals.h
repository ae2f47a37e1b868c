// Flush-to-zero for the native loops: while a FlushDenormals is alive, the thread's SSE/AVX
// arithmetic treats denormal inputs as zero (DAZ) and writes zero for denormal results
// (FTZ). A gradient that decays through many steps (the adding problem's, carried back
// over a thousand steps) otherwise crosses the denormal range, where each operation takes
// about a hundred times longer: the backward of a 1000-step sequence ran 3 to 5 times
// slower, and the matrix products on its gradients with it. Only magnitudes below
// 1.2e-38 (float32; 2.2e-308 in float64) change, to zero, as on GPUs. The previous mode
// is restored on exit, so torch's own kernels see the thread as it was.
#pragma once

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>

namespace rnnkit_native {

struct FlushDenormals {
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace rnnkit_native
#else
namespace rnnkit_native {
struct FlushDenormals {};  // other architectures: the hardware's default
}  // namespace rnnkit_native
#endif
