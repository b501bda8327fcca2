#include "tinymirnet/pixels.h"

namespace tinymirnet {

constexpr InputQuantizationTable kInputTable = make_input_table(kInputScale, kInputZeroPoint);
constexpr OutputDequantizationTable kOutputTable =
    make_output_table(kOutputScale, kOutputZeroPoint);

uint32_t exposure_gain_q8(const uint16_t* frame, PixelFormat format, int width, int height,
                          uint32_t target) {
  if (target == 0) return kGainOneQ8;
  uint64_t sum = 0;
  for (int y = 0; y < height; ++y) {
    const uint16_t* row = frame + static_cast<size_t>(y) * static_cast<size_t>(width);
    for (int x = 0; x < width; ++x) {
      const Rgb888 p = row_pixel(row, x, width, format);
      sum += static_cast<uint32_t>(p.r) + p.g + p.b;
    }
  }
  const size_t pixel_count = static_cast<size_t>(width) * static_cast<size_t>(height);
  if (sum == 0) return kMaxGainQ8;
  const uint64_t values = 3u * static_cast<uint64_t>(pixel_count);
  const uint64_t gain = (static_cast<uint64_t>(target) * values * 256u + sum / 2u) / sum;
  if (gain < kGainOneQ8) return kGainOneQ8;
  if (gain > kMaxGainQ8) return kMaxGainQ8;
  return static_cast<uint32_t>(gain);
}

void make_gain_table(uint32_t gain_q8, uint8_t table[256]) {
  for (int pixel = 0; pixel < 256; ++pixel) {
    table[pixel] = apply_gain_q8(static_cast<uint8_t>(pixel), gain_q8);
  }
}

void make_exposed_input_table(uint32_t gain_q8, InputQuantizationTable* table) {
  uint8_t gained[256];
  make_gain_table(gain_q8, gained);
  for (int pixel = 0; pixel < 256; ++pixel) {
    table->values[pixel] = kInputTable.values[gained[pixel]];
  }
}

}  // namespace tinymirnet
