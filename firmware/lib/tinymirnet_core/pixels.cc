#include "pixels.h"

namespace tinymirnet {

constexpr InputQuantizationTable kInputTable = make_input_table(kInputScale, kInputZeroPoint);
constexpr OutputDequantizationTable kOutputTable =
    make_output_table(kOutputScale, kOutputZeroPoint);

}  // namespace tinymirnet
