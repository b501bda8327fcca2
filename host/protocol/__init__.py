"""Host side of the tinymirnet serial protocol, version 5 (specification: firmware/PROTOCOL.md).

Three layers:

* frames: :func:`encode_frame` and the streaming, resynchronizing :class:`FrameDecoder`;
* message payloads: one dataclass per message type with ``pack()`` / ``unpack()``, and
  :func:`decode_message`;
* :class:`Connection`: request/response with ACKs, bounded retransmission and timeouts over
  any pyserial-like port (``read(n)``, ``write(data)``, a settable ``timeout``), which also
  re-requests tiles or frame bytes lost on the way back.

Pixel helpers convert between the wire's frame formats (YUV422, RGB565) and RGB888 and stitch
tiles into an image.
This module imports only the standard library and numpy (pyserial only in
:meth:`Connection.open`).
"""

from __future__ import annotations

from .connection import (LINK_SETTINGS, CaptureResult, Connection, EnhanceResult, LinkStats,  # noqa: F401
                         PortOpenError, open_error_text)
from .frames import (CAPTURE_ENHANCE, CAPTURE_SEND_FRAME, FRAMING_BYTES, HEADER_BYTES,  # noqa: F401
                     MAX_PAYLOAD_LIMIT, PIXEL_FORMAT_RGB565, PIXEL_FORMAT_YUV422, STATUS_CAMERA_READY,
                     STATUS_MODEL_READY, SYNC, TRAILER_BYTES, VERSION, DecoderStats, DeviceError,
                     DeviceTimeout, ErrorCode, Frame, FrameDecoder, MessageType, ProtocolError, encode_frame)
from .messages import (NO_CONTEXT_MODEL, Ack, Capture, DeviceInfo, Done, Enhance, ErrorReply,  # noqa: F401
                       FrameChunk, Hello, Nak, ReadFrame, Run, RunTile, Tile, UploadChunk, decode_message,
                       encode_message)
from .pixels import (PIXEL_FORMAT_NAMES, at_frame_precision, at_rgb565_precision,  # noqa: F401
                     at_yuv422_precision, check_pixel_format, frame_to_rgb888, rgb565_to_rgb888,
                     rgb888_to_frame, rgb888_to_rgb565, rgb888_to_yuv422, stitch_tiles, wire_bytes,
                     yuv422_to_rgb888)
