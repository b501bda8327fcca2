// Pixel conversions between the camera, the model and the host.
//
// A frame is one uint16 per pixel, row-major, in one of two formats (PixelFormat):
// RGB565 -> RGB888 replicates the high bits into the low ones:
//   r8 = (r5 << 3) | (r5 >> 2), g8 = (g6 << 2) | (g6 >> 4), b8 = (b5 << 3) | (b5 >> 2).
// YUV422 is the OV7675's byte stream Y0 U Y1 V for each pair of pixels (YUYV) in memory order,
// so the even pixel holds Y0 | U << 8 and the odd one Y1 | V << 8 (rows have an even width).
// It gives 8 bits of luma per pixel where RGB565 gives 5 or 6 per channel. Each pixel's chroma
// is interpolated between its pair's and the nearer neighbour pair's, 3:1 (libjpeg's "fancy"
// triangle upsampling; at a row's ends the pair's own): for pair k with chroma c_k,
//   c(2k) = (3 c_k + c_(k-1) + 2) >> 2,  c(2k+1) = (3 c_k + c_(k+1) + 2) >> 2.
// Repeating c_k for both pixels instead leaves a 2-pixel chroma pattern that the exposure gain
// amplifies and that lines up with every tile boundary (tile sizes are even). Then YUV -> RGB888
// is full-range BT.601 (the camera's COM15 = 00-FF) in integers, >> flooring, d = U-128, e = V-128:
//   r = Y + ((359 e + 128) >> 8), g = Y - ((88 d + 183 e + 128) >> 8), b = Y + ((454 d + 128) >> 8)
// each clamped to [0, 255].
// RGB888 -> model input (int8), all arithmetic in IEEE float32, in this order:
//   q = clamp(round((p / 255.0f) / kInputScale) + kInputZeroPoint, -128, 127)
// model output (int8) -> RGB888:
//   p = clamp(round((float)(q - kOutputZeroPoint) * kOutputScale * 255.0f), 0, 255)
// round() rounds half away from zero (like std::lround). Both directions are 256-entry
// tables computed at compile time, so host and device agree bit for bit.
//
// Exposure normalisation (model/exposure.py): before tiling, the whole frame is scaled to the
// mean brightness kExposureTarget with one gain, in integers so that Python and C++ agree:
//   S = sum of the frame's RGB888 values, N = 3 * pixels
//   gain_q8 = clamp((kExposureTarget * N * 256 + S / 2) / S, 256, 32 * 256)   (S = 0: 32 * 256)
//   x = p * gain_q8;  p' = (x + 128) >> 8 up to x = kKnee * 256, then a soft knee that keeps
//   slope 1 at kKnee and bends towards 255 without clipping (d = x - kKnee * 256, H = 255 - kKnee):
//   p' = kKnee + (d * H + (d + 256 H) / 2) / (d + 256 H);  finally p' = max(p', p).
// The gain is folded into a per-frame copy of the input table (p -> q(p')), so it costs
// nothing per pixel. kExposureTarget 0 leaves frames unchanged (gain 256).
//
// Highlight guard (model/exposure.py): every output channel value is raised to at least
// floor(p) of the same pixel's RGB888 camera value p (before the gain):
//   floor(p) = min((236 * p + 128) >> 8, max(0, ((p - 127) * 1413 + 128) >> 8))
// 0 up to 127, 92 % of p from 153 (0.6) on: no highlight is darkened by 10 % or more.
//
// Colour guard (model/exposure.py), before the highlight guard: with S = R + G + B of the camera
// pixel and S' of the model's output pixel,
//   w = clamp(((S - 77) * 256 + 19) / 38, 0, 256),  k = min(255, (p * S' + S / 2) / S)
//   out = (model * (256 - w) + k * w + 128) >> 8
// i.e. where the camera saw colour (S >= 115) the output keeps its chromaticity.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tinymirnet/model_settings.h"

