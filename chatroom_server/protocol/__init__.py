"""THE wire format: REST request and response shapes, websocket frames in and out.

Field names of the Go server (`chatMessage`, `CreatedAt`, ...) appear here and
nowhere else. Frames are encoded once, to text, and that text is what every
connection receives.

One package, five modules: common.py, rest_in.py, rest_out.py, frames.py and bus.py;
everything is read through this package (`protocol.X`).
"""

from .bus import *  # noqa: F403
from .common import *  # noqa: F403
from .frames import *  # noqa: F403
from .rest_in import *  # noqa: F403
from .rest_out import *  # noqa: F403
