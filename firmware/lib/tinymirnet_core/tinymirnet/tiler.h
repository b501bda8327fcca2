// Tile geometry and the conversions between the frame buffer and the model's tensors.
//
// The frame is cut into kTilesX x kTilesY tiles, numbered row-major. Tile (tx, ty) owns the
// output pixels [x, x + width) x [y, y + height) with x = tx * kTileSize and
// width = min(kTileSize, kFrameWidth - x) (likewise y, height), so the last column/row may be
// narrower. The model sees the kModelInputSize square starting at (x - kHalo, y - kHalo);
// pixels outside the frame repeat the nearest edge pixel (numpy.pad mode='edge'), on all four
// sides. Its output is the same square; the tile's pixels are the width x height crop at
// (kHalo, kHalo).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tinymirnet/model_settings.h"
#include "tinymirnet/pixels.h"

namespace tinymirnet {

static_assert(kChannels == 3, "the core converts RGB565/YUV422 frames to RGB888: three channels");
static_assert(kFrameWidth % 2 == 0, "a YUV422 frame holds pixel pairs: the width must be even");
static_assert(kModelInputSize == kTileSize + 2 * kHalo, "model input = tile + halo on each side");
static_assert(kTilesX * kTileSize >= kFrameWidth && (kTilesX - 1) * kTileSize < kFrameWidth,
              "kTilesX = ceil(kFrameWidth / kTileSize)");
static_assert(kTilesY * kTileSize >= kFrameHeight && (kTilesY - 1) * kTileSize < kFrameHeight,
              "kTilesY = ceil(kFrameHeight / kTileSize)");

constexpr size_t kFramePixels = static_cast<size_t>(kFrameWidth) * kFrameHeight;
constexpr size_t kModelTensorBytes =
    static_cast<size_t>(kModelInputSize) * kModelInputSize * kChannels;
constexpr size_t kMaxTileRgbBytes = static_cast<size_t>(kTileSize) * kTileSize * kChannels;

struct TileRect {
  int index;
  int x;
  int y;
  int width;
  int height;
};

// Geometry of tile `index`, 0 <= index < kTileCount.
TileRect tile_rect(int index);

// Fills the model input tensor for `tile` from a frame (kFramePixels values of `format`), each
// 8-bit channel value p becoming table.values[p] (the frame's exposed input table, pixels.h).
void extract_model_input(const uint16_t* frame, PixelFormat format, const TileRect& tile,
                         const InputQuantizationTable& table, int8_t* input);

// Writes the tile's width x height RGB888 pixels (row-major) cropped from the model output,
// through the colour and highlight guards against the frame's pixel (pixels.h).
void crop_model_output(const int8_t* output, const uint16_t* frame, PixelFormat format,
                       const TileRect& tile, uint8_t* rgb);

}  // namespace tinymirnet
