// RGB565 bit replication and the int8 quantization tables against their formulas.
#include <math.h>
#include <string.h>

#include "tinymirnet/pixels.h"
#include "test_framework.h"

using namespace tinymirnet;

namespace {

void check_rgb565_known_values() {
  const Rgb888 white = rgb565_to_rgb888(0xFFFF);
  CHECK(white.r == 255 && white.g == 255 && white.b == 255);
  const Rgb888 black = rgb565_to_rgb888(0x0000);
  CHECK(black.r == 0 && black.g == 0 && black.b == 0);
  const Rgb888 red = rgb565_to_rgb888(0xF800);
  CHECK(red.r == 255 && red.g == 0 && red.b == 0);
  const Rgb888 green = rgb565_to_rgb888(0x07E0);
  CHECK(green.r == 0 && green.g == 255 && green.b == 0);
  const Rgb888 blue = rgb565_to_rgb888(0x001F);
  CHECK(blue.r == 0 && blue.g == 0 && blue.b == 255);
  // r5 = 16, g6 = 32, b5 = 1: 0x80 | 0x04, 0x80 | 0x02, 0x08 | 0x00.
  const Rgb888 mixed = rgb565_to_rgb888((16 << 11) | (32 << 5) | 1);
  CHECK(mixed.r == 0x84 && mixed.g == 0x82 && mixed.b == 0x08);
}

// Every 5- and 6-bit level maps to the level scaled to 0..255, rounded (what bit
// replication approximates within one step), and all 65536 pixels follow the formula.
void check_rgb565_bit_replication() {
  bool all_match = true;
  for (uint32_t pixel = 0; pixel < 65536; ++pixel) {
    const uint32_t r5 = pixel >> 11, g6 = (pixel >> 5) & 63, b5 = pixel & 31;
    const Rgb888 rgb = rgb565_to_rgb888(static_cast<uint16_t>(pixel));
    all_match = all_match && rgb.r == ((r5 << 3) | (r5 >> 2)) &&
                rgb.g == ((g6 << 2) | (g6 >> 4)) && rgb.b == ((b5 << 3) | (b5 >> 2));
  }
  CHECK(all_match);
  bool close_to_scaled = true;
  for (uint32_t level = 0; level < 32; ++level) {
    const int scaled = static_cast<int>(lroundf(level * 255.0f / 31.0f));
    const int replicated = rgb565_to_rgb888(static_cast<uint16_t>(level)).b;
    close_to_scaled = close_to_scaled && replicated - scaled <= 1 && scaled - replicated <= 1;
  }
  CHECK(close_to_scaled);
}

void check_rounding_matches_lround() {
  const float samples[] = {0.0f,   0.5f,  1.5f,   2.5f,   -0.5f,       -1.5f,      -2.5f,
                           0.49999997f,  -0.49999997f, 1.4999999f, 254.5f,  127.49999f,
                           8388607.5f,   -8388607.5f,  16777215.0f, 3.75f,   -3.25f};
  bool all_match = true;
  for (float sample : samples) {
    all_match = all_match && round_half_away_from_zero(sample) == lroundf(sample);
  }
  for (int i = -20000; i <= 20000; ++i) {
    const float sample = static_cast<float>(i) * 0.0625f + 0.001f * static_cast<float>(i % 7);
    all_match = all_match && round_half_away_from_zero(sample) == lroundf(sample);
  }
  CHECK(all_match);
}

// The compile-time tables equal the documented formula evaluated at run time with lroundf.
void check_tables_match_formulas() {
  bool input_matches = true;
  for (int pixel = 0; pixel < 256; ++pixel) {
    volatile float real = static_cast<float>(pixel) / 255.0f;  // force run-time float math
    long q = lroundf(real / kInputScale) + kInputZeroPoint;
    q = q < -128 ? -128 : (q > 127 ? 127 : q);
    input_matches = input_matches && quantize_input(static_cast<uint8_t>(pixel)) == q;
  }
  CHECK(input_matches);
  bool output_matches = true;
  for (int q = -128; q < 128; ++q) {
    volatile float real = static_cast<float>(q - kOutputZeroPoint) * kOutputScale;
    long pixel = lroundf(real * 255.0f);
    pixel = pixel < 0 ? 0 : (pixel > 255 ? 255 : pixel);
    output_matches = output_matches && dequantize_output(static_cast<int8_t>(q)) == pixel;
  }
  CHECK(output_matches);
  CHECK(quantize_input(0) <= quantize_input(255));
  CHECK(dequantize_output(-128) <= dequantize_output(127));
}

// With equal input and output quantization at least as fine as 1/255, a pixel survives the
// round trip through the tables within one step (catches sign or offset mistakes).
void check_identity_round_trip() {
  if (kInputScale != kOutputScale || kInputZeroPoint != kOutputZeroPoint ||
      kInputScale * 255.0f > 1.0001f) {
    return;
  }
  bool within_one = true;
  for (int pixel = 0; pixel < 256; ++pixel) {
    const int back = dequantize_output(quantize_input(static_cast<uint8_t>(pixel)));
    within_one = within_one && back - pixel <= 1 && pixel - back <= 1;
  }
  CHECK(within_one);
}

// YUV422 -> RGB888: full-range BT.601 in integers (pixels.h), and the pixel pairs of a frame.
void check_yuv422_conversion() {
  const Rgb888 grey = yuv_to_rgb888(100, 128, 128);
  CHECK(grey.r == 100 && grey.g == 100 && grey.b == 100);
  const Rgb888 black = yuv_to_rgb888(0, 128, 128);
  CHECK(black.r == 0 && black.g == 0 && black.b == 0);
  // Y 76, U 85, V 255 is BT.601's pure red: 76 + 178, 76 - (-3784 + 23241 + 128) / 256 -> 0, 76 - 76.
  const Rgb888 red = yuv_to_rgb888(76, 85, 255);
  CHECK_EQ(red.r, 254);
  CHECK_EQ(red.g, 0);
  CHECK_EQ(red.b, 0);
  // Negative terms floor: V 127 gives r = 50 + floor((-359 + 128) / 256) = 50 - 1.
  CHECK_EQ(yuv_to_rgb888(50, 128, 127).r, 49);
  CHECK_EQ(yuv_to_rgb888(50, 128, 127).g, 51);  // g = 50 - floor((-183 + 128) / 256) = 50 + 1
  // Pairs: pixel 2k holds Y0 | U << 8, pixel 2k + 1 holds Y1 | V << 8. Each pixel's U and V
  // are 3/4 its pair's and 1/4 the neighbour pair's on its side; a row's end pixels take their
  // own pair's. Row: a grey pair (U = V = 128), then a red pair (U 85, V 255).
  const uint16_t row[4] = {static_cast<uint16_t>(10 | 128 << 8), static_cast<uint16_t>(200 | 128 << 8),
                           static_cast<uint16_t>(76 | 85 << 8), static_cast<uint16_t>(76 | 255 << 8)};
  const Rgb888 first = row_pixel(row, 0, 4, PixelFormat::kYuv422);
  CHECK(first.r == 10 && first.g == 10 && first.b == 10);  // the row's start: its own pair
  const Rgb888 last = row_pixel(row, 3, 4, PixelFormat::kYuv422);
  CHECK(last.r == 254 && last.g == 0 && last.b == 0);  // the row's end: its own pair
  // pixel 1: U = (3 * 128 + 85 + 2) >> 2 = 117, V = (3 * 128 + 255 + 2) >> 2 = 160
  const Rgb888 second = row_pixel(row, 1, 4, PixelFormat::kYuv422);
  const Rgb888 second_expected = yuv_to_rgb888(200, 117, 160);
  CHECK(second.r == second_expected.r && second.g == second_expected.g && second.b == second_expected.b);
  // pixel 2: U = (3 * 85 + 128 + 2) >> 2 = 96, V = (3 * 255 + 128 + 2) >> 2 = 223
  const Rgb888 third = row_pixel(row, 2, 4, PixelFormat::kYuv422);
  const Rgb888 third_expected = yuv_to_rgb888(76, 96, 223);
  CHECK(third.r == third_expected.r && third.g == third_expected.g && third.b == third_expected.b);
  CHECK_EQ(row_pixel(row, 3, 4, PixelFormat::kRgb565).g, rgb565_to_rgb888(row[3]).g);
  // The exposure gain of a YUV422 frame is taken on its RGB888 values.
  static uint16_t frame[64];
  for (uint16_t& p : frame) p = static_cast<uint16_t>(16 | 128 << 8);  // grey 16
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kYuv422, 8, 8, 120), 1920u);
}

