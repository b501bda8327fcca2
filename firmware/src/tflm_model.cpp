#include "tflm_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tinymirnet {
namespace {

// The tensor arena: static, 16-byte aligned (CMSIS-NN and the TFLM allocator expect it), sized
// by the export (measured on the host + margin, model_settings.h): the larger model's need.
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

Status TflmModel::check_model_bytes(unsigned int actual, size_t expected, const char* name) {
  if (actual == expected) return Status::kOk;
  return fail("model_data.cc has %u bytes of the %s, model_settings.h says %lu: generated files "
              "from different exports, re-run `tinymirnet quantize`",
              actual, name, static_cast<unsigned long>(expected));
}

Status TflmModel::begin() {
  if (started_) return ready_ ? Status::kOk : Status::kError;
  started_ = true;
  if (check_model_bytes(g_tiny_mirnet_model_len, kModelBytes, "tile model") != Status::kOk) {
    return Status::kError;
  }
  // (A one-model export has a context array of length 0 and kContextModelBytes 0.)
  if (check_model_bytes(g_tiny_mirnet_context_model_len, kContextModelBytes, "context model") !=
      Status::kOk) {
    return Status::kError;
  }
  // Exactly the models' ops (model_ops.h is generated from the flatbuffers).
  if (RegisterModelOps(resolver_) != kTfLiteOk) {
    return fail("RegisterModelOps() failed (resolver capacity %d ops)", kModelOpCount);
  }
  ready_ = true;  // activate() needs it; fail() clears it again
  // The context model first: the tile model stays in the arena, ready for the first tile.
  if (kFrameContext && activate(Active::kContext) != Status::kOk) return Status::kError;
  if (activate(Active::kTile) != Status::kOk) return Status::kError;
  snprintf(status_, sizeof(status_), "ok, %s, %d ops, tensor arena %lu / %lu B used",
           kFrameContext ? "frame context + tile model" : "one model", kModelOpCount,
           static_cast<unsigned long>(arena_used_), static_cast<unsigned long>(kArenaSize));
  return Status::kOk;
}

Status TflmModel::activate(Active which) {
  if (!ready_) return Status::kError;
  if (active_ == which) return Status::kOk;
  if (interpreter_ != nullptr) interpreter_->~MicroInterpreter();
  interpreter_ = nullptr;
  active_ = Active::kNone;
  input_ = context_input_ = output_ = nullptr;

  const bool context = which == Active::kContext;
  const char* name = context ? "context model" : "tile model";
  const tflite::Model* model =
      tflite::GetModel(context ? g_tiny_mirnet_context_model : g_tiny_mirnet_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return fail("%s flatbuffer schema version %lu, this TFLM reads version %lu", name,
                static_cast<unsigned long>(model->version()),
                static_cast<unsigned long>(TFLITE_SCHEMA_VERSION));
  }
  // A fresh arena for every interpreter: Chirale 2.0.0's REDUCE_MAX Prepare never sets its op
  // data's zero points (tensorflow/tflite-micro issue 2336), so over the other model's
  // leftovers its Eval reads garbage and fails ("input_zp != output_zp"); zeros make it pass.
  memset(g_tensor_arena, 0, kArenaSize);
  interpreter_ = new (interpreter_storage_) tflite::MicroInterpreter(
      model, resolver_, g_tensor_arena, kArenaSize, nullptr, profiler_);
  if (interpreter_->AllocateTensors() != kTfLiteOk) {
    // TFLM has printed the cause on Serial just before (visible when a terminal was open at
    // boot): "Failed to ... Requested: X, available Y, missing: Z" for a small arena, or
    // "Didn't find op for builtin opcode ..." for an op this TFLM build lacks.
    return fail("%s: AllocateTensors() failed with a %lu B arena (host-measured need %lu B): "
                "arena too small for this TFLM build or an op missing, see firmware/README.md",
                name, static_cast<unsigned long>(kArenaSize),
                static_cast<unsigned long>(kArenaMeasuredBytes));
  }
  const size_t used = interpreter_->arena_used_bytes();
  if (used > arena_used_) arena_used_ = used;
  (context ? context_arena_used_ : tile_arena_used_) = used;
  if ((context ? check_context_tensors() : check_tile_tensors()) != Status::kOk) {
    return Status::kError;
  }
  active_ = which;
  return Status::kOk;
}

Status TflmModel::check_tile_tensors() {
  const size_t inputs = kFrameContext ? 2 : 1;
  if (interpreter_->inputs_size() != inputs || interpreter_->outputs_size() != 1) {
    return fail("tile model has %lu inputs and %lu outputs, expected %lu and 1",
                static_cast<unsigned long>(interpreter_->inputs_size()),
                static_cast<unsigned long>(interpreter_->outputs_size()),
                static_cast<unsigned long>(inputs));
  }
  input_ = interpreter_->input(kFrameContext ? kTileImageInput : 0);
  output_ = interpreter_->output(0);
  if (check_tensor(input_, "tile input", kModelTensorBytes, kInputScale, kInputZeroPoint) !=
          Status::kOk ||
      check_tensor(output_, "tile output", kModelTensorBytes, kOutputScale, kOutputZeroPoint) !=
          Status::kOk) {
    return Status::kError;
  }
  if (!kFrameContext) return Status::kOk;
  context_input_ = interpreter_->input(kTileContextInput);
  return check_tensor(context_input_, "tile context input", kContextValues, kTileContextScale,
                      kTileContextZeroPoint);
}

Status TflmModel::check_context_tensors() {
  if (interpreter_->inputs_size() != 1 || interpreter_->outputs_size() != 1) {
    return fail("context model has %lu inputs and %lu outputs, expected 1 and 1",
                static_cast<unsigned long>(interpreter_->inputs_size()),
                static_cast<unsigned long>(interpreter_->outputs_size()));
  }
  input_ = interpreter_->input(0);
  output_ = interpreter_->output(0);
  if (check_tensor(input_, "thumbnail input", kThumbnailBytes, kContextInputScale,
                   kContextInputZeroPoint) != Status::kOk) {
    return Status::kError;
  }
  return check_tensor(output_, "context output", kContextValues, kContextOutputScale,
                      kContextOutputZeroPoint);
}

// Type, size and quantization; the size stands for the shape (the export fixed both).
Status TflmModel::check_tensor(const TfLiteTensor* tensor, const char* name, size_t bytes,
                               float scale, int zero_point) {
  if (tensor == nullptr) return fail("no %s tensor", name);
  if (tensor->type != kTfLiteInt8) {
    return fail("%s tensor has TfLiteType %d, expected int8 (%d)", name,
                static_cast<int>(tensor->type), static_cast<int>(kTfLiteInt8));
  }
  if (tensor->bytes != bytes) {
    return fail("%s tensor has %lu bytes, expected %lu (model_settings.h)", name,
                static_cast<unsigned long>(tensor->bytes), static_cast<unsigned long>(bytes));
  }
  if (tensor->params.zero_point != zero_point || !scale_matches(tensor->params.scale, scale)) {
    return fail("%s quantization (zero point %ld) differs from model_settings.h (zero point "
                "%d): regenerate both with `tinymirnet quantize`",
                name, static_cast<long>(tensor->params.zero_point), zero_point);
  }
  return Status::kOk;
}

Status TflmModel::invoke_context(const int8_t* thumbnail, int8_t* context) {
  if (!kFrameContext || activate(Active::kContext) != Status::kOk) return Status::kError;
  memcpy(input_->data.int8, thumbnail, kThumbnailBytes);
  if (interpreter_->Invoke() != kTfLiteOk) {
    return fail("context model: Invoke() failed (TFLM printed the cause just before)");
  }
  memcpy(context, output_->data.int8, kContextValues);
  return Status::kOk;
}

Status TflmModel::invoke(const int8_t* input, const int8_t* context, int8_t* output) {
  if (activate(Active::kTile) != Status::kOk) return Status::kError;
  if (kFrameContext) {
    if (context == nullptr) return fail("tile model: no context vector given");
    memcpy(context_input_->data.int8, context, kContextValues);
  }
  memcpy(input_->data.int8, input, kModelTensorBytes);
  if (interpreter_->Invoke() != kTfLiteOk) {
    return fail("tile model: Invoke() failed (TFLM printed the cause just before)");
  }
  memcpy(output, output_->data.int8, kModelTensorBytes);
  return Status::kOk;
}

size_t TflmModel::arena_used_bytes() const { return ready_ ? arena_used_ : 0; }

}  // namespace tinymirnet
