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
    extract_model_input(g_frame, tile, kInputTable, input);
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
  extract_model_input(g_frame, tile_rect(0), kInputTable, input);
  const Rgb888 corner = rgb565_to_rgb888(g_frame[0]);
  CHECK_EQ(input[0], quantize_input(corner.r));
  CHECK_EQ(input[(kHalo * kModelInputSize + kHalo) * kChannels], quantize_input(corner.r));
}

void check_output_crop() {
  static int8_t output[kModelTensorBytes];
  for (size_t i = 0; i < kModelTensorBytes; ++i) output[i] = static_cast<int8_t>(i * 7);
  static uint8_t rgb[kMaxTileRgbBytes];
  const TileRect tile = tile_rect(kTileCount - 1);  // partial in both directions
  crop_model_output(output, tile, rgb);
  bool all_match = true;
  for (int row = 0; row < tile.height; ++row) {
    for (int column = 0; column < tile.width; ++column) {
      for (int channel = 0; channel < kChannels; ++channel) {
        const int source = ((kHalo + row) * kModelInputSize + kHalo + column) * kChannels + channel;
        const int target = (row * tile.width + column) * kChannels + channel;
        all_match = all_match && rgb[target] == dequantize_output(output[source]);
      }
    }
  }
  CHECK(all_match);
}

}  // namespace

void tiler_tests() {
  check_tiles_cover_every_pixel_once();
  check_row_major_order_and_last_tile();
  check_model_input_replicates_edges();
  check_output_crop();
}
