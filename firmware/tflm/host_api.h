/* C API over the board's TFLM (Chirale_TensorFlowLite 2.0.0) built for this machine, for Python
 * ctypes (quantize/tflm.py): the host int8 pipeline runs the very kernels the board runs, so
 * board, virtual board and host compute the same bytes.
 *
 * One handle = one model in its own interpreter and arena. The arena is zeroed before the
 * interpreter is created, as the firmware does (firmware/src/tflm_model.cpp: Chirale's
 * REDUCE_MAX Prepare leaves zero points uninitialised, tflite-micro issue 2336). Every op of
 * AllOpsResolver is registered. Functions returning int return 0 on success. */
#ifndef TINYMIRNET_TFLM_HOST_API_H_
#define TINYMIRNET_TFLM_HOST_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct TmTflm TmTflm;

typedef struct {
  int type;            /* TfLiteType: 9 = int8, 1 = float32 */
  int dims;            /* number of dimensions (<= 6) */
  int shape[6];
  float scale;         /* per-tensor quantization (first channel for per-channel) */
  int32_t zero_point;
  size_t bytes;
} TmTensorInfo;

/* The model (copied; the caller's buffer may go) in an arena of arena_size bytes. NULL on
 * failure, with the reason (TFLM's own messages) in error[0..error_size). */
TmTflm* tm_tflm_create(const uint8_t* model, size_t model_size, size_t arena_size, char* error,
                       size_t error_size);
void tm_tflm_destroy(TmTflm* handle);

size_t tm_tflm_inputs(const TmTflm* handle);
size_t tm_tflm_outputs(const TmTflm* handle);
int tm_tflm_input_info(TmTflm* handle, size_t index, TmTensorInfo* info);
int tm_tflm_output_info(TmTflm* handle, size_t index, TmTensorInfo* info);

int tm_tflm_set_input(TmTflm* handle, size_t index, const void* data, size_t bytes);
/* Runs the model; on failure the reason is in error[0..error_size). */
int tm_tflm_invoke(TmTflm* handle, char* error, size_t error_size);
int tm_tflm_get_output(TmTflm* handle, size_t index, void* data, size_t bytes);

/* Arena bytes TFLM used after AllocateTensors() (on this 64-bit machine: pointers are twice the
 * board's size, so the board needs less; see the device report for the 32-bit figure). */
size_t tm_tflm_arena_used(const TmTflm* handle);

/* "Chirale_TensorFlowLite 2.0.0 (host build)". */
const char* tm_tflm_library(void);

#ifdef __cplusplus
}
#endif

#endif
