// Model over TensorFlow Lite Micro: the generated flatbuffer (model_data.h), the generated op
// registrations (model_ops.h) and a statically allocated tensor arena of kArenaSize bytes.
#pragma once

#include <stddef.h>
#include <stdint.h>

// The library's main header first, as in its examples (it also makes the LDF pick the library).
#include <Chirale_TensorFlowLite.h>

#include "../lib/tinymirnet_model/model_ops.h"
#include "core_headers.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

namespace tinymirnet {

class TflmModel final : public Model {
 public:
  // Maps the flatbuffer, registers exactly the generated ops, allocates the tensors and checks
  // the input/output tensors against model_settings.h. On failure returns kError (the core
  // then answers with ERROR MODEL_FAILED) and status_text() says what failed.
  Status begin() override;
  // Copies the int8 tile in, runs the interpreter, copies the int8 result out.
  Status invoke(const int8_t* input, int8_t* output) override;
  // Arena bytes used after AllocateTensors() (0 when the model did not start).
  size_t arena_used_bytes() const override;

  bool ready() const { return ready_; }
  // One line for the boot banner: "ok, ..." or what failed and what to do.
  const char* status_text() const { return status_; }

 private:
  Status fail(const char* format, ...) __attribute__((format(printf, 2, 3)));
  Status check_tensor(const TfLiteTensor* tensor, const char* name, float scale,
                      int zero_point);

  ModelOpResolver resolver_;
  tflite::MicroInterpreter* interpreter_ = nullptr;
  TfLiteTensor* input_ = nullptr;
  TfLiteTensor* output_ = nullptr;
  bool started_ = false;
  bool ready_ = false;
  char status_[224] = "not started";
};

}  // namespace tinymirnet
