// FP8 E4M3 -> f32 in SIMD lanes by integer steps, exact and shared by the
// matmul's FP8 weights and the FP8 KV cache: the byte is sign-extended to 32
// bits, shifted so that its 4 exponent and 3 mantissa bits land on the top of
// f32's exponent and mantissa fields, masked to them and the sign, and
// multiplied by 2^120 (the bias difference, 127 - 7): normal and subnormal
// codes both come out exact. The NaN codes (0x7F, 0xFF) come out +-480, above
// E4M3's largest finite value (448): FP8 weights never hold them (the
// quantizer saturates); the KV cache, where F32ToFp8E4M3 stores a NaN as 0x7F,
// checks for them (kernels/attention.cc).
// Per-target header (Highway's -inl.h pattern): include after hwy/highway.h
// inside a file compiled through foreach_target.

#if defined(MOERACK_KERNELS_FP8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MOERACK_KERNELS_FP8_INL_H_
#undef MOERACK_KERNELS_FP8_INL_H_
#else
#define MOERACK_KERNELS_FP8_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>

HWY_BEFORE_NAMESPACE();
namespace moerack {
namespace HWY_NAMESPACE {

// Lanes(df) codes at `p` as f32.
template <class DF>
HWY_INLINE hwy::HWY_NAMESPACE::Vec<DF> DecodeFp8E4M3(DF df, const uint8_t* p) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::Rebind<int8_t, DF> di8;
  const hn::Rebind<int32_t, DF> di32;
  const auto d = hn::PromoteTo(di32, hn::LoadU(di8, reinterpret_cast<const int8_t*>(p)));
  const auto bits = hn::And(hn::ShiftLeft<20>(d), hn::Set(di32, static_cast<int32_t>(0x87F00000u)));
  return hn::Mul(hn::BitCast(df, bits), hn::Set(df, 0x1p120f));
}

}  // namespace HWY_NAMESPACE
}  // namespace moerack
HWY_AFTER_NAMESPACE();

#endif  // MOERACK_KERNELS_FP8_INL_H_