// The exposure gain follows its documented integer formula (pixels.h, model/exposure.py).
void check_exposure_gain() {
  static uint16_t frame[64];
  // Uniform RGB888 (16, 16, 16): 120 * 256 / 16 = 1920 exactly.
  for (uint16_t& p : frame) p = (2u << 11) | (4u << 5) | 2u;
  CHECK_EQ(rgb565_to_rgb888(frame[0]).g, 16);
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), 1920u);
  CHECK_EQ(apply_gain_q8(16, 1920), 120);
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 0), kGainOneQ8);  // target 0: off
  // Half the pixels black: the mean halves, the gain doubles (3840).
  for (int i = 0; i < 32; ++i) frame[i] = 0;
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), 3840u);
  // Rounding: mean 16 * 63/64, gain 120 * 256 * 64 / (63 * 16) = 1950.48 -> 1950.
  for (uint16_t& p : frame) p = (2u << 11) | (4u << 5) | 2u;
  frame[0] = 0;
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), 1950u);
  // Never darkens, at most 32x, and a black frame gets the largest gain.
  for (uint16_t& p : frame) p = 0xFFFFu;
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), kGainOneQ8);
  for (uint16_t& p : frame) p = (0u << 11) | (1u << 5) | 0u;  // G = 4
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), kMaxGainQ8);
  for (uint16_t& p : frame) p = 0;
  CHECK_EQ(exposure_gain_q8(frame, PixelFormat::kRgb565, 8, 8, 120), kMaxGainQ8);
  CHECK_EQ(apply_gain_q8(255, kMaxGainQ8), 255);
  CHECK_EQ(apply_gain_q8(0, kMaxGainQ8), 0);
  CHECK_EQ(apply_gain_q8(3, 384), 5);  // 4.5 rounds up
  // The soft knee (model/exposure.py's test: the same values): slope 1 at 192, then bending.
  CHECK_EQ(apply_gain_q8(128, 384), 192);
  CHECK_EQ(apply_gain_q8(200, 384), 232);  // 300 -> 192 + 63 * 108 / 171
  CHECK_EQ(apply_gain_q8(255, 384), 255);  // the bent 239 is below the pixel itself: kept
}

