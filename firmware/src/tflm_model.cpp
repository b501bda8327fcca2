#include "tflm_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tinymirnet {
namespace {

// The tensor arena: static, 16-byte aligned (CMSIS-NN and the TFLM allocator expect it), sized
// by the export (measured on the host + margin, model_settings.h).
alignas(16) uint8_t g_tensor_arena[kArenaSize];

bool scale_matches(float actual, float expected) {
  return fabsf(actual - expected) <= 1e-6f * fabsf(expected);
}

}  // namespace

Status TflmModel::fail(const char* format, ...) {
  static const char kPrefix[] = "FAILED: ";
  memcpy(status_, kPrefix, sizeof(kPrefix));
  va_list args;
  va_start(args, format);
  vsnprintf(status_ + sizeof(kPrefix) - 1, sizeof(status_) - (sizeof(kPrefix) - 1), format,
            args);
  va_end(args);
  ready_ = false;
  return Status::kError;
}

Status TflmModel::begin() {
  if (started_) return ready_ ? Status::kOk : Status::kError;
  started_ = true;

  if (g_tiny_mirnet_model_len != kModelBytes) {
    return fail("model_data.cc has %lu bytes, model_settings.h says %lu: generated files from "
                "different exports, re-run `tinymirnet quantize`",
                static_cast<unsigned long>(g_tiny_mirnet_model_len),
                static_cast<unsigned long>(kModelBytes));
  }
  const tflite::Model* model = tflite::GetModel(g_tiny_mirnet_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return fail("flatbuffer schema version %lu, this TFLM reads version %lu",
                static_cast<unsigned long>(model->version()),
                static_cast<unsigned long>(TFLITE_SCHEMA_VERSION));
  }
  // Exactly the model's ops (model_ops.h is generated from the flatbuffer).
  if (RegisterModelOps(resolver_) != kTfLiteOk) {
    return fail("RegisterModelOps() failed (resolver capacity %d ops)", kModelOpCount);
  }

  static tflite::MicroInterpreter interpreter(model, resolver_, g_tensor_arena, kArenaSize);
  interpreter_ = &interpreter;
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    // TFLM has printed the cause on Serial just before (visible when a terminal was open at
    // boot): "Failed to ... Requested: X, available Y, missing: Z" for a small arena, or
    // "Didn't find op for builtin opcode ..." for an op this TFLM build lacks.
    return fail("AllocateTensors() failed with a %lu B arena (host-measured need %lu B): arena "
                "too small for this TFLM build or an op missing, see firmware/README.md",
                static_cast<unsigned long>(kArenaSize),
                static_cast<unsigned long>(kArenaMeasuredBytes));
  }
  if (interpreter.inputs_size() != 1 || interpreter.outputs_size() != 1) {
    return fail("model has %lu inputs and %lu outputs, expected 1 and 1",
                static_cast<unsigned long>(interpreter.inputs_size()),
                static_cast<unsigned long>(interpreter.outputs_size()));
  }
  input_ = interpreter.input(0);
  output_ = interpreter.output(0);
  if (check_tensor(input_, "input", kInputScale, kInputZeroPoint) != Status::kOk ||
      check_tensor(output_, "output", kOutputScale, kOutputZeroPoint) != Status::kOk) {
    return Status::kError;
  }

  ready_ = true;
  snprintf(status_, sizeof(status_), "ok, %d ops, tensor arena %lu / %lu B used", kModelOpCount,
           static_cast<unsigned long>(interpreter.arena_used_bytes()),
           static_cast<unsigned long>(kArenaSize));
  return Status::kOk;
}

Status TflmModel::check_tensor(const TfLiteTensor* tensor, const char* name, float scale,
                               int zero_point) {
  if (tensor == nullptr) return fail("no %s tensor", name);
  if (tensor->type != kTfLiteInt8) {
    return fail("%s tensor has TfLiteType %d, expected int8 (%d)", name,
                static_cast<int>(tensor->type), static_cast<int>(kTfLiteInt8));
  }
  const TfLiteIntArray* dims = tensor->dims;
  if (dims == nullptr || dims->size != 4 || dims->data[0] != 1 ||
      dims->data[1] != kModelInputSize || dims->data[2] != kModelInputSize ||
      dims->data[3] != kChannels) {
    return fail("%s tensor shape differs from 1x%dx%dx%d (model_settings.h)", name,
                kModelInputSize, kModelInputSize, kChannels);
  }
  if (tensor->bytes != kModelTensorBytes) {
    return fail("%s tensor has %lu bytes, expected %lu", name,
                static_cast<unsigned long>(tensor->bytes),
                static_cast<unsigned long>(kModelTensorBytes));
  }
  if (tensor->params.zero_point != zero_point || !scale_matches(tensor->params.scale, scale)) {
    return fail("%s quantization (zero point %ld) differs from model_settings.h (zero point "
                "%d): regenerate both with `tinymirnet quantize`",
                name, static_cast<long>(tensor->params.zero_point), zero_point);
  }
  return Status::kOk;
}

Status TflmModel::invoke(const int8_t* input, int8_t* output) {
  if (!ready_) return Status::kError;
  memcpy(input_->data.int8, input, kModelTensorBytes);
  if (interpreter_->Invoke() != kTfLiteOk) return Status::kError;
  memcpy(output, output_->data.int8, kModelTensorBytes);
  return Status::kOk;
}

size_t TflmModel::arena_used_bytes() const {
  return ready_ ? interpreter_->arena_used_bytes() : 0;
}

}  // namespace tinymirnet
