// Model over TensorFlow Lite Micro: the generated flatbuffer(s) (model_data.h), the generated op
// registrations (model_ops.h) and a statically allocated tensor arena of kArenaSize bytes.
// A frame-context network has two models (kFrameContext): they take turns in the one arena.
// The interpreter of the model about to run is created in place (and the other one destroyed)
// when the device switches between them, twice per frame (context model, then the tiles):
// the arena then only has to hold the larger model, at the cost of two AllocateTensors()
// calls per frame. The arena is zeroed before each interpreter (see activate()).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core_headers.h"
#include "tinymirnet/model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

namespace tinymirnet {

class TflmModel final : public Model {
 public:
  // Maps the flatbuffer(s), registers exactly the generated ops, allocates the tensors of each
  // model in turn and checks its tensors against model_settings.h. On failure returns kError
  // (the core then answers with ERROR MODEL_FAILED) and status_text() says what failed.
  Status begin() override;
  // The context model on the frame's thumbnail (frame-context network only).
  Status invoke_context(const int8_t* thumbnail, int8_t* context) override;
  // Copies the int8 tile (and the context) in, runs the tile model, copies the result out.
  Status invoke(const int8_t* input, const int8_t* context, int8_t* output) override;
  // Arena bytes used after AllocateTensors(), the larger of the two models' (0 when the model
  // did not start).
  size_t arena_used_bytes() const override;
  // The same for one of the two models (the context model's is 0 for a one-model network).
  size_t arena_used_bytes(bool context_model) const {
    return ready_ ? (context_model ? context_arena_used_ : tile_arena_used_) : 0;
  }

  // TFLM's per-op profiler for the interpreters created from now on (nullptr: none). The
  // virtual board's device report uses it; the sketch does not.
  void set_profiler(tflite::MicroProfilerInterface* profiler) { profiler_ = profiler; }

  // False once begin() or an invoke failed (the core then reports the model not ready).
  bool ready() const override { return ready_; }
  // One line for the boot banner and the core's ERROR replies: "ok, ..." or what failed.
  const char* status_text() const override { return status_; }

 private:
  enum class Active : uint8_t { kNone, kTile, kContext };

  Status fail(const char* format, ...) __attribute__((format(printf, 2, 3)));
  // Makes `which` the model in the arena (creating its interpreter there) and checks it.
  Status activate(Active which);
  Status check_model_bytes(unsigned int actual, size_t expected, const char* name);
  Status check_tensor(const TfLiteTensor* tensor, const char* name, size_t bytes, float scale,
                      int zero_point);
  Status check_tile_tensors();
  Status check_context_tensors();

  ModelOpResolver resolver_;
  tflite::MicroProfilerInterface* profiler_ = nullptr;
  tflite::MicroInterpreter* interpreter_ = nullptr;  // in interpreter_storage_, or null
  alignas(tflite::MicroInterpreter) unsigned char interpreter_storage_[sizeof(tflite::MicroInterpreter)];
  Active active_ = Active::kNone;
  TfLiteTensor* input_ = nullptr;          // the tile (tile model) or the thumbnail
  TfLiteTensor* context_input_ = nullptr;  // the tile model's context input
  TfLiteTensor* output_ = nullptr;
  size_t arena_used_ = 0;
  size_t tile_arena_used_ = 0;
  size_t context_arena_used_ = 0;
  bool started_ = false;
  bool ready_ = false;
  char status_[224] = "not started";
};

}  // namespace tinymirnet
