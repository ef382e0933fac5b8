"""attnlab: the library behind the course "How attention got efficient".

One module per idea; import what a chapter needs, for example ``from attnlab import attention, gqa``.
"""

from attnlab.devices import available_devices, default_device
from attnlab.show import show_source

__all__ = ["available_devices", "default_device", "show_source"]
__version__ = "0.1.0"
