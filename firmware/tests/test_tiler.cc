// Tile geometry, edge replication of the model input and the output crop.
#include "tinymirnet/pixels.h"
#include "test_framework.h"
#include "tinymirnet/tiler.h"

using namespace tinymirnet;

namespace {

// A pixel value that differs between nearby positions, so misplaced reads show up.
uint16_t pattern_pixel(int x, int y) {
  return static_cast<uint16_t>(((static_cast<uint32_t>(x) * 2654435761u) ^
                                (static_cast<uint32_t>(y) * 40503u)) >> 7);
}

uint16_t g_frame[kFramePixels];

void fill_pattern_frame() {
  for (int y = 0; y < kFrameHeight; ++y) {
    for (int x = 0; x < kFrameWidth; ++x) g_frame[y * kFrameWidth + x] = pattern_pixel(x, y);
  }
}

int clamp(int value, int size) { return value < 0 ? 0 : (value >= size ? size - 1 : value); }

void check_tiles_cover_every_pixel_once() {
  static uint8_t coverage[kFramePixels];
  for (uint8_t& count : coverage) count = 0;
  bool inside = true;
  for (int index = 0; index < kTileCount; ++index) {
    const TileRect tile = tile_rect(index);
    inside = inside && tile.x >= 0 && tile.y >= 0 && tile.width > 0 && tile.height > 0 &&
             tile.x + tile.width <= kFrameWidth && tile.y + tile.height <= kFrameHeight &&
             tile.width <= kTileSize && tile.height <= kTileSize;
    for (int y = tile.y; y < tile.y + tile.height; ++y) {
      for (int x = tile.x; x < tile.x + tile.width; ++x) ++coverage[y * kFrameWidth + x];
    }
  }
  CHECK(inside);
  bool exactly_once = true;
  for (uint8_t count : coverage) exactly_once = exactly_once && count == 1;
  CHECK(exactly_once);
}

void check_row_major_order_and_last_tile() {
  const TileRect second = tile_rect(1);
  CHECK_EQ(second.x, kTileSize);
  CHECK_EQ(second.y, 0);
  const TileRect next_row = tile_rect(kTilesX);
  CHECK_EQ(next_row.x, 0);
  CHECK_EQ(next_row.y, kTileSize);
  const TileRect last = tile_rect(kTileCount - 1);
  CHECK_EQ(last.x, (kTilesX - 1) * kTileSize);
  CHECK_EQ(last.y, (kTilesY - 1) * kTileSize);
  CHECK_EQ(last.width, kFrameWidth - (kTilesX - 1) * kTileSize);
  CHECK_EQ(last.height, kFrameHeight - (kTilesY - 1) * kTileSize);
}

// Every model input pixel is the frame pixel at the clamped coordinates, quantized.
void check_model_input_replicates_edges() {
  fill_pattern_frame();
  static int8_t input[kModelTensorBytes];
  bool all_match = true;
  for (int index = 0; index < kTileCount; ++index) {
    const TileRect tile = tile_rect(index);
    extract_model_input(g_frame, PixelFormat::kRgb565, tile, kInputTable, input);
    for (int row = 0; row < kModelInputSize; ++row) {
      for (int column = 0; column < kModelInputSize; ++column) {
        const int x = clamp(tile.x - kHalo + column, kFrameWidth);
        const int y = clamp(tile.y - kHalo + row, kFrameHeight);
        const Rgb888 rgb = rgb565_to_rgb888(pattern_pixel(x, y));
        const int8_t* q = input + (row * kModelInputSize + column) * kChannels;
        all_match = all_match && q[0] == quantize_input(rgb.r) &&
                    q[1] == quantize_input(rgb.g) && q[2] == quantize_input(rgb.b);
      }
    }
  }
  CHECK(all_match);
  // The corner tile's top-left halo is all the frame's corner pixel.
  extract_model_input(g_frame, PixelFormat::kRgb565, tile_rect(0), kInputTable, input);
  const Rgb888 corner = rgb565_to_rgb888(g_frame[0]);
  CHECK_EQ(input[0], quantize_input(corner.r));
  CHECK_EQ(input[(kHalo * kModelInputSize + kHalo) * kChannels], quantize_input(corner.r));
}

void check_output_crop() {
  static int8_t output[kModelTensorBytes];
  for (size_t i = 0; i < kModelTensorBytes; ++i) output[i] = static_cast<int8_t>(i * 7);
  static uint8_t rgb[kMaxTileRgbBytes];
  fill_pattern_frame();
  const TileRect tile = tile_rect(kTileCount - 1);  // partial in both directions
  crop_model_output(output, g_frame, PixelFormat::kRgb565, tile, rgb);
  bool all_match = true;
  int raised = 0;
  for (int row = 0; row < tile.height; ++row) {
    for (int column = 0; column < tile.width; ++column) {
      const Rgb888 raw = rgb565_to_rgb888(g_frame[(tile.y + row) * kFrameWidth + tile.x + column]);
      const uint8_t raws[3] = {raw.r, raw.g, raw.b};
      const int source = ((kHalo + row) * kModelInputSize + kHalo + column) * kChannels;
      uint8_t model[3] = {dequantize_output(output[source]), dequantize_output(output[source + 1]),
                          dequantize_output(output[source + 2])};
      keep_colour(raw, model);
      for (int channel = 0; channel < kChannels; ++channel) {
        const int target = (row * tile.width + column) * kChannels + channel;
        const uint8_t floor = highlight_floor(raws[channel]);
        all_match = all_match && rgb[target] == (model[channel] > floor ? model[channel] : floor);
        raised += model[channel] < floor;
      }
    }
  }
  CHECK(all_match);
  CHECK(raised > 0);  // the pattern frame has highlights the model output falls below
}

void check_highlight_floor() {
  // The table of model/exposure.py: 0 up to 127, 92 % of the value from 153 (0.6) on.
  CHECK_EQ(highlight_floor(0), 0);
  CHECK_EQ(highlight_floor(127), 0);
  CHECK_EQ(highlight_floor(128), 6);
  CHECK_EQ(highlight_floor(153), 141);
  CHECK_EQ(highlight_floor(255), 235);
  bool kept = true;
  for (int p = 153; p < 256; ++p) kept = kept && highlight_floor(static_cast<uint8_t>(p)) * 10 >= p * 9;
  CHECK(kept);
  CHECK_EQ(keep_highlight(50, 255), 235);
  CHECK_EQ(keep_highlight(250, 255), 250);
  CHECK_EQ(keep_highlight(3, 100), 3);
}

void check_colour_guard() {
  // The values of tests/test_exposure.py (model/exposure.py keep_colour).
  uint8_t grey[3] = {150, 150, 150};
  keep_colour(Rgb888{200, 100, 50}, grey);  // S = 350: the camera's chromaticity, the model's sum
  CHECK_EQ(grey[0], 255);
  CHECK_EQ(grey[1], 129);
  CHECK_EQ(grey[2], 64);
  uint8_t dark[3] = {30, 31, 32};
  keep_colour(Rgb888{10, 10, 10}, dark);  // S = 30: the model's colour
  CHECK_EQ(dark[0], 30);
  CHECK_EQ(dark[2], 32);
  uint8_t mid[3] = {90, 90, 90};
  keep_colour(Rgb888{60, 30, 10}, mid);  // S = 100: a blend
  CHECK_EQ(mid[0], 134);
  CHECK_EQ(mid[1], 85);
  CHECK_EQ(mid[2], 52);
}

}  // namespace

void tiler_tests() {
  check_tiles_cover_every_pixel_once();
  check_row_major_order_and_last_tile();
  check_model_input_replicates_edges();
  check_output_crop();
  check_highlight_floor();
  check_colour_guard();
}
