// The C API of host_api.h over Chirale_TensorFlowLite 2.0.0 compiled for this machine.
#include "host_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <string>

#include "tensorflow/lite/micro/all_ops_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// TFLM reports through DebugLog; the messages of the call in progress are kept here and handed
// to the caller as its error text.
std::string g_log;

void copy_error(char* error, size_t error_size, const char* fallback) {
  if (error == nullptr || error_size == 0) return;
  const std::string text = g_log.empty() ? std::string(fallback) : g_log;
  snprintf(error, error_size, "%s", text.c_str());
}

}  // namespace

extern "C" void DebugLog(const char* s) { g_log += s; }

// micro_time.cpp's clock source (peripherals/utility_arduino.cpp on the board): profiling on the
// host is not timed.
namespace peripherals {
uint32_t MicrosecondsCounter() { return 0; }
}  // namespace peripherals

struct TmTflm {
  uint8_t* model = nullptr;
  uint8_t* arena = nullptr;
  tflite::AllOpsResolver resolver;
  tflite::MicroInterpreter* interpreter = nullptr;
};

namespace {

void destroy(TmTflm* h) {
  if (h == nullptr) return;
  delete h->interpreter;
  free(h->model);
  free(h->arena);
  delete h;
}

int info_of(const TfLiteTensor* t, TmTensorInfo* info) {
  if (t == nullptr || info == nullptr) return 1;
  memset(info, 0, sizeof(*info));
  info->type = static_cast<int>(t->type);
  info->dims = t->dims ? t->dims->size : 0;
  if (info->dims > 6) return 1;
  for (int i = 0; i < info->dims; ++i) info->shape[i] = t->dims->data[i];
  info->scale = t->params.scale;
  info->zero_point = t->params.zero_point;
  info->bytes = t->bytes;
  return 0;
}

}  // namespace

extern "C" {

TmTflm* tm_tflm_create(const uint8_t* model, size_t model_size, size_t arena_size, char* error,
                       size_t error_size) {
  g_log.clear();
  TmTflm* h = new (std::nothrow) TmTflm();
  if (h == nullptr) return nullptr;
  // 16-byte aligned copies: the flatbuffer's tensors are read in place.
  h->model = static_cast<uint8_t*>(aligned_alloc(16, (model_size + 15) / 16 * 16));
  h->arena = static_cast<uint8_t*>(aligned_alloc(16, (arena_size + 15) / 16 * 16));
  if (h->model == nullptr || h->arena == nullptr) {
    copy_error(error, error_size, "out of memory");
    destroy(h);
    return nullptr;
  }
  memcpy(h->model, model, model_size);
  memset(h->arena, 0, arena_size);
  const tflite::Model* m = tflite::GetModel(h->model);
  if (m->version() != TFLITE_SCHEMA_VERSION) {
    copy_error(error, error_size, "flatbuffer schema version differs from this TFLM's");
    destroy(h);
    return nullptr;
  }
  h->interpreter = new tflite::MicroInterpreter(m, h->resolver, h->arena, arena_size);
  if (h->interpreter->AllocateTensors() != kTfLiteOk) {
    copy_error(error, error_size, "AllocateTensors() failed");
    destroy(h);
    return nullptr;
  }
  return h;
}

void tm_tflm_destroy(TmTflm* handle) { destroy(handle); }

size_t tm_tflm_inputs(const TmTflm* h) { return h->interpreter->inputs_size(); }
size_t tm_tflm_outputs(const TmTflm* h) { return h->interpreter->outputs_size(); }

int tm_tflm_input_info(TmTflm* h, size_t index, TmTensorInfo* info) {
  if (index >= h->interpreter->inputs_size()) return 1;
  return info_of(h->interpreter->input(index), info);
}

int tm_tflm_output_info(TmTflm* h, size_t index, TmTensorInfo* info) {
  if (index >= h->interpreter->outputs_size()) return 1;
  return info_of(h->interpreter->output(index), info);
}

int tm_tflm_set_input(TmTflm* h, size_t index, const void* data, size_t bytes) {
  if (index >= h->interpreter->inputs_size()) return 1;
  TfLiteTensor* t = h->interpreter->input(index);
  if (t->bytes != bytes) return 1;
  memcpy(t->data.raw, data, bytes);
  return 0;
}

int tm_tflm_invoke(TmTflm* h, char* error, size_t error_size) {
  g_log.clear();
  if (h->interpreter->Invoke() == kTfLiteOk) return 0;
  copy_error(error, error_size, "Invoke() failed");
  return 1;
}

int tm_tflm_get_output(TmTflm* h, size_t index, void* data, size_t bytes) {
  if (index >= h->interpreter->outputs_size()) return 1;
  const TfLiteTensor* t = h->interpreter->output(index);
  if (t->bytes != bytes) return 1;
  memcpy(data, t->data.raw, bytes);
  return 0;
}

size_t tm_tflm_arena_used(const TmTflm* h) { return h->interpreter->arena_used_bytes(); }

const char* tm_tflm_library(void) { return "Chirale_TensorFlowLite 2.0.0 (host build)"; }

}  // extern "C"
