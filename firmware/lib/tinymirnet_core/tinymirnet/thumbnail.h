// The frame-context network's per-frame step (model/thumbnail.py, model/network.py): the
// thumbnail of the exposure-normalised frame, quantized for the context model, and the
// context model's output requantized for the tile model. Only used when kFrameContext.
//
// Thumbnail pixel (i, j) is the rounded mean, per channel, of the frame pixels in columns
// [i*W/w, (i+1)*W/w) and rows [j*H/h, (j+1)*H/h) (integer division), after the frame's
// exposure gain (pixels.h):  mean = (sum + count / 2) / count.  QQVGA to 32 x 24 is an exact
// 5 x 5 box. The same integers as Python, so the context model sees the same bytes.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tinymirnet/model_settings.h"
#include "tinymirnet/pixels.h"

namespace tinymirnet {

constexpr size_t kThumbnailBytes =
    static_cast<size_t>(kThumbnailWidth) * kThumbnailHeight * kChannels;

// int8 -> int8 between two quantizations, in float32 as Python's requantize():
//   out = clamp(round((q - zp_in) * scale_in / scale_out) + zp_out, -128, 127)
struct RequantizationTable {
  int8_t values[256];  // indexed by q + 128
};

constexpr RequantizationTable make_requantization_table(float scale_in, int32_t zero_point_in,
                                                        float scale_out, int32_t zero_point_out) {
  RequantizationTable table{};
  for (int q = -128; q < 128; ++q) {
    const float real = (static_cast<float>(q) - static_cast<float>(zero_point_in)) * scale_in;
    const int32_t out = round_half_away_from_zero(real / scale_out) + zero_point_out;
    table.values[q + 128] = static_cast<int8_t>(clamp_int(out, -128, 127));
  }
  return table;
}

// The context model's input table (8-bit thumbnail value -> int8) and the context model's
// output -> the tile model's context input.
extern const InputQuantizationTable kThumbnailInputTable;
extern const RequantizationTable kContextRequantizationTable;

// Writes the kThumbnailHeight x kThumbnailWidth x kChannels int8 thumbnail (HWC) of the
// frame with exposure gain `gain_q8`, quantized with kThumbnailInputTable.
void make_thumbnail_input(const uint16_t* frame, PixelFormat format, uint32_t gain_q8,
                          int8_t* thumbnail);

// In place: the context model's kContextValues outputs -> the tile model's context input.
void requantize_context(int8_t* context, size_t count);

}  // namespace tinymirnet
