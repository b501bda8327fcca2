#include "mps2_an386.h"

// startup.S: BKPT 0xAB with the operation in r0 and its argument block in r1.
extern "C" int semihosting_call(int operation, const void* argument);

namespace mps2 {
namespace {

struct CmsdkUart {
  volatile uint32_t data;
  volatile uint32_t state;  // bit 0: TX buffer full, bit 1: RX buffer full
  volatile uint32_t ctrl;   // bit 0: TX enable, bit 1: RX enable
  volatile uint32_t intstatus;
  volatile uint32_t bauddiv;
};

struct CmsdkTimer {
  volatile uint32_t ctrl;  // bit 0: enable
  volatile uint32_t value;
  volatile uint32_t reload;
  volatile uint32_t intstatus;
};

struct CmsdkWatchdog {
  volatile uint32_t load;
  volatile uint32_t value;
  volatile uint32_t ctrl;    // bit 0: counter and interrupt enable, bit 1: reset enable
  volatile uint32_t intclr;  // any write: clears the interrupt and reloads the counter
};

CmsdkWatchdog* const kWatchdog = reinterpret_cast<CmsdkWatchdog*>(0x40008000);
volatile uint32_t* const kWatchdogLock = reinterpret_cast<volatile uint32_t*>(0x40008C00);
constexpr uint32_t kWatchdogUnlock = 0x1ACCE551;

CmsdkUart* const kUart0 = reinterpret_cast<CmsdkUart*>(0x40004000);
CmsdkTimer* const kTimer0 = reinterpret_cast<CmsdkTimer*>(0x40000000);
const FrameBlob* const kBlob = reinterpret_cast<const FrameBlob*>(0x21000000);

uint32_t g_last_value = 0;
uint64_t g_ticks = 0;

}  // namespace

void uart_begin() {
  kUart0->bauddiv = 217;  // 25 MHz / 115200 (QEMU ignores the rate but wants >= 16)
  kUart0->ctrl = 0x3;
}

size_t uart_read(uint8_t* buffer, size_t capacity) {
  size_t count = 0;
  while (count < capacity && (kUart0->state & 0x2u) != 0) {
    buffer[count++] = static_cast<uint8_t>(kUart0->data);
  }
  return count;
}

void uart_write(const uint8_t* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    while ((kUart0->state & 0x1u) != 0) {
    }
    kUart0->data = data[i];
  }
}

void timer_begin() {
  kTimer0->ctrl = 0;
  kTimer0->reload = 0xFFFFFFFFu;
  kTimer0->value = 0xFFFFFFFFu;
  kTimer0->ctrl = 0x1;
  g_last_value = kTimer0->value;
  g_ticks = 0;
}

uint64_t timer_ticks() {
  const uint32_t value = kTimer0->value;
  g_ticks += static_cast<uint32_t>(g_last_value - value);  // counts down; wraps
  g_last_value = value;
  return g_ticks;
}

void host_print(const char* text) { semihosting_call(0x04, text); }  // SYS_WRITE0

namespace {

size_t length_of(const char* text) {
  size_t n = 0;
  while (text[n] != '\0') ++n;
  return n;
}

}  // namespace

bool host_take_file(const char* name) {
  const uint32_t open_args[3] = {reinterpret_cast<uint32_t>(name), 0 /* "r" */, length_of(name)};
  const int handle = semihosting_call(0x01, open_args);  // SYS_OPEN
  if (handle == -1) return false;
  const uint32_t close_args[1] = {static_cast<uint32_t>(handle)};
  semihosting_call(0x02, close_args);  // SYS_CLOSE
  const uint32_t remove_args[2] = {reinterpret_cast<uint32_t>(name), length_of(name)};
  semihosting_call(0x0E, remove_args);  // SYS_REMOVE
  return true;
}

void watchdog_start(uint32_t ticks) {
  *kWatchdogLock = kWatchdogUnlock;
  kWatchdog->load = ticks;
  kWatchdog->ctrl = 0x3;
  *kWatchdogLock = 0;
}

void watchdog_kick() {
  *kWatchdogLock = kWatchdogUnlock;
  kWatchdog->intclr = 1;
  *kWatchdogLock = 0;
}

const FrameBlob* frame_blob() {
  return kBlob->magic == kBlobMagic && kBlob->frame_count > 0 ? kBlob : nullptr;
}

}  // namespace mps2

// TFLM's log (MicroPrintf) and clock (micro_time.cpp) on this platform: the board gets both from
// Chirale's peripherals/utility_arduino.cpp and system_setup.cpp, which need the Arduino core.
extern "C" void DebugLog(const char* s) { mps2::host_print(s); }

namespace peripherals {
uint32_t MicrosecondsCounter() { return static_cast<uint32_t>(mps2::timer_ticks()); }
}  // namespace peripherals

// Static destructors registered with __cxa_atexit name their DSO; a bare-metal image linked
// with -nostartfiles has none of its own.
extern "C" {
void* __dso_handle = nullptr;
}