// The gain table is monotone, never darker than its input, and the identity at gain 1.
void check_gain_table() {
  const uint32_t gains[] = {kGainOneQ8, 300u, 1000u, 1920u, kMaxGainQ8};
  for (uint32_t gain : gains) {
    uint8_t table[256];
    make_gain_table(gain, table);
    bool monotone = true, never_darker = true;
    for (int p = 0; p < 256; ++p) {
      never_darker = never_darker && table[p] >= p;
      if (p > 0) monotone = monotone && table[p] >= table[p - 1];
      if (gain == kGainOneQ8) CHECK_EQ(table[p], p);
    }
    CHECK(monotone);
    CHECK(never_darker);
  }
}

// The exposed input table is the input table read at the gained pixel value.
void check_exposed_input_table() {
  InputQuantizationTable table;
  make_exposed_input_table(kGainOneQ8, &table);
  CHECK(memcmp(table.values, kInputTable.values, 256) == 0);
  make_exposed_input_table(1000, &table);
  bool matches = true;
  for (int p = 0; p < 256; ++p) {
    matches = matches && table.values[p] == quantize_input(apply_gain_q8(static_cast<uint8_t>(p), 1000));
  }
  CHECK(matches);
  // below the knee the table is the plain gain
  CHECK_EQ(table.values[40], quantize_input((40u * 1000u + 128u) >> 8));
}

}  // namespace

void pixel_tests() {
  check_exposure_gain();
  check_gain_table();
  check_exposed_input_table();
  check_rgb565_known_values();
  check_rgb565_bit_replication();
  check_yuv422_conversion();
  check_rounding_matches_lround();
  check_tables_match_formulas();
  check_identity_round_trip();
}
