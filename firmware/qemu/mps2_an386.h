// The few peripherals of QEMU's mps2-an386 (Cortex-M4F) the virtual board uses: the CMSDK
// APB UART0 (QEMU's first serial port: `-serial pty` makes it a pseudo-terminal on the host),
// the CMSDK APB timer0 as an instruction counter, semihosting for text on QEMU's stderr, and
// the frame blob the host loads into PSRAM with `-device loader` (the camera's pictures), and
// the CMSDK APB watchdog, which resets the machine as the nRF52's resets the board.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace mps2 {

// UART0: bytes to and from the host, polled.
void uart_begin();
size_t uart_read(uint8_t* buffer, size_t capacity);  // what has arrived, never waits
void uart_write(const uint8_t* data, size_t size);   // waits while QEMU's transmitter is busy

// Timer0 counts down at 25 MHz of virtual time. Under `-icount shift=0` one instruction takes
// 1 ns, so one tick is 40 instructions; under `shift=4`, 16 ns: 2.5 instructions.
void timer_begin();
uint64_t timer_ticks();  // since timer_begin(); call at least every 170 s of virtual time

// Semihosting SYS_WRITE0: a NUL-terminated string on QEMU's stderr.
void host_print(const char* text);
// Semihosting SYS_OPEN/SYS_REMOVE: true when the host had put a file of this name in QEMU's
// working folder, which is then removed (one request, taken once).
bool host_take_file(const char* name);

// The watchdog (0x40008000, clocked with timer0's 25 MHz): a warning (NMI) after `ticks`, the
// machine's reset after `ticks` more unless watchdog_kick() came first. Started once.
void watchdog_start(uint32_t ticks);
void watchdog_kick();

// The host's frame blob at 0x21000000: "TMNB", then u32 fields, then the frames in the
// board camera's format (YUV422, ports.h).
struct FrameBlob {
  uint32_t magic;                     // kBlobMagic
  uint32_t frame_count;               // frames that follow, each kFramePixels uint16
  uint32_t instructions_per_kilotick; // 40000 under shift=0, 2500 under shift=4
  uint32_t cpu_hz;                    // the board clock the Clock port reports time for
  uint16_t frames[1];
};
constexpr uint32_t kBlobMagic = 0x424E4D54;  // "TMNB" little-endian
const FrameBlob* frame_blob();  // nullptr when no valid blob was loaded

}  // namespace mps2