namespace tinymirnet {

struct Rgb888 {
  uint8_t r;
  uint8_t g;
  uint8_t b;
};

// The frame formats (the values are the protocol's ENHANCE pixel formats).
enum class PixelFormat : uint8_t { kRgb565 = 0, kYuv422 = 1 };

constexpr Rgb888 rgb565_to_rgb888(uint16_t pixel) {
  const unsigned r5 = (pixel >> 11) & 0x1Fu;
  const unsigned g6 = (pixel >> 5) & 0x3Fu;
  const unsigned b5 = pixel & 0x1Fu;
  return Rgb888{static_cast<uint8_t>((r5 << 3) | (r5 >> 2)),
                static_cast<uint8_t>((g6 << 2) | (g6 >> 4)),
                static_cast<uint8_t>((b5 << 3) | (b5 >> 2))};
}

// Rounds half away from zero, exactly, for |value| < 2^31 (a constexpr std::lround):
// the truncation and the fractional part value - trunc(value) are both exact in float.
constexpr int32_t round_half_away_from_zero(float value) {
  const int32_t truncated = static_cast<int32_t>(value);
  const float fraction = value - static_cast<float>(truncated);
  if (fraction >= 0.5f) return truncated + 1;
  if (fraction <= -0.5f) return truncated - 1;
  return truncated;
}

constexpr int32_t clamp_int(int32_t value, int32_t low, int32_t high) {
  return value < low ? low : (value > high ? high : value);
}

// Right shift that floors negative values too (C++14 leaves >> of a negative value to the
// implementation; GCC shifts arithmetically, and this spells it out).
constexpr int32_t floor_shift8(int32_t value) {
  return value >= 0 ? value >> 8 : -((-value + 255) >> 8);
}

constexpr Rgb888 yuv_to_rgb888(uint8_t y, uint8_t u, uint8_t v) {
  const int32_t d = static_cast<int32_t>(u) - 128;
  const int32_t e = static_cast<int32_t>(v) - 128;
  return Rgb888{static_cast<uint8_t>(clamp_int(y + floor_shift8(359 * e + 128), 0, 255)),
                static_cast<uint8_t>(clamp_int(y - floor_shift8(88 * d + 183 * e + 128), 0, 255)),
                static_cast<uint8_t>(clamp_int(y + floor_shift8(454 * d + 128), 0, 255))};
}

// Pixel x of a frame row (`row` points at its first pixel; `width` even) as RGB888.
inline Rgb888 row_pixel(const uint16_t* row, int x, int width, PixelFormat format) {
  if (format == PixelFormat::kRgb565) return rgb565_to_rgb888(row[x]);
  const int pair = x & ~1;
  // the neighbour pair on x's side: the previous one for an even x, the next for an odd x
  int neighbour = (x & 1) ? pair + 2 : pair - 2;
  if (neighbour < 0 || neighbour >= width) neighbour = pair;
  const uint32_t u = ((3u * (row[pair] >> 8) + (row[neighbour] >> 8) + 2u) >> 2);
  const uint32_t v = ((3u * (row[pair + 1] >> 8) + (row[neighbour + 1] >> 8) + 2u) >> 2);
  return yuv_to_rgb888(static_cast<uint8_t>(row[x] & 0xFFu), static_cast<uint8_t>(u),
                       static_cast<uint8_t>(v));
}

struct InputQuantizationTable {
  int8_t values[256];  // indexed by the 8-bit pixel value
};

struct OutputDequantizationTable {
  uint8_t values[256];  // indexed by the int8 model output + 128
};

constexpr InputQuantizationTable make_input_table(float scale, int32_t zero_point) {
  InputQuantizationTable table{};
  for (int pixel = 0; pixel < 256; ++pixel) {
    const float real = static_cast<float>(pixel) / 255.0f;
    const int32_t q = round_half_away_from_zero(real / scale) + zero_point;
    table.values[pixel] = static_cast<int8_t>(clamp_int(q, -128, 127));
  }
  return table;
}

constexpr OutputDequantizationTable make_output_table(float scale, int32_t zero_point) {
  OutputDequantizationTable table{};
  for (int q = -128; q < 128; ++q) {
    const float real = static_cast<float>(q - zero_point) * scale;
    const int32_t pixel = round_half_away_from_zero(real * 255.0f);
    table.values[q + 128] = static_cast<uint8_t>(clamp_int(pixel, 0, 255));
  }
  return table;
}

constexpr uint32_t kGainOneQ8 = 256;
constexpr uint32_t kMaxGainQ8 = 32 * 256;

constexpr uint32_t kKnee = 192;  // model/exposure.py KNEE

// One pixel value through the frame's gain and the soft knee (above). 32-bit arithmetic is
// enough: x <= 255 * 32 * 256 and d * H < 2^27.
inline uint8_t apply_gain_q8(uint8_t pixel, uint32_t gain_q8) {
  const uint32_t x = static_cast<uint32_t>(pixel) * gain_q8;
  uint32_t out;
  if (x <= kKnee * 256u) {
    out = (x + 128u) >> 8;
  } else {
    const uint32_t h = 255u - kKnee;
    const uint32_t d = x - kKnee * 256u;
    out = kKnee + (d * h + (d + 256u * h) / 2u) / (d + 256u * h);
  }
  return static_cast<uint8_t>(out > pixel ? out : pixel);
}

// table[p] = apply_gain_q8(p, gain_q8): one frame's gain as a 256-entry table.
void make_gain_table(uint32_t gain_q8, uint8_t table[256]);

// The gain that brings the width x height frame's mean (of its RGB888 values) to `target`.
uint32_t exposure_gain_q8(const uint16_t* frame, PixelFormat format, int width, int height,
                          uint32_t target);

// table[p] = the model input for pixel p of a frame with this gain.
void make_exposed_input_table(uint32_t gain_q8, InputQuantizationTable* table);

extern const InputQuantizationTable kInputTable;
extern const OutputDequantizationTable kOutputTable;

inline int8_t quantize_input(uint8_t pixel) { return kInputTable.values[pixel]; }

inline uint8_t dequantize_output(int8_t q) { return kOutputTable.values[q + 128]; }

constexpr uint8_t highlight_floor(uint8_t p) {
  return static_cast<uint8_t>(
      ((236 * static_cast<int32_t>(p) + 128) >> 8) <
              clamp_int(((static_cast<int32_t>(p) - 127) * 1413 + 128) >> 8, 0, 255)
          ? (236 * static_cast<int32_t>(p) + 128) >> 8
          : clamp_int(((static_cast<int32_t>(p) - 127) * 1413 + 128) >> 8, 0, 255));
}

constexpr int32_t kColourFrom = 77;  // RGB888 sums: 0.3 and 0.45 of 255 per channel
constexpr int32_t kColourTo = 115;

// The colour guard on one output pixel `rgb` (3 values, in place) of camera pixel `raw`.
inline void keep_colour(const Rgb888& raw, uint8_t* rgb) {
  const int32_t s_in = static_cast<int32_t>(raw.r) + raw.g + raw.b;
  if (s_in <= kColourFrom) return;  // w = 0: the model's colour
  const int32_t span = kColourTo - kColourFrom;
  const int32_t w = clamp_int(((s_in - kColourFrom) * 256 + span / 2) / span, 0, 256);
  const int32_t s_out = static_cast<int32_t>(rgb[0]) + rgb[1] + rgb[2];
  const uint8_t raws[3] = {raw.r, raw.g, raw.b};
  for (int c = 0; c < 3; ++c) {
    const int32_t kept = clamp_int((raws[c] * s_out + s_in / 2) / s_in, 0, 255);
    rgb[c] = static_cast<uint8_t>((rgb[c] * (256 - w) + kept * w + 128) >> 8);
  }
}

// The output value of a channel whose camera value was `raw`: the model's, raised to the floor.
inline uint8_t keep_highlight(uint8_t model_value, uint8_t raw) {
  const uint8_t floor = highlight_floor(raw);
  return model_value > floor ? model_value : floor;
}

}  // namespace tinymirnet
