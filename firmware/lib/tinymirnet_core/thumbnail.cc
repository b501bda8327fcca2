#include "tinymirnet/thumbnail.h"

namespace tinymirnet {

const InputQuantizationTable kThumbnailInputTable =
    make_input_table(kContextInputScale, kContextInputZeroPoint);
const RequantizationTable kContextRequantizationTable = make_requantization_table(
    kContextOutputScale, kContextOutputZeroPoint, kTileContextScale, kTileContextZeroPoint);

namespace {
// Divisors that are never 0, also in a one-model build (where no thumbnail is made).
constexpr int kBoxesX = kThumbnailWidth > 0 ? kThumbnailWidth : 1;
constexpr int kBoxesY = kThumbnailHeight > 0 ? kThumbnailHeight : 1;
static_assert(!kFrameContext || (kThumbnailWidth <= kFrameWidth && kThumbnailHeight <= kFrameHeight),
              "the thumbnail must not be larger than the frame");
}  // namespace

void make_thumbnail_input(const uint16_t* frame, PixelFormat format, uint32_t gain_q8,
                          int8_t* thumbnail) {
  uint8_t gained[256];  // one division per value, not per pixel
  make_gain_table(gain_q8, gained);
  for (int j = 0; j < kThumbnailHeight; ++j) {
    const int y0 = j * kFrameHeight / kBoxesY;
    const int y1 = (j + 1) * kFrameHeight / kBoxesY;
    for (int i = 0; i < kThumbnailWidth; ++i) {
      const int x0 = i * kFrameWidth / kBoxesX;
      const int x1 = (i + 1) * kFrameWidth / kBoxesX;
      uint32_t sum_r = 0, sum_g = 0, sum_b = 0;
      for (int y = y0; y < y1; ++y) {
        const uint16_t* row = frame + static_cast<size_t>(y) * kFrameWidth;
        for (int x = x0; x < x1; ++x) {
          const Rgb888 p = row_pixel(row, x, kFrameWidth, format);
          sum_r += gained[p.r];
          sum_g += gained[p.g];
          sum_b += gained[p.b];
        }
      }
      const uint32_t count = static_cast<uint32_t>((y1 - y0) * (x1 - x0));
      int8_t* out = thumbnail + (static_cast<size_t>(j) * kThumbnailWidth + i) * kChannels;
      out[0] = kThumbnailInputTable.values[(sum_r + count / 2) / count];
      out[1] = kThumbnailInputTable.values[(sum_g + count / 2) / count];
      out[2] = kThumbnailInputTable.values[(sum_b + count / 2) / count];
    }
  }
}

void requantize_context(int8_t* context, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    context[i] = kContextRequantizationTable.values[context[i] + 128];
  }
}

}  // namespace tinymirnet
