/* C API of the host simulator: the firmware core built as a shared library
 * (firmware/tests/build/libtinymirnet_sim.so, `make -C firmware/tests sim`) so that a
 * Python "virtual board" can drive it through ctypes with its own ports.
 *
 * There is one static device instance; tmn_sim_create() (re)creates it. Not thread-safe:
 * call everything from one thread. Callbacks run inside tmn_sim_poll(). */
#ifndef TINYMIRNET_SIM_API_H_
#define TINYMIRNET_SIM_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Port callbacks. Status results: 0 = ok, anything else = failure. `user` is passed back
 * unchanged. A NULL camera_begin/camera_capture means "no camera" (CAPTURE fails); a NULL
 * model_begin means the model starts fine; a NULL model_arena_used_bytes reports 0. */
typedef struct tmn_sim_ports {
  void* user;
  /* Non-blocking: copy up to `capacity` bytes sent by the host, return how many. */
  size_t (*link_read)(void* user, uint8_t* buffer, size_t capacity);
  /* Take all `size` bytes the device sends, return how many were taken. */
  size_t (*link_write)(void* user, const uint8_t* data, size_t size);
  int (*camera_begin)(void* user);
  /* Fill `pixel_count` (= width * height) YUV422 values, row-major: the board camera's
   * format, the bytes Y0 U Y1 V of each pixel pair in memory order (pixels.h). */
  int (*camera_capture)(void* user, uint16_t* pixels, size_t pixel_count);
  int (*model_begin)(void* user);
  /* The tile model. `input` and `output` are `size` (= model input side^2 * 3) int8 values,
   * HWC; `context` is the frame's `context_size` int8 context values (NULL and 0 for a
   * one-model build). */
  int (*model_invoke)(void* user, const int8_t* input, const int8_t* context, size_t context_size,
                      int8_t* output, size_t size);
  /* A frame-context build only: the context model on the `thumbnail_size` int8 thumbnail
   * values, writing `context_size` int8 values (NULL: the context model fails). */
  int (*model_invoke_context)(void* user, const int8_t* thumbnail, size_t thumbnail_size,
                              int8_t* context, size_t context_size);
  size_t (*model_arena_used_bytes)(void* user);
  uint32_t (*clock_micros)(void* user);
} tmn_sim_ports;

/* Constants of the build (from model_settings.h and the core), for the Python side. */
typedef struct tmn_sim_config {
  uint32_t protocol_version;
  uint32_t frame_width;
  uint32_t frame_height;
  uint32_t tile_size;
  uint32_t halo;
  uint32_t model_input_size;
  uint32_t tile_count;
  uint32_t max_payload;
  uint32_t frame_gap_timeout_us;
  /* Static RAM of the device buffers (the RAM budget table). */
  uint32_t frame_buffer_bytes;
  uint32_t tile_io_bytes;
  uint32_t protocol_buffer_bytes;
  uint32_t device_object_bytes;
  /* Exposure normalisation target (0 = off), from model_settings.h. */
  uint32_t exposure_target;
  /* Frame context (model_settings.h kFrameContext): 1 for a two-model build, else 0 (and 0
   * sizes); the thumbnail's size, the context vector's length, and their buffers' bytes. */
  uint32_t frame_context;
  uint32_t thumbnail_width;
  uint32_t thumbnail_height;
  uint32_t context_values;
  uint32_t frame_context_bytes;
} tmn_sim_config;

void tmn_sim_get_config(tmn_sim_config* config);

/* (Re)creates the device with these ports and runs its begin(). link_read, link_write,
 * model_invoke and clock_micros are required. Returns 0, or -1 if one is missing. */
int tmn_sim_create(const tmn_sim_ports* ports, const char* firmware_version);
/* One poll() step. Returns 1 while a job is running, 0 when idle, -1 with no device. */
int tmn_sim_poll(void);
void tmn_sim_destroy(void);

/* The codec and pixel tables of the core, for cross-checks from Python. */
uint32_t tmn_crc32(const uint8_t* data, size_t size);
/* Returns the frame size, or 0 if it does not fit in `capacity`. */
size_t tmn_encode_frame(uint8_t type, uint16_t seq, const uint8_t* payload, size_t payload_size,
                        uint8_t* out, size_t capacity);
/* Decodes the first frame in `data`. Returns its payload size (>= 0) and fills `type`, `seq`
 * and `payload` (at most `capacity` bytes); -1 if `data` holds no complete, valid frame. */
long tmn_decode_frame(const uint8_t* data, size_t size, uint8_t* type, uint16_t* seq,
                      uint8_t* payload, size_t capacity);
void tmn_input_table(int8_t table[256]);
void tmn_output_table(uint8_t table[256]);
/* Frame pixel formats below: 0 RGB565, 1 YUV422 (pixels.h). */
/* A frame-context build: the int8 thumbnail (thumbnail_height x thumbnail_width x 3) the
 * device makes of a frame_width x frame_height frame with exposure gain `gain_q8`, and
 * the table that requantizes the context model's output for the tile model (thumbnail.h). */
void tmn_thumbnail_input(const uint16_t* frame, uint32_t pixel_format, uint32_t gain_q8,
                         int8_t* thumbnail);
void tmn_context_requantization_table(int8_t table[256]);
/* The exposure gain (Q8) of a width x height frame, and the input table of a frame with gain
 * `gain_q8` (pixels.h). */
uint32_t tmn_exposure_gain_q8(const uint16_t* frame, uint32_t pixel_format, uint32_t width,
                              uint32_t height, uint32_t target);
/* A width x height frame (even width) as RGB888, 3 bytes per pixel, row-major (pixels.h). */
void tmn_frame_to_rgb888(const uint16_t* frame, uint32_t pixel_format, uint32_t width,
                         uint32_t height, uint8_t* rgb);
void tmn_exposed_input_table(uint32_t gain_q8, int8_t table[256]);

#ifdef __cplusplus
}
#endif

#endif /* TINYMIRNET_SIM_API_H_ */
