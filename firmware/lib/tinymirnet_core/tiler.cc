#include "tinymirnet/tiler.h"

#include "tinymirnet/pixels.h"

namespace tinymirnet {
namespace {

int clamp_coordinate(int value, int size) {
  return value < 0 ? 0 : (value >= size ? size - 1 : value);
}

int min_int(int a, int b) { return a < b ? a : b; }

}  // namespace

TileRect tile_rect(int index) {
  TileRect tile;
  tile.index = index;
  tile.x = (index % kTilesX) * kTileSize;
  tile.y = (index / kTilesX) * kTileSize;
  tile.width = min_int(kTileSize, kFrameWidth - tile.x);
  tile.height = min_int(kTileSize, kFrameHeight - tile.y);
  return tile;
}

void extract_model_input(const uint16_t* frame, PixelFormat format, const TileRect& tile,
                         const InputQuantizationTable& table, int8_t* input) {
  int8_t* out = input;
  for (int row = 0; row < kModelInputSize; ++row) {
    const int source_y = clamp_coordinate(tile.y - kHalo + row, kFrameHeight);
    const uint16_t* source_row = frame + static_cast<size_t>(source_y) * kFrameWidth;
    for (int column = 0; column < kModelInputSize; ++column) {
      const int source_x = clamp_coordinate(tile.x - kHalo + column, kFrameWidth);
      const Rgb888 pixel = row_pixel(source_row, source_x, kFrameWidth, format);
      *out++ = table.values[pixel.r];
      *out++ = table.values[pixel.g];
      *out++ = table.values[pixel.b];
    }
  }
}

void crop_model_output(const int8_t* output, const uint16_t* frame, PixelFormat format,
                       const TileRect& tile, uint8_t* rgb) {
  uint8_t* out = rgb;
  for (int row = 0; row < tile.height; ++row) {
    const int8_t* in =
        output + (static_cast<size_t>(kHalo + row) * kModelInputSize + kHalo) * kChannels;
    const uint16_t* raw = frame + static_cast<size_t>(tile.y + row) * kFrameWidth;
    for (int column = 0; column < tile.width; ++column) {
      const Rgb888 p = row_pixel(raw, tile.x + column, kFrameWidth, format);
      uint8_t rgb_out[3] = {dequantize_output(in[0]), dequantize_output(in[1]), dequantize_output(in[2])};
      in += 3;
      keep_colour(p, rgb_out);
      *out++ = keep_highlight(rgb_out[0], p.r);
      *out++ = keep_highlight(rgb_out[1], p.g);
      *out++ = keep_highlight(rgb_out[2], p.b);
    }
  }
}

}  // namespace tinymirnet
